"""The diffusion sampler: predictor-corrector steps through the process posterior, optionally
guided, nucleus-filtered, greedy at the end, and semi-autoregressive past the model's length.

From x_1 ~ pi, each step moves from level alpha_t to alpha_s > alpha_t. An ancestral step draws
x_s ~ q(x_s | x_t, x_theta(x_t)) (paper Eq. 3 / 6 with the denoiser's prediction plugged into the
posterior); a guidance strategy (discdiff.guidance) reshapes that distribution. A corrected step
(`discdiff.step_schedules`: ReMDM, Psi) mixes it, with weight kappa, with a jump to the clean data
followed by forward noise to s:

    x_s ~ kappa G(x_s | x_t) + (1 - kappa) sum_v G(x_0 = v | x_t) q(x_s | x_0 = v),

where G is the step's (guided) distribution to s, and to alpha = 1 for the jump: the strategy
reshapes both, so every guidance method composes with every corrector. Both draws come from one
network evaluation (the strategy's predictions at x_t are shared by the two). kappa is one number
per step, or one per position for a schedule that reads the tokens' confidence (ReMDM "conf"): the
sampler then carries, per position, the probability G(x_0 = v | x_t) its token v had at the step
that last changed it (0 for the prior's draw).

The grid has `steps` network evaluations and ends on alpha = 1, so no noise (and no mask)
survives. `top_p` restricts every prediction x_theta to its nucleus (the smallest set of tokens
holding probability top_p, renormalised) before it enters a posterior. `greedy_last` is DUO's
greedy tail: the last step (from alpha(eps), nearly clean, to 1) takes the argmax of the step's
(guided) prediction of x_0 with the likelihood of x_t left out (its posterior with alpha_t = 0),
so the model may still change a token; the argmax of the true last posterior would be x_t itself
almost surely.

No-change cache: x_theta(x_t) is a function of x_t alone when the denoiser ignores time, so
without guidance it is reused while x_t is unchanged since the previous step (most absorbing
steps reveal nothing when steps > L). A corrector step that remasks or redraws a token changes x_t
and so forces a new evaluation; the cache is never wrong, only hit less often.

Semi-autoregressive blocks (`block_length`, MDLM's decoding): the first `L` tokens (the model's
length) are one ordinary sample; each further block of `block_length` tokens is sampled in a
window of the last `L` tokens, whose first `L - block_length` are the clean context, held fixed
(an absorbing model carries them over by itself; a uniform-noise model's steps are overwritten
at those positions, the usual clamping approximation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
from tqdm.auto import tqdm

from ..guidance import Guidance, Step
from ..guidance.base import DIFFUSION
from ..objectives import Denoiser
from ..processes import DiscreteProcess, sample_categorical
from ..processes.base import bernoulli, nucleus
from ..schedules import NoiseSchedule
from ..step_schedules import Ancestral, StepGrid, StepSchedule


@dataclass
class SampleOutput:
    """Sampled token ids (B, L) and the number of denoiser calls (function evaluations)."""

    tokens: torch.Tensor
    nfe: int


@dataclass(frozen=True)
class _Run:
    """What every step of one `sample` call shares."""

    process: DiscreteProcess
    denoiser: Denoiser
    grid: StepGrid
    corrector: StepSchedule
    guidance: Optional[Guidance]
    cond: Optional[torch.Tensor]
    dtype: torch.dtype
    argmax: bool
    greedy_last: bool
    top_p: float
    use_cache: bool
    generator: Optional[torch.Generator]
    progress: bool


@torch.no_grad()
def sample(process: DiscreteProcess, schedule: NoiseSchedule, denoiser: Denoiser, shape: tuple[int, int],
           steps: int, *, cond: Optional[torch.Tensor] = None, guidance: Optional[Guidance] = None,
           eps: float = 1e-5, argmax: bool = False, use_cache: bool = True, time_conditioned: bool = True,
           float64: bool = False, device=None, generator: Optional[torch.Generator] = None,
           progress: bool = False, corrector: Optional[StepSchedule] = None, top_p: float = 1.0,
           greedy_last: bool = False, block_length: Optional[int] = None,
           length: Optional[int] = None) -> SampleOutput:
    """Draw `shape[0]` sequences; `shape[1]` is the model's length L.

    guidance: a strategy (discdiff.guidance) that returns each step's distribution; without one,
    each step draws from the posterior with the fast exact `process.reverse_step`.
    cond: labels (B,) for a conditional denoiser (unguided sampling).
    corrector: the step schedule (`discdiff.step_schedules`); None: ancestral.
    argmax: take the most likely token of every step instead of sampling it (deterministic);
    greedy_last: the greedy tail (module docstring).
    top_p: nucleus of every prediction x_theta (1: all tokens).
    length: tokens per sequence (default L); more than L needs `block_length` and
    `length - L` a multiple of it (module docstring).
    float64: compute the posterior and the Gumbel noise in float64.
    time_conditioned: whether the denoiser reads sigma; only a time-independent denoiser may use
    the no-change cache.
    """
    batch, window = shape
    length = window if length is None else length
    _check_blocks(window, length, block_length)
    if not 0 < top_p <= 1:
        raise ValueError(f"sampling.top_p must be in (0, 1], got {top_p}")
    if guidance is not None:
        guidance.check_family(DIFFUSION)
    xt = process.sample_prior(shape, device=device, generator=generator)
    corrector = corrector or Ancestral()
    grid = corrector.grid(steps, eps, schedule, device=xt.device)
    run = _Run(process, denoiser, grid, corrector, guidance, cond, torch.float64 if float64 else torch.float32, argmax,
               greedy_last, top_p, use_cache and not time_conditioned, generator, progress)
    tokens, nfe = _denoise(run, xt, None)
    while tokens.shape[1] < length:
        context = tokens[:, tokens.shape[1] - (window - block_length):]
        fresh = process.sample_prior((batch, block_length), device=xt.device, generator=generator)
        block, calls = _denoise(run, torch.cat([context, fresh], dim=1), context)
        tokens, nfe = torch.cat([tokens, block[:, context.shape[1]:]], dim=1), nfe + calls
    return SampleOutput(tokens=tokens, nfe=nfe)


def _check_blocks(window: int, length: int, block_length: Optional[int]) -> None:
    if block_length is None:
        if length != window:
            raise ValueError(f"sampling.length={length} differs from the model's length {window}; writing past "
                             f"it needs sampling.block_length (semi-autoregressive blocks)")
        return
    if not 0 < block_length <= window:
        raise ValueError(f"sampling.block_length must be in [1, {window}] (the model's length), got {block_length}")
    if length < window or (length - window) % block_length:
        raise ValueError(f"sampling.length={length} must be the model's length {window} plus a multiple of "
                         f"sampling.block_length={block_length}")


def _denoise(run: _Run, xt: torch.Tensor, context: Optional[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """All steps of the grid from x_t (B, L); `context` (B, c): the first c tokens held fixed."""
    steps, cached, nfe = len(run.grid), None, 0
    kappas, rates = run.grid.kappas.tolist(), run.grid.rates.tolist()  # read once: no device read per step
    confidence = torch.zeros(xt.shape, dtype=run.dtype, device=xt.device) if run.corrector.uses_confidence else None
    bar = tqdm(range(steps), desc="sampling", disable=not run.progress, leave=False)
    for k in bar:
        alpha_t, alpha_s = (run.grid.alphas[i].to(run.dtype).expand(xt.shape[0]) for i in (k, k + 1))
        sigma_t = run.grid.sigmas[k].expand(xt.shape[0])
        tail = run.greedy_last and k == steps - 1
        if tail:  # the network still reads sigma_t; the posterior forgets x_t: the prediction of x_0 itself
            alpha_t = torch.zeros_like(alpha_t)
        if run.guidance is None:
            transition, cached = _Posterior.at(run, xt, alpha_t, sigma_t, cached)
        else:
            transition = _Guided(run, Step(run.process, run.denoiser, xt, alpha_t, alpha_t, sigma_t, sigma_t,
                                           run.cond, run.dtype, top_p=run.top_p))
        greedy = run.argmax or tail
        kappa = kappas[k] if confidence is None or rates[k] <= 0 else \
            run.corrector.position_kappas(rates[k], confidence, _correctable(run.process, xt, context))
        xs = _next(run, transition, xt, alpha_s, kappa, greedy)
        if context is not None:
            xs[:, :context.shape[1]] = context
        if confidence is not None:
            confidence = _confidence(transition, xt, xs, torch.ones_like(alpha_s), confidence)
        nfe += transition.nfe
        xt = xs
        bar.set_postfix(nfe=nfe)
    return xt, nfe


def _correctable(process: DiscreteProcess, xt: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, L) bool: the decoded positions outside the fixed context."""
    decoded = process.decoded(xt)
    if context is not None:
        decoded[:, :context.shape[1]] = False
    return decoded


def _confidence(transition, xt, xs, clean, confidence) -> torch.Tensor:
    """The probability under the jump's distribution G(x_0 | x_t) of each token that changed in this
    step; the old confidence where nothing changed. `clean`: alpha = 1 (B,)."""
    jump = transition.log_probs(clean, jump=True)
    drawn = jump.gather(-1, xs[..., None]).squeeze(-1).exp().to(confidence.dtype)
    return torch.where(xs != xt, drawn, confidence)


def _next(run: _Run, transition, xt, alpha_s, kappa: float | torch.Tensor, greedy: bool) -> torch.Tensor:
    """x_s from the step's distribution: the transition to s, mixed for kappa < 1 (a number, or
    (B, L) per position) with the jump to alpha = 1 noised forward to s (module docstring)."""
    if not torch.is_tensor(kappa) and kappa >= 1:
        return transition.log_probs(alpha_s).argmax(-1) if greedy else transition.sample(alpha_s, run.generator)
    kappa = torch.as_tensor(kappa, dtype=torch.float64, device=xt.device).expand(xt.shape)
    clean = torch.ones_like(alpha_s)
    if greedy:
        jumped = run.process.log_marginal(transition.log_probs(clean, jump=True), alpha_s).exp()
        weight = kappa[..., None].to(jumped.dtype)
        return (weight * transition.log_probs(alpha_s).exp() + (1 - weight) * jumped).argmax(-1)
    xs = transition.sample(alpha_s, run.generator)
    x0 = transition.sample(clean, run.generator, jump=True)
    noised = run.process.sample_xt(x0, alpha_s, run.generator)
    return torch.where(bernoulli(kappa, run.generator), xs, noised)


@dataclass
class _Posterior:
    """The unguided transition of x_t to any level: q(x_s | x_t, x_theta) from one prediction."""

    process: DiscreteProcess
    log_x_theta: torch.Tensor
    xt: torch.Tensor
    alpha_t: torch.Tensor
    nfe: int = 0

    @classmethod
    def at(cls, run: _Run, xt, alpha_t, sigma_t, cached):
        """(transition, cache for the next step); its `nfe` is 1, or 0 when the previous prediction
        is reused (x_t unchanged and a denoiser that ignores time)."""
        if run.use_cache and cached is not None and torch.equal(cached[0], xt):
            log_x_theta, calls = cached[1], 0
        else:
            log_x_theta = run.process.predict_x0(run.denoiser(xt, sigma_t, run.cond), xt)
            log_x_theta, calls = nucleus(log_x_theta, run.top_p).to(run.dtype), 1
        return cls(run.process, log_x_theta, xt, alpha_t, calls), (xt, log_x_theta)

    def log_probs(self, alpha_s, jump: bool = False):
        return self.process.log_posterior(self.log_x_theta, self.xt, alpha_s, self.alpha_t)

    def sample(self, alpha_s, generator, jump: bool = False):
        return self.process.reverse_step(self.log_x_theta, self.xt, alpha_s, self.alpha_t, generator)


class _Guided:
    """The guided transition of x_t to any level: the strategy's distribution for a `Step` to that
    level; the steps to the different levels share their denoiser calls. The jump's distribution
    is computed once and kept for the step (a corrector draws from it, or takes its argmax, and
    ReMDM's conf schedule then reads the drawn tokens' probability under it); the step to s is
    read once and not kept, so a step holds at most one extra (B, L, V) tensor."""

    def __init__(self, run: _Run, base: Step):
        self.run, self.base, self.steps, self.jump_log_probs = run, base, {}, None

    def step(self, alpha_s, jump: bool = False) -> Step:
        """The `Step` to level alpha_s (B,); `jump`: the corrector's jump to clean data, whose
        candidates a classifier scores at `process.clean_jump_sigma`."""
        key = jump  # one x_t goes to this step's alpha_s or, jumping, to clean data: no device read
        if key not in self.steps:
            sigma_s = self.run.process.clean_jump_sigma(self.base.sigma_t) if jump \
                else -torch.log(alpha_s.float().clamp_min(1e-12))
            self.steps[key] = replace(self.base, alpha_s=alpha_s, sigma_s=sigma_s, nfe=0)
        return self.steps[key]

    @property
    def nfe(self) -> int:
        return sum(step.nfe for step in self.steps.values())

    def log_probs(self, alpha_s, jump: bool = False):
        if not jump:
            return self.run.guidance.log_probs(self.step(alpha_s))
        if self.jump_log_probs is None:
            self.jump_log_probs = self.run.guidance.log_probs(self.step(alpha_s, jump=True))
        return self.jump_log_probs

    def sample(self, alpha_s, generator, jump: bool = False):
        """The strategy's own draw, except that a strategy without its own sampler draws the jump
        from the kept distribution (what `Guidance.sample` would compute again)."""
        if jump and type(self.run.guidance).sample is Guidance.sample:
            return sample_categorical(self.log_probs(alpha_s, jump), generator)
        return self.run.guidance.sample(self.step(alpha_s, jump), generator)
