"""Guidance strategies reshape the distribution of one reverse step.

At every step the sampler hands a strategy a `Step` (x_t, the times t > s and their alphas, and a
way to call the denoiser); the strategy returns log-probabilities (B, L, V) of x_s per position,
from which the sampler draws. Unguided sampling is the plain posterior
q(x_s | x_t, x_theta(x_t)) (paper Eq. 3 / 6); each strategy below tempers or reweights it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..objectives import Denoiser
from ..processes import DiscreteProcess

# classifier(x, sigma) -> log p(y | x) (B, num_classes); x is ids (B, L) or one-hot / relaxed (B, L, V)
Classifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Step:
    """One reverse step from time t to s < t for a batch x_t (B, L).

    alpha_t, alpha_s, sigma_t, sigma_s are (B,); sigma_s is the noise level of x_s, at which a
    noisy classifier scores candidates. `nfe` counts denoiser calls made through `predict`.
    """

    process: DiscreteProcess
    denoiser: Denoiser
    xt: torch.Tensor
    alpha_t: torch.Tensor
    alpha_s: torch.Tensor
    sigma_t: torch.Tensor
    sigma_s: torch.Tensor
    cond: Optional[torch.Tensor] = None
    dtype: torch.dtype = torch.float32
    nfe: int = field(default=0)

    def predict(self, xt: Optional[torch.Tensor] = None, cond=None, sigma=None) -> torch.Tensor:
        """log x_theta (B', L, V) for x_t (default: this step's) with labels `cond`."""
        xt = self.xt if xt is None else xt
        sigma = self.sigma_t if sigma is None else sigma
        self.nfe += 1
        return self.process.predict_x0(self.denoiser(xt, sigma, cond), xt).to(self.dtype)

    def log_posterior(self, log_x_theta: torch.Tensor) -> torch.Tensor:
        """log q(x_s | x_t, x_theta) (B, L, V); log_x_theta may stack k batches (kB, L, V)."""
        k = log_x_theta.shape[0] // self.xt.shape[0]
        rep = lambda a: a.repeat(k) if k > 1 else a
        xt = self.xt.repeat(k, 1) if k > 1 else self.xt
        return self.process.log_posterior(log_x_theta, xt, rep(self.alpha_s).to(self.dtype),
                                          rep(self.alpha_t).to(self.dtype))


class Guidance(ABC):
    """A strategy that returns the (log) distribution of x_s for one step."""

    @abstractmethod
    def log_probs(self, step: Step) -> torch.Tensor:
        """Log-probabilities (B, L, V) of x_s per position, normalised over V."""


def normalize(log_p: torch.Tensor) -> torch.Tensor:
    """Renormalise over V; a row with no finite entry stays all -inf (no NaN)."""
    finite_row = torch.isfinite(log_p).any(-1, keepdim=True)
    safe = torch.where(finite_row, log_p, torch.zeros_like(log_p))
    return torch.where(finite_row, safe.log_softmax(-1), torch.full_like(log_p, float("-inf")))
