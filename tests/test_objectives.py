"""NELBOs by exact enumeration of V^L: discrete-time (T steps) converges to continuous-time, and
the Monte Carlo objective functions are unbiased estimates of the brute-force terms."""

from __future__ import annotations

import math

import pytest
import torch

from discdiff import objectives as O
from discdiff.processes import AbsorbingProcess, UniformProcess
from discdiff.schedules import get_schedule

try:
    from . import bruteforce as bf
except ImportError:
    import bruteforce as bf

DT = torch.float64

# (process kind, V, mask index, L, x0, schedule name, schedule kwargs)
NELBO_CASES = [
    ("absorbing", 4, 3, 3, [0, 2, 1], "loglinear", dict(eps=0.0)),
    ("absorbing", 4, 3, 3, [0, 2, 1], "cosine", dict(eps=0.0)),
    ("absorbing", 5, 0, 2, [3, 1], "cosine_squared", dict(eps=0.0)),
    ("uniform", 4, None, 3, [0, 2, 1], "loglinear", dict(eps=1e-3)),
    ("uniform", 4, None, 3, [3, 3, 1], "cosine", dict(eps=1e-3)),
    ("uniform", 5, None, 2, [4, 1], "cosine_squared", dict(eps=1e-3)),
    # alpha(0) < 1: a non-zero reconstruction term (absorbing: alpha(1) = e^-25, prior taken as 0)
    ("absorbing", 4, 1, 3, [0, 2, 3], "linear", dict(sigma_min=0.05, sigma_max=25.0)),
    ("uniform", 3, None, 3, [2, 0, 1], "linear", dict(sigma_min=0.05, sigma_max=7.0)),
]
NIDS = [f"{c[0]}-V{c[1]}-L{c[3]}-{c[5]}" for c in NELBO_CASES]


def _setup(kind, V, mask, L, x0, sched_name, kw, seed=0):
    if kind == "absorbing":
        process, proc = AbsorbingProcess(V, mask), bf.BFProcess("absorbing", V, mask)
    else:
        process, proc = UniformProcess(V), bf.BFProcess("uniform", V)
    schedule = get_schedule(sched_name, **kw)
    denoiser = bf.TableDenoiser(V, L, seed=seed)
    return process, proc, schedule, denoiser, torch.tensor(x0, dtype=torch.long)


def _grid(schedule, T):
    t = torch.arange(T + 1, dtype=DT) / T
    return schedule.alpha(t).to(DT), schedule.sigma(t).to(DT)


def _prior(proc, x0, schedule):
    a1 = float(schedule.alpha(torch.ones((), dtype=DT)))
    if proc.kind == "absorbing":
        # the true KL is finite only when alpha(1) = 0 exactly (test_schedules checks Cosine(eps=0)
        # reaches it); here a negligible alpha(1) (cos(pi / 2) = 6e-17, e^-25) counts as 0, like
        # the implementation's documented convention.
        assert a1 < 1e-10
        a1 = 0.0
    return bf.prior_kl(proc, x0, a1)


_CACHE: dict = {}


def _bruteforce_nelbo(case):
    """R, prior, the reference continuous diffusion term and the discrete diffusion sums, cached."""
    if case not in _CACHE:
        kind, V, mask, L, x0, sched_name, kw = case
        process, proc, schedule, denoiser, x0 = _setup(kind, V, mask, L, list(x0), sched_name, dict(kw))
        a0 = float(schedule.alpha(torch.zeros((), dtype=DT)))
        s0 = float(schedule.sigma(torch.zeros((), dtype=DT)))
        out = dict(R=bf.reconstruction(proc, x0, a0, s0, denoiser), prior=_prior(proc, x0, schedule))
        # t = u^3 substitution: exact to ~1e-12 here (checked against 128 and 512 nodes)
        out["cont_ref"] = bf.continuous_diffusion(proc, x0, schedule, denoiser, bf.reference_integrand(proc), 256, 3)
        for T in (10, 100, 1000):
            alphas, sigmas = _grid(schedule, T)
            out[T] = float(bf.discrete_terms(proc, x0, alphas, sigmas, denoiser).sum())
        _CACHE[case] = out
    return _CACHE[case]


def _key(case):
    kind, V, mask, L, x0, sched_name, kw = case
    return (kind, V, mask, L, tuple(x0), sched_name, tuple(sorted(kw.items())))


def _check_gaps(bfn, cont_diffusion):
    cont = bfn["R"] + cont_diffusion + bfn["prior"]
    assert math.isfinite(cont) and cont > 0
    gaps = {T: abs(bfn["R"] + bfn[T] + bfn["prior"] - cont) / cont for T in (10, 100, 1000)}
    assert gaps[1000] < 0.01, gaps
    assert gaps[10] > gaps[100] > gaps[1000], gaps
    return gaps


@pytest.mark.parametrize("case", NELBO_CASES, ids=NIDS)
def test_discrete_nelbo_converges_to_continuous_reference_integrand(case):
    """Pure brute force: the T-step D3PM NELBO (Bayes with explicit matrices, enumeration of V^L)
    tends to the continuous NELBO built from the closed-form integrand as T grows."""
    bfn = _bruteforce_nelbo(_key(case))
    gaps = _check_gaps(bfn, bfn["cont_ref"])
    # in the asymptotic regime the discrete sum converges at rate ~ 1/T
    assert gaps[1000] < 0.2 * gaps[100], gaps


@pytest.mark.parametrize("case", NELBO_CASES, ids=NIDS)
def test_discrete_nelbo_converges_to_continuous_implementation_integrand(case):
    """Continuous NELBO with process.predict_x0 + process.nelbo_integrand as the integrand
    (256-point Gauss-Legendre in t, exact expectation over V^L) vs the brute-force discrete NELBO."""
    kind, V, mask, L, x0, sched_name, kw = case
    process, proc, schedule, denoiser, x0t = _setup(*case)
    bfn = _bruteforce_nelbo(_key(case))
    impl = bf.continuous_diffusion(proc, x0t, schedule, denoiser, bf.integrand_under_test(process, proc), 256, 1)
    ref_same_nodes = bf.continuous_diffusion(proc, x0t, schedule, denoiser, bf.reference_integrand(proc), 256, 1)
    assert math.isfinite(impl), "nelbo_integrand returned non-finite values at some quadrature node"
    # the implementation computes in float32: agree with the float64 closed form to 1e-4
    assert abs(impl - ref_same_nodes) <= 1e-4 * abs(ref_same_nodes), (impl, ref_same_nodes)
    _check_gaps(bfn, impl)


SCHEDULE_FAMILY = [
    ("loglinear", dict(eps=0.0)),
    ("cosine", dict(eps=0.0)),
    ("cosine_squared", dict(eps=0.0)),
    ("polynomial", dict(exponent=2.0, eps=0.0)),
    ("polynomial", dict(exponent=0.5, eps=0.0)),
]


@pytest.mark.parametrize("kind,eps", [("absorbing", 0.0), ("uniform", 1e-3)])
def test_continuous_nelbo_is_schedule_invariant(kind, eps):
    """The continuous-time NELBO depends on the schedule only through alpha(0) and alpha(1) when the
    denoiser sees sigma (change of variables t -> alpha). All schedules below share alpha(0) = 1 and
    alpha(1) = eps, so the diffusion integrals must coincide. Checks dalpha and the integrand together."""
    V, L, x0 = 4, 3, [1, 0, 2]
    mask = 3 if kind == "absorbing" else None
    vals = {}
    for name, kw in SCHEDULE_FAMILY:
        kw = dict(kw, eps=eps)
        process, proc, schedule, denoiser, x0t = _setup(kind, V, mask, L, x0, name, kw, seed=5)
        ref = bf.continuous_diffusion(proc, x0t, schedule, denoiser, bf.reference_integrand(proc), 256, 3)
        vals[(name, kw.get("exponent"))] = ref
    first = next(iter(vals.values()))
    for k, v in vals.items():
        assert abs(v - first) <= 1e-6 * first, vals


@pytest.mark.parametrize("kind,V,mask,L,x0,sched_name,kw", NELBO_CASES[:2] + NELBO_CASES[3:5], ids=NIDS[:2] + NIDS[3:5])
def test_discrete_nelbo_terms_unbiased(kind, V, mask, L, x0, sched_name, kw):
    """discrete_nelbo_terms at every i in 1..T, averaged over many x_t, vs the enumerated terms."""
    process, proc, schedule, denoiser, x0 = _setup(kind, V, mask, L, x0, sched_name, kw, seed=1)
    T, n = 10, 4000
    alphas, sigmas = _grid(schedule, T)
    want = bf.discrete_terms(proc, x0, alphas, sigmas, denoiser)  # (T,)
    i = torch.arange(1, T + 1).repeat_interleave(n)
    torch.manual_seed(123)
    got, _ = O.discrete_nelbo_terms(process, schedule, O.logits_denoiser(denoiser), x0.expand(T * n, L).contiguous(), T, i)
    assert got.shape == (T * n,)
    got = got.to(DT).reshape(T, n)
    assert torch.all(torch.isfinite(got)) and torch.all(got >= -1e-5)
    mean, se = got.mean(1), got.std(1) / math.sqrt(n)
    tol = 5 * se + 1e-4 * want.abs() + 1e-7
    assert torch.all((mean - want).abs() <= tol), torch.stack([mean, want, tol])
    # the sum over steps, too
    assert abs(mean.sum() - want.sum()) <= 5 * math.sqrt((se**2).sum()) + 1e-4 * want.sum()


@pytest.mark.parametrize("kind,V,mask,L,x0,sched_name,kw", NELBO_CASES[:2] + NELBO_CASES[3:5], ids=NIDS[:2] + NIDS[3:5])
def test_continuous_nelbo_terms_unbiased(kind, V, mask, L, x0, sched_name, kw):
    """E over x_t of `diffusion` at fixed t equals the enumerated expectation of the reference integrand."""
    process, proc, schedule, denoiser, x0 = _setup(kind, V, mask, L, x0, sched_name, kw, seed=2)
    ts = torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=DT)
    n = 5000
    want = bf.expected_integrand(
        proc, x0, schedule.alpha(ts), schedule.dalpha(ts), schedule.sigma(ts), denoiser, bf.reference_integrand(proc)
    )
    t = ts.repeat_interleave(n).float()
    torch.manual_seed(321)
    x0s = x0.expand(t.numel(), L).contiguous()
    out = O.continuous_nelbo_terms(process, schedule, O.logits_denoiser(denoiser), x0s, t)
    out["recon"] = O.reconstruction_nll(process, schedule, O.logits_denoiser(denoiser), x0s)[0]
    out["prior"] = O.prior_term(process, schedule, x0s)
    for key in ("diffusion", "recon", "prior"):
        assert out[key].shape == (t.numel(),), key
    d = out["diffusion"].to(DT).reshape(len(ts), n)
    assert torch.all(torch.isfinite(d)) and torch.all(d >= -1e-5)
    mean, se = d.mean(1), d.std(1) / math.sqrt(n)
    tol = 5 * se + 1e-4 * want.abs() + 1e-7
    assert torch.all((mean - want).abs() <= tol), torch.stack([mean, want, tol])
    # alpha(0) = 1 for these schedules, so the reconstruction term vanishes
    assert torch.all(out["recon"] == 0)
    torch.testing.assert_close(
        out["prior"].to(DT), torch.full((t.numel(),), _prior(proc, x0, schedule), dtype=DT), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind,V,mask,L,x0", [("absorbing", 4, 3, 3, [0, 2, 1]), ("uniform", 4, None, 3, [3, 0, 0])])
def test_reconstruction_nll_unbiased(kind, V, mask, L, x0):
    """With alpha(0) < 1 (Linear, sigma_min = 0.3) the reconstruction term is a real expectation."""
    process, proc, schedule, denoiser, x0 = _setup(kind, V, mask, L, x0, "linear", dict(sigma_min=0.3, sigma_max=6.0), seed=3)
    a0 = float(schedule.alpha(torch.zeros((), dtype=DT)))
    assert abs(a0 - math.exp(-0.3)) < 1e-12
    want = bf.reconstruction(proc, x0, a0, 0.3, denoiser)
    n = 20000
    torch.manual_seed(7)
    got = O.reconstruction_nll(process, schedule, O.logits_denoiser(denoiser), x0.expand(n, L).contiguous())[0].to(DT)
    assert got.shape == (n,)
    mean, se = got.mean().item(), got.std().item() / math.sqrt(n)
    assert abs(mean - want) <= 5 * se + 1e-4 * want, (mean, want, se)


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_reconstruction_nll_zero_when_alpha0_is_one(kind):
    process, proc, schedule, denoiser, x0 = _setup(kind, 4, 3 if kind == "absorbing" else None, 3, [0, 1, 2], "loglinear", dict(eps=0.0))
    got, loss = O.reconstruction_nll(process, schedule, O.logits_denoiser(denoiser), x0.expand(5, 3).contiguous())
    assert got.shape == (5,) and torch.all(got == 0) and loss == 0
    assert bf.reconstruction(proc, x0, 1.0, 0.0, denoiser) == 0.0


def test_denoiser_receives_sigma_of_t():
    """The objective conditions the denoiser on sigma = schedule.sigma(t), shape (B,)."""
    process, proc, schedule, _, x0 = _setup("uniform", 4, None, 2, [1, 2], "cosine", dict(eps=1e-3))
    seen = []

    def denoiser(xt, sigma, cond=None):
        seen.append(sigma.detach().clone())
        return torch.zeros(*xt.shape, 4)

    t = torch.tensor([0.1, 0.5, 0.9])
    O.continuous_nelbo_terms(process, schedule, O.logits_denoiser(denoiser), x0.expand(3, 2).contiguous(), t)
    assert any(s.shape == (3,) and torch.allclose(s.double(), schedule.sigma(t.double()), rtol=1e-5) for s in seen)


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_training_terms_equal_the_predict_x0_path(kind):
    """`training_terms` (what the loss reads; MDLM's skips the (B, L, V) log-softmax) gives the
    integrand and log x_theta(x0) of predict_x0 + nelbo_integrand, values and gradients."""
    from discdiff.processes.base import DiscreteProcess

    V, L, B = 7, 5, 6
    process = AbsorbingProcess(V, V - 1) if kind == "absorbing" else UniformProcess(V)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(V - 1, (B, L), generator=g)
    alpha = torch.rand(B, generator=g).to(torch.float64)
    xt = process.sample_xt(x0, alpha, g)
    dalpha = -torch.ones(B, dtype=torch.float64)
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64, requires_grad=True)
    fast = process.training_terms(logits, x0, xt, alpha, dalpha)
    slow = DiscreteProcess.training_terms(process, logits, x0, xt, alpha, dalpha)
    for a, b in zip(fast, slow):
        assert torch.allclose(a.double(), b.double(), atol=1e-6), (a, b)
    grad_fast, = torch.autograd.grad(fast[0].sum(), logits)
    grad_slow, = torch.autograd.grad(slow[0].sum(), logits)
    assert torch.allclose(grad_fast.double(), grad_slow.double(), atol=1e-6)
