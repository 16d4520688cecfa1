"""`discdiff distil`'s Lightning module: discrete consistency distillation (DCD; DUO, Sahoo et al.,
ICML 2025, arXiv 2506.10892, Sec. 4.2) of a uniform-noise model into a few-step student.

The student starts from the teacher run's weights. Training runs `distil.rounds` rounds of
`distil.steps_per_round` optimizer steps; at the start of each round the teacher becomes a frozen
copy of the student (its weights, not the EMA), and the trajectory step delta doubles
(`distil.delta` x 2^round). Each step the student at z_t learns the teacher's prediction at z_s, two
points of one Gaussian trajectory (`DiffusionLM.distillation_loss`). Labels drop to the null class
as in training (`training.guidance.cond_dropout`), the same label reaching student and teacher, so
a label-conditional student keeps both its conditional and its unconditional behaviour and D-CFG
applies to it unchanged. With `distil.cfg_gamma` the labelled rows of the first round learn the
teacher's D-CFG prediction at that gamma instead (`DiffusionLM.teacher_prediction`), so the
student's plain conditional prediction samples the guided teacher. Later rounds distil the
student's own copy as it is: its conditional prediction already carries the guidance, and
tempering it again would compound gamma round by round (gamma^rounds).

The teacher's weights are part of the checkpoint (a submodule) and its round part of the discdiff
state, so a run preempted mid-round resumes with the same teacher. Validation reports the
student's NELBO; the student is an ordinary generator run for every other command.
"""

from __future__ import annotations

import copy

from ..duality import DualitySchedule
from .module import LitLanguageModel


class LitDistillation(LitLanguageModel):
    """A generator module whose training step is DCD against a frozen, refreshed teacher."""

    def __init__(self, config: dict, vocab: dict):
        super().__init__(config, vocab)
        d = self.cfg.distil
        self.window = DualitySchedule(self.lm.process.vocab_size, float(d.log_snr_min), float(d.log_snr_max))
        self.teacher = copy.deepcopy(self.lm.backbone).requires_grad_(False)
        self.teacher_round = -1  # no round's copy yet: taken before the first step

    def distil_round(self) -> int:
        return self.global_step // self.cfg.distil.steps_per_round

    def delta(self) -> float:
        """The trajectory step of this round: distil.delta x 2^round, at most 1."""
        return min(float(self.cfg.distil.delta) * 2 ** self.distil_round(), 1.0)

    def target_gamma(self) -> float | None:
        """The D-CFG gamma of the teacher's target: distil.cfg_gamma in the first round, else None
        (the teacher as it is)."""
        return self.cfg.distil.cfg_gamma if self.distil_round() == 0 else None

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self.distil_round() > self.teacher_round:
            self.teacher.load_state_dict(self.lm.backbone.state_dict())
            self.teacher_round = self.distil_round()
        self.teacher.eval()  # Lightning puts every submodule back in train mode after validation

    def training_step(self, batch, batch_idx):
        self.reseed()
        batch = self.augmented(batch)
        out = self.lm.distillation_loss(batch, self.condition(batch, training=True), self.teacher, self.window,
                                        self.delta(), self.cfg.distil.divergence, self.target_gamma())
        self.advance()
        self.log("train/loss", out.loss, prog_bar=True)
        self.log("train/delta", self.delta())
        self.log("train/round", float(self.distil_round()))
        if self.cfg.distil.cfg_gamma is not None:  # the target's gamma: 1 is the teacher's plain conditional
            self.log("train/cfg_gamma", self.target_gamma() or 1.0)
        return out.loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["discdiff"]["teacher_round"] = self.teacher_round

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.teacher_round = checkpoint["discdiff"].get("teacher_round", -1)
