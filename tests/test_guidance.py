"""Guidance against an oracle: exact denoisers and classifiers of a toy problem small enough to
enumerate, so D-CFG and D-CBG with gamma = 1 must sample p(x0 | y) and with gamma = 0 p(x0)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from discdiff.guidance import CBG, CFG, Step
from discdiff.processes import AbsorbingProcess, UniformProcess
from discdiff.sampling import sample
from discdiff.schedules import LogLinear

V_DATA, L, TARGET, NULL = 3, 2, 1, 2
CHI2_DF8_P001 = 26.12  # chi-square quantile: P(chi2_8 > 26.12) = 0.001


class Toy:
    """p(x0) over the 9 sequences of V^L and p(y = 1 | x0); exact posteriors by enumeration."""

    def __init__(self, process):
        g = torch.Generator().manual_seed(0)
        self.process = process
        self.x0 = torch.tensor(list(itertools.product(range(V_DATA), repeat=L)))  # (9, L)
        self.prior = torch.rand(9, generator=g, dtype=torch.float64) + 0.2
        self.prior /= self.prior.sum()
        self.p_y = 0.05 + 0.9 * torch.rand(9, generator=g, dtype=torch.float64)  # p(y = 1 | x0)
        self.posterior_target = self.prior * self.p_y / (self.prior * self.p_y).sum()

    def q(self, alpha):
        """q(x_t = w | x0 = v) (B, V_DATA, V) per position for alphas (B,)."""
        v = self.process.vocab_size
        a = alpha.double()[:, None, None]
        if isinstance(self.process, AbsorbingProcess):
            eye = torch.eye(V_DATA, v, dtype=torch.float64)
            return a * eye + (1 - a) * F.one_hot(torch.tensor(self.process.mask_index), v).double()
        return a * torch.eye(v, dtype=torch.float64) + (1 - a) / v

    def likelihood(self, x, alpha):
        """q(x | x0_j) (B, 9) for sequences x (B, L)."""
        q = self.q(alpha)  # (B, V_DATA, V)
        per_pos = [q[:, self.x0[:, l], :].gather(2, x[:, l, None, None].expand(-1, 9, 1)).squeeze(2)
                   for l in range(L)]
        return per_pos[0] * per_pos[1]

    @property
    def states(self):
        """Every sequence x_t can be (V^L rows); the oracles are tables over them."""
        return torch.tensor(list(itertools.product(range(self.process.vocab_size), repeat=L)))

    def index(self, x):
        return x[:, 0] * self.process.vocab_size + x[:, 1]

    def denoiser_table(self, sigma, conditional: bool):
        """Exact prediction x~^l(v) ∝ p(x0^l = v | x_t) / q(x_t^l | x0^l = v) as logits, for every
        state at noise level sigma (a scalar): (V^L, L, V)."""
        states = self.states
        alpha = torch.exp(-sigma.double()).expand(states.shape[0])
        w = self.likelihood(states, alpha) * self.prior * (self.p_y if conditional else 1)
        w = w / w.sum(-1, keepdim=True)
        q = self.q(alpha)
        logits = torch.full((states.shape[0], L, self.process.vocab_size), float("-inf"), dtype=torch.float64)
        for l in range(L):
            marginal = w @ F.one_hot(self.x0[:, l], V_DATA).double()  # p(x0^l = v | x_t) (S, V_DATA)
            q_here = q.gather(2, states[:, l, None, None].expand(-1, V_DATA, 1)).squeeze(2)  # q(x_t^l | v)
            logits[:, l, :V_DATA] = torch.log(marginal) - torch.log(q_here)
        return logits.nan_to_num(nan=float("-inf"))

    def denoiser(self, xt, sigma, cond=None):
        """Exact (B, L, V) logits; conditioned on y = 1 where cond == TARGET. One sigma per call."""
        idx = self.index(xt)
        logits = self.denoiser_table(sigma[0], conditional=False)[idx]
        if cond is not None:
            conditional = self.denoiser_table(sigma[0], conditional=True)[idx]
            logits = torch.where((cond == TARGET)[:, None, None], conditional, logits)
        return logits

    def classifier(self, x, sigma):
        """Exact noisy classifier log p(y | x) (B, 2) at noise level sigma (one per call);
        impossible x get probability 0 (log -inf), not NaN."""
        states = self.states
        w = self.likelihood(states, torch.exp(-sigma[0].double()).expand(states.shape[0])) * self.prior
        total = w.sum(-1)
        p1 = torch.where(total > 0, (w * self.p_y).sum(-1) / total.clamp_min(1e-300), torch.zeros_like(total))
        return torch.log(torch.stack([1 - p1, p1], -1))[self.index(x)]

    def histogram(self, tokens):
        index = tokens[:, 0] * V_DATA + tokens[:, 1]
        return torch.bincount(index, minlength=9).double()


def chi_square(counts, probs):
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


PROCESSES = {"absorbing": AbsorbingProcess(V_DATA + 1, mask_index=V_DATA), "uniform": UniformProcess(V_DATA)}


def draw(toy, guidance, n=20_000, steps=500):
    out = sample(toy.process, LogLinear(), toy.denoiser, (n, L), steps, guidance=guidance, float64=True,
                 generator=torch.Generator().manual_seed(1))
    assert not (out.tokens >= V_DATA).any(), "no mask survives the last step"
    return toy.histogram(out.tokens)


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("method", ["cbg", "cfg"])
def test_guidance_with_gamma_one_samples_the_conditional(name, method):
    toy = Toy(PROCESSES[name])
    make = {"cbg": lambda g: CBG(toy.classifier, g, TARGET), "cfg": lambda g: CFG(g, TARGET, NULL)}[method]
    assert chi_square(draw(toy, make(1.0)), toy.posterior_target) < CHI2_DF8_P001
    assert chi_square(draw(toy, make(0.0)), toy.prior) < CHI2_DF8_P001
    # the two targets are far apart, so the test can tell them apart
    assert chi_square(20_000 * toy.posterior_target, toy.prior) > 10 * CHI2_DF8_P001


@pytest.mark.parametrize("name", PROCESSES)
def test_larger_gamma_hits_the_target_more_often(name):
    toy = Toy(PROCESSES[name])
    hit = lambda counts: float((counts * toy.p_y).sum() / counts.sum())
    rates = [hit(draw(toy, CBG(toy.classifier, g, TARGET), n=4000, steps=100)) for g in (0.0, 1.0, 4.0)]
    assert rates[0] < rates[1] < rates[2]
    rates = [hit(draw(toy, CFG(g, TARGET, NULL), n=4000, steps=100)) for g in (0.0, 1.0, 4.0)]
    assert rates[0] < rates[1] < rates[2]


def _step(process, xt, denoiser, t=0.6, s=0.5):
    schedule, b = LogLinear(), xt.shape[0]
    t, s = torch.full((b,), t), torch.full((b,), s)
    return Step(process, denoiser, xt, schedule.alpha(t), schedule.alpha(s), schedule.sigma(t), schedule.sigma(s))


@pytest.mark.parametrize("name", PROCESSES)
def test_first_order_cbg_equals_exact_for_a_linear_classifier(name):
    process = PROCESSES[name]
    v, length = process.vocab_size, 5
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(2, length, v, generator=g)

    def linear_classifier(x, sigma):  # log-scores linear in the one-hot input
        onehot = x if x.is_floating_point() else F.one_hot(x, v).float()
        return torch.einsum("blv,clv->bc", onehot, weights) * (1 + sigma[:, None])

    table = torch.randn(v, v, generator=g)
    denoiser = lambda xt, sigma, cond=None: table[xt]
    xt = process.sample_xt(torch.randint(0, V_DATA, (8, length), generator=g), torch.full((8,), 0.5),
                           torch.Generator().manual_seed(1))
    exact = CBG(linear_classifier, 2.0, 1).log_probs(_step(process, xt, denoiser))
    taylor = CBG(linear_classifier, 2.0, 1, first_order=True).log_probs(_step(process, xt, denoiser))
    finite = torch.isfinite(exact)
    assert torch.equal(finite, torch.isfinite(taylor))
    assert torch.allclose(exact[finite], taylor[finite], atol=1e-5)


def test_exact_cbg_chunking_does_not_change_scores():
    process = PROCESSES["uniform"]
    toy = Toy(process)
    xt = torch.randint(0, V_DATA, (16, L), generator=torch.Generator().manual_seed(0))
    small = CBG(toy.classifier, 1.5, TARGET, max_candidates=3).log_probs(_step(process, xt, toy.denoiser))
    large = CBG(toy.classifier, 1.5, TARGET).log_probs(_step(process, xt, toy.denoiser))
    assert torch.allclose(small, large)


def test_batched_cfg_equals_two_separate_passes():
    from discdiff.models import build_backbone

    torch.manual_seed(0)
    process = PROCESSES["uniform"]
    net = build_backbone("micro", process.vocab_size, 6, num_classes=2, dropout=0.0).eval()
    for p in net.parameters():  # leave the adaLN-zero initialisation so the output depends on the input
        torch.nn.init.normal_(p, std=0.2)
    xt = torch.randint(0, process.vocab_size, (4, 6))
    step = _step(process, xt, net)
    batched = CFG(2.5, 1, NULL).log_probs(step)
    assert step.nfe == 1
    with torch.no_grad():
        cond = step.log_posterior(process.predict_x0(net(xt, step.sigma_t, torch.full((4,), 1)), xt))
        uncond = step.log_posterior(process.predict_x0(net(xt, step.sigma_t, torch.full((4,), NULL)), xt))
    separate = (2.5 * cond - 1.5 * uncond).log_softmax(-1)
    assert torch.allclose(batched, separate, atol=1e-5)
