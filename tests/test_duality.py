"""The Gaussian duality of uniform noise (discdiff.duality) against Monte Carlo of argmax of
Gaussians, a closed form for two tokens, its limits, derivative, inverse and disk cache."""

import math

import pytest
import torch

import discdiff.duality as dual
from discdiff.duality import Duality, discrete_alpha, discrete_alpha_derivative, gaussian_alpha, keep_probability


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """Tables go to a fresh cache folder shared by this module's tests (each K computed once); the
    per-process memo starts empty."""
    folder = tmp_path_factory.mktemp("duality-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISCDIFF_CACHE", str(folder))
        dual.duality.cache_clear()
        yield folder
    dual.duality.cache_clear()


def monte_carlo_alpha(a: float, vocab_size: int, n: int, seed: int = 0) -> tuple[float, float]:
    """alpha of argmax(a onehot(x) + s eps) estimated from n draws, with its standard error."""
    g = torch.Generator().manual_seed(seed)
    s, kept = math.sqrt(1 - a * a), 0
    for rows in [min(256, n - i) for i in range(0, n, 256)]:  # chunks: 256 x 30,522 doubles at most
        w = s * torch.randn(rows, vocab_size, generator=g, dtype=torch.float64)
        w[:, 0] += a
        kept += int((w.argmax(-1) == 0).sum())
    keep = kept / n
    scale = vocab_size / (vocab_size - 1)
    return scale * keep - 1 / (vocab_size - 1), scale * math.sqrt(max(keep * (1 - keep), 1e-12) / n)


@pytest.mark.parametrize("vocab_size,n,levels", [(2, 40_000, (0.2, 0.5, 0.8)), (5, 40_000, (0.2, 0.5, 0.8)),
                                                 (40, 40_000, (0.3, 0.6, 0.9)), (30_522, 2_048, (0.9, 0.95))])
def test_discrete_alpha_is_the_keep_rate_of_argmax_of_gaussians(vocab_size, n, levels):
    for a in levels:
        estimate, error = monte_carlo_alpha(a, vocab_size, n)
        assert abs(float(discrete_alpha(torch.tensor(a), vocab_size)) - estimate) < 4 * error, a


def test_two_tokens_have_a_closed_form():
    """K = 2: P(a + s eps_1 > s eps_2) = Phi(nu / sqrt 2), so alpha = 2 Phi(nu / sqrt 2) - 1."""
    a = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    nu = a / torch.sqrt(1 - a**2)
    closed = 2 * torch.special.ndtr(nu / math.sqrt(2)) - 1
    torch.testing.assert_close(discrete_alpha(a, 2), closed, atol=1e-9, rtol=0)
    torch.testing.assert_close(keep_probability(nu, 2)[0], torch.special.ndtr(nu / math.sqrt(2)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("vocab_size", [2, 40, 30_522])
def test_limits_monotonicity_derivative_and_inverse(vocab_size):
    a = torch.linspace(0, 1, 401, dtype=torch.float64)
    alpha = discrete_alpha(a, vocab_size)
    assert float(alpha[0]) == 0.0 and float(alpha[-1]) == 1.0
    assert float(discrete_alpha(torch.tensor(0.9999), vocab_size)) > 1 - 1e-6  # T -> 1
    rising = alpha[1:] > alpha[:-1]
    assert (rising | (alpha[:-1] > 1 - 1e-12)).all() and (alpha[1:] >= alpha[:-1]).all()  # flat only at 1
    inner = a[1:-1]
    h = 1e-6
    numeric = (discrete_alpha(inner + h, vocab_size) - discrete_alpha(inner - h, vocab_size)) / (2 * h)
    torch.testing.assert_close(discrete_alpha_derivative(inner, vocab_size), numeric, rtol=1e-4, atol=1e-7)
    at_zero = float(discrete_alpha(torch.tensor(1e-7), vocab_size)) / 1e-7  # the tangent at a = 0
    assert float(discrete_alpha_derivative(torch.tensor(0.0), vocab_size)) == pytest.approx(at_zero, rel=1e-4)
    middle = a[(alpha > 1e-6) & (alpha < 1 - 1e-6)]
    torch.testing.assert_close(gaussian_alpha(discrete_alpha(middle, vocab_size), vocab_size), middle,
                               rtol=0, atol=1e-6)
    assert gaussian_alpha(torch.tensor([0.0, 1.0]), vocab_size).tolist() == [0.0, 1.0]


def test_the_table_is_cached_on_disk_and_rebuilt_when_unreadable(cache, monkeypatch):
    first = Duality(7)
    path = cache / "duality" / f"K7-{dual.TABLE_POINTS}.pt"
    assert path.exists()
    computed = dual._alpha_of_nu

    def no_quadrature(nu, vocab_size):
        if nu.numel() > 1:
            raise AssertionError("the table should come from the disk")
        return computed(nu, vocab_size)

    monkeypatch.setattr(dual, "_alpha_of_nu", no_quadrature)
    torch.testing.assert_close(Duality(7).alphas, first.alphas, rtol=0, atol=0)
    monkeypatch.setattr(dual, "_alpha_of_nu", computed)
    path.write_bytes(b"not a table")
    torch.testing.assert_close(Duality(7).alphas, first.alphas, rtol=0, atol=0)
    assert torch.load(path, weights_only=True)["vocab_size"] == 7  # rewritten whole


def test_a_vocabulary_of_one_token_is_refused_in_one_line():
    with pytest.raises(ValueError, match="at least 2 tokens") as err:
        discrete_alpha(torch.tensor(0.5), 1)
    assert "\n" not in str(err.value)
