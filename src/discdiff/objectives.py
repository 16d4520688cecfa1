"""Training objectives: negative evidence lower bounds (NELBOs) and the AR cross-entropy.

Every function takes the denoiser as a plain callable `denoiser(xt, sigma, cond) -> logits
(B, L, V)` with sigma (B,) = schedule.sigma(t), so the objectives depend on no network. Per-sequence
results are sums over positions (B,), optionally restricted by a `token_mask` (B, L) (e.g. to
leave padding out of the loss); with `reduce=False` they are the per-position values (B, L), so a
caller can sum one forward pass's terms under several masks (the loss with padding, the
reported likelihood without).

Continuous time (T = 0; MDLM Eq. 10, UDLM Eq. 18):
    NELBO(x0) = R + int_0^1 E_{x_t ~ q(.|x0)}[ sum_l integrand_l(t) ] dt + KL(q(x_1|x0) || pi)
Discrete time (T > 0, D3PM):
    NELBO(x0) = R + sum_{i=1..T} E_{x_{t_i}} KL(q(x_{t_{i-1}} | x_{t_i}, x0) || q(x_{t_{i-1}} | x_{t_i}, x_theta)) + prior
with t_i = i / T. The reconstruction term R = E_{x ~ q(.|x0, alpha(0))}[-log q(x0 | x, x_theta, alpha_s = 1)]
is exactly the model of the sampler's last step; it is 0 when alpha(0) = 1.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .processes import DiscreteProcess
from .schedules import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def _masked_sum(per_token: torch.Tensor, token_mask: torch.Tensor | None, reduce: bool = True) -> torch.Tensor:
    if not reduce:
        return per_token
    if token_mask is not None:
        per_token = per_token * token_mask.to(per_token.dtype)
    return per_token.sum(dim=-1)


def sample_times(batch_size: int, *, antithetic: bool = True, eps: float = 1e-3, device=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Times t (B,) in [eps, 1]; antithetic sampling spreads the batch evenly over [0, 1)
    (one shared uniform offset, stride 1/B), which lowers the variance of the NELBO estimate."""
    if antithetic:
        offset = torch.rand(1, device=device, generator=generator)
        u = (offset + torch.arange(batch_size, device=device) / batch_size) % 1
    else:
        u = torch.rand(batch_size, device=device, generator=generator)
    return eps + (1 - eps) * u


def corrupt(process: DiscreteProcess, schedule: NoiseSchedule, x0: torch.Tensor, *, antithetic: bool = True,
            eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t ~ q(x_t | x0) (B, L), sigma_t (B,)) at times t ~ U[eps, 1]: what a noisy classifier reads."""
    t = sample_times(x0.shape[0], antithetic=antithetic, eps=eps, device=x0.device)
    return process.sample_xt(x0, schedule.alpha(t)), schedule.sigma(t)


def importance_times(schedule: NoiseSchedule, u: torch.Tensor, eps: float = 1e-3, floor: float = 1e-4):
    """Importance-sampled times and their weights 1 / p(t) for t in [eps, 1].

    p(t) is proportional to d/dt log(1 - alpha_t + floor), the shape of the MDLM weight
    -alpha'_t / (1 - alpha_t): the estimate E_p[integrand(t) / p(t)] of the NELBO's time integral
    stays unbiased for any process while the per-sample weights become (nearly) flat. The inverse
    CDF is found by bisection, so any schedule works. u (B,) are uniforms in [0, 1).
    """
    f = lambda t: torch.log1p(floor - schedule.alpha(t))  # increasing in t
    lo, hi = torch.full_like(u, eps), torch.ones_like(u)
    f_lo, f_hi = f(lo), f(hi)
    target = f_lo + u * (f_hi - f_lo)
    for _ in range(40):
        mid = (lo + hi) / 2
        below = f(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    t = (lo + hi) / 2
    density = -schedule.dalpha(t) / (1 + floor - schedule.alpha(t)) / (f_hi - f_lo)
    return t, 1 / density


def masking_coordinate(schedule: NoiseSchedule, alpha: torch.Tensor, eps: float = 1e-3,
                       floor: float = 1e-4) -> torch.Tensor:
    """The CDF of the importance proposal at noise level alpha: u in [0, 1] with
    log(1 - alpha + floor) linear in u between t = eps and t = 1. Under the change of variables
    (MDLM) the network reads u instead of sigma, and u ~ U[0, 1] is exactly the draw that
    `importance_times` maps to t."""
    ends = schedule.alpha(torch.tensor([eps, 1.0], device=alpha.device, dtype=torch.float64))
    f_lo, f_hi = torch.log1p(floor - ends)
    return ((torch.log1p(floor - alpha.double()) - f_lo) / (f_hi - f_lo)).to(alpha.dtype)


def predict(process: DiscreteProcess, schedule: NoiseSchedule, denoiser: Denoiser,
            xt: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
    """log x_theta(x_t, t) (B, L, V): the denoiser's logits through the process parameterisation."""
    return process.predict_x0(denoiser(xt, schedule.sigma(t), cond), xt)


def continuous_nelbo_terms(process: DiscreteProcess, schedule: NoiseSchedule, denoiser: Denoiser,
                           x0: torch.Tensor, t: torch.Tensor, cond=None, token_mask=None,
                           generator=None, reduce: bool = True) -> dict[str, torch.Tensor]:
    """One-sample estimate of the continuous-time NELBO terms at times t (B,).

    Returns `diffusion` (B,) = sum_l integrand_l(t) for one x_t ~ q(x_t | x0) (its expectation over
    t ~ U[0, 1] is the diffusion term), `recon` (B,) and `prior` (B,), and `log_lik` (B, L), the
    prediction's log x_theta(x0) (for `simple_ce`).
    """
    alpha, dalpha = schedule(t)
    xt = process.sample_xt(x0, alpha, generator)
    integrand, log_lik = process.training_terms(denoiser(xt, schedule.sigma(t), cond), x0, xt, alpha, dalpha)
    return {
        "diffusion": _masked_sum(integrand, token_mask, reduce),
        "recon": reconstruction_nll(process, schedule, denoiser, x0, cond, token_mask, generator, reduce),
        "prior": prior_term(process, schedule, x0, token_mask, reduce),
        "log_lik": log_lik,
    }


def prior_term(process, schedule, x0, token_mask=None, reduce: bool = True) -> torch.Tensor:
    """KL(q(x_1 | x0) || pi) summed over positions (B,)."""
    alpha_1 = schedule.alpha(torch.ones(x0.shape[0], device=x0.device))
    return _masked_sum(process.prior_kl(x0, alpha_1), token_mask, reduce)


def reconstruction_nll(process, schedule, denoiser, x0, cond=None, token_mask=None, generator=None,
                       reduce: bool = True):
    """R = -log q(x0 | x, x_theta(x, 0), alpha_s = 1, alpha_t = alpha(0)) for one x ~ q(.|x0, alpha(0)),
    summed over positions (B,). Skips the network when alpha(0) = 1 (then R = 0 exactly)."""
    t0 = torch.zeros(x0.shape[0], device=x0.device)
    alpha_0 = schedule.alpha(t0)
    if bool((alpha_0 >= 1).all()):
        return torch.zeros(x0.shape if not reduce else x0.shape[:1], device=x0.device)
    x = process.sample_xt(x0, alpha_0, generator)
    x_theta = predict(process, schedule, denoiser, x, t0, cond).exp()
    last_step = process.posterior(x_theta, x, torch.ones_like(alpha_0), alpha_0)
    nll = -torch.log(last_step.gather(-1, x0[..., None]).squeeze(-1).clamp_min(1e-30))
    return _masked_sum(nll, token_mask, reduce)


def discrete_nelbo_terms(process, schedule, denoiser, x0, T: int, i: torch.Tensor, cond=None,
                         token_mask=None, generator=None, reduce: bool = True) -> torch.Tensor:
    """KL(q(x_s | x_t, x0) || q(x_s | x_t, x_theta)) summed over positions (B,), for step indices
    i (B,) in {1..T}: t = i / T, s = (i - 1) / T, one x_t ~ q(x_t | x0). T times its mean over
    i ~ U{1..T} estimates the sum of the T diffusion KL terms."""
    t, s = i.float() / T, (i.float() - 1) / T
    alpha_t, alpha_s = schedule.alpha(t), schedule.alpha(s)
    xt = process.sample_xt(x0, alpha_t, generator)
    x_theta = predict(process, schedule, denoiser, xt, t, cond).exp()
    q_true = process.posterior(x0, xt, alpha_s, alpha_t)
    q_model = process.posterior(x_theta, xt, alpha_s, alpha_t)
    kl = torch.xlogy(q_true, q_true) - torch.xlogy(q_true, q_model.clamp_min(1e-30))
    return _masked_sum(kl.sum(-1), token_mask, reduce)


def simple_ce(log_lik: torch.Tensor, token_mask=None, reduce: bool = True) -> torch.Tensor:
    """Unweighted cross-entropy -sum_l log x_theta^l(x0^l) (B,) (`use_simple_ce_loss`), from the
    prediction's log-likelihoods of x0 (B, L)."""
    return _masked_sum(-log_lik, token_mask, reduce)


def autoregressive_nll(logits: torch.Tensor, x0: torch.Tensor, token_mask=None, reduce: bool = True) -> torch.Tensor:
    """Next-token cross-entropy (B,): logits (B, L, V) at position l predict x0 at l + 1.
    The first token (bos) is given, so L - 1 tokens are scored (reduce=False: (B, L - 1))."""
    nll = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), x0[:, 1:].flatten(), reduction="none")
    nll = nll.view(x0.shape[0], -1)  # rows of V stay contiguous: no transposed copy of (B, L, V)
    mask = None if token_mask is None else token_mask[:, 1:]
    return _masked_sum(nll, mask, reduce)
