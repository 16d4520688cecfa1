"""Samplers: in-vocabulary output, no surviving masks, determinism, the no-change cache."""

import pytest
import torch

from discdiff.processes import AbsorbingProcess, UniformProcess
from discdiff.sampling import sample
from discdiff.schedules import LogLinear

V, L = 7, 6


def make_denoiser(seed=0):
    """A fixed random denoiser whose logits depend on the token, its left neighbour and sigma."""
    g = torch.Generator().manual_seed(seed)
    table, left = torch.randn(V, V, generator=g) * 2, torch.randn(V, V, generator=g)

    def denoiser(xt, sigma, cond=None):
        return table[xt] + left[xt.roll(1, dims=1)] + 0.1 * sigma[:, None, None]

    return denoiser


PROCESSES = {"absorbing": AbsorbingProcess(V, mask_index=V - 1), "uniform": UniformProcess(V)}


@pytest.mark.parametrize("name", PROCESSES)
def test_samples_are_in_vocabulary_and_unmasked(name):
    process = PROCESSES[name]
    out = sample(process, LogLinear(), make_denoiser(), (64, L), steps=20,
                 generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (64, L)
    assert out.tokens.min() >= 0 and out.tokens.max() < V
    if name == "absorbing":
        assert not (out.tokens == process.mask_index).any(), "the last step lands on alpha = 1"
    assert out.nfe == 20


def test_argmax_sampling_is_deterministic():
    """The absorbing prior is fixed, so with argmax nothing random is left: any seed gives the
    same samples, while Gumbel sampling with two seeds does not."""
    def run(seed, argmax):
        return sample(PROCESSES["absorbing"], LogLinear(), make_denoiser(), (16, L), steps=10, argmax=argmax,
                      generator=torch.Generator().manual_seed(seed)).tokens

    assert torch.equal(run(0, True), run(1, True))
    assert not torch.equal(run(0, False), run(1, False))


def test_cache_reduces_nfe_without_changing_samples():
    process = PROCESSES["absorbing"]
    kwargs = dict(steps=200, time_conditioned=False)
    denoiser = make_denoiser()
    time_free = lambda xt, sigma, cond=None: denoiser(xt, torch.zeros_like(sigma), cond)
    cached = sample(process, LogLinear(), time_free, (32, L), use_cache=True,
                    generator=torch.Generator().manual_seed(3), **kwargs)
    plain = sample(process, LogLinear(), time_free, (32, L), use_cache=False,
                   generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(cached.tokens, plain.tokens)
    assert plain.nfe == 200 and cached.nfe < 200


def test_time_conditioned_denoiser_never_uses_cache():
    out = sample(PROCESSES["absorbing"], LogLinear(), make_denoiser(), (8, L), steps=50, use_cache=True,
                 time_conditioned=True, generator=torch.Generator().manual_seed(0))
    assert out.nfe == 50


@pytest.mark.parametrize("name", PROCESSES)
def test_float64_path_runs_and_matches_distribution_support(name):
    out = sample(PROCESSES[name], LogLinear(), make_denoiser(), (16, L), steps=8, float64=True,
                 generator=torch.Generator().manual_seed(0))
    assert out.tokens.dtype == torch.long and out.tokens.max() < V


@pytest.mark.parametrize("name", PROCESSES)
def test_reverse_step_matches_posterior(name):
    """The fast reverse step draws from exactly the posterior with x_theta plugged in."""
    process = PROCESSES[name]
    n = 100_000
    z = process.mask_index if name == "absorbing" else 2
    xt = torch.full((n, 1), z)
    log_x = process.predict_x0(torch.randn(1, 1, V).expand(n, 1, V), xt)
    a_s, a_t = torch.full((n,), 0.6), torch.full((n,), 0.25)
    xs = process.reverse_step(log_x, xt, a_s, a_t, torch.Generator().manual_seed(0))
    empirical = torch.bincount(xs[:, 0], minlength=V).double() / n
    exact = process.posterior(log_x[:1].exp().double(), xt[:1], a_s[:1].double(), a_t[:1].double())[0, 0]
    assert torch.allclose(empirical, exact, atol=5 * (0.25 / n) ** 0.5)
