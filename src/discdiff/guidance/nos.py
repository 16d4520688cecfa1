"""NOS for diffusion models (Gruver et al. 2023): guidance in the denoiser's hidden space.

At each reverse step the denoiser's last hidden states h(x_t, t) (B, L, D) take a few gradient
steps towards the target class of a classifier on those same features, held close to the
model's prediction by a KL term (`discdiff.guidance.hidden.perturb_hidden`). The perturbed states
go through the denoiser's output head to x_theta, and x_s is drawn from q(x_s | x_t, x_theta)
as in unguided sampling (paper Eq. 3 / 6), or from a corrected step's mixture built on the same x_theta.
"""

from __future__ import annotations

import torch

from .base import DIFFUSION, Step
from .hidden import HiddenStateGuidance


class NOS(HiddenStateGuidance):
    """`model`: a `discdiff.guidance.HiddenStateModel`, e.g. a classifier trained with
    classifier.kind=head on the generator being sampled (it carries that generator's frozen weights)."""

    families = (DIFFUSION,)
    num_steps, step_size, stability_coef = 5, 0.02, 0.01

    def log_probs(self, step: Step) -> torch.Tensor:
        return step.log_posterior(step.memo("nos", lambda: self.perturbed_x0(step)))

    def perturbed_x0(self, step: Step) -> torch.Tensor:
        """log x_theta (B, L, V) from the perturbed hidden states of x_t (one per x_t: a corrected
        step's two targets share it)."""
        sigma, cond = step.sigma_t, step.cond
        _, hidden = self.model.hidden(step.xt, sigma, cond)
        step.nfe += 1
        hidden = self.perturb(hidden, lambda h: self.model.decode(h, sigma, cond), self.model.classify)
        with torch.no_grad():
            logits = self.model.decode(hidden, sigma, cond)
        return step.x0(logits, step.xt)
