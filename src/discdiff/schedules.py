"""Noise schedules: how much signal survives at time t.

A schedule maps t in [0, 1] to alpha_t, the probability that a token still equals its clean value
x0 under the forward process (paper Sec. 2: q(x_t | x0) = Cat(alpha_t x0 + (1 - alpha_t) pi)), and to
its time derivative d(alpha_t)/dt, which weights the continuous-time NELBO. alpha starts near 1 at
t = 0 and falls to (near) 0 at t = 1. sigma_t = -log(alpha_t) is the "total noise" that the
network is conditioned on, as in MDLM/SEDD.

All methods are elementwise on tensors of any shape.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

# sigma is clamped so that alpha = 0 (t = 1 with eps = 0) still gives a finite network input.
_MIN_ALPHA = 1e-12


class NoiseSchedule(ABC):
    """alpha_t and d(alpha_t)/dt for t in [0, 1]; subclasses define both in closed form."""

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is still clean at time t."""

    @abstractmethod
    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        """d(alpha_t)/dt (non-positive)."""

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Total noise -log(alpha_t), finite even where alpha_t = 0."""
        return -torch.log(self.alpha(t).clamp_min(_MIN_ALPHA))

    def __call__(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.alpha(t), self.dalpha(t)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class LogLinear(NoiseSchedule):
    """alpha_t = 1 - (1 - eps) t: sigma grows log-linearly (MDLM/UDLM default)."""

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    def alpha(self, t):
        return 1 - (1 - self.eps) * t

    def dalpha(self, t):
        return torch.full_like(t, -(1 - self.eps))


class Linear(NoiseSchedule):
    """sigma_t = sigma_min + t (sigma_max - sigma_min), alpha_t = exp(-sigma_t)."""

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def alpha(self, t):
        return torch.exp(-(self.sigma_min + t * (self.sigma_max - self.sigma_min)))

    def dalpha(self, t):
        return -(self.sigma_max - self.sigma_min) * self.alpha(t)


class Geometric(NoiseSchedule):
    """sigma_t = sigma_min^(1 - t) sigma_max^t, alpha_t = exp(-sigma_t)."""

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def _sigma(self, t):
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def alpha(self, t):
        return torch.exp(-self._sigma(t))

    def dalpha(self, t):
        return -self._sigma(t) * math.log(self.sigma_max / self.sigma_min) * self.alpha(t)


class Cosine(NoiseSchedule):
    """alpha_t = eps + (1 - eps) cos(pi t / 2)."""

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    def alpha(self, t):
        return self.eps + (1 - self.eps) * torch.sin(0.5 * math.pi * (1 - t))  # = cos(pi t / 2), exact 0 at t = 1

    def dalpha(self, t):
        return -(1 - self.eps) * 0.5 * math.pi * torch.sin(0.5 * math.pi * t)


class CosineSquared(NoiseSchedule):
    """alpha_t = eps + (1 - eps) cos^2(pi t / 2)."""

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    def alpha(self, t):
        return self.eps + (1 - self.eps) * torch.sin(0.5 * math.pi * (1 - t)) ** 2

    def dalpha(self, t):
        return -(1 - self.eps) * 0.5 * math.pi * torch.sin(math.pi * t)


class Polynomial(NoiseSchedule):
    """alpha_t = 1 - (1 - eps) t^exponent (exponent 1 is LogLinear; > 1 keeps signal longer)."""

    def __init__(self, exponent: float = 2.0, eps: float = 1e-3):
        if exponent <= 0:
            raise ValueError(f"polynomial schedule needs exponent > 0, got {exponent}")
        self.exponent, self.eps = exponent, eps

    def alpha(self, t):
        return 1 - (1 - self.eps) * t**self.exponent

    def dalpha(self, t):
        return -(1 - self.eps) * self.exponent * t ** (self.exponent - 1)


SCHEDULES: dict[str, type[NoiseSchedule]] = {
    "loglinear": LogLinear,
    "linear": Linear,
    "cosine": Cosine,
    "cosine_squared": CosineSquared,
    "geometric": Geometric,
    "polynomial": Polynomial,
}


def get_schedule(name: str, **kwargs) -> NoiseSchedule:
    """Build a schedule by name; unknown names are refused with the list of allowed ones."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule '{name}'; allowed: {', '.join(SCHEDULES)}")
    try:
        return SCHEDULES[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for noise schedule '{name}': {err}") from None
