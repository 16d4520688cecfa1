"""The Gaussian behind uniform-state noise (DUO, Sahoo et al., ICML 2025, arXiv 2506.10892, Sec. 3).

For a token x of a vocabulary of K and a Gaussian latent w = a onehot(x) + s eps, eps ~ N(0, I_K),
with a in [0, 1] and s = sqrt(1 - a^2), the token z = argmax(w) is x with probability

    P(z = x) = integral phi(u) Phi(u + nu)^(K - 1) du,   nu = a / s,

and any other token with the same probability (1 - P) / (K - 1): z is uniform-state noise of x,
q(z | x) = Cat(alpha onehot(x) + (1 - alpha) / K), with

    alpha = T(a) = (K P(z = x) - 1) / (K - 1)                 (DUO's "diffusion transformation", Eq. 11 of arXiv v3).

T(0) = 0, T(1) = 1 and T increases. DUO writes the Gaussian level through its log-SNR
g = log(s^2 / a^2) (a = sqrt(sigmoid(-g)), s = sqrt(sigmoid(g)), nu = exp(-g / 2)).

`keep_probability` computes P and dP/dnu by quadrature (trapezoid rule on a fine grid of u,
which converges geometrically for this Gaussian-weighted smooth integrand; logs of Phi keep
Phi^(K - 1) exact for K of 30,000 word pieces). `Duality` tabulates alpha and d alpha / dg over a
grid of g once per K, caches the table on disk under the discdiff cache root (`duality/`), and
interpolates it (cubic Hermite, from values and derivatives); its inverse solves alpha = T(a) on
the same table. `discrete_alpha`, `discrete_alpha_derivative` and `gaussian_alpha` are the
functional forms on the Gaussian alpha a.

DUO's curriculum (Sec. 4.1 of the paper) trains a uniform-noise model on the Gaussian latents
themselves: `DualitySchedule` is the noise schedule of a window of log-SNRs, alpha(t) = T at
g = g_min + t (g_max - g_min), and `relaxed_latent` draws one w per position and returns both
z = argmax(w) (distributed as x_t of uniform noise at that alpha) and the tempered relaxation
softmax(w / tau) the network reads while the curriculum lasts (`Relaxation`). Discrete consistency
distillation (Sec. 4.2) follows one Gaussian trajectory: `gaussian_trajectory` gives z_t and z_s of
the same eps.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

from .files import atomic_path, cache_root
from .schedules import NoiseSchedule

#: the table's log-SNR range; below it alpha is 1 to double precision (nu > e^20), above it alpha
#: follows its tangent at nu = 0, alpha = c nu (nu < e^-20)
G_MAX = 40.0
TABLE_POINTS = 4_001
_U = torch.linspace(-12.0, 12.0, 4_801, dtype=torch.float64)  # quadrature nodes (phi(12) ~ 1e-32)
_LOG_PHI_U = -0.5 * _U**2 - 0.5 * math.log(2 * math.pi)


def keep_probability(nu: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """P(argmax(nu onehot(x) + eps) = x) and its derivative in nu, for nu (...) >= 0, float64.

    P = integral phi(u) Phi(u + nu)^(K - 1) du,
    dP/dnu = integral phi(u) (K - 1) Phi(u + nu)^(K - 2) phi(u + nu) du."""
    if vocab_size < 2:
        raise ValueError(f"the duality needs a vocabulary of at least 2 tokens, got {vocab_size}")
    nu = torch.as_tensor(nu, dtype=torch.float64)
    shifted = nu.reshape(-1, 1) + _U  # (n, nodes)
    log_cdf = torch.special.log_ndtr(shifted)
    step = float(_U[1] - _U[0])
    prob = torch.exp(_LOG_PHI_U + (vocab_size - 1) * log_cdf).sum(-1) * step
    log_pdf = -0.5 * shifted**2 - 0.5 * math.log(2 * math.pi)
    slope = torch.exp(_LOG_PHI_U + math.log(vocab_size - 1) + (vocab_size - 2) * log_cdf + log_pdf).sum(-1) * step
    return prob.reshape(nu.shape), slope.reshape(nu.shape)


def _alpha_of_nu(nu: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha = (K P - 1) / (K - 1) and d alpha / d nu."""
    prob, slope = keep_probability(nu, vocab_size)
    scale = vocab_size / (vocab_size - 1)
    return (scale * prob - 1 / (vocab_size - 1)).clamp(0.0, 1.0), scale * slope


class Duality:
    """alpha(g) of uniform noise for the Gaussian level of log-SNR g, for one vocabulary size.

    The table (alpha and d alpha / dg at TABLE_POINTS values of g in [-G_MAX, G_MAX], float64) is
    computed by quadrature on first use and kept in `cache_dir`/duality/ (default: the discdiff
    cache root), so later runs read it back."""

    def __init__(self, vocab_size: int, cache_dir: Optional[str | Path] = None):
        if vocab_size < 2:
            raise ValueError(f"the duality needs a vocabulary of at least 2 tokens, got {vocab_size}")
        self.vocab_size = vocab_size
        self.grid = torch.linspace(-G_MAX, G_MAX, TABLE_POINTS, dtype=torch.float64)
        self.alphas, self.slopes = self._table(cache_root(cache_dir) / "duality" / f"K{vocab_size}-{TABLE_POINTS}.pt")
        self.tangent = float(_alpha_of_nu(torch.zeros(1), vocab_size)[1])  # d alpha / d nu at nu = 0

    def _table(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, d alpha / dg) on the grid, read from `path` or computed and written there."""
        if path.exists():
            try:
                table = torch.load(path, weights_only=True)
                if table["alphas"].shape == self.grid.shape:
                    return table["alphas"], table["slopes"]
            except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError):
                pass  # unreadable: computed again and rewritten below
        nu = torch.exp(-self.grid / 2)
        alphas, dalpha_dnu = zip(*(_alpha_of_nu(chunk, self.vocab_size) for chunk in nu.split(512)))
        alphas, slopes = torch.cat(alphas), torch.cat(dalpha_dnu) * (-nu / 2)  # d nu / dg = -nu / 2
        with atomic_path(path) as tmp:
            torch.save({"alphas": alphas, "slopes": slopes, "vocab_size": self.vocab_size}, tmp)
        return alphas, slopes

    def alpha(self, g: torch.Tensor) -> torch.Tensor:
        """alpha(g) (float64, the shape of g)."""
        return self._interpolate(g)[0]

    def dalpha(self, g: torch.Tensor) -> torch.Tensor:
        """d alpha / dg (<= 0)."""
        return self._interpolate(g)[1]

    def log_snr(self, alpha: torch.Tensor) -> torch.Tensor:
        """The g with alpha(g) = alpha, for alpha in (0, 1) (bisection on the interpolant; the
        ends of the table where alpha is 0 or 1)."""
        alpha = torch.as_tensor(alpha, dtype=torch.float64)
        low = torch.full_like(alpha, -G_MAX)  # alpha(low) >= alpha
        high = torch.full_like(alpha, G_MAX)
        for _ in range(60):  # 80 / 2^60: below double precision
            middle = (low + high) / 2
            above = self.alpha(middle) >= alpha
            low, high = torch.where(above, middle, low), torch.where(above, high, middle)
        return (low + high) / 2

    def _interpolate(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cubic Hermite interpolation of (alpha, d alpha / dg) at g; past the ends, 1 and the
        tangent c nu (module constants)."""
        g = torch.as_tensor(g, dtype=torch.float64)
        grid, alphas, slopes = (x.to(g.device) for x in (self.grid, self.alphas, self.slopes))
        h = float(grid[1] - grid[0])
        index = ((g.clamp(-G_MAX, G_MAX) + G_MAX) / h).floor().long().clamp(0, len(grid) - 2)
        x = (g.clamp(-G_MAX, G_MAX) - grid[index]) / h
        y0, y1, d0, d1 = alphas[index], alphas[index + 1], slopes[index] * h, slopes[index + 1] * h
        value = (2 * x**3 - 3 * x**2 + 1) * y0 + (x**3 - 2 * x**2 + x) * d0 + (-2 * x**3 + 3 * x**2) * y1 \
            + (x**3 - x**2) * d1
        slope = ((6 * x**2 - 6 * x) * (y0 - y1) + (3 * x**2 - 4 * x + 1) * d0 + (3 * x**2 - 2 * x) * d1) / h
        tail_nu = torch.exp(-g.clamp_min(G_MAX) / 2)
        value = torch.where(g > G_MAX, self.tangent * tail_nu, torch.where(g < -G_MAX, 1.0, value))
        slope = torch.where(g > G_MAX, -self.tangent * tail_nu / 2, torch.where(g < -G_MAX, 0.0, slope))
        return value.clamp(0.0, 1.0), slope


@lru_cache(maxsize=8)
def duality(vocab_size: int, cache_dir: Optional[str] = None) -> Duality:
    """The `Duality` of a vocabulary size, built once per process."""
    return Duality(vocab_size, cache_dir)


def log_snr_of(gaussian_alpha: torch.Tensor) -> torch.Tensor:
    """g = log(s^2 / a^2) = log((1 - a^2) / a^2) for a in [0, 1] (+inf at 0, -inf at 1)."""
    a = torch.as_tensor(gaussian_alpha, dtype=torch.float64)
    return torch.log1p(-a**2) - 2 * torch.log(a)


def discrete_alpha(gaussian_alpha: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """T(a): the alpha of uniform noise whose keep probability alpha + (1 - alpha) / K is
    P(argmax(a onehot(x) + s eps) = x), s = sqrt(1 - a^2) (module docstring); float64."""
    return duality(vocab_size).alpha(log_snr_of(gaussian_alpha))


def discrete_alpha_derivative(gaussian_alpha: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """dT/da = d alpha / dg * dg/da with dg/da = -2 / (a (1 - a^2)) (float64); c at a = 0 (the
    tangent), 0 at a = 1."""
    a = torch.as_tensor(gaussian_alpha, dtype=torch.float64)
    table = duality(vocab_size)
    inner = table.dalpha(log_snr_of(a)) * (-2 / (a * (1 - a**2)))
    return torch.where(a <= 0, table.tangent, torch.where(a >= 1, 0.0, inner))


def gaussian_alpha(discrete: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """T^-1: the Gaussian a in [0, 1] whose argmax has uniform-noise level `discrete` (0 -> 0, 1 -> 1)."""
    alpha = torch.as_tensor(discrete, dtype=torch.float64)
    a = torch.sigmoid(-duality(vocab_size).log_snr(alpha)).sqrt()
    return torch.where(alpha <= 0, 0.0, torch.where(alpha >= 1, 1.0, a))


class DualitySchedule(NoiseSchedule):
    """alpha(t) = alpha(g(t)) of `Duality` with g(t) = log_snr_min + t (log_snr_max - log_snr_min): the
    uniform-noise levels of a window of Gaussian levels, t in [0, 1] (DUO's curriculum window; its
    LM1B scripts: g in [-3.5, -1.75])."""

    def __init__(self, vocab_size: int, log_snr_min: float, log_snr_max: float):
        if not log_snr_min < log_snr_max:
            raise ValueError(f"the log-SNR window needs log_snr_min < log_snr_max, got [{log_snr_min}, {log_snr_max}]")
        self.vocab_size, self.log_snr_min, self.log_snr_max = vocab_size, log_snr_min, log_snr_max

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return self.log_snr_min + t * (self.log_snr_max - self.log_snr_min)

    def alpha(self, t):
        return duality(self.vocab_size).alpha(self.log_snr(t.double())).to(t.dtype)

    def dalpha(self, t):
        width = self.log_snr_max - self.log_snr_min
        return (duality(self.vocab_size).dalpha(self.log_snr(t.double())) * width).to(t.dtype)


def gaussian_latent(x0: torch.Tensor, log_snr: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """w = a onehot(x0) + s eps (B, L, K) for tokens x0 (B, L), log-SNRs g (B,) and noise eps
    (B, L, K), with a = sqrt(sigmoid(-g)), s = sqrt(sigmoid(g))."""
    g = log_snr.float()[:, None, None]
    w = eps * torch.sigmoid(g).sqrt()
    return w.scatter_add_(-1, x0[..., None], torch.sigmoid(-g).sqrt().expand(*x0.shape, 1))


def relaxed_latent(x0: torch.Tensor, log_snr: torch.Tensor, vocab_size: int, tau: float,
                   generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (B, L), relaxation (B, L, K)) for tokens x0 (B, L) at log-SNRs (B,): z = argmax(w), uniform
    noise of x0 at alpha = alpha(g), and the tempered relaxation softmax(w / tau) (-> onehot(z) as
    tau -> 0) of one Gaussian latent w (`gaussian_latent`)."""
    w = gaussian_latent(x0, log_snr, torch.randn(*x0.shape, vocab_size, device=x0.device, generator=generator))
    return w.argmax(dim=-1), w.div_(tau).softmax(dim=-1)


def gaussian_trajectory(x0: torch.Tensor, log_snr_t: torch.Tensor, log_snr_s: torch.Tensor, vocab_size: int,
                        generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_t, z_s) (B, L): argmax of the Gaussian latents of x0 at log-SNRs (B,) g_t and g_s with ONE
    eps: two points of the deterministic Gaussian trajectory of x0 (DUO's discrete consistency
    distillation). Each is uniform noise of x0 at its alpha; for g_s < g_t, z_s is the less noisy one."""
    eps = torch.randn(*x0.shape, vocab_size, device=x0.device, generator=generator)
    return gaussian_latent(x0, log_snr_t, eps).argmax(dim=-1), gaussian_latent(x0, log_snr_s, eps).argmax(dim=-1)


@dataclass(frozen=True)
class Relaxation:
    """The curriculum's input: the network reads `relaxed_latent`'s tempered softmax at the levels
    of `schedule` (its window), and the loss is the uniform-noise NELBO at z = argmax(w)."""

    schedule: DualitySchedule
    tau: float

    def __post_init__(self):
        if not self.tau > 0:
            raise ValueError(f"training.curriculum.tau must be > 0, got {self.tau}")

    def latent(self, x0: torch.Tensor, t: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, relaxation) at times t (B,) of the window."""
        return relaxed_latent(x0, self.schedule.log_snr(t), self.schedule.vocab_size, self.tau, generator)
