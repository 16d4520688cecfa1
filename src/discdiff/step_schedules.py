"""Step schedules of the diffusion sampler: its grid of noise levels and its corrector.

A schedule gives the sampler, for `steps` network evaluations, the levels alpha_0 < ... < alpha_steps = 1
it walks through (the denoiser reads sigma = -log alpha at each) and per step the weight kappa of
the ancestral posterior in the step's distribution (Psi-samplers, Duo++ arXiv 2602.21185):

    q_kappa(x_s | x_t) = kappa q(x_s | x_t, x_theta) + (1 - kappa) q_fwd(x_s | x^0),
    q_fwd(x_s | x^0) = sum_v x^0(v) q(x_s | x_0 = v),   x^0 = q(x_0 | x_t, x_theta)   (the step to alpha = 1),

a predictor (the posterior) mixed with a corrector (jump to the clean data, then noise forward to
s). Both parts map the marginal p_t to p_s when x_theta is exact (for one position, or positions
that are independent), so the mixture does too. kappa = 1 is ancestral sampling.

- `Ancestral`: kappa = 1 on the schedule's grid t = 1, ..., eps.
- `Psi`: constant kappa for t in [t_off, t_on], 1 elsewhere (Duo++'s "pc" profile; their
  scripts: kappa 0.95 on [0.1, 0.5]).
- `ReMDM` (Wang et al., arXiv 2503.00307) for absorbing noise remasks each unmasked token with
  probability sigma_t; on masked positions it is exactly the mixture above with
  kappa = 1 - sigma_t / (1 - alpha_s) (so it applies to uniform noise too, as in Duo++). Schedules:
  "cap" sigma = min(eta, (1 - alpha_s) / alpha_t), "rescale" sigma = eta min(1, (1 - alpha_s) / alpha_t),
  "loop": alpha rises linearly to alpha_on by t_on, stays there until t_off with sigma = eta (pure
  corrector steps), then rises to 1; "conf": per position, sigma^l = w^l sigma_max with
  sigma_max = min(1, (1 - alpha_s) / alpha_t) and w = softmax over the decoded positions of minus the
  probability each token was drawn with (`position_kappas`; the sampler carries those
  probabilities from step to step), so the least confident tokens are remasked first. kappa is
  clipped to [0, 1] (Duo++'s implementation); that bounds sigma by 1 - alpha_s where ReMDM's own
  code allows up to (1 - alpha_s) / alpha_t.

A grid stores per step the corrector's rate r = 1 - kappa before clipping (ReMDM:
r = sigma / (1 - alpha_s)), so that a per-position weight w^l in [0, 1] gives kappa^l = clip(1 - w^l r).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import torch

from .schedules import NoiseSchedule

_MIN_ALPHA = 1e-12


@dataclass(frozen=True)
class StepGrid:
    """alphas (steps + 1,) float64, increasing to alphas[-1] = 1; sigmas (steps,) the denoiser's
    noise level at each step's x_t; rates (steps,) float64 >= 0, the corrector's rate 1 - kappa
    before clipping (0: an ancestral step; the last step, onto clean data, always has 0)."""

    alphas: torch.Tensor
    sigmas: torch.Tensor
    rates: torch.Tensor

    def __len__(self) -> int:
        return len(self.sigmas)

    @property
    def kappas(self) -> torch.Tensor:
        """(steps,) float64 in [0, 1]: each step's weight of the ancestral posterior."""
        return (1 - self.rates).clamp(0.0, 1.0)


def time_grid(steps: int, eps: float, device=None) -> torch.Tensor:
    """The `steps` times (descending, from 1 to eps) at which the denoiser is evaluated."""
    if steps < 1:
        raise ValueError(f"sampling needs steps >= 1, got {steps}")
    if steps == 1:
        return torch.ones(1, device=device)
    return torch.linspace(1.0, eps, steps, device=device)


def _with_clean_end(alphas: torch.Tensor) -> torch.Tensor:
    return torch.cat([alphas.double(), torch.ones(1, device=alphas.device, dtype=torch.float64)])


def _in_window(times: torch.Tensor, t_on: float, t_off: float) -> torch.Tensor:
    return (times <= t_on) & (times >= t_off)


class StepSchedule(ABC):
    """The sampler's grid and corrector weights (module docstring)."""

    name: str

    @abstractmethod
    def grid(self, steps: int, eps: float, schedule: NoiseSchedule, device=None) -> StepGrid:
        """The grid of `steps` steps ending at alpha = 1, for a model trained with `schedule`."""

    def corrects(self) -> bool:
        """Whether any step may mix in the corrector (kappa < 1)."""
        return True

    def label(self) -> str:
        """A short, file-name-safe name with the parameters (tables, sample files)."""
        return self.name

    #: whether `position_kappas` reads the confidence of the tokens (the sampler then tracks it)
    uses_confidence = False

    def position_kappas(self, rate: float, confidence: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """kappa per position (B, L) float64 for a step of corrector rate `rate`, given the probability
        (B, L) each position's token was drawn with and which positions may be corrected (B, L) bool.
        This default: the step's kappa at every position."""
        return torch.full(decoded.shape, min(max(1 - rate, 0.0), 1.0), dtype=torch.float64, device=decoded.device)


class Ancestral(StepSchedule):
    name = "ancestral"

    def grid(self, steps, eps, schedule, device=None) -> StepGrid:
        times = time_grid(steps, eps, device)
        alphas = _with_clean_end(schedule.alpha(times.double()))
        return StepGrid(alphas, schedule.sigma(times), torch.zeros(steps, dtype=torch.float64, device=times.device))

    def corrects(self) -> bool:
        return False


def _check_window(t_on: float, t_off: float) -> None:
    if not 0 <= t_off < t_on <= 1:
        raise ValueError(f"sampling.t_off={t_off} must be below sampling.t_on={t_on} (the corrector acts for t in "
                         f"[t_off, t_on] within [0, 1])")


@dataclass(frozen=True)
class Psi(StepSchedule):
    """kappa for t in [t_off, t_on] on the ancestral grid; ancestral steps elsewhere."""

    kappa: float = 0.95
    t_on: float = 0.5
    t_off: float = 0.1
    name = "psi"

    def __post_init__(self):
        if not 0 <= self.kappa <= 1:
            raise ValueError(f"sampling.kappa must be in [0, 1] (1: ancestral), got {self.kappa}")
        _check_window(self.t_on, self.t_off)

    def grid(self, steps, eps, schedule, device=None) -> StepGrid:
        plain = Ancestral().grid(steps, eps, schedule, device)
        times = time_grid(steps, eps, device).double()
        rates = torch.where(_in_window(times, self.t_on, self.t_off), 1 - self.kappa, 0.0).double()
        rates[-1] = 0.0  # the last step lands on clean data: a corrector would put noise back
        return StepGrid(plain.alphas, plain.sigmas, rates)

    def label(self) -> str:
        return f"psi-k{self.kappa:g}-t{self.t_off:g}-{self.t_on:g}"


REMDM_SCHEDULES = ("cap", "rescale", "conf", "loop")


@dataclass(frozen=True)
class ReMDM(StepSchedule):
    """Remasking schedules (module docstring); `eta` is ReMDM's eta_cap, eta_rescale or the loop's
    eta ("conf" has none: its weights take eta's place)."""

    schedule: str = "loop"
    eta: float = 0.02
    t_on: float = 0.55
    t_off: float = 0.05
    alpha_on: float = 0.9
    name = "remdm"

    def __post_init__(self):
        if self.schedule not in REMDM_SCHEDULES:
            raise ValueError(f"unknown sampling.remdm_schedule '{self.schedule}'; allowed: {', '.join(REMDM_SCHEDULES)}")
        if self.eta < 0:
            raise ValueError(f"sampling.eta must be >= 0, got {self.eta}")
        if not 0 < self.alpha_on < 1:
            raise ValueError(f"sampling.alpha_on must be in (0, 1), got {self.alpha_on}")
        _check_window(self.t_on, self.t_off)

    def grid(self, steps, eps, schedule, device=None) -> StepGrid:
        if self.schedule == "loop":
            return self._loop(steps, eps, schedule, device)
        plain = Ancestral().grid(steps, eps, schedule, device)
        alpha_t, alpha_s = plain.alphas[:-1], plain.alphas[1:]
        bound = torch.where(alpha_t > 0, (1 - alpha_s) / alpha_t.clamp_min(_MIN_ALPHA), 1.0)
        if self.schedule == "cap":
            sigma = torch.where(alpha_t > 0, bound.clamp_max(self.eta), self.eta)
        else:
            sigma = (1.0 if self.schedule == "conf" else self.eta) * bound.clamp_max(1.0)
        return StepGrid(plain.alphas, plain.sigmas, _rates(sigma, alpha_s))

    @property
    def uses_confidence(self) -> bool:
        return self.schedule == "conf"

    def position_kappas(self, rate, confidence, decoded):
        """"conf": kappa^l = clip(1 - w^l rate), w = softmax over the decoded positions of
        -confidence (0 elsewhere; a row with none decoded is not corrected)."""
        if not self.uses_confidence:
            return super().position_kappas(rate, confidence, decoded)
        weights = (-confidence.double()).masked_fill(~decoded, float("-inf")).softmax(dim=-1).nan_to_num(0.0)
        return (1 - weights * rate).clamp(0.0, 1.0)

    def label(self) -> str:
        if self.schedule == "conf":
            return "remdm-conf"
        loop = f"-a{self.alpha_on:g}-t{self.t_off:g}-{self.t_on:g}" if self.schedule == "loop" else ""
        return f"remdm-{self.schedule}-eta{self.eta:g}{loop}"

    def _loop(self, steps, eps, schedule, device) -> StepGrid:
        """alpha: from the schedule's alpha(1) up to alpha_on linearly in t over [t_on, 1], alpha_on
        on [t_off, t_on], then linearly to 1 at t = 0; sigma = eta on the plateau's steps."""
        times = time_grid(steps, eps, device).double()
        start = float(schedule.alpha(torch.ones((), dtype=torch.float64)))
        rising = start + (self.alpha_on - start) * (1 - times) / (1 - self.t_on)
        falling = 1 - times * (1 - self.alpha_on) / self.t_off
        alpha_t = torch.where(times > self.t_on, rising, torch.where(times < self.t_off, falling, self.alpha_on))
        alphas = _with_clean_end(alpha_t)
        alpha_s = alphas[1:]
        plateau = (alpha_t == self.alpha_on) & (alpha_s == self.alpha_on)
        sigma = torch.where(plateau, self.eta, 0.0).double()
        sigmas = -torch.log(alpha_t.clamp_min(_MIN_ALPHA)).float()
        return StepGrid(alphas, sigmas, _rates(sigma, alpha_s))


def _rates(sigma: torch.Tensor, alpha_s: torch.Tensor) -> torch.Tensor:
    """r = sigma / (1 - alpha_s) (kappa = 1 - r before clipping); 0 where alpha_s = 1 (the last step)."""
    rate = sigma / (1 - alpha_s).clamp_min(_MIN_ALPHA)
    return torch.where(alpha_s < 1, rate, 0.0).double()


METHODS = ("ancestral", "remdm", "psi")


def step_schedule(method: str = "ancestral", *, kappa: float = 0.95, eta: float = 0.02,
                  remdm_schedule: str = "loop", t_on: Optional[float] = None, t_off: Optional[float] = None,
                  alpha_on: float = 0.9) -> StepSchedule:
    """The schedule of `sampling.method` with its keys; t_on / t_off None take the method's
    defaults (psi: 0.5 / 0.1, remdm loop: 0.55 / 0.05)."""
    if method == "ancestral":
        return Ancestral()
    if method == "psi":
        window = {k: v for k, v in (("t_on", t_on), ("t_off", t_off)) if v is not None}
        return Psi(kappa, **window)
    if method == "remdm":
        window = {k: v for k, v in (("t_on", t_on), ("t_off", t_off)) if v is not None}
        return ReMDM(remdm_schedule, eta, alpha_on=alpha_on, **window)
    raise ValueError(f"unknown sampling.method '{method}'; allowed: {', '.join(METHODS)}")
