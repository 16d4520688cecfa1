"""D-CFG: classifier-free guidance (paper Sec. 3.1), for diffusion and autoregressive models.

Per position, the step distribution is tempered between the conditional and the unconditional
model:  p_gamma(x_s | x_t, y)  proportional to  p(x_s | x_t, y)^gamma  p(x_s | x_t)^(1 - gamma)
(diffusion; for AR the same tempering of p(x_i | x_<i, y) and p(x_i | x_<i)). gamma = 0 samples the
unconditional model, 1 the conditional one, > 1 sharpens towards y. Both distributions come from
one batched forward pass with labels [y, null] (gamma = 0 and 1 need only one of them). A diffusion
step is drawn by the process's exact sampler (`DiscreteProcess.sample_tempered`), which never builds
the two (B, L, V) posteriors; `log_probs` gives the full distribution (argmax, AR, tests).
"""

from __future__ import annotations

import torch

from ..processes.base import temper
from .base import AUTOREGRESSIVE, DIFFUSION, Guidance, normalize


class CFG(Guidance):
    """`condition`: the target class; `null_class`: the label id meaning "no label"."""

    families = (DIFFUSION, AUTOREGRESSIVE)

    def __init__(self, gamma: float, condition: int, null_class: int):
        self.gamma, self.condition, self.null_class = float(gamma), int(condition), int(null_class)

    def labels(self, step) -> torch.Tensor:
        """(B,) labels of the one model gamma 0 or 1 samples, else (2B,): [y] * B + [null] * B."""
        if self.gamma in (0.0, 1.0):
            return torch.full((step.batch_size,), self.condition if self.gamma == 1.0 else self.null_class,
                              device=step.device)
        return torch.tensor([self.condition, self.null_class], device=step.device).repeat_interleave(step.batch_size)

    def log_probs(self, step) -> torch.Tensor:
        if self.gamma in (0.0, 1.0):  # the unconditional / conditional model alone: one pass of B rows
            return step.log_probs_for(self.labels(step))
        conditional, unconditional = step.log_probs_for(self.labels(step)).chunk(2)
        return normalize(temper(conditional, unconditional, self.gamma))

    def sample(self, step, generator=None) -> torch.Tensor:
        if step.family != DIFFUSION:
            return super().sample(step, generator)
        if self.gamma in (0.0, 1.0):
            log_x_theta = step.predict(cond=self.labels(step))
            return step.process.reverse_step(log_x_theta, step.xt, step.alpha_s, step.alpha_t, generator)
        return step.process.sample_tempered(step.logits_for(self.labels(step)), self.gamma, step.xt, step.alpha_s,
                                            step.alpha_t, generator, step.dtype)

