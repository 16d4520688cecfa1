"""Forward processes against brute-force Bayes with explicit V x V matrices."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from discdiff.processes import AbsorbingProcess, UniformProcess
from discdiff.processes.base import cross_entropy_

try:
    from . import bruteforce as bf
except ImportError:
    import bruteforce as bf

DT = torch.float64


def make(kind, V, mask=None):
    if kind == "absorbing":
        return AbsorbingProcess(V, mask), bf.BFProcess("absorbing", V, mask)
    return UniformProcess(V), bf.BFProcess("uniform", V)


PROCS = [("absorbing", 5, 4), ("absorbing", 4, 0), ("uniform", 5, None), ("uniform", 3, None)]
PIDS = [f"{k}-V{V}-m{m}" for k, V, m in PROCS]


def _alphas(B, g):
    """alpha_s > alpha_t, with some alpha_s = 1 exactly and some alpha_t = 0 exactly."""
    a_s = 0.05 + 0.95 * torch.rand(B, generator=g, dtype=DT)
    a_s[: B // 4] = 1.0
    a_t = a_s * torch.rand(B, generator=g, dtype=DT) * 0.999
    a_t[B // 4 : B // 4 + B // 8] = 0.0
    return a_s, a_t


def _random_probs(B, L, V, g, zero=None):
    x = torch.softmax(2.0 * torch.randn(B, L, V, generator=g, dtype=DT), -1)
    if zero is not None:
        x[..., zero] = 0
        x = x / x.sum(-1, keepdim=True)
    return x


def _sample_bf(proc, x0, alpha, g):
    """x_t ~ q(.|x0, alpha) with the brute-force matrices (alpha (B,))."""
    Q = proc.Q(alpha)  # (B, V, V)
    rows = torch.gather(Q, 1, x0[..., None].expand(*x0.shape, proc.V))  # (B, L, V)
    return torch.multinomial(rows.reshape(-1, proc.V), 1, generator=g).reshape(x0.shape)


def _check_posterior(process, proc, x, xt, a_s, a_t, shape_kind="B11"):
    B, L = xt.shape
    if shape_kind == "B11":
        as_, at_ = a_s[:, None, None], a_t[:, None, None]
    else:  # (B, L, 1)
        as_, at_ = a_s[:, None, None].expand(B, L, 1), a_t[:, None, None].expand(B, L, 1)
    got = process.posterior(x, xt, as_, at_)
    assert got.shape == (B, L, proc.V)
    xp = F.one_hot(x, proc.V).to(DT) if x.dtype == torch.long else x
    want, ev = bf.posterior(proc, xp, xt, a_s[:, None], a_t[:, None])
    ok = ev > 1e-12
    assert ok.float().mean() > 0.3, "test should exercise mostly well-defined positions"
    got = got.to(DT)
    torch.testing.assert_close(got[ok], want[ok], rtol=1e-5, atol=1e-5)
    assert torch.all(got[ok] >= -1e-12)
    torch.testing.assert_close(got[ok].sum(-1), torch.ones_like(got[ok].sum(-1)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind,V,mask", PROCS, ids=PIDS)
@pytest.mark.parametrize("shape_kind", ["B11", "BL1"])
def test_posterior_ids_vs_bayes(kind, V, mask, shape_kind):
    process, proc = make(kind, V, mask)
    g = torch.Generator().manual_seed(1)
    B, L = 256, 3
    real = [v for v in range(V) if v != mask]
    x0 = torch.tensor(real)[torch.randint(len(real), (B, L), generator=g)]
    a_s, a_t = _alphas(B, g)
    # half the x_t consistent with x0 (sampled from q(x_t|x0)), half arbitrary (undefined ones skipped)
    xt = _sample_bf(proc, x0, a_t, g)
    xt[B // 2 :] = torch.randint(V, (B - B // 2, L), generator=g)
    _check_posterior(process, proc, x0, xt, a_s, a_t, shape_kind)


@pytest.mark.parametrize("kind,V,mask", PROCS, ids=PIDS)
@pytest.mark.parametrize("shape_kind", ["B11", "BL1"])
def test_posterior_probs_vs_bayes(kind, V, mask, shape_kind):
    """x as a model prediction; for absorbing, with no mass on the mask (what SUBS produces)."""
    process, proc = make(kind, V, mask)
    g = torch.Generator().manual_seed(2)
    B, L = 256, 3
    x = _random_probs(B, L, V, g, zero=mask)
    a_s, a_t = _alphas(B, g)
    xt = torch.randint(V, (B, L), generator=g)
    _check_posterior(process, proc, x, xt, a_s, a_t, shape_kind)


@pytest.mark.parametrize("V,mask", [(5, 4), (4, 1)])
def test_absorbing_posterior_probs_with_mask_mass(V, mask):
    """The D3PM convention for a general x, including x(mask) > 0."""
    process, proc = make("absorbing", V, mask)
    g = torch.Generator().manual_seed(3)
    B, L = 128, 3
    x = _random_probs(B, L, V, g)
    a_s, a_t = _alphas(B, g)
    xt = torch.randint(V, (B, L), generator=g)
    _check_posterior(process, proc, x, xt, a_s, a_t)


def test_posterior_alpha_s_one_is_bayes_over_x0():
    """alpha_s = 1: q(x_0 = w | x_t = z, x) = x(w) q(z | w) / sum_v x(v) q(z | v), hand-written."""
    g = torch.Generator().manual_seed(4)
    V, L, B = 4, 2, 64
    x = _random_probs(B, L, V, g)
    xt = torch.randint(V, (B, L), generator=g)
    a = 0.3
    qz = torch.where(F.one_hot(xt, V).bool(), a + (1 - a) / V, (1 - a) / V)  # q(z|w) for each w
    want = x * qz
    want = want / want.sum(-1, keepdim=True)
    got = UniformProcess(V).posterior(x, xt, torch.ones(B, 1, 1, dtype=DT), torch.full((B, 1, 1), a, dtype=DT))
    torch.testing.assert_close(got.to(DT), want, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape_kind", ["B11", "BL1"])
def test_absorbing_sample_xt_marginals(shape_kind):
    V, m = 6, 5
    process = AbsorbingProcess(V, m)
    g = torch.Generator().manual_seed(5)
    if shape_kind == "B11":
        alphas = torch.tensor([0.0, 0.1, 0.37, 0.5, 0.9, 1.0], dtype=DT)
        B, L = alphas.numel(), 20000
        alpha = alphas[:, None, None]
    else:
        B, L = 20000, 6
        alphas = torch.tensor([0.0, 0.1, 0.37, 0.5, 0.9, 1.0], dtype=DT)
        alpha = alphas[None, :, None].expand(B, L, 1)
    x0 = torch.randint(V - 1, (B, L), generator=g)
    xt = process.sample_xt(x0, alpha, generator=g)
    assert xt.shape == x0.shape and xt.dtype == torch.long
    kept = xt == x0
    # every position is either kept or masked
    assert torch.all(kept | (xt == m))
    frac = kept.double().mean(1 if shape_kind == "B11" else 0)
    n = L if shape_kind == "B11" else B
    for a, f in zip(alphas.tolist(), frac.tolist()):
        assert abs(f - a) <= 5 * bf.binomial_sigma(a, n) + 1e-12, (a, f)
    # same seed, same draw
    again = process.sample_xt(x0, alpha, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(
        again, process.sample_xt(x0, alpha, generator=torch.Generator().manual_seed(5)), rtol=0, atol=0
    )


@pytest.mark.parametrize("shape_kind", ["B11", "BL1"])
def test_uniform_sample_xt_marginals(shape_kind):
    V = 5
    process = UniformProcess(V)
    g = torch.Generator().manual_seed(6)
    alphas = torch.tensor([0.0, 0.2, 0.5, 0.8, 1.0], dtype=DT)
    if shape_kind == "B11":
        B, L = alphas.numel(), 40000
        alpha = alphas[:, None, None]
    else:
        B, L = 40000, alphas.numel()
        alpha = alphas[None, :, None].expand(B, L, 1)
    x0 = torch.randint(V, (B, L), generator=g)
    xt = process.sample_xt(x0, alpha, generator=g)
    assert xt.shape == x0.shape and xt.dtype == torch.long
    offset = (xt - x0) % V  # 0: same token; k: shifted by k -- each k != 0 has prob (1 - a) / V
    dim = 1 if shape_kind == "B11" else 0
    n = L if shape_kind == "B11" else B
    for j, a in enumerate(alphas.tolist()):
        off = offset[j] if shape_kind == "B11" else offset[:, j]
        for k in range(V):
            p = a + (1 - a) / V if k == 0 else (1 - a) / V
            f = (off == k).double().mean().item()
            assert abs(f - p) <= 5 * bf.binomial_sigma(p, n) + 1e-12, (a, k, f, p)
    del dim


def test_sample_prior():
    V, m = 7, 2
    a = AbsorbingProcess(V, m).sample_prior((3, 11))
    assert a.shape == (3, 11) and a.dtype == torch.long and torch.all(a == m)
    u = UniformProcess(V).sample_prior((400, 250), generator=torch.Generator().manual_seed(7))
    assert u.shape == (400, 250) and u.dtype == torch.long
    n = u.numel()
    counts = torch.bincount(u.reshape(-1), minlength=V).double() / n
    assert counts.numel() == V
    for f in counts.tolist():
        assert abs(f - 1 / V) <= 5 * bf.binomial_sigma(1 / V, n)
    # reproducible with a generator
    u2 = UniformProcess(V).sample_prior((400, 250), generator=torch.Generator().manual_seed(7))
    assert torch.equal(u, u2)


# ---------------------------------------------------------------------------------------------
# Parameterisation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("V,m", [(6, 5), (6, 0), (3, 1)])
def test_absorbing_predict_x0_subs(V, m):
    process = AbsorbingProcess(V, m)
    g = torch.Generator().manual_seed(8)
    B, L = 16, 9
    logits = 3 * torch.randn(B, L, V, generator=g, dtype=DT)
    logits_copy = logits.clone()
    xt = torch.randint(V, (B, L), generator=g)
    xt[:, ::2] = m  # plenty of masks
    out = process.predict_x0(logits, xt)
    assert out.shape == (B, L, V)
    torch.testing.assert_close(logits, logits_copy, rtol=0, atol=0)  # not modified in place
    p = out.exp().to(DT)
    assert not torch.isnan(out).any()
    assert torch.all(p[..., m] == 0), "mask token must get probability 0"
    torch.testing.assert_close(p.sum(-1), torch.ones(B, L, dtype=DT), rtol=0, atol=1e-6)
    unmasked = xt != m
    torch.testing.assert_close(p[unmasked], F.one_hot(xt[unmasked], V).to(DT), rtol=0, atol=0)
    want = bf.BFProcess("absorbing", V, m).x_theta(logits, xt)
    torch.testing.assert_close(p, want, rtol=1e-5, atol=1e-6)


def test_uniform_predict_x0_is_log_softmax():
    V = 5
    g = torch.Generator().manual_seed(9)
    logits = 3 * torch.randn(4, 7, V, generator=g, dtype=DT)
    xt = torch.randint(V, (4, 7), generator=g)
    out = UniformProcess(V).predict_x0(logits, xt)
    torch.testing.assert_close(out.to(DT), torch.log_softmax(logits, -1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.exp().sum(-1).to(DT), torch.ones(4, 7, dtype=DT), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Integrand and prior KL against own closed forms (the NELBO tests check the forms themselves)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,V,mask", PROCS, ids=PIDS)
def test_nelbo_integrand_matches_reference(kind, V, mask):
    process, proc = make(kind, V, mask)
    g = torch.Generator().manual_seed(10)
    B, L = 512, 3
    real = [v for v in range(V) if v != mask]
    x0 = torch.tensor(real)[torch.randint(len(real), (B, L), generator=g)]
    alpha = 0.02 + 0.96 * torch.rand(B, generator=g, dtype=DT)
    dalpha = -(0.1 + 2 * torch.rand(B, generator=g, dtype=DT))
    xt = _sample_bf(proc, x0, alpha, g)
    logits = 2 * torch.randn(B, L, V, generator=g, dtype=DT)
    got = process.nelbo_integrand(process.predict_x0(logits, xt), x0, xt, alpha[:, None, None], dalpha[:, None, None])
    assert got.shape == (B, L)
    want = bf.reference_integrand(proc)(x0, xt, alpha, dalpha, logits)
    torch.testing.assert_close(got.to(DT), want, rtol=2e-4, atol=2e-5)
    assert torch.all(want >= -1e-9), "the integrand is a KL rate, non-negative"


@pytest.mark.parametrize("one_minus_alpha", [1e-9, 1e-8])
def test_uniform_integrand_finite_for_alpha_near_one(one_minus_alpha):
    """x_t != x0 has probability (1 - alpha) / V > 0, and its integrand is finite (large).
    Minimal case: V = 2, x0 = 0, x_t = 1, uniform x_theta, dalpha = -1, float64 inputs."""
    V = 2
    process, proc = make("uniform", V)
    x0, xt = torch.tensor([[0]]), torch.tensor([[1]])
    logits = torch.zeros(1, 1, V, dtype=DT)
    alpha = torch.tensor([1 - one_minus_alpha], dtype=DT)
    dalpha = torch.tensor([-1.0], dtype=DT)
    want = bf.reference_integrand(proc)(x0, xt, alpha, dalpha, logits)  # 2.04e10 for 1e-9 (mpmath: same to 3e-8)
    got = process.nelbo_integrand(process.predict_x0(logits, xt), x0, xt, alpha[:, None, None], dalpha[:, None, None])
    assert torch.isfinite(got).all(), (got, want)
    torch.testing.assert_close(got.to(DT), want, rtol=0.05, atol=0)


@pytest.mark.parametrize("V", [2, 5])
@pytest.mark.parametrize("alpha1", [0.0, 1e-3, 0.3])
def test_uniform_prior_kl_exact(V, alpha1):
    proc = bf.BFProcess("uniform", V)
    x0 = torch.randint(V, (3, 4), generator=torch.Generator().manual_seed(11))
    got = UniformProcess(V).prior_kl(x0, torch.full((3, 1, 1), alpha1, dtype=DT))
    assert got.shape == (3, 4)
    want = torch.tensor([[bf.prior_kl(proc, x0[b, l : l + 1], alpha1) for l in range(4)] for b in range(3)], dtype=DT)
    torch.testing.assert_close(got.to(DT), want, rtol=1e-5, atol=1e-7)


def test_absorbing_prior_kl_zero_at_alpha_zero():
    V, m = 5, 4
    x0 = torch.randint(V - 1, (3, 4), generator=torch.Generator().manual_seed(12))
    got = AbsorbingProcess(V, m).prior_kl(x0, torch.zeros(3, 1, 1, dtype=DT))
    assert got.shape == (3, 4)
    assert torch.all(got == 0)
    assert bf.prior_kl(bf.BFProcess("absorbing", V, m), x0[0], 0.0) == 0.0


# ---------------------------------------------------------------------------------------------
# reverse_step samples the posterior it claims to
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,V,mask", [("absorbing", 4, 3), ("uniform", 4, None)])
@pytest.mark.parametrize("a_s,a_t", [(0.7, 0.3), (1.0, 0.5), (0.2, 0.0)])
def test_reverse_step_distribution(kind, V, mask, a_s, a_t):
    process, proc = make(kind, V, mask)
    g = torch.Generator().manual_seed(13)
    L, n = 4, 30000
    x = _random_probs(1, L, V, g, zero=mask)  # one prediction per position
    xt = torch.randint(V, (1, L), generator=g)
    if kind == "absorbing":
        xt[0, :3] = mask
    want, ev = bf.posterior(proc, x[0], xt[0], torch.tensor(a_s), torch.tensor(a_t))
    log_x = torch.log(x).expand(n, L, V).contiguous()
    xs = process.reverse_step(
        log_x, xt.expand(n, L).contiguous(), torch.full((n, 1, 1), a_s, dtype=DT), torch.full((n, 1, 1), a_t, dtype=DT), generator=g
    )
    assert xs.shape == (n, L)
    for l in range(L):
        if ev[l] <= 0:
            continue
        freq = torch.bincount(xs[:, l], minlength=V).double() / n
        for w in range(V):
            p = want[l, w].item()
            assert abs(freq[w].item() - p) <= 5 * bf.binomial_sigma(p, n) + 1e-12, (l, w, freq[w].item(), p)


# ---------------------------------------------------------------------------------------------
# sample_tempered (the D-CFG step) samples the tempered posteriors, without building them
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,V,mask", [("absorbing", 4, 3), ("uniform", 4, None)])
@pytest.mark.parametrize("a_s,a_t", [(0.7, 0.3), (1.0, 0.5), (0.2, 0.0)])
@pytest.mark.parametrize("gamma", [0.5, 3.0])
def test_tempered_step_distribution(kind, V, mask, a_s, a_t, gamma):
    """Frequencies of the fast sampler against normalise(q_p^gamma q_q^(1 - gamma)), q_p and q_q the
    brute-force posteriors of the two labels' predictions (paper Sec. 3.1)."""
    from discdiff.processes.base import temper

    process, proc = make(kind, V, mask)
    g = torch.Generator().manual_seed(17)
    L, n = 4, 30000
    logits = 2 * torch.randn(2, 1, L, V, generator=g, dtype=DT)  # [target label, null label]
    xt = torch.randint(V, (1, L), generator=g)
    if kind == "absorbing":
        xt[0, :3], xt[0, 3] = mask, 0
    posteriors = []
    for label in range(2):
        x = process.predict_x0(logits[label], xt).exp()[0]
        want, ev = bf.posterior(proc, x, xt[0], torch.tensor(a_s, dtype=DT), torch.tensor(a_t, dtype=DT))
        posteriors.append(torch.log(want))
    possible = ev > 0  # alpha_t = 0 gives an unmasked x_t no probability: nothing to compare there
    want = temper(posteriors[0], posteriors[1], gamma).softmax(-1)
    alpha = [torch.full((n,), a, dtype=DT) for a in (a_s, a_t)]
    xs = process.sample_tempered(logits.expand(2, n, L, V), gamma, xt.expand(n, L).contiguous(), *alpha,
                                 generator=g, dtype=DT)
    assert xs.shape == (n, L)
    if kind == "absorbing":
        assert torch.equal(xs[:, 3], xt[0, 3].expand(n)), "an unmasked token must stay"
    for l in possible.nonzero().flatten().tolist():
        freq = torch.bincount(xs[:, l], minlength=V).double() / n
        for w in range(V):
            p = want[l, w].item()
            assert abs(freq[w].item() - p) <= 5 * bf.binomial_sigma(p, n) + 1e-12, (l, w, freq[w].item(), p)


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_generic_tempered_step_is_what_the_fast_one_replaces(kind):
    """The base class's sampler (both posteriors built) draws the same distribution as the
    override, checked on the marginal of one position."""
    from discdiff.processes.base import DiscreteProcess

    process, _ = make(kind, 5, 4 if kind == "absorbing" else None)
    g = torch.Generator().manual_seed(3)
    n = 40000
    logits = torch.randn(2, 1, 1, 5, generator=g).expand(2, n, 1, 5)
    xt = torch.full((n, 1), 4 if kind == "absorbing" else 1)
    a_s, a_t = torch.full((n,), 0.6), torch.full((n,), 0.2)
    fast = process.sample_tempered(logits, 2.0, xt, a_s, a_t, generator=g)
    generic = DiscreteProcess.sample_tempered(process, logits, 2.0, xt, a_s, a_t, generator=g)
    f, b = (torch.bincount(x[:, 0], minlength=5).double() / n for x in (fast, generic))
    assert torch.allclose(f, b, atol=0.015), (f, b)


@pytest.mark.parametrize("kind", ["uniform", "absorbing"])
def test_compiled_guided_step_draws_what_the_eager_step_draws(kind):
    """`compile_sampling` (the reductions and the redrawn rows' draw, the latter with dynamic row
    counts) leaves every D-CFG draw as the eager step makes it from the same random numbers, over
    steps that redraw different numbers of rows. The CPU runs the tracing backend (aot_eager);
    bench/gpu_suite.py runs inductor on the GPU."""
    V, B, L = 23, 4, 16
    make = (lambda: UniformProcess(V)) if kind == "uniform" else (lambda: AbsorbingProcess(V, V - 1))
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2, B, L, V, generator=g)
    xt = torch.randint(V - 1, (B, L), generator=g)
    if kind == "absorbing":
        xt = xt.masked_fill(torch.rand(B, L, generator=g) < 0.6, V - 1)
    eager, compiled = make(), make()
    compiled.compile_sampling(backend="aot_eager")
    for step, (s, t) in enumerate([(0.6, 0.4), (0.5, 0.45), (0.9, 0.2)]):
        draws = [p.sample_tempered(logits, 2.0, xt, torch.full((B,), s), torch.full((B,), t),
                                   torch.Generator().manual_seed(step)) for p in (eager, compiled)]
        assert torch.equal(*draws), step
        assert draws[0].ne(xt).any()


def test_cross_entropy_in_place_matches_autograd():
    """cross_entropy_ (the closed form the AR and MDLM chunks use) against F.cross_entropy and its
    autograd gradient, rows with -inf columns (the mask) and large logits included."""
    torch.manual_seed(0)
    x = torch.randn(6, 11) * 30
    x[:, 4] = float("-inf")
    targets = torch.tensor([0, 3, 10, 5, 1, 3])
    scale = torch.randn(6)
    ref = x.clone().requires_grad_()
    nll_ref = F.cross_entropy(ref, targets, reduction="none")
    (nll_ref * scale).sum().backward()
    nll, g = cross_entropy_(x, targets, scale)
    torch.testing.assert_close(nll, nll_ref.detach())
    torch.testing.assert_close(g, ref.grad)
    assert g.data_ptr() == x.data_ptr()  # written over its input: no second (n, V) buffer
