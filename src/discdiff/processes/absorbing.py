"""Absorbing-state (masking) process: MDLM (Sahoo et al. 2024), D3PM-absorb.

Forward: each token stays itself with probability alpha_t and becomes the mask token m otherwise,
q(x_t | x0) = Cat(alpha_t x0 + (1 - alpha_t) e_m). The prior at t = 1 is all masks (exact when
alpha_1 = 0). By default the denoiser uses the SUBS parameterisation: the prediction never puts
mass on m, and tokens already unmasked are carried over unchanged. `carry_over=False` gives the
plain D3PM parameterisation (for discrete-time training), where `subs_masking` still decides
whether the mask gets zero probability.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import (DiscreteProcess, as_alpha, as_probs, bernoulli, cross_entropy_, gumbel_argmax, redraw,
                   uniform_noise)


class AbsorbingProcess(DiscreteProcess):
    """Masking process over a vocabulary of `vocab_size` ids of which `mask_index` is the mask."""

    uses_mask = True
    compilable = ("tempered_log_mass", "tempered_draw")
    compilable_rows = ("tempered_draw",)

    def __init__(self, vocab_size: int, mask_index: int, *, carry_over: bool = True, subs_masking: bool = True):
        if not 0 <= mask_index < vocab_size:
            raise ValueError(f"mask_index must be in [0, {vocab_size}), got {mask_index}")
        self.vocab_size, self.mask_index = vocab_size, mask_index
        self.carry_over, self.subs_masking = carry_over, subs_masking or carry_over

    def __repr__(self) -> str:
        return (f"AbsorbingProcess(vocab_size={self.vocab_size}, mask_index={self.mask_index}, "
                f"carry_over={self.carry_over}, subs_masking={self.subs_masking})")

    def sample_xt(self, x0, alpha, generator=None):
        keep = bernoulli(as_alpha(alpha, x0).squeeze(-1).expand(x0.shape).float(), generator)
        return torch.where(keep, x0, self.mask_index)

    def sample_prior(self, shape, device=None, generator=None):
        return torch.full(shape, self.mask_index, dtype=torch.long, device=device)

    def posterior(self, x0, xt, alpha_s, alpha_t):
        """q(x_s | x_t, x) for a masked x_t (paper Eq. 3 of MDLM, D3PM convention for x).

        x_t = m:  q(x_s = v) = (alpha_s - alpha_t) x(v) / Z for v != m,
                  q(x_s = m) = (1 - alpha_s + alpha_s x(m)) / Z,  Z = 1 - alpha_t + alpha_t x(m).
        x_t = v != m: x_s = v with probability 1.
        """
        alpha_s, alpha_t = as_alpha(alpha_s, xt), as_alpha(alpha_t, xt)
        x = as_probs(x0, self.vocab_size, torch.result_type(alpha_s, torch.ones((), dtype=torch.float32)))
        x_mask = x[..., self.mask_index : self.mask_index + 1]
        probs = (alpha_s - alpha_t) * x
        probs[..., self.mask_index : self.mask_index + 1] = 1 - alpha_s + alpha_s * x_mask
        probs = probs / (1 - alpha_t + alpha_t * x_mask)
        unmasked = (xt != self.mask_index)[..., None]
        return torch.where(unmasked, F.one_hot(xt, self.vocab_size).to(probs.dtype), probs)

    def predict_x0(self, logits, xt):
        """SUBS: log-softmax with the mask excluded; unmasked positions carried over as one-hot."""
        logits = logits.to(torch.float32, copy=True)  # the one full-size copy; the network's output stays as it was
        if self.subs_masking:
            logits[..., self.mask_index] = float("-inf")
        log_probs = logits.log_softmax(dim=-1)
        if not self.carry_over:
            return log_probs
        unmasked = (xt != self.mask_index)[..., None]
        at_xt = torch.where(unmasked, 0.0, log_probs.gather(-1, xt[..., None]))
        return log_probs.masked_fill(unmasked, float("-inf")).scatter_(-1, xt[..., None], at_xt)

    def nelbo_integrand(self, log_x_theta, x0, xt, alpha, dalpha):
        """MDLM continuous-time NELBO (Sahoo et al. Eq. 10), valid for any schedule:
        integrand_l = [x_t^l = m] * (-alpha'_t / (1 - alpha_t)) * (-log x_theta^l(x0^l)).
        It assumes carry-over (SUBS); without it only the discrete-time NELBO applies.
        """
        return self._weighted_nll(-log_x_theta.gather(-1, x0[..., None]).squeeze(-1), xt, alpha, dalpha)

    def _weighted_nll(self, nll, xt, alpha, dalpha):
        alpha, dalpha = as_alpha(alpha, xt).squeeze(-1), as_alpha(dalpha, xt).squeeze(-1)
        weight = -dalpha / (1 - alpha).clamp_min(1e-12)
        return torch.where(xt == self.mask_index, weight * nll, torch.zeros_like(nll))

    def training_terms(self, logits, x0, xt, alpha, dalpha):
        """Under SUBS the integrand reads one entry per row: log x_theta(x0) = l(x0) - lse_{v != m} l(v)
        at a masked position and 0 at an unmasked one (carried over, and x_t = x0 there), so the
        (B, L, V) log-softmax of `predict_x0` is never built (one fp32 copy of the logits, one
        log-sum-exp; its backward is one softmax)."""
        if not self.carry_over:
            return super().training_terms(logits, x0, xt, alpha, dalpha)
        x = logits.to(torch.float32, copy=True)
        x[..., self.mask_index] = float("-inf")
        log_lik = x.gather(-1, x0[..., None]).squeeze(-1) - torch.logsumexp(x, dim=-1)
        log_lik = torch.where(xt == self.mask_index, log_lik, torch.zeros_like(log_lik))
        return self._weighted_nll(-log_lik, xt, alpha, dalpha), log_lik

    def training_gradient(self):
        """Under SUBS the closed form of `_subs_terms_and_gradient`; None otherwise."""
        return self._subs_terms_and_gradient if self.carry_over else None

    def _subs_terms_and_gradient(self, logits, weights, x0, xt, alpha, dalpha):
        """`training_terms` of rows (n, V) with d loss / d logits. At a masked row
        log x_theta(x0) = l(x0) - lse_{v != m}(l) and the integrand is c (-log x_theta(x0)),
        c = -alpha' / (1 - alpha), so for loss = w_1 integrand + w_2 log x_theta(x0) the gradient is
        (w_1 c - w_2) (softmax_{v != m}(l) - onehot(x0)), 0 at the mask's column; an unmasked row
        has terms and gradient 0. The softmax is written over
        the chunk's logits (over an fp32 copy of bf16 ones)."""
        x = logits.float()
        x[:, self.mask_index] = float("-inf")
        masked = xt == self.mask_index
        c = -dalpha / (1 - alpha).clamp_min(1e-12)
        scale = torch.where(masked, weights[:, 0] * c - weights[:, 1], 0.0)
        nll, g = cross_entropy_(x, x0, scale)
        log_lik = torch.where(masked, -nll, 0.0)
        integrand = torch.where(masked, c * nll, 0.0)
        return torch.stack([integrand, log_lik], dim=-1), g

    def rows_reading_logits(self, xt):
        """Under SUBS (carry-over) only the masked positions: an unmasked one is carried over, so
        its integrand, log x_theta(x0), KL and reconstruction term are 0 whatever the logits
        (about half the positions on average over t)."""
        return xt == self.mask_index if self.carry_over else None

    def decoded(self, x):
        return x != self.mask_index

    def clean_jump_sigma(self, sigma_t):
        """sigma_t: the candidate still holds the masks of x_t, which no clean sequence has; at level t
        it is exactly what it is, since an unmasked token is its clean value at every level."""
        return sigma_t

    def log_marginal(self, log_x0, alpha):
        """log(alpha p(v)) for v != m and log(alpha p(m) + 1 - alpha) at the mask."""
        alpha = as_alpha(alpha, log_x0[..., 0]).to(log_x0.dtype)
        out = log_x0 + torch.log(alpha)
        out[..., self.mask_index] = torch.logaddexp(out[..., self.mask_index], torch.log1p(-alpha)[..., 0])
        return out

    def prior_kl(self, x0, alpha_1):
        """KL(q(x_1 | x0) || all-mask) per position.

        Exactly 0 when alpha_1 = 0. For alpha_1 > 0 (e.g. log-linear with eps) the true KL is
        infinite because the prior never emits a clean token; like MDLM we neglect it: the part
        of the bound it stands for, alpha in [0, alpha_1], contributes at most about
        alpha_1 * log(V) nats per token.
        """
        return torch.zeros(x0.shape, device=x0.device)

    def reverse_step(self, log_x_theta, xt, alpha_s, alpha_t, generator=None):
        """Each masked token draws u ~ x_theta and takes it with probability
        (alpha_s - alpha_t) / (1 - alpha_t + alpha_t x(m)); that reproduces the posterior above
        (a drawn u = m simply stays masked). Under SUBS x(m) = 0."""
        alpha_s, alpha_t = as_alpha(alpha_s, xt).squeeze(-1), as_alpha(alpha_t, xt).squeeze(-1)
        x_mask = log_x_theta[..., self.mask_index].exp()
        reveal_prob = (alpha_s - alpha_t) / (1 - alpha_t + alpha_t * x_mask).clamp_min(1e-12)
        reveal = (xt == self.mask_index) & bernoulli(reveal_prob.expand(xt.shape), generator)
        return redraw(xt, reveal, log_x_theta[reveal], generator)

    def sample_tempered(self, logits, gamma, xt, alpha_s, alpha_t, generator=None, dtype=torch.float32):
        """The D-CFG step without posteriors (SUBS). At a masked position both posteriors are
        c x(v) for v != m and r for m, with c = (alpha_s - alpha_t) / (1 - alpha_t) and
        r = (1 - alpha_s) / (1 - alpha_t), so the tempered one is  c S x_g(v)  and  r,  where
        x_g = softmax(g), g = gamma l_p + (1 - gamma) l_q over the raw logits (mask excluded) and
        log S = lse(g) - gamma lse(l_p) - (1 - gamma) lse(l_q). A masked token is revealed with
        probability c S / (c S + r) and then drawn from x_g; unmasked tokens stay. Only the
        revealed positions build their row of g."""
        if not self.carry_over:
            return super().sample_tempered(logits, gamma, xt, alpha_s, alpha_t, generator, dtype)
        dtype = torch.promote_types(dtype, torch.float32)
        log_s = self.tempered_log_mass(logits, gamma, dtype)  # (B, L)
        alpha_s, alpha_t = (as_alpha(a, xt).squeeze(-1).to(dtype) for a in (alpha_s, alpha_t))
        reveal_logit = torch.log(alpha_s - alpha_t) + log_s - torch.log(1 - alpha_s)  # log(c S / r)
        reveal = (xt == self.mask_index) & bernoulli(torch.sigmoid(reveal_logit).expand(xt.shape), generator)
        rows = logits[:, reveal]  # (2, n, V)
        xs = xt.clone()
        xs[reveal] = self.tempered_draw(rows, gamma, uniform_noise(rows.shape[1:], rows.device, dtype, generator))
        return xs

    def tempered_draw(self, rows: torch.Tensor, gamma: float, uniform: torch.Tensor) -> torch.Tensor:
        """One draw (n,) from softmax(g) of each of n revealed rows, g = `tempered_logits` of their
        two labels' logits (2, n, V), with the Gumbel noise of given uniforms (n, V) (their dtype is
        the math's): one pass when compiled."""
        return gumbel_argmax(self.tempered_logits(rows, gamma, uniform.dtype), uniform)

    def tempered_log_mass(self, logits: torch.Tensor, gamma: float, dtype: torch.dtype) -> torch.Tensor:
        """log S = lse(g) - gamma lse(l_p) - (1 - gamma) lse(l_q) (...) from the two labels' raw
        logits (2, ..., V), every log-sum-exp over the vocabulary without the mask."""
        x = logits.to(dtype)
        lse_p, lse_q = self._lse_without_mask(x)
        return self._lse_without_mask(torch.lerp(x[1], x[0], gamma)) - torch.lerp(lse_q, lse_p, gamma)

    def tempered_logits(self, logits: torch.Tensor, gamma: float, dtype: torch.dtype) -> torch.Tensor:
        """g = gamma l_p + (1 - gamma) l_q (..., V) with the mask at -inf, from logits (2, ..., V)."""
        x = logits.to(dtype)
        g = torch.lerp(x[1], x[0], gamma)
        g[..., self.mask_index] = float("-inf")
        return g

    def _lse_without_mask(self, x: torch.Tensor) -> torch.Tensor:
        """log-sum-exp over the last dimension leaving out the mask's column (two views, no copy)."""
        m = self.mask_index
        return torch.logaddexp(torch.logsumexp(x[..., :m], dim=-1), torch.logsumexp(x[..., m + 1 :], dim=-1))
