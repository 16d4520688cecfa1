"""The Lightning modules' shared machinery (`ResumableModule`) and the language-model module:
one language model, its EMA, optimizer and validation metrics.

Every training micro-batch reseeds the global RNG from (seed, micro-batch index, rank), so the
noise levels, corrupted tokens, label dropout and dropout masks of a resumed run are exactly
those of a run that never stopped.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from omegaconf import DictConfig
from torch.distributed.fsdp import FullyShardedDataParallel

from ..config import restore
from ..data.augment import build_augment
from ..ema import EMA
from ..factory import build_language_model
from ..lr_schedules import lr_lambda


class ResumableModule(L.LightningModule):
    """What every trained network shares: per-micro-batch reseeding, data-order resumption, the
    EMA, AdamW with the configured LR schedule, and the discdiff state in checkpoints.

    Subclasses set `self.cfg`, name the trained module in a `network` property and then call
    `_init_resumable()`; `kind` tells checkpoints of different kinds apart."""

    kind = "generator"

    def _init_resumable(self) -> None:
        """The EMA of `network` (unless training.ema = 0) and the resumption counters."""
        decay = self.cfg.training.ema
        self.ema = EMA(self.network, decay) if decay > 0 else None
        self.micro_step = 0  # training micro-batches seen (all epochs)
        self.epoch_batches = 0  # micro-batches seen in the current epoch
        self.resume_skip = 0
        self.planned_steps = None  # trainer.max_minutes: the optimizer steps the run was sized to
        self.augment = build_augment(self.cfg.data)

    def reseed(self) -> None:
        """Seed the global RNG of this process's device from (seed, micro-batch index, rank) before a
        training micro-batch (the CPU generator, and the current GPU's: torch.manual_seed would
        also visit every other backend, a few ms a step)."""
        seed = self.cfg.seed * 1_000_003 + self.micro_step * 1009 + self.global_rank
        torch.random.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    def logs_this_step(self) -> bool:
        """Whether Lightning writes step metrics after this optimizer step (it keeps only the last
        value between writes, so the many per-term metrics are logged on these steps alone)."""
        return (self.global_step + 1) % max(self.trainer.log_every_n_steps, 1) == 0

    def augmented(self, batch: dict) -> dict:
        """The training batch after data.augment (call after `reseed`)."""
        return batch if self.augment is None else self.augment(batch)

    def advance(self) -> None:
        """Count one training micro-batch (after it ran)."""
        self.micro_step += 1
        self.epoch_batches += 1

    def on_train_start(self) -> None:
        if self.resume_skip:
            self.trainer.datamodule.train_sampler.skip(self.resume_skip)
            self.resume_skip = 0

    def on_train_epoch_start(self) -> None:
        if not self.trainer.datamodule.train_sampler.skip_batches:
            self.epoch_batches = 0

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.network)

    def use_fused_adamw(self) -> bool:
        """Fused AdamW (one kernel for all parameters) on CUDA, unless fp16 mixed precision: its
        gradient scaler would leave the scaled gradients to the fused kernel, after clipping."""
        return next(self.parameters()).is_cuda and self.trainer.precision != "16-mixed"

    def configure_optimizers(self):
        o = self.cfg.optim
        trainable = [p for p in self.network.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                                      weight_decay=o.weight_decay, fused=self.use_fused_adamw() or None)
        s = self.cfg.lr_scheduler
        schedule = lr_lambda(s.name, warmup_steps=s.warmup_steps, base_lr=o.lr, min_lr=s.min_lr,
                             total_steps=lambda: self.planned_steps or self.cfg.trainer.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip the global gradient norm to trainer.gradient_clip_val (0: no clipping). Done here
        rather than by Lightning's mixed-precision plugin, which refuses any fused optimizer even
        under bf16, where no gradient scaler exists and the gradients are already the true ones
        (fp16's scaler unscales them before this hook for the unfused AdamW used with it)."""
        if gradient_clip_val:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), gradient_clip_val)

    def swap_ema(self) -> None:
        """Exchange live and EMA weights for validation (twice restores them), unless disabled."""
        if self.ema is not None and not self.cfg.eval.disable_ema:
            self.ema.swap(self.network)

    def sharded(self) -> bool:
        """Whether the weights are sharded over the ranks (strategy=fsdp)."""
        return self._trainer is not None and isinstance(self.trainer.strategy, FSDPStrategy)

    def whole_parameters(self, writeback: bool):
        """A context in which every rank holds the whole parameters (FSDP; collective)."""
        return FullyShardedDataParallel.summon_full_params(self.trainer.strategy.model, writeback=writeback)

    def on_fit_start(self) -> None:
        if self.ema is not None and self.sharded():
            self.ema.reshard(self.network)

    def ema_state(self) -> dict | None:
        """The EMA for a checkpoint: whole tensors, gathered from the shards under FSDP."""
        if self.ema is None:
            return None
        if self.sharded():
            return self.ema.gathered_state_dict(self.network, self.whole_parameters)
        return self.ema.state_dict()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["discdiff"] = {"micro_step": self.micro_step, "epoch_batches": self.epoch_batches,
                                  "ema": self.ema_state(), "kind": self.kind, "planned_steps": self.planned_steps}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("discdiff")
        if state is None:
            raise ValueError("checkpoint has no discdiff state; was it written by discdiff train?")
        kind = state.get("kind", "generator")
        if kind != self.kind:
            raise ValueError(f"the checkpoint holds a {kind}, not a {self.kind}")
        self.micro_step, self.epoch_batches = state["micro_step"], state["epoch_batches"]
        self.resume_skip = self.epoch_batches
        self.planned_steps = state.get("planned_steps")
        if self.ema is not None and state["ema"] is not None:
            if self.sharded():
                self.ema.load_gathered_state_dict(state["ema"], self.network, self.whole_parameters)
            else:
                self.ema.load_state_dict(state["ema"])


class LitLanguageModel(ResumableModule):
    def __init__(self, config: dict, vocab: dict):
        """config: the resolved run configuration as a plain dict; vocab: vocab_size and the
        special token ids of the tokenizer (so a checkpoint rebuilds the network by itself)."""
        super().__init__()
        self.save_hyperparameters()
        # Keys added since the checkpoint was written take their defaults.
        self.cfg: DictConfig = restore(config)
        self.lm = build_language_model(self.cfg, **vocab)
        self._init_resumable()
        self._val_sums = None

    @property
    def network(self) -> torch.nn.Module:
        return self.lm

    def start_from(self, backbone_state: dict) -> None:
        """Start training from given backbone weights (fine-tuning); the EMA starts from them
        too. Label embeddings the state lacks keep their fresh initialisation; ones this model
        has no use for (an unconditional model) are refused by the caller."""
        missing, unexpected = self.lm.backbone.load_state_dict(backbone_state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("label_embedding")]:
            raise ValueError(f"the starting weights do not fit this model: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        self._init_resumable()

    # ----- conditioning -------------------------------------------------------------------------
    def condition(self, batch, training: bool):
        """Class labels (B,) for a conditional model, with label dropout to the null class
        during training (D-CFG); None for an unconditional model."""
        if self.cfg.data.label_col is None:
            return None
        labels = batch["label"]
        p = self.cfg.training.guidance.cond_dropout
        if training and p > 0:
            null = torch.full_like(labels, self.lm.num_classes)
            labels = torch.where(torch.rand(labels.shape, device=labels.device) < p, null, labels)
        return labels

    # ----- training -----------------------------------------------------------------------------
    def relaxed(self) -> bool:
        """Whether this optimizer step trains on DUO's Gaussian relaxation (training.curriculum.steps:
        the steps before the switch to plain training; a resumed run switches at the same step)."""
        return self.global_step < self.cfg.training.curriculum.steps

    def training_step(self, batch, batch_idx):
        self.reseed()
        batch = self.augmented(batch)
        cond = self.condition(batch, training=True)
        relaxed = self.relaxed()
        out = self.lm.relaxed_loss(batch, cond) if relaxed else self.lm.loss(batch, cond)
        self.advance()
        self.log("train/loss", out.loss, prog_bar=True)
        if self.cfg.training.curriculum.steps:
            self.log("train/curriculum", float(relaxed))  # every step: Lightning repeats a key's last value
        if self.logs_this_step():
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
            for name, value in out.terms.items():
                self.log(f"train/{name}", value)
        return out.loss

    # ----- validation (EMA weights, fixed noise) ------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.swap_ema()
        self._val_sums = torch.zeros(2, device=self.device, dtype=torch.float64)

    def validation_step(self, batch, batch_idx):
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.cfg.seed + batch_idx)
            out = self.lm.loss(batch, self.condition(batch, training=False),
                               include_padding=bool(self.cfg.eval.include_padding))
        self._val_sums += torch.stack([out.nll_sum.double(), out.num_tokens.double()])

    def on_validation_epoch_end(self) -> None:
        self.swap_ema()
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        nll = (sums[0] / sums[1].clamp_min(1)).float()
        self.log_dict({"val/nll": nll, "val/ppl": torch.exp(nll), "val/bpt": nll / math.log(2)},
                      prog_bar=True, sync_dist=False)
