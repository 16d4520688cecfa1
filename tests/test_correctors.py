"""Predictor-corrector sampling (ReMDM, Psi), nucleus filtering, the greedy last step and
semi-autoregressive blocks, against exact oracles of toy problems."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from discdiff.guidance import CBG, CFG, NOS
from discdiff.lm import AutoregressiveLM
from discdiff.config import compose
from discdiff.loading import sampler_options
from discdiff.processes import AbsorbingProcess, UniformProcess
from discdiff.processes.base import nucleus
from discdiff.sampling import sample
from discdiff.step_schedules import Ancestral, Psi, ReMDM, step_schedule
from discdiff.schedules import LogLinear

try:
    from . import bruteforce as bf
    from . import test_guidance as oracle
    from .test_ar_sampling import causal_model
    from .test_guidance_ar import random_diffusion_lm
except ImportError:
    import bruteforce as bf
    import test_guidance as oracle
    from test_ar_sampling import causal_model
    from test_guidance_ar import random_diffusion_lm

V_DATA, TARGET, NULL = oracle.V_DATA, oracle.TARGET, oracle.NULL
PROCESSES = oracle.PROCESSES
CORRECTORS = {
    "psi": Psi(kappa=0.5, t_on=0.9, t_off=0.05),
    "remdm-loop": ReMDM("loop", eta=0.08, t_on=0.7, t_off=0.1, alpha_on=0.6),
    "remdm-cap": ReMDM("cap", eta=0.05),
    "remdm-rescale": ReMDM("rescale", eta=0.5),
}


class ProductToy(oracle.Toy):
    """The oracle toy with independent positions: p(x0) = p1(x0^1) p2(x0^2) and
    p(y = 1 | x0) = f1(x0^1) f2(x0^2), so p(x0 | y) is a product too. A factorised denoiser is then
    exact whatever number of tokens a step changes, and so must be every sampler, corrected or not."""

    def __init__(self, process):
        super().__init__(process)
        g = torch.Generator().manual_seed(3)
        p1, p2 = (torch.rand(V_DATA, generator=g, dtype=torch.float64) + 0.1 for _ in range(2))
        f1, f2 = (0.05 + 0.95 * torch.rand(V_DATA, generator=g, dtype=torch.float64) for _ in range(2))
        self.prior = torch.outer(p1 / p1.sum(), p2 / p2.sum()).flatten()
        self.p_y = torch.outer(f1, f2).flatten()
        self.posterior_target = self.prior * self.p_y / (self.prior * self.p_y).sum()


def draw(toy, corrector, guidance=None, n=20_000, steps=64):
    out = sample(toy.process, LogLinear(), toy.denoiser, (n, oracle.L), steps, guidance=guidance, float64=True,
                 corrector=corrector, generator=torch.Generator().manual_seed(1))
    assert not (out.tokens >= V_DATA).any(), "no mask survives the last step"
    return toy.histogram(out.tokens)


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("corrector", CORRECTORS)
def test_corrected_sampling_keeps_the_data_distribution(name, corrector):
    toy = ProductToy(PROCESSES[name])
    grid = CORRECTORS[corrector].grid(64, 1e-5, LogLinear())
    assert (grid.kappas < 1).sum() >= 10, "the corrector acts on many steps"
    assert oracle.chi_square(draw(toy, CORRECTORS[corrector]), toy.prior) < oracle.CHI2_DF8_P001


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("method", ["cfg", "cbg"])
def test_guided_corrected_sampling_with_gamma_one_samples_the_conditional(name, method):
    toy = ProductToy(PROCESSES[name])
    guidance = {"cfg": CFG(1.0, TARGET, NULL), "cbg": CBG(toy.classifier, 1.0, TARGET)}[method]
    counts = draw(toy, CORRECTORS["psi"], guidance, n=10_000, steps=32)
    assert oracle.chi_square(counts, toy.posterior_target) < oracle.CHI2_DF8_P001
    assert oracle.chi_square(10_000 * toy.posterior_target, toy.prior) > 10 * oracle.CHI2_DF8_P001


def _one_position_kernel(process, p0, alpha_t, alpha_s, kappa, clean_jump=True):
    """The corrected step's exact transition matrix K[x_t, x_s] (V, V) for one position whose
    data distribution is p0 (V_DATA,), with the oracle denoiser of that position, and p_t (V,)."""
    toy = oracle.Toy(process)
    q_t, q_s = toy.q(torch.tensor([alpha_t]))[0], toy.q(torch.tensor([alpha_s]))[0]  # (V_DATA, V)
    p_t = p0 @ q_t
    xt = torch.arange(process.vocab_size)[:, None]  # every state of the position, (V, 1)
    clean = p0[None, :] * q_t.T  # p(x0, x_t) (V, V_DATA)
    logits = torch.full((process.vocab_size, 1, process.vocab_size), float("-inf"), dtype=torch.float64)
    logits[:, 0, :V_DATA] = torch.log(clean / p_t[:, None]) - torch.log(q_t.T)  # x~ ∝ p(x0 | x_t) / q(x_t | x0)
    log_x_theta = process.predict_x0(logits.nan_to_num(nan=float("-inf")), xt).double()
    a_t, a_s = torch.full((process.vocab_size,), alpha_t, dtype=torch.float64), torch.full(
        (process.vocab_size,), alpha_s, dtype=torch.float64)
    post = process.log_posterior(log_x_theta, xt, a_s, a_t).exp()[:, 0]
    to_clean = process.log_posterior(log_x_theta, xt, torch.ones_like(a_s), a_t)[:, 0] if clean_jump \
        else log_x_theta[:, 0]
    forward = process.log_marginal(to_clean[:, None], a_s).exp()[:, 0]
    return p_t, p0 @ q_s, kappa * post + (1 - kappa) * forward


def _bayes_kernel(process, p0, alpha_t, alpha_s, kappa):
    """The same kernel from Bayes' rule on explicit matrices (tests/bruteforce.py):
    kappa p(x_s | x_t) + (1 - kappa) sum_v p(x_0 = v | x_t) q(x_s | x_0 = v)."""
    kind = "absorbing" if isinstance(process, AbsorbingProcess) else "uniform"
    brute = bf.BFProcess(kind, process.vocab_size, getattr(process, "mask_index", None))
    full = F.pad(p0, (0, process.vocab_size - V_DATA))
    q_t, q_s, q_ts = brute.Q(alpha_t), brute.Q(alpha_s), brute.Q(alpha_t / alpha_s)
    p_t, p_s = full @ q_t, full @ q_s
    seen = p_t > 0
    step = p_s[None, :] * q_ts.T / p_t[:, None]  # p(x_s = w | x_t = z) = p_s(w) q(z | w) / p_t(z)
    clean = full[None, :] * q_t.T / p_t[:, None]  # p(x_0 = v | x_t = z)
    return seen, kappa * step + (1 - kappa) * clean @ q_s


@pytest.mark.parametrize("name", PROCESSES)
def test_one_corrected_step_is_bayes_and_maps_p_t_to_p_s(name):
    """The corrector's kernel, built from the process's own posterior and forward marginal, equals
    the Bayes kernel of explicit matrices and so carries p_t to p_s (one position)."""
    process = PROCESSES[name]
    p0 = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    for alpha_t, alpha_s, kappa in [(0.3, 0.5, 0.5), (0.5, 0.5, 0.2), (0.1, 0.9, 0.0), (0.2, 0.7, 1.0)]:
        p_t, p_s, kernel = _one_position_kernel(process, p0, alpha_t, alpha_s, kappa)
        seen, bayes = _bayes_kernel(process, p0, alpha_t, alpha_s, kappa)
        torch.testing.assert_close(kernel[seen], bayes[seen], atol=1e-6, rtol=0)  # predict_x0 runs in fp32
        torch.testing.assert_close(p_t @ kernel, p_s, atol=1e-6, rtol=0)
    if name == "uniform":  # the comparison is sensitive: noising x_theta itself (not the jump to x_0) is wrong
        _, _, naive = _one_position_kernel(process, p0, 0.3, 0.5, 0.5, clean_jump=False)
        seen, bayes = _bayes_kernel(process, p0, 0.3, 0.5, 0.5)
        assert (naive[seen] - bayes[seen]).abs().max() > 1e-2


def _draws(process, corrector=None, **kwargs):
    return sample(process, LogLinear(), oracle_free_denoiser(process), (32, 6), 24, corrector=corrector,
                  generator=torch.Generator().manual_seed(5), **kwargs)


def oracle_free_denoiser(process):
    g = torch.Generator().manual_seed(0)
    v = process.vocab_size
    table, left = torch.randn(v, v, generator=g) * 2, torch.randn(v, v, generator=g)
    return lambda xt, sigma, cond=None: table[xt] + left[xt.roll(1, dims=1)] + 0.1 * sigma[:, None, None]


@pytest.mark.parametrize("name", PROCESSES)
def test_kappa_one_and_top_p_one_are_ancestral_draw_for_draw(name):
    process = PROCESSES[name]
    reference = _draws(process).tokens
    for same in (Psi(kappa=1.0), ReMDM("cap", eta=0.0), ReMDM("rescale", eta=0.0), Ancestral()):
        assert torch.equal(_draws(process, same).tokens, reference), same
    assert torch.equal(_draws(process, top_p=1.0).tokens, reference)
    assert not torch.equal(_draws(process, CORRECTORS["psi"]).tokens, reference)


def test_nucleus_keeps_the_smallest_set_reaching_p():
    log_p = torch.log(torch.tensor([[0.05, 0.5, 0.3, 0.15], [0.25, 0.25, 0.25, 0.25]]))
    kept = torch.isfinite(nucleus(log_p, 0.8))
    assert kept.tolist() == [[False, True, True, False], [True, True, True, True]]
    assert torch.isfinite(nucleus(log_p, 0.81))[0].tolist() == [False, True, True, True]
    torch.testing.assert_close(nucleus(log_p, 0.8)[0, 1:3].exp(), torch.tensor([0.625, 0.375]))
    assert torch.equal(nucleus(log_p, 1.0), log_p)


@pytest.mark.parametrize("name", PROCESSES)
def test_top_p_draws_only_from_each_step_nucleus(name):
    process = PROCESSES[name]
    denoiser = oracle_free_denoiser(process)
    out = sample(process, LogLinear(), denoiser, (64, 6), 1, top_p=1e-6, generator=torch.Generator().manual_seed(0))
    xt = process.sample_prior((64, 6), generator=torch.Generator().manual_seed(0))
    best = process.predict_x0(denoiser(xt, LogLinear().sigma(torch.ones(64)), None), xt).argmax(-1)
    assert torch.equal(out.tokens, best)  # one step from the prior to alpha = 1 with p -> 0: the argmax


@pytest.mark.parametrize("name", PROCESSES)
def test_greedy_last_step_is_the_argmax_of_the_prediction(name):
    """DUO's greedy tail: the last step, from a nearly clean x_t, returns argmax x_theta(x_t) at the
    positions the process lets the model fill (all for uniform noise, the masks for absorbing
    noise), where the argmax of the true last posterior is x_t; earlier steps are unchanged."""
    process = PROCESSES[name]
    seen, base = [], oracle_free_denoiser(process)

    def denoiser(xt, sigma, cond=None):
        seen.append(xt.clone())
        return base(xt, sigma, cond)

    run = lambda **kw: sample(process, LogLinear(), denoiser, (64, 6), 6, use_cache=False,
                              generator=torch.Generator().manual_seed(2), **kw).tokens
    plain = run()
    greedy = run(greedy_last=True)
    last_input = seen[-1]
    prediction = process.predict_x0(base(last_input, LogLinear().sigma(torch.full((64,), 1e-5)), None), last_input)
    expected = prediction.argmax(-1)
    if hasattr(process, "mask_index"):
        expected = torch.where(last_input == process.mask_index, expected, last_input)
    assert torch.equal(greedy, expected)
    assert torch.equal(seen[5], seen[11])  # the same x_t before the last step
    if isinstance(process, UniformProcess):  # the model changes tokens the true last posterior keeps
        assert not torch.equal(greedy, plain) and torch.equal(plain, last_input)


@pytest.mark.parametrize("name", PROCESSES)
def test_semi_autoregressive_blocks_write_past_the_window(name):
    process = PROCESSES[name]
    seen = []
    base = oracle_free_denoiser(process)

    def denoiser(xt, sigma, cond=None):
        seen.append(xt.clone())
        return base(xt, sigma, cond)

    out = sample(process, LogLinear(), denoiser, (8, 6), 5, length=14, block_length=4, use_cache=False,
                 generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (8, 14) and out.nfe == 5 * 3
    assert not (out.tokens == getattr(process, "mask_index", -1)).any()
    first = sample(process, LogLinear(), base, (8, 6), 5, generator=torch.Generator().manual_seed(0)).tokens
    assert torch.equal(out.tokens[:, :6], first)  # the first window is an ordinary sample
    for k, window in enumerate(seen[5:10]):  # block 2: the last 2 tokens of the first window as context
        assert torch.equal(window[:, :2], out.tokens[:, 4:6]), k
    assert all(torch.equal(w[:, :2], out.tokens[:, 8:10]) for w in seen[10:])


def test_bad_sampler_settings_are_refused_in_one_line():
    process, denoiser = PROCESSES["uniform"], oracle.Toy(PROCESSES["uniform"]).denoiser
    run = lambda **kw: sample(process, LogLinear(), denoiser, (2, 2), 4, **kw)
    cases = [({"length": 5}, "block_length"), ({"length": 5, "block_length": 2}, "multiple"),
             ({"block_length": 3}, "block_length"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p")]
    for kwargs, word in cases:
        with pytest.raises(ValueError, match=word) as err:
            run(**kwargs)
        assert "\n" not in str(err.value)
    for kwargs, word in [({"method": "psi", "kappa": 1.5}, "kappa"), ({"method": "remdm", "eta": -1.0}, "eta"),
                         ({"method": "remdm", "remdm_schedule": "bogus"}, "remdm_schedule"),
                         ({"method": "psi", "t_on": 0.1, "t_off": 0.5}, "t_off"), ({"method": "greedy"}, "method")]:
        with pytest.raises(ValueError, match=word):
            step_schedule(**kwargs)


def test_remdm_cap_is_the_remasking_probability_of_its_paper():
    """On absorbing noise the mixture with kappa = 1 - sigma / (1 - alpha_s) remasks an unmasked
    token with probability sigma and reveals a masked one with (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t)
    (ReMDM's Eq. for q_sigma), for sigma <= 1 - alpha_s."""
    process = PROCESSES["absorbing"]
    grid = ReMDM("cap", eta=0.01).grid(50, 1e-5, LogLinear())
    for k in (10, 30, 45):
        alpha_t, alpha_s, kappa = (float(x) for x in (grid.alphas[k], grid.alphas[k + 1], grid.kappas[k]))
        sigma = min(0.01, (1 - alpha_s) / alpha_t, 1 - alpha_s)
        assert kappa == pytest.approx(1 - sigma / (1 - alpha_s))
        p0 = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
        _, _, kernel = _one_position_kernel(process, p0, alpha_t, alpha_s, kappa)
        m = process.mask_index
        assert float(kernel[0, m]) == pytest.approx(sigma)  # an unmasked token is remasked
        reveal = (alpha_s - (1 - sigma) * alpha_t) / (1 - alpha_t)
        assert float(1 - kernel[m, m]) == pytest.approx(reveal)


def test_remdm_conf_remasks_each_token_with_its_papers_probability():
    """ReMDM's conf schedule: sigma^l = w^l min(1, (1 - alpha_s) / alpha_t) with w the softmax over
    the unmasked positions of minus the probability each token was decoded with (their code:
    conf = -p_x0[x_s], -inf at masks); the corrected kernel of position l remasks it with sigma^l."""
    process, conf = PROCESSES["absorbing"], ReMDM("conf")
    grid = conf.grid(50, 1e-5, LogLinear())
    probs, decoded = [0.9, 0.2, 0.0, 0.6], [True, True, False, True]
    weights = [math.exp(-p) * d for p, d in zip(probs, decoded)]
    p0 = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    checked = 0
    for k in (10, 30, 45):
        alpha_t, alpha_s = float(grid.alphas[k]), float(grid.alphas[k + 1])
        kappas = conf.position_kappas(float(grid.rates[k]), torch.tensor([probs], dtype=torch.float64),
                                      torch.tensor([decoded]))[0]
        for position, weight in enumerate(weights):
            sigma = weight / sum(weights) * min(1.0, (1 - alpha_s) / alpha_t)
            assert float(kappas[position]) == pytest.approx(max(0.0, 1 - sigma / (1 - alpha_s)))
            if decoded[position] and sigma <= 1 - alpha_s:
                _, _, kernel = _one_position_kernel(process, p0, alpha_t, alpha_s, float(kappas[position]))
                assert float(kernel[0, process.mask_index]) == pytest.approx(sigma)
                checked += 1
    assert checked >= 6
    nothing = conf.position_kappas(2.0, torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.bool))
    assert torch.equal(nothing, torch.ones(1, 4, dtype=torch.float64))  # all masked: no correction


def _remask_rates(corrector, n=500, steps=48):
    """How often a decoded token is remasked in one step, for an absorbing sampler on 16 positions
    whose denoiser is sure of the even ones (one token at probability ~1) and unsure of the odd ones
    (uniform over 4 tokens): (rate at sure positions, rate at unsure ones), over the last quarter of
    the steps (conf spends all of sigma_max on the decoded tokens, so until most are decoded many
    weights hit the clip of kappa at 0, which evens the rates out)."""
    process, seen = AbsorbingProcess(5, 4), []

    def denoiser(xt, sigma, cond=None):
        seen.append(xt.clone())
        logits = torch.zeros(*xt.shape, 5)
        logits[:, ::2, 0] = 12.0
        return logits

    out = sample(process, LogLinear(), denoiser, (n, 16), steps, corrector=corrector,
                 generator=torch.Generator().manual_seed(0))
    states = torch.stack(seen + [out.tokens])[3 * steps // 4:]  # (steps / 4 + 1, n, 16)
    decoded = states[:-1] != 4
    events, exposure = (decoded & (states[1:] == 4)).sum(dim=(0, 1)), decoded.sum(dim=(0, 1))
    assert events.sum() > 200
    return float(events[::2].sum() / exposure[::2].sum()), float(events[1::2].sum() / exposure[1::2].sum())


def test_remdm_conf_remasks_the_least_confident_tokens_first():
    """The sampler carries each token's decoding probability: under conf an unsure token is
    remasked up to exp(1 - 1/4) ~ 2.1 times as often as a sure one; rescale treats them alike."""
    sure, unsure = _remask_rates(ReMDM("conf"))
    assert 1.45 < unsure / sure < 2.2
    sure, unsure = _remask_rates(ReMDM("rescale", eta=0.05))
    assert 0.85 < unsure / sure < 1.15


@pytest.mark.parametrize("name", PROCESSES)
def test_remdm_conf_composes_with_guidance(name):
    """conf under D-CFG and exact D-CBG: one network call per step (D-CFG's two labels in one pass,
    which the draw and the confidence of the drawn tokens share), clean output, and a different
    draw than ancestral sampling."""
    toy = oracle.Toy(PROCESSES[name])
    for guidance, calls in ((CFG(2.0, TARGET, NULL), 1), (CBG(toy.classifier, 2.0, TARGET), 1)):
        run = lambda corrector: sample(toy.process, LogLinear(), toy.denoiser, (256, oracle.L), 16, guidance=guidance,
                                       corrector=corrector, generator=torch.Generator().manual_seed(3))
        out = run(ReMDM("conf"))
        assert out.nfe == 16 * calls and not (out.tokens >= V_DATA).any()
        assert not torch.equal(out.tokens, run(Ancestral()).tokens)


class CountingCBG(CBG):
    """Exact D-CBG that counts the distributions it scores (each is L x V classifier candidates)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.scored = 0

    def log_probs(self, step):
        self.scored += 1
        return super().log_probs(step)


@pytest.mark.parametrize("greedy_last", [False, True])
def test_a_guided_corrected_step_scores_each_target_once(greedy_last):
    """Under ReMDM's conf schedule a step reads its guided jump distribution twice (the corrector's
    draw, then the drawn tokens' confidence): it is scored once, so exact D-CBG scores at most two
    distributions per step (x_s and the jump); it scored 47 in 16 steps when each read scored again."""
    toy = oracle.Toy(PROCESSES["uniform"])
    guidance = CountingCBG(toy.classifier, 2.0, TARGET)
    out = sample(toy.process, LogLinear(), toy.denoiser, (64, oracle.L), 16, guidance=guidance, corrector=ReMDM("conf"),
                 greedy_last=greedy_last, generator=torch.Generator().manual_seed(3))
    assert 16 < guidance.scored <= 2 * 16 and not (out.tokens >= V_DATA).any()


@pytest.mark.parametrize("process", [UniformProcess(10), AbsorbingProcess(11, 10)], ids=["uniform", "absorbing"])
def test_every_guidance_composes_with_the_corrector_at_one_network_call_per_step(process):
    """NOS and first-order D-CBG under a corrector: the two targets of a corrected step (x_s and
    the jump to x_0) share the step's one network evaluation, and gamma = 0 is the unguided
    corrected sampler draw for draw."""
    lm, head = random_diffusion_lm(process)
    psi = Psi(kappa=0.5, t_on=0.9, t_off=0.1)
    run = lambda guidance: sample(process, LogLinear(), lm.denoiser, (16, 8), 12, guidance=guidance, corrector=psi,
                                  generator=torch.Generator().manual_seed(5))
    plain = run(CBG(lambda x, s: None, 0.0, 1))
    assert plain.nfe == 12
    nos = run(NOS(head, 0.0, 1))
    assert torch.equal(nos.tokens, plain.tokens) and nos.nfe == 12
    assert not torch.equal(run(NOS(head, 5.0, 1, num_steps=2, step_size=2.0)).tokens, plain.tokens)
    weights = torch.randn(2, 8, process.vocab_size)

    def linear_classifier(x, sigma):  # log-scores linear in the one-hot input
        onehot = x if x.is_floating_point() else F.one_hot(x, process.vocab_size).float()
        return torch.einsum("blv,clv->bc", onehot, weights).log_softmax(-1)

    taylor = run(CBG(linear_classifier, 2.0, 1, first_order=True))
    assert taylor.nfe == 12 and not torch.equal(taylor.tokens, plain.tokens)


def test_autoregressive_models_refuse_the_diffusion_samplers_options():
    lm = AutoregressiveLM(causal_model(), 12, 0)
    for kwargs, word in [({"corrector": Psi()}, "sampling.method=psi applies to diffusion"),
                         ({"corrector": ReMDM()}, "sampling.method=remdm"), ({"block_length": 4}, "block_length"),
                         ({"greedy_last": True}, "greedy_last"), ({"length": 24}, "sampling.length")]:
        with pytest.raises(ValueError, match=word) as err:
            lm.sample(4, **kwargs)
        assert "\n" not in str(err.value)
    nucleus_draws = lm.sample(64, top_p=1e-6, generator=torch.Generator().manual_seed(0)).tokens
    assert torch.equal(nucleus_draws, lm.sample(64, argmax=True).tokens)  # p -> 0 keeps the argmax alone
    assert torch.equal(lm.sample(8, corrector=Ancestral(), generator=torch.Generator().manual_seed(0)).tokens,
                       lm.sample(8, generator=torch.Generator().manual_seed(0)).tokens)


def test_the_sampling_section_builds_the_method():
    options = sampler_options(compose(["sampling.method=remdm", "sampling.eta=0.05", "sampling.top_p=0.9",
                                       "sampling.greedy_last=true", "sampling.block_length=4"]).sampling)
    assert options["corrector"] == ReMDM("loop", eta=0.05)
    assert (options["top_p"], options["greedy_last"], options["block_length"], options["length"]) == (0.9, True, 4, None)
    psi = sampler_options(compose(["sampling.method=psi", "sampling.kappa=0.8", "sampling.t_off=0.2"]).sampling)
    assert psi["corrector"] == Psi(kappa=0.8, t_on=0.5, t_off=0.2)
    assert isinstance(sampler_options(compose([]).sampling)["corrector"], Ancestral)


def test_no_change_cache_stays_exact_under_a_corrector():
    """A time-independent absorbing denoiser: with the cache the corrected sampler draws exactly
    what it draws without it, in fewer network calls; remasked steps change x_t and miss it."""
    process = PROCESSES["absorbing"]
    table = torch.randn(process.vocab_size, process.vocab_size, generator=torch.Generator().manual_seed(0))
    denoiser = lambda xt, sigma, cond=None: table[xt] + table[xt.roll(1, dims=1)]
    run = lambda corrector, cache: sample(process, LogLinear(), denoiser, (8, 4), 64, corrector=corrector,
                                          use_cache=cache, time_conditioned=False,
                                          generator=torch.Generator().manual_seed(4))
    for corrector in (Ancestral(), CORRECTORS["remdm-loop"]):
        cached, fresh = run(corrector, True), run(corrector, False)
        assert torch.equal(cached.tokens, fresh.tokens)
        assert fresh.nfe == 64 and cached.nfe < 64
    assert run(CORRECTORS["remdm-loop"], True).nfe > run(Ancestral(), True).nfe  # remasking forces new calls


def _sorted_nucleus(log_p: torch.Tensor, top_p: float) -> torch.Tensor:
    """The definition by brute force: sort every row, sums in float64."""
    ordered, order = log_p.double().sort(-1, descending=True)
    before = ordered.exp().cumsum(-1) - ordered.exp()
    return torch.zeros_like(log_p, dtype=torch.bool).scatter_(-1, order, before < top_p)


def test_nucleus_top_k_shortcut_and_buckets_equal_the_full_sort():
    """Rows whose nucleus fits the first k tokens, flat rows (found by buckets of log-probability),
    rows whose nucleus reaches past the buckets' span (float64: it takes p within 1e-10 of 1) and
    uniform rows give the set the definition gives."""
    g = torch.Generator().manual_seed(0)
    log_p = torch.cat([torch.randn(20, 300, generator=g) * 4, torch.randn(20, 300, generator=g) * 0.1,
                       torch.randn(20, 300, generator=g) * 2]).log_softmax(-1)
    for top_p in (0.5, 0.9, 0.99):
        got = torch.isfinite(nucleus(log_p[None], top_p, first_k=16))[0]
        assert torch.equal(got, _sorted_nucleus(log_p, top_p)), top_p
    tail = torch.randn(10, 300, generator=g, dtype=torch.float64)
    tail[:, 150:] -= 22.0  # below the span of 20 nats: the last bucket holds them
    tail = tail.log_softmax(-1)
    expected = _sorted_nucleus(tail, 1 - 1e-10)
    assert expected[:, 150:].any() and not expected[:, 150:].all()
    assert torch.equal(torch.isfinite(nucleus(tail, 1 - 1e-10, first_k=16)), expected)
    uniform = torch.full((3, 1000), -math.log(1000))
    assert torch.isfinite(nucleus(uniform, 0.2505, first_k=16)).sum(-1).tolist() == [251] * 3  # ties: the count
