"""Importance-sampled times give an unbiased estimate of a time integral."""

import pytest
import torch

from discdiff.objectives import importance_times
from discdiff.schedules import Cosine, LogLinear


@pytest.mark.parametrize("schedule", [LogLinear(), Cosine()])
def test_importance_weights_integrate_exactly(schedule):
    eps = 1e-3
    u = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    t, weight = importance_times(schedule, u, eps)
    assert float(t.min()) >= eps and float(t.max()) <= 1
    f = lambda t: (1 + t) ** 2 * torch.exp(-t)  # any smooth integrand
    grid = torch.linspace(eps, 1, 400_001, dtype=torch.float64)
    exact = torch.trapezoid(f(grid), grid)
    assert float((f(t) * weight).mean()) == pytest.approx(float(exact), rel=1e-3)
    # the weighted MDLM weight -alpha'/(1 - alpha) is nearly constant under this proposal
    # (wherever 1 - alpha is well above the proposal's floor of 1e-4)
    mdlm = (-schedule.dalpha(t) / (1 - schedule.alpha(t)) * weight)[1 - schedule.alpha(t) > 1e-2]
    assert float(mdlm.std() / mdlm.mean()) < 0.05
