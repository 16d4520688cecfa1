"""D-CFG: classifier-free guidance (paper Sec. 3.1), for diffusion and autoregressive models.

Per position, the step distribution is tempered between the conditional and the unconditional
model:  p_gamma(x_s | x_t, y)  proportional to  p(x_s | x_t, y)^gamma  p(x_s | x_t)^(1 - gamma)
(diffusion; for AR the same tempering of p(x_i | x_<i, y) and p(x_i | x_<i)). gamma = 0 samples the
unconditional model, 1 the conditional one, > 1 sharpens towards y. Both distributions come from
one batched forward pass with labels [y, null] (gamma = 0 and 1 need only one of them).
"""

from __future__ import annotations

import torch

from .base import AUTOREGRESSIVE, DIFFUSION, Guidance, normalize


class CFG(Guidance):
    """`condition`: the target class; `null_class`: the label id meaning "no label"."""

    families = (DIFFUSION, AUTOREGRESSIVE)

    def __init__(self, gamma: float, condition: int, null_class: int):
        self.gamma, self.condition, self.null_class = float(gamma), int(condition), int(null_class)

    def log_probs(self, step) -> torch.Tensor:
        b, device = step.batch_size, step.device
        if self.gamma in (0.0, 1.0):  # the unconditional / conditional model alone: one pass of B rows
            label = self.condition if self.gamma == 1.0 else self.null_class
            return step.log_probs_for(torch.full((b,), label, device=device))
        labels = torch.cat([torch.full((b,), self.condition), torch.full((b,), self.null_class)]).to(device)
        conditional, unconditional = step.log_probs_for(labels).chunk(2)
        return normalize(temper(conditional, unconditional, self.gamma))


def temper(log_p: torch.Tensor, log_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma log p + (1 - gamma) log q, with -inf wherever either is -inf (both models share the
    process's support, so this never drops a token that both allow)."""
    impossible = torch.isinf(log_p) | torch.isinf(log_q)
    mixed = gamma * log_p.masked_fill(impossible, 0) + (1 - gamma) * log_q.masked_fill(impossible, 0)
    return mixed.masked_fill(impossible, float("-inf"))
