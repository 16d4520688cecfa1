"""Gradient steps on a network's last hidden states (the shared core of NOS and PPLM).

Given hidden states h (B, L, D) that a head `decode` maps to logits (B, L, V) and a classifier
`classify(h) -> log p(y | h)` (B, C) on the same features, a perturbation delta (initially 0) takes
`num_steps` normalised gradient steps on

    gamma * (-log p(y | h + delta))  +  stability * sum_l KL( p(. | h_l + delta_l) || p(. | h_l) )

(NOS: Gruver et al. 2023, Eq. 5; PPLM: Dathathri et al. 2020, Sec. 3.2, here on the last hidden
states rather than the attention history). The KL keeps the perturbed prediction close to the
model's own; gamma = 0 leaves h unchanged, larger gamma pulls harder. A step is
delta <- delta - step_size * s^2 * gradient, with s the size of the hidden states (root mean square
over positions of their L2 norms): the network normalises h before its heads, so gradients scale as
1 / s and s^2 times them as s, and one step size suits networks of any width.
"""

from __future__ import annotations

from typing import Callable

import torch


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


def check_options(num_steps: int, step_size: float, stability: float) -> None:
    if num_steps < 0 or step_size < 0 or stability < 0:
        raise ValueError(f"hidden-state guidance needs num_steps, step_size and stability_coef >= 0; got "
                         f"{num_steps}, {step_size}, {stability}")
