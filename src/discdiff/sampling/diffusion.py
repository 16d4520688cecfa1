"""Ancestral sampling of a diffusion model through the process posterior.

From x_1 ~ pi, each step moves from time t to s < t by drawing x_s ~ q(x_s | x_t, x_theta(x_t, t))
(paper Eq. 3/6 with the denoiser's prediction plugged into the posterior). The time grid has
`steps` network evaluations at t = 1, ..., eps, and the last step lands on alpha = 1, so no
noise (and no mask) survives. When the denoiser ignores time and x_t did not change since the
previous step, its output is reused instead of calling the network again (the "no-change
cache": most absorbing steps reveal nothing when steps > L).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from tqdm.auto import tqdm

from ..guidance import Guidance, Step
from ..guidance.base import DIFFUSION
from ..objectives import Denoiser, predict
from ..processes import DiscreteProcess
from ..schedules import NoiseSchedule


@dataclass
class SampleOutput:
    """Sampled token ids (B, L) and the number of denoiser calls (function evaluations)."""

    tokens: torch.Tensor
    nfe: int


def time_grid(steps: int, eps: float, device=None) -> torch.Tensor:
    """The `steps` times (descending, from 1 to eps) at which the denoiser is evaluated."""
    if steps < 1:
        raise ValueError(f"sampling needs steps >= 1, got {steps}")
    if steps == 1:
        return torch.ones(1, device=device)
    return torch.linspace(1.0, eps, steps, device=device)


@torch.no_grad()
def sample(process: DiscreteProcess, schedule: NoiseSchedule, denoiser: Denoiser, shape: tuple[int, int],
           steps: int, *, cond: Optional[torch.Tensor] = None, guidance: Optional[Guidance] = None,
           eps: float = 1e-5, argmax: bool = False, use_cache: bool = True, time_conditioned: bool = True,
           float64: bool = False, device=None, generator: Optional[torch.Generator] = None,
           progress: bool = False) -> SampleOutput:
    """Draw `shape[0]` sequences of length `shape[1]`.

    guidance: a strategy (discdiff.guidance) that returns each step's distribution; without one,
    each step draws from the posterior with the fast exact `process.reverse_step`.
    cond: labels (B,) for a conditional denoiser (unguided sampling).
    argmax: take the most likely token of each posterior instead of sampling it (deterministic).
    float64: compute the posterior and the Gumbel noise in float64.
    time_conditioned: whether the denoiser reads sigma; only a time-independent denoiser may use
    the no-change cache.
    """
    if guidance is not None:
        guidance.check_family(DIFFUSION)
    xt = process.sample_prior(shape, device=device, generator=generator)
    times = time_grid(steps, eps, device=xt.device)
    dtype = torch.float64 if float64 else torch.float32
    alphas = torch.cat([schedule.alpha(times.double()), torch.ones(1, device=xt.device, dtype=torch.float64)])
    log_x_theta, previous, nfe = None, None, 0
    bar = tqdm(range(steps), desc="sampling", disable=not progress, leave=False)
    for k in bar:
        alpha_t = alphas[k].to(dtype).expand(shape[0])
        alpha_s = alphas[k + 1].to(dtype).expand(shape[0])
        if guidance is not None:
            xt, calls = _guided_step(process, schedule, denoiser, guidance, xt, times, k, alpha_s, alpha_t,
                                     cond, dtype, argmax, generator)
            nfe += calls
            bar.set_postfix(nfe=nfe)
            continue
        reuse = use_cache and not time_conditioned and previous is not None and torch.equal(xt, previous)
        if not reuse:
            t = times[k].expand(shape[0])
            log_x_theta = predict(process, schedule, denoiser, xt, t, cond).to(dtype)
            nfe += 1
        previous = xt
        if argmax:
            xt = process.log_posterior(log_x_theta, xt, alpha_s, alpha_t).argmax(dim=-1)
        else:
            xt = process.reverse_step(log_x_theta, xt, alpha_s, alpha_t, generator)
        bar.set_postfix(nfe=nfe)
    return SampleOutput(tokens=xt, nfe=nfe)


def _guided_step(process, schedule, denoiser, guidance, xt, times, k, alpha_s, alpha_t, cond, dtype, argmax,
                 generator):
    """x_s drawn from the guidance strategy's distribution; returns (x_s, denoiser calls)."""
    b = xt.shape[0]
    sigma_t = schedule.sigma(times[k].expand(b))
    sigma_s = -torch.log(alpha_s.float().clamp_min(1e-12))
    step = Step(process, denoiser, xt, alpha_t, alpha_s, sigma_t, sigma_s, cond, dtype)
    xs = guidance.log_probs(step).argmax(-1) if argmax else guidance.sample(step, generator)
    return xs, step.nfe
