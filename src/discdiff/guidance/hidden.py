"""Gradient steps on a network's last hidden states: the shared core of NOS and PPLM (the model
protocol, the perturbation and the options).

Given hidden states h (B, L, D) that a head `decode` maps to logits (B, L, V) and a classifier
`classify(h) -> log p(y | h)` (B, C) on the same features, a perturbation delta (initially 0) takes
`num_steps` gradient steps on

    gamma * (-log p(y | h + delta))  +  stability * sum_l KL( p(. | h_l + delta_l) || p(. | h_l) )

(NOS: Gruver et al. 2023, Eq. 5; PPLM: Dathathri et al. 2020, Sec. 3.2, here on the last hidden
states rather than the attention history). The KL keeps the perturbed prediction close to the
model's own; gamma = 0 leaves h unchanged, larger gamma pulls harder. A step is
delta <- delta - step_size * s^2 * gradient, with s the size of the hidden states (root mean square
over positions of their L2 norms): the network normalises h before its heads, so gradients scale as
1 / s and s^2 times them as s, and one step size suits networks of any width.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

import torch

from .base import Guidance


class HiddenStateModel(Protocol):
    """A generator split at its last hidden states, with a classifier on them."""

    def hidden(self, x: torch.Tensor, sigma=None, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, L, V), last hidden states (B, L, D))."""

    def decode(self, hidden: torch.Tensor, sigma=None, cond=None) -> torch.Tensor:
        """Logits (B, L, V) of (perturbed) hidden states."""

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """log p(y | hidden) (B, C)."""


def perturb_hidden(hidden: torch.Tensor, decode: Callable, classify: Callable, condition: int, *, gamma: float,
                   num_steps: int, step_size: float, stability: float) -> torch.Tensor:
    """h + delta (B, L, D) after the gradient steps above; `hidden` is not modified."""
    hidden = hidden.detach().float()
    if gamma == 0 or num_steps == 0:
        return hidden
    with torch.no_grad():
        reference = decode(hidden).float().log_softmax(-1)
    delta, scale = torch.zeros_like(hidden), _rms_norm(hidden)
    for _ in range(num_steps):
        with torch.enable_grad():
            delta.requires_grad_(True)
            h = hidden + delta
            log_p = decode(h).float().log_softmax(-1)
            kl = (log_p.exp() * (log_p - reference)).sum(-1).sum(-1)  # (B,)
            loss = (-gamma * classify(h)[:, condition].float() + stability * kl).sum()
            (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta - step_size * scale.square() * grad).detach()
    return hidden + delta


def _rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Root mean square over positions of the per-position L2 norms: (B, L, D) -> (B, 1, 1)."""
    return x.pow(2).sum(-1).mean(-1).sqrt()[:, None, None]


class HiddenStateGuidance(Guidance):
    """The options NOS and PPLM share; the class attributes are each method's defaults.

    `model`: a `HiddenStateModel`."""

    num_steps, step_size, stability_coef = 3, 0.05, 0.01

    def __init__(self, model, gamma: float, condition: int, *, num_steps: Optional[int] = None,
                 step_size: Optional[float] = None, stability_coef: Optional[float] = None):
        self.model, self.gamma, self.condition = model, float(gamma), int(condition)
        self.num_steps = self.num_steps if num_steps is None else int(num_steps)
        self.step_size = self.step_size if step_size is None else float(step_size)
        self.stability_coef = self.stability_coef if stability_coef is None else float(stability_coef)
        if min(self.num_steps, self.step_size, self.stability_coef) < 0:
            raise ValueError(f"{type(self).__name__} needs num_steps, step_size and stability_coef >= 0; got "
                             f"{self.num_steps}, {self.step_size}, {self.stability_coef}")

    def perturb(self, hidden: torch.Tensor, decode: Callable, classify: Callable) -> torch.Tensor:
        """`perturb_hidden` with this strategy's target class and options."""
        return perturb_hidden(hidden, decode, classify, self.condition, gamma=self.gamma,
                              num_steps=self.num_steps, step_size=self.step_size, stability=self.stability_coef)
