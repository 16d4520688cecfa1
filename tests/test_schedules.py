"""Noise schedules: endpoints, monotonicity, derivative (finite differences), sigma = -log alpha."""

from __future__ import annotations

import math

import pytest
import torch

from discdiff import schedules as S

DT = torch.float64

# (name, kwargs, expected alpha(0), expected alpha(1), tolerance of the endpoints)
CASES = [
    ("loglinear", dict(eps=1e-3), 1.0, 1e-3, 1e-12),
    ("loglinear", dict(eps=0.0), 1.0, 0.0, 0.0),
    ("linear", dict(sigma_min=1e-4, sigma_max=20.0), math.exp(-1e-4), math.exp(-20.0), 1e-12),
    ("linear", dict(sigma_min=0.1, sigma_max=5.0), math.exp(-0.1), math.exp(-5.0), 1e-12),
    ("cosine", dict(eps=1e-3), 1.0, 1e-3, 1e-12),
    ("cosine", dict(eps=0.0), 1.0, 0.0, 0.0),
    ("cosine_squared", dict(eps=1e-3), 1.0, 1e-3, 1e-12),
    ("geometric", dict(sigma_min=1e-4, sigma_max=20.0), math.exp(-1e-4), math.exp(-20.0), 1e-12),
    ("polynomial", dict(exponent=2.0, eps=1e-3), 1.0, 1e-3, 1e-12),
    ("polynomial", dict(exponent=0.5, eps=1e-3), 1.0, 1e-3, 1e-12),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, *_ in CASES]


def _sched(name, kwargs):
    return S.get_schedule(name, **kwargs)


@pytest.mark.parametrize("name,kwargs,a0,a1,tol", CASES, ids=IDS)
def test_endpoints(name, kwargs, a0, a1, tol):
    s = _sched(name, kwargs)
    t = torch.tensor([0.0, 1.0], dtype=DT)
    alpha = s.alpha(t)
    assert alpha.dtype == DT
    assert abs(alpha[0].item() - a0) <= tol, alpha[0].item()
    assert abs(alpha[1].item() - a1) <= tol, alpha[1].item()
    # "alpha(0) close to 1, alpha(1) close to 0, within the eps / exp(-sigma_max) of the schedule"
    slack = max(kwargs.get("eps", 0.0), kwargs.get("sigma_min", 0.0))
    assert alpha[0].item() >= 1 - slack - 1e-12
    assert 0.0 <= alpha[1].item() <= max(kwargs.get("eps", 0.0), math.exp(-kwargs.get("sigma_max", math.inf))) + 1e-12


@pytest.mark.parametrize("name", ["loglinear", "cosine"])
def test_eps_zero_reaches_exactly_zero(name):
    s = _sched(name, dict(eps=0.0))
    for dt in (torch.float32, torch.float64):
        a1 = s.alpha(torch.ones(3, dtype=dt))
        assert torch.all(a1 == 0), a1
        sig = s.sigma(torch.ones(3, dtype=dt))
        assert torch.all(torch.isfinite(sig)) and torch.all(sig > 0)


@pytest.mark.parametrize("name,kwargs,a0,a1,tol", CASES, ids=IDS)
def test_strictly_decreasing_and_in_unit_interval(name, kwargs, a0, a1, tol):
    s = _sched(name, kwargs)
    t = torch.linspace(0, 1, 1001, dtype=DT)
    alpha = s.alpha(t)
    assert torch.all(alpha >= 0) and torch.all(alpha <= 1)
    assert torch.all(alpha[1:] < alpha[:-1]), "alpha must be strictly decreasing"


@pytest.mark.parametrize("name,kwargs,a0,a1,tol", CASES, ids=IDS)
def test_dalpha_matches_central_differences(name, kwargs, a0, a1, tol):
    s = _sched(name, kwargs)
    t = torch.linspace(0.01, 0.99, 197, dtype=DT)
    h = 1e-6
    fd = (s.alpha(t + h) - s.alpha(t - h)) / (2 * h)
    d = s.dalpha(t)
    assert d.shape == t.shape
    assert torch.all(d <= 0)
    torch.testing.assert_close(d, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,kwargs,a0,a1,tol", CASES, ids=IDS)
def test_sigma_is_minus_log_alpha(name, kwargs, a0, a1, tol):
    s = _sched(name, kwargs)
    t = torch.linspace(0, 1, 257, dtype=DT)
    alpha, sigma = s.alpha(t), s.sigma(t)
    assert torch.all(torch.isfinite(sigma))
    pos = alpha > 1e-10
    torch.testing.assert_close(sigma[pos], -torch.log(alpha[pos]), rtol=1e-10, atol=1e-12)
    # sigma is non-decreasing since alpha decreases
    assert torch.all(sigma[1:] >= sigma[:-1])


@pytest.mark.parametrize("name,kwargs,a0,a1,tol", CASES, ids=IDS)
def test_elementwise_any_shape(name, kwargs, a0, a1, tol):
    s = _sched(name, kwargs)
    t = torch.rand(4, 3, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    for f in (s.alpha, s.dalpha, s.sigma):
        out = f(t)
        assert out.shape == t.shape
        flat = torch.stack([f(ti.reshape(1)).reshape(()) for ti in t.reshape(-1)])
        torch.testing.assert_close(out.reshape(-1), flat, rtol=0, atol=0)


def test_closed_forms_of_specified_schedules():
    """The three schedules whose formula is fixed by the spec, against numpy-free math."""
    t = torch.linspace(0, 1, 11, dtype=DT)
    eps = 0.01
    ll = S.LogLinear(eps=eps)
    torch.testing.assert_close(ll.alpha(t), 1 - (1 - eps) * t, rtol=0, atol=1e-15)
    lin = S.Linear(sigma_min=0.2, sigma_max=3.0)
    torch.testing.assert_close(lin.sigma(t), 0.2 + 2.8 * t, rtol=1e-12, atol=1e-12)
    geo = S.Geometric(sigma_min=0.01, sigma_max=10.0)
    torch.testing.assert_close(geo.sigma(t), 0.01 ** (1 - t) * 10.0**t, rtol=1e-12, atol=1e-12)


def test_class_names_and_registry():
    assert isinstance(S.get_schedule("loglinear"), S.LogLinear)
    assert isinstance(S.get_schedule("linear"), S.Linear)
    assert isinstance(S.get_schedule("cosine"), S.Cosine)
    assert isinstance(S.get_schedule("cosine_squared"), S.CosineSquared)
    assert isinstance(S.get_schedule("geometric"), S.Geometric)
    assert isinstance(S.get_schedule("polynomial"), S.Polynomial)


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError) as info:
        S.get_schedule("no_such_schedule")
    msg = str(info.value)
    for name in ("loglinear", "linear", "cosine", "cosine_squared", "geometric", "polynomial"):
        assert name in msg
