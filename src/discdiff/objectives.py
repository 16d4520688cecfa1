"""Training objectives: negative evidence lower bounds (NELBOs) and the AR cross-entropy.

Every function takes the denoiser as a callable with sigma (B,) = schedule.sigma(t) and hands it
its per-position terms as a `RowTerms` (`Denoiser`): the network applies its output head and the
terms to chunks of rows, so no (B, L, V) tensor of logits or their gradients exists in training
(`models.fused_head`); `logits_denoiser` adapts any plain logits function. Per-sequence results
are sums over positions (B,), optionally restricted by a `token_mask` (B, L) (e.g. to leave
padding out of the loss); with `reduce=False` they are the per-position values (B, L), so a
caller can sum one forward pass's terms under several masks (the loss with padding, the reported
likelihood without). The values are detached: the gradient travels in the `loss` each function
returns, sum(weights * terms) for the caller's weights (B, L, k) = d loss / d term, formed chunk
by chunk in the forward pass.

Continuous time (T = 0; MDLM Eq. 10, UDLM Eq. 18):
    NELBO(x0) = R + int_0^1 E_{x_t ~ q(.|x0)}[ sum_l integrand_l(t) ] dt + KL(q(x_1|x0) || pi)
Discrete time (T > 0, D3PM):
    NELBO(x0) = R + sum_{i=1..T} E_{x_{t_i}} KL(q(x_{t_{i-1}} | x_{t_i}, x0) || q(x_{t_{i-1}} | x_{t_i}, x_theta)) + prior
with t_i = i / T. The reconstruction term R = E_{x ~ q(.|x0, alpha(0))}[-log q(x0 | x, x_theta, alpha_s = 1)]
is exactly the model of the sampler's last step; it is 0 when alpha(0) = 1.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from .models.fused_head import RowTerms
from .processes import DiscreteProcess
from .processes.base import as_alpha, cross_entropy_
from .schedules import NoiseSchedule

#: `denoiser(x_t, sigma, cond) -> logits (B, L, V)` (what samplers call) and
#: `denoiser(x_t, sigma, cond, terms=RowTerms(...)) -> (loss, terms (B, L, k))` (what the objectives
#: call): `LanguageModel.denoiser`, a backbone's forward, or `logits_denoiser` around a plain
#: logits function
Denoiser = Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]


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


def logits_denoiser(logits_fn: Callable) -> Denoiser:
    """A denoiser of the objectives' protocol from a plain `logits_fn(x_t, sigma, cond) -> logits
    (B, L, V)`: with `terms` it evaluates them on the full logits (`RowTerms.of_logits`)."""
    def denoiser(xt, sigma, cond=None, terms: RowTerms | None = None):
        logits = logits_fn(xt, sigma, cond)
        return logits if terms is None else terms.of_logits(logits)
    return denoiser


def per_position(alpha: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """A noise level per sequence (B,) (or anything `as_alpha` takes) as one per position (B, L)."""
    return as_alpha(alpha, x0).squeeze(-1).expand(x0.shape)


def continuous_nelbo_terms(process: DiscreteProcess, schedule: NoiseSchedule, denoiser: Denoiser,
                           x0: torch.Tensor, t: torch.Tensor, cond=None, token_mask=None,
                           generator=None, reduce: bool = True, weights=None,
                           latent: Callable | None = None) -> dict[str, torch.Tensor]:
    """One-sample estimate of the continuous-time NELBO's diffusion term at times t (B,).

    Returns `diffusion` (B,) = sum_l integrand_l(t) for one x_t ~ q(x_t | x0) (its expectation over
    t ~ U[0, 1] is the diffusion term), `log_lik` (B, L), the prediction's log x_theta(x0) (for
    `training.use_simple_ce_loss`), and `loss` = sum(weights * (integrand, log_lik)) for weights (B, L, 2) = the
    caller's d loss / d term, with the network's gradient (0 without weights). Both terms come
    from the head's rows in chunks (`fused_head`); the positions the process's terms never read
    (`rows_reading_logits`) skip the head.

    latent: `latent(x0, t, generator) -> (x_t, network input)` when the network reads something
    other than x_t itself: DUO's curriculum (`duality.Relaxation.latent`) draws x_t = argmax(w) of a
    Gaussian w and hands the network softmax(w / tau) (B, L, V); the integrand stays the one at x_t,
    so the loss is the NELBO conditioned on the discrete latent (DUO's Rao-Blackwellised f_Duo,
    Eq. 17 of arXiv 2506.10892 v3, inside its curriculum loss, Eq. 21).
    """
    alpha, dalpha = schedule(t)
    xt, network_input = (process.sample_xt(x0, alpha, generator),) * 2 if latent is None else latent(x0, t, generator)
    terms = RowTerms(process.training_terms, (x0, xt, per_position(alpha, x0), per_position(dalpha, x0)),
                     weights, process.rows_reading_logits(xt), gradient=process.training_gradient())
    loss, values = denoiser(network_input, schedule.sigma(t), cond, terms=terms)
    integrand, log_lik = values.unbind(-1)
    return {"diffusion": _masked_sum(integrand, token_mask, reduce), "log_lik": log_lik, "loss": loss}


def prior_term(process, schedule, x0, token_mask=None, reduce: bool = True) -> torch.Tensor:
    """KL(q(x_1 | x0) || pi) summed over positions (B,)."""
    alpha_1 = schedule.alpha(torch.ones(x0.shape[0], device=x0.device))
    return _masked_sum(process.prior_kl(x0, alpha_1), token_mask, reduce)


def reconstruction_nll(process, schedule, denoiser, x0, cond=None, token_mask=None, generator=None,
                       reduce: bool = True, weights=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, loss): R = -log q(x0 | x, x_theta(x, 0), alpha_s = 1, alpha_t = alpha(0)) for one
    x ~ q(.|x0, alpha(0)), summed over positions (B,), and loss = sum(weights * R_l) for weights
    (B, L, 1). Skips the network when alpha(0) = 1 (then R = 0 exactly)."""
    t0 = torch.zeros(x0.shape[0], device=x0.device)
    alpha_0 = schedule.alpha(t0)
    if bool((alpha_0 >= 1).all()):
        zero = torch.zeros(x0.shape if not reduce else x0.shape[:1], device=x0.device)
        return zero, torch.zeros((), device=x0.device)
    x = process.sample_xt(x0, alpha_0, generator)
    terms = RowTerms(partial(_reconstruction_rows, process), (x0, x, per_position(alpha_0, x0)), weights,
                     process.rows_reading_logits(x))
    loss, nll = denoiser(x, schedule.sigma(t0), cond, terms=terms)
    return _masked_sum(nll[..., 0], token_mask, reduce), loss


def _reconstruction_rows(process, logits, x0, x, alpha_0):
    """-log q(x0 | x, x_theta) of the sampler's last step (alpha_s = 1), per row."""
    x_theta = process.predict_x0(logits, x).exp()
    last_step = process.posterior(x_theta, x, torch.ones_like(alpha_0), alpha_0)
    return (-torch.log(last_step.gather(-1, x0[..., None]).squeeze(-1).clamp_min(1e-30)),)


def discrete_nelbo_terms(process, schedule, denoiser, x0, T: int, i: torch.Tensor, cond=None,
                         token_mask=None, generator=None, reduce: bool = True,
                         weights=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL, loss): KL(q(x_s | x_t, x0) || q(x_s | x_t, x_theta)) summed over positions (B,), for
    step indices i (B,) in {1..T}: t = i / T, s = (i - 1) / T, one x_t ~ q(x_t | x0); loss =
    sum(weights * KL_l) for weights (B, L, 1). T times the KL's mean over i ~ U{1..T} estimates
    the sum of the T diffusion KL terms."""
    t, s = i.float() / T, (i.float() - 1) / T
    alpha_t, alpha_s = schedule.alpha(t), schedule.alpha(s)
    xt = process.sample_xt(x0, alpha_t, generator)
    terms = RowTerms(partial(_discrete_kl_rows, process), (x0, xt, per_position(alpha_s, x0),
                                                          per_position(alpha_t, x0)),
                     weights, process.rows_reading_logits(xt))
    loss, kl = denoiser(xt, schedule.sigma(t), cond, terms=terms)
    return _masked_sum(kl[..., 0], token_mask, reduce), loss


def _discrete_kl_rows(process, logits, x0, xt, alpha_s, alpha_t):
    """KL(q(x_s | x_t, x0) || q(x_s | x_t, x_theta)) per row."""
    x_theta = process.predict_x0(logits, xt).exp()
    q_true = process.posterior(x0, xt, alpha_s, alpha_t)
    q_model = process.posterior(x_theta, xt, alpha_s, alpha_t)
    return ((torch.xlogy(q_true, q_true) - torch.xlogy(q_true, q_model.clamp_min(1e-30))).sum(-1),)


DIVERGENCES = ("kl-bwd", "kl-fwd")


def consistency_distillation_terms(process: DiscreteProcess, student: Callable[..., torch.Tensor],
                                   teacher: Callable[..., torch.Tensor],
                                   latents: tuple[torch.Tensor, torch.Tensor], sigmas: tuple[torch.Tensor, torch.Tensor],
                                   cond=None, weights: torch.Tensor | None = None,
                                   divergence: str = "kl-bwd") -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, divergence per position (B, L), detached) of discrete consistency distillation (DUO,
    arXiv 2506.10892, Sec. 4.2; L_DCD, Eq. 23 of v3): the student's x_theta at the noisier point z_t of a Gaussian
    trajectory (`duality.gaussian_trajectory`) matches the frozen teacher's at the cleaner point
    z_s. kl-bwd: KL(student || teacher) (DUO's choice); kl-fwd: KL(teacher || student).
    student: the network (logits); teacher: (z, sigma, cond) -> its log x_theta (B, L, V), read
    without gradient. latents: (z_t, z_s) (B, L); sigmas: their noise levels (B,);
    loss = sum(weights * divergence) for weights (B, L) (the mean over trained tokens: mask / count)."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown distil.divergence '{divergence}'; allowed: {', '.join(DIVERGENCES)}")
    (z_t, z_s), (sigma_t, sigma_s) = latents, sigmas
    log_student = process.predict_x0(student(z_t, sigma_t, cond), z_t).float()
    with torch.no_grad():
        log_teacher = teacher(z_s, sigma_s, cond).float()
    first, second = (log_student, log_teacher) if divergence == "kl-bwd" else (log_teacher, log_student)
    per_position = (first.exp() * (first - second)).nan_to_num(0.0).sum(-1)  # 0 log 0 = 0 where p is 0
    loss = per_position.sum() if weights is None else (per_position * weights).sum()
    return loss, per_position.detach()


def autoregressive_nll(network: Denoiser, x0: torch.Tensor, cond=None, token_mask=None, reduce: bool = True,
                       weights=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL, loss): next-token cross-entropy (B,) of a causal network, whose logits at position l
    predict x0 at l + 1. The first token (bos) is given, so L - 1 tokens are scored (reduce=False:
    (B, L - 1)); loss = sum(weights * NLL_l) for weights (B, L - 1). The last position predicts
    nothing and skips the head."""
    scored = torch.ones_like(x0, dtype=torch.bool)
    scored[:, -1] = False
    targets = torch.cat([x0[:, 1:], x0[:, -1:]], dim=1)  # position l holds x0[l + 1]
    if weights is not None:
        weights = F.pad(weights, (0, 1))[..., None]
    loss, nll = network(x0, None, cond, terms=RowTerms(_next_token_nll, (targets,), weights, scored,
                                                        gradient=_next_token_nll_gradient))
    mask = None if token_mask is None else token_mask[:, 1:]
    return _masked_sum(nll[:, :-1, 0], mask, reduce), loss


def _next_token_nll(logits, targets):
    """-log softmax(logits)[target] per row."""
    return (F.cross_entropy(logits[0].float(), targets[0], reduction="none")[None],)


def _next_token_nll_gradient(logits, weights, targets):
    """(NLL (n, 1), its weighted gradient w (softmax(logits) - onehot(target)) (n, V)), the softmax
    written over the logits' buffer."""
    nll, g = cross_entropy_(logits.float(), targets, weights[:, 0])
    return nll[:, None], g
