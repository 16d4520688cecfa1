"""Uniform-noise process: UDLM (Schiff et al. 2024), D3PM-uniform.

Forward: each token is resampled uniformly over the vocabulary with probability 1 - alpha_t,
q(x_t | x0) = Cat(alpha_t x0 + (1 - alpha_t) 1/V); the prior at t = 1 is uniform. Tokens can change
at every step of the reverse process, so the denoiser predicts x0 at every position.
"""

from __future__ import annotations

import math

import torch

from .base import DiscreteProcess, as_alpha, as_probs, bernoulli, gumbel_argmax, redraw, uniform_noise


class UniformProcess(DiscreteProcess):
    """Uniform-noise process over a vocabulary of `vocab_size` ids."""

    compilable = ("tempered_keep_terms", "tempered_draw")
    compilable_rows = ("tempered_draw",)

    def __init__(self, vocab_size: int):
        if vocab_size < 2:
            raise ValueError(f"uniform process needs vocab_size >= 2, got {vocab_size}")
        self.vocab_size = vocab_size

    def __repr__(self) -> str:
        return f"UniformProcess(vocab_size={self.vocab_size})"

    def sample_xt(self, x0, alpha, generator=None):
        keep = bernoulli(as_alpha(alpha, x0).squeeze(-1).expand(x0.shape).float(), generator)
        noise = torch.randint(self.vocab_size, x0.shape, device=x0.device, generator=generator)
        return torch.where(keep, x0, noise)

    def sample_prior(self, shape, device=None, generator=None):
        return torch.randint(self.vocab_size, shape, device=device, generator=generator)

    def posterior(self, x0, xt, alpha_s, alpha_t):
        """q(x_s = u | x_t = z, x) for uniform noise (paper Eq. 6 with the D3PM convention):

        q(x_s = u | x_t = z, x) = [a_ts 1(u = z) + (1 - a_ts)/V] [alpha_s x(u) + (1 - alpha_s)/V] / Z,
        a_ts = alpha_t / alpha_s,  Z = a_ts (alpha_s x(z) + (1 - alpha_s)/V) + (1 - a_ts)/V.
        """
        alpha_s, alpha_t = as_alpha(alpha_s, xt), as_alpha(alpha_t, xt)
        x = as_probs(x0, self.vocab_size, torch.result_type(alpha_s, torch.ones((), dtype=torch.float32)))
        v = self.vocab_size
        a_ts = alpha_t / alpha_s
        q_s = alpha_s * x + (1 - alpha_s) / v  # q(x_s | x), (B, L, V)
        q_s_at_z = q_s.gather(-1, xt[..., None])
        probs = (1 - a_ts) / v * q_s
        probs.scatter_add_(-1, xt[..., None], a_ts * q_s_at_z)
        return probs / (a_ts * q_s_at_z + (1 - a_ts) / v)

    def predict_x0(self, logits, xt):
        """Plain softmax over the whole vocabulary (UDLM's d3pm parameterisation)."""
        return logits.float().log_softmax(dim=-1)

    def nelbo_integrand(self, log_x_theta, x0, xt, alpha, dalpha):
        """UDLM continuous-time NELBO (Schiff et al. Eq. 18), written for any schedule.

        With xbar = V alpha onehot(x0) + (1 - alpha), xbar_theta = V alpha x_theta + (1 - alpha) and
        z = x_t:  integrand = alpha'/(V alpha) [ V/xbar_z - V/xbar_theta_z
                  - sum_{u != z} (xbar_u / xbar_z) log(xbar_u xbar_theta_z / (xbar_z xbar_theta_u)) ].
        xbar takes two values (x0 and the rest), so the sum over u is done in closed form except for
        the log xbar_theta_u term, which needs one pass over (B, L, V).
        """
        alpha, dalpha = as_alpha(alpha, xt).squeeze(-1), as_alpha(dalpha, xt).squeeze(-1)
        dtype = torch.promote_types(alpha.dtype, torch.float32)  # float64 input stays float64
        alpha, dalpha = alpha.to(dtype).expand(xt.shape), dalpha.to(dtype).expand(xt.shape)
        v = self.vocab_size
        hi, lo = v * alpha + 1 - alpha, 1 - alpha  # xbar at u = x0 and elsewhere, (B, L)
        z_is_x0 = xt == x0
        xbar_z = torch.where(z_is_x0, hi, lo)

        # log(V alpha x_theta + (1 - alpha)) in two passes over (B, L, V), exact where x_theta underflows
        log_xbar_theta = torch.logaddexp(log_x_theta.to(dtype) + torch.log(v * alpha)[..., None],
                                         torch.log(lo)[..., None])
        log_xbar_theta_z = log_xbar_theta.gather(-1, xt[..., None]).squeeze(-1)
        log_xbar_theta_x0 = log_xbar_theta.gather(-1, x0[..., None]).squeeze(-1)
        # sum_{u != z} xbar_u log xbar_theta_u, using xbar_u = lo + (hi - lo) 1(u = x0):
        weighted_sum = lo * log_xbar_theta.sum(-1) + (hi - lo) * log_xbar_theta_x0 - xbar_z * log_xbar_theta_z
        # sum_{u != z} xbar_u and sum_{u != z} xbar_u log xbar_u:
        mass = v - xbar_z
        entropy_part = _xlogx(hi) + (v - 1) * _xlogx(lo) - _xlogx(xbar_z)
        log_ratio_sum = (
            entropy_part - mass * torch.log(xbar_z) + mass * log_xbar_theta_z - weighted_sum
        ) / xbar_z
        bracket = v / xbar_z - v * torch.exp(-log_xbar_theta_z) - log_ratio_sum
        return dalpha / (v * alpha.clamp_min(1e-12)) * bracket

    def log_marginal(self, log_x0, alpha):
        """log(alpha p(v) + (1 - alpha) / V)."""
        alpha = as_alpha(alpha, log_x0[..., 0]).to(log_x0.dtype)
        return torch.logaddexp(log_x0 + torch.log(alpha), torch.log((1 - alpha) / self.vocab_size))

    def prior_kl(self, x0, alpha_1):
        """KL(alpha_1 onehot(x0) + (1 - alpha_1)/V || 1/V) per position (exact)."""
        alpha_1 = as_alpha(alpha_1, x0).squeeze(-1)
        alpha_1 = alpha_1.to(torch.promote_types(alpha_1.dtype, torch.float32)).expand(x0.shape)
        v = self.vocab_size
        hi, lo = alpha_1 + (1 - alpha_1) / v, (1 - alpha_1) / v
        return _xlogx(hi) + (v - 1) * _xlogx(lo) + math.log(v)

    def reverse_step(self, log_x_theta, xt, alpha_s, alpha_t, generator=None):
        """The posterior is the mixture  keep x_t  with probability a_ts q_s(z) / Z,  otherwise
        draw from q_s = alpha_s x_theta + (1 - alpha_s) uniform. Only the positions that draw from
        x_theta read a full (V,) row."""
        dtype = torch.promote_types(log_x_theta.dtype, torch.float32)
        alpha_s = as_alpha(alpha_s, xt).squeeze(-1).to(dtype).expand(xt.shape)
        alpha_t = as_alpha(alpha_t, xt).squeeze(-1).to(dtype).expand(xt.shape)
        v = self.vocab_size
        a_ts = alpha_t / alpha_s
        x_theta_z = log_x_theta.gather(-1, xt[..., None]).squeeze(-1).to(dtype).exp()
        q_s_z = alpha_s * x_theta_z + (1 - alpha_s) / v
        keep_prob = a_ts * q_s_z / (a_ts * q_s_z + (1 - a_ts) / v)
        moves = ~bernoulli(keep_prob, generator)
        from_model = moves & bernoulli(alpha_s, generator)
        noise = torch.randint(v, xt.shape, device=xt.device, generator=generator)
        xs = torch.where(moves, noise, xt)
        return redraw(xs, from_model, log_x_theta[from_model], generator)

    def sample_tempered(self, logits, gamma, xt, alpha_s, alpha_t, generator=None, dtype=torch.float32):
        """The D-CFG step without posteriors. Each posterior is w(u) q_s(u) / Z (see `posterior`)
        with w(u) = a_ts 1(u = z) + k, k = (1 - a_ts) / V, the same for both labels, so the tempered
        one is proportional to w(u) exp(g(u)) with g = gamma log q_s,p + (1 - gamma) log q_s,q and
        log q_s = logaddexp(log alpha_s + log x_theta, log((1 - alpha_s) / V)). That is the mixture
        keep z  with weight a_ts exp(g(z))  and  draw u ~ softmax(g)  with weight k sum_u exp(g(u)).
        Only the redrawn positions build their row of g (`tempered_draw`)."""
        dtype = torch.promote_types(dtype, torch.float32)
        v = self.vocab_size
        alpha_s, alpha_t = (as_alpha(a, xt).to(dtype) for a in (alpha_s, alpha_t))  # (B, 1, 1)
        log_alpha_s, log_floor = torch.log(alpha_s), torch.log((1 - alpha_s) / v)
        lse_g, g_z = self.tempered_keep_terms(logits, gamma, xt, log_alpha_s, log_floor, dtype)  # (B, L)
        a_ts = (alpha_t / alpha_s).squeeze(-1)
        keep_logit = torch.log(a_ts) + g_z - torch.log((1 - a_ts) / v) - lse_g  # log(keep / redraw)
        moves = ~bernoulli(torch.sigmoid(keep_logit).expand(xt.shape), generator)
        log_alpha_s, log_floor = (a.expand(*xt.shape, 1)[moves] for a in (log_alpha_s, log_floor))  # (n, 1)
        rows = logits[:, moves]  # (2, n, V)
        xs = xt.clone()
        uniform = uniform_noise(rows.shape[1:], rows.device, dtype, generator)
        xs[moves] = self.tempered_draw(rows, gamma, log_alpha_s, log_floor, uniform)
        return xs

    def tempered_draw(self, rows, gamma: float, log_alpha_s, log_floor, uniform) -> torch.Tensor:
        """One draw (n,) from softmax(g) of each of n redrawn rows, g = `tempered_log_q` of their
        two labels' logits (2, n, V), with the Gumbel noise of given uniforms (n, V) (their dtype is
        the math's): the log-softmaxes, the mixing and the argmax in one pass when compiled."""
        return gumbel_argmax(self.tempered_log_q(rows, gamma, log_alpha_s, log_floor, uniform.dtype), uniform)

    @staticmethod
    def tempered_log_q(logits, gamma: float, log_alpha_s, log_floor, dtype: torch.dtype) -> torch.Tensor:
        """g = gamma log q_s,p + (1 - gamma) log q_s,q (..., V) from the two labels' raw logits
        (2, ..., V); log_alpha_s and log_floor = log((1 - alpha_s) / V) broadcast as (..., 1)."""
        log_q = torch.logaddexp(logits.to(dtype).log_softmax(dim=-1) + log_alpha_s, log_floor)
        return torch.lerp(log_q[1], log_q[0], gamma)

    def tempered_keep_terms(self, logits, gamma: float, xt, log_alpha_s, log_floor, dtype: torch.dtype):
        """(lse_u g(u), g(x_t)), each (B, L), for logits (2, B, L, V)."""
        g = self.tempered_log_q(logits, gamma, log_alpha_s, log_floor, dtype)
        return torch.logsumexp(g, dim=-1), g.gather(-1, xt[..., None]).squeeze(-1)


def _xlogx(x: torch.Tensor) -> torch.Tensor:
    return torch.xlogy(x, x)
