"""NOS for diffusion models (Gruver et al. 2023): guidance in the denoiser's hidden space.

At each reverse step the denoiser's last hidden states h(x_t, t) (B, L, D) take a few gradient
steps towards the target class of a classifier on those same features, held close to the
model's prediction by a KL term (`discdiff.guidance.hidden.perturb_hidden`). The perturbed states
go through the denoiser's output head to x_theta, and x_s is drawn from q(x_s | x_t, x_theta)
as in unguided sampling (paper Eq. 3 / 6).
"""

from __future__ import annotations

from typing import Protocol

import torch

from .base import DIFFUSION, Guidance, Step
from .hidden import check_options, perturb_hidden


class HiddenStateModel(Protocol):
    """A generator split at its last hidden states, with a classifier on them."""

    def hidden(self, x: torch.Tensor, sigma=None, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, L, V), last hidden states (B, L, D))."""

    def decode(self, hidden: torch.Tensor, sigma=None, cond=None) -> torch.Tensor:
        """Logits (B, L, V) of (perturbed) hidden states."""

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """log p(y | hidden) (B, C)."""


class NOS(Guidance):
    """`model`: a `HiddenStateModel` (e.g. a classifier trained with classifier.kind=head on the
    generator being sampled; it carries that generator's frozen weights)."""

    families = (DIFFUSION,)

    def __init__(self, model: HiddenStateModel, gamma: float, condition: int, *, num_steps: int = 5,
                 step_size: float = 0.02, stability_coef: float = 0.01):
        check_options(num_steps, step_size, stability_coef)
        self.model, self.gamma, self.condition = model, float(gamma), int(condition)
        self.num_steps, self.step_size, self.stability_coef = num_steps, step_size, stability_coef

    def log_probs(self, step: Step) -> torch.Tensor:
        sigma, cond = step.sigma_t, step.cond
        _, hidden = self.model.hidden(step.xt, sigma, cond)
        step.nfe += 1
        hidden = perturb_hidden(hidden, lambda h: self.model.decode(h, sigma, cond), self.model.classify,
                                self.condition, gamma=self.gamma, num_steps=self.num_steps,
                                step_size=self.step_size, stability=self.stability_coef)
        with torch.no_grad():
            logits = self.model.decode(hidden, sigma, cond)
        return step.log_posterior(step.process.predict_x0(logits, step.xt).to(step.dtype))
