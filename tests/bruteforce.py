"""Brute-force reference math for the discrete diffusion tests.

Everything here is computed from first principles, independently of `discdiff`:
explicit V x V transition matrices, Bayes' rule written out as a matrix product, and exact
enumeration of every sequence in V^L. All of it runs in float64.

Conventions: a transition matrix Q has rows indexed by the "from" state and columns by the "to"
state, so q(x_t = z | x0 = v) = Q_t[v, z] and a distribution p (row vector) maps to p @ Q.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

DT = torch.float64


# ----------------------------------------------------------------------------------------------
# Transition matrices
# ----------------------------------------------------------------------------------------------
def absorbing_Q(alpha, V: int, mask: int) -> torch.Tensor:
    """Q[..., v, z]: keep a non-mask token with prob alpha, else jump to `mask`; mask is absorbing.

    alpha: tensor of any shape (...); returns (..., V, V).
    """
    a = torch.as_tensor(alpha, dtype=DT)[..., None, None]
    Q = torch.zeros(V, V, dtype=DT)
    keep = torch.eye(V, dtype=DT)
    jump = torch.zeros(V, V, dtype=DT)
    jump[:, mask] = 1.0
    Q = a * keep + (1 - a) * jump  # row `mask`: a * 1 + (1 - a) * 1 at column mask
    return Q


def uniform_Q(alpha, V: int) -> torch.Tensor:
    """Q[..., v, z] = alpha 1(v = z) + (1 - alpha) / V; returns (..., V, V)."""
    a = torch.as_tensor(alpha, dtype=DT)[..., None, None]
    return a * torch.eye(V, dtype=DT) + (1 - a) * torch.full((V, V), 1.0 / V, dtype=DT)


class BFProcess:
    """Brute-force description of a process: its matrices, prior, and model parameterisation."""

    def __init__(self, kind: str, V: int, mask: int | None = None):
        assert kind in ("absorbing", "uniform")
        self.kind, self.V, self.mask = kind, V, mask

    def Q(self, alpha) -> torch.Tensor:
        if self.kind == "absorbing":
            return absorbing_Q(alpha, self.V, self.mask)
        return uniform_Q(alpha, self.V)

    def prior(self) -> torch.Tensor:
        if self.kind == "absorbing":
            p = torch.zeros(self.V, dtype=DT)
            p[self.mask] = 1.0
            return p
        return torch.full((self.V,), 1.0 / self.V, dtype=DT)

    def x_theta(self, logits: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        """Model probabilities over x0 (B, L, V), own implementation of the parameterisation.

        absorbing = SUBS: softmax over the non-mask tokens at masked positions, one-hot carry-over
        at unmasked positions. uniform: plain softmax.
        """
        logits = logits.to(DT)
        if self.kind == "uniform":
            return torch.softmax(logits, -1)
        V, m = self.V, self.mask
        keep = torch.ones(V, dtype=torch.bool)
        keep[m] = False
        p = torch.zeros_like(logits)
        p[..., keep] = torch.softmax(logits[..., keep], -1)
        carried = torch.nn.functional.one_hot(xt, V).to(DT)
        return torch.where((xt != m)[..., None], carried, p)


# ----------------------------------------------------------------------------------------------
# Bayes
# ----------------------------------------------------------------------------------------------
def posterior(proc: BFProcess, x: torch.Tensor, z: torch.Tensor, alpha_s, alpha_t):
    """q(x_s = w | x_t = z, x) by Bayes with explicit matrices.

    x: (..., V) probabilities over x0 (a one-hot for a known x0); z: (...) ids of x_t;
    alpha_s, alpha_t: tensors broadcastable to z's shape.
    q(x_s = w | x_t = z, x)  proportional to  Q_{t|s}[w, z] * sum_v x(v) Q_s[v, w].
    Returns (post (..., V), evidence (...)) where evidence = q(x_t = z | x) (0 means undefined).
    """
    x = x.to(DT)
    alpha_s = torch.as_tensor(alpha_s, dtype=DT).expand(z.shape)
    alpha_t = torch.as_tensor(alpha_t, dtype=DT).expand(z.shape)
    Q_s = proc.Q(alpha_s)  # (..., V, V)
    Q_ts = proc.Q(alpha_t / alpha_s)  # transition s -> t
    prior_s = torch.einsum("...v,...vw->...w", x, Q_s)  # q(x_s = w | x)
    V = proc.V
    lik = torch.gather(Q_ts, -1, z[..., None, None].expand(*z.shape, V, 1)).squeeze(-1)  # Q_ts[w, z]
    joint = lik * prior_s
    evidence = joint.sum(-1)
    post = joint / torch.where(evidence > 0, evidence, torch.ones_like(evidence))[..., None]
    return post, evidence


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sum_w p log(p / q) over the last axis with 0 log 0 = 0."""
    terms = torch.where(p > 0, p * (torch.log(torch.where(p > 0, p, 1.0)) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(-1)


# ----------------------------------------------------------------------------------------------
# Enumeration and a deterministic denoiser that sees the whole sequence
# ----------------------------------------------------------------------------------------------
def all_sequences(V: int, L: int) -> torch.Tensor:
    """Every sequence in V^L as a (V^L, L) LongTensor, in lexicographic order."""
    return torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.long)


def seq_index(x: torch.Tensor, V: int) -> torch.Tensor:
    """Row of `all_sequences` that equals each sequence in x (B, L) -> (B,)."""
    L = x.shape[-1]
    powers = V ** torch.arange(L - 1, -1, -1, dtype=torch.long)
    return (x * powers).sum(-1)


def seq_prob(proc: BFProcess, x0: torch.Tensor, xs: torch.Tensor, alpha) -> torch.Tensor:
    """q(x_t = xs | x0) = prod_l Q[x0^l, xs^l].  x0 (L,), xs (N, L), alpha (K,) -> (K, N)."""
    Q = proc.Q(torch.as_tensor(alpha, dtype=DT).reshape(-1))  # (K, V, V)
    per_pos = Q[:, x0[None, :], xs]  # (K, N, L)
    return per_pos.prod(-1)


class TableDenoiser:
    """logits(x_t, sigma) = A[x_t] + exp(-sigma) B[x_t]: a fixed random table indexed by the
    whole sequence, plus a smooth function of the noise level. Follows the
    `denoiser(xt, sigma, cond) -> logits` contract; computes in float64."""

    def __init__(self, V: int, L: int, seed: int = 0, scale: float = 1.5):
        g = torch.Generator().manual_seed(seed)
        self.V, self.L = V, L
        self.A = scale * torch.randn(V**L, L, V, generator=g, dtype=DT)
        self.B = scale * torch.randn(V**L, L, V, generator=g, dtype=DT)
        self.calls = 0

    def __call__(self, xt, sigma, cond=None):
        self.calls += 1
        idx = seq_index(xt, self.V)
        sigma = torch.as_tensor(sigma, dtype=DT).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(xt.shape[0])
        c = torch.exp(-sigma)[:, None, None]
        return self.A[idx] + c * self.B[idx]


# ----------------------------------------------------------------------------------------------
# NELBO pieces by enumeration
# ----------------------------------------------------------------------------------------------
def reconstruction(proc: BFProcess, x0, alpha0: float, sigma0: float, denoiser) -> float:
    """R = E_{x ~ q(.|x0, alpha0)} [ -sum_l log q(x_0 = x0^l | x, x_theta(x, 0), alpha_s=1, alpha_t=alpha0) ]."""
    V, L = proc.V, x0.shape[0]
    xs = all_sequences(V, L)
    w = seq_prob(proc, x0, xs, alpha0)[0]  # (N,)
    xs, w = xs[w > 0], w[w > 0]
    xth = proc.x_theta(denoiser(xs, torch.full((xs.shape[0],), sigma0, dtype=DT)), xs)
    post, ev = posterior(proc, xth, xs, torch.ones(()), torch.tensor(alpha0))
    assert bool((ev > 0).all())
    p_x0 = post.gather(-1, x0[None, :, None].expand(xs.shape[0], L, 1)).squeeze(-1)
    return float((w * (-torch.log(p_x0)).sum(-1)).sum())


def prior_kl(proc: BFProcess, x0, alpha1: float) -> float:
    """sum_l KL(q(x_1^l | x0^l) || prior)."""
    q1 = proc.Q(torch.tensor(alpha1))[x0]  # (L, V)
    pi = proc.prior().expand_as(q1)
    return float(kl(q1, pi).sum())


def discrete_terms(proc: BFProcess, x0, alphas: torch.Tensor, sigmas: torch.Tensor, denoiser) -> torch.Tensor:
    """The T step terms of the discrete NELBO on the grid t_i = i / T.

    alphas, sigmas: (T + 1,) values of alpha(t_i), sigma(t_i) for i = 0..T.
    Term i (1..T) = E_{x_t ~ q(.|x0, alpha_i)} sum_l KL(q(x_s|x_t,x0) || q(x_s|x_t,x_theta(x_t, t_i)))
    with s = t_{i-1}. Returns (T,).
    """
    V, L = proc.V, x0.shape[0]
    T = alphas.shape[0] - 1
    xs = all_sequences(V, L)
    N = xs.shape[0]
    a_t, a_s, sig_t = alphas[1:].to(DT), alphas[:-1].to(DT), sigmas[1:].to(DT)
    w = seq_prob(proc, x0, xs, a_t)  # (T, N)
    xt = xs.repeat(T, 1)  # (T N, L), row k = i * N + n
    at = a_t.repeat_interleave(N)[:, None]
    as_ = a_s.repeat_interleave(N)[:, None]
    xth = proc.x_theta(denoiser(xt, sig_t.repeat_interleave(N)), xt)
    onehot = torch.nn.functional.one_hot(x0, V).to(DT).expand(T * N, L, V)
    p, ev = posterior(proc, onehot, xt, as_, at)
    q, _ = posterior(proc, xth, xt, as_, at)
    k = kl(p, q).sum(-1)  # (T N,)
    valid = (ev > 0).all(-1)
    k = torch.where(valid, k, torch.zeros_like(k)).reshape(T, N)
    return (w * k).sum(-1)


def gauss_legendre(n: int, power: int = 1):
    """Nodes and weights of the n-point Gauss-Legendre rule on [0, 1], after the substitution
    t = u^power (power > 1 clusters nodes at t = 0 and removes the integrable log(1/t)
    singularity of the uniform-noise integrand there)."""
    x, wts = np.polynomial.legendre.leggauss(n)
    u, w = (x + 1) / 2, wts / 2
    return torch.tensor(u**power, dtype=DT), torch.tensor(w * power * u ** (power - 1), dtype=DT)


def expected_integrand(proc: BFProcess, x0, alpha, dalpha, sigma, denoiser, integrand_fn) -> torch.Tensor:
    """E_{x_t ~ q(.|x0, alpha_k)} sum_l integrand_fn(...) for each time k, by enumeration.

    alpha, dalpha, sigma: (K,). integrand_fn(log_x_theta_or_None, x0 (M, L), xt (M, L), alpha (M,),
    dalpha (M,), logits (M, L, V)) -> (M, L). Returns (K,).
    """
    V, L = proc.V, x0.shape[0]
    xs = all_sequences(V, L)
    N, K = xs.shape[0], alpha.shape[0]
    w = seq_prob(proc, x0, xs, alpha)  # (K, N)
    xt = xs.repeat(K, 1)
    a = alpha.to(DT).repeat_interleave(N)
    da = dalpha.to(DT).repeat_interleave(N)
    logits = denoiser(xt, sigma.to(DT).repeat_interleave(N))
    vals = integrand_fn(x0[None, :].expand(K * N, L), xt, a, da, logits).to(DT).sum(-1).reshape(K, N)
    vals = torch.where(w > 0, vals, torch.zeros_like(vals))
    return (w * vals).sum(-1)


def reference_integrand(proc: BFProcess):
    """Own closed-form integrand (takes SUBS / softmax from BFProcess.x_theta)."""

    def fn(x0, xt, alpha, dalpha, logits):
        xth = proc.x_theta(logits, xt)
        V = proc.V
        a, da = alpha[:, None], dalpha[:, None]
        if proc.kind == "absorbing":
            nll = -torch.log(xth.gather(-1, x0[..., None]).squeeze(-1))
            out = (-da / (1 - a)) * nll
            return torch.where(xt == proc.mask, out, torch.zeros_like(out))
        a3 = a[..., None]
        xbar = V * a3 * torch.nn.functional.one_hot(x0, V).to(DT) + (1 - a3)
        xbt = V * a3 * xth + (1 - a3)
        xbar_z = xbar.gather(-1, xt[..., None])
        xbt_z = xbt.gather(-1, xt[..., None])
        ratio = xbar * xbt_z / (xbar_z * xbt)
        terms = torch.where(xbar > 0, (xbar / xbar_z) * torch.log(torch.where(xbar > 0, ratio, 1.0)), 0.0)
        not_z = 1 - torch.nn.functional.one_hot(xt, V).to(DT)
        s = (terms * not_z).sum(-1)
        bracket = V / xbar_z.squeeze(-1) - V / xbt_z.squeeze(-1) - s
        return da / (V * a) * bracket

    return fn


def integrand_under_test(process, proc: BFProcess):
    """Wrap process.predict_x0 + process.nelbo_integrand in the expected_integrand signature."""

    def fn(x0, xt, alpha, dalpha, logits):
        log_x_theta = process.predict_x0(logits, xt)
        return process.nelbo_integrand(log_x_theta, x0, xt, alpha[:, None, None], dalpha[:, None, None])

    return fn


def continuous_diffusion(proc, x0, schedule, denoiser, integrand_fn, n_nodes: int = 256, power: int = 1) -> float:
    """integral_0^1 E_{x_t}[sum_l integrand] dt by Gauss-Legendre quadrature and enumeration."""
    t, wq = gauss_legendre(n_nodes, power)
    vals = expected_integrand(
        proc, x0, schedule.alpha(t).to(DT), schedule.dalpha(t).to(DT), schedule.sigma(t).to(DT), denoiser, integrand_fn
    )
    return float((wq * vals).sum())


def binomial_sigma(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)
