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


def test_change_of_variables_feeds_the_network_the_uniform_draw():
    """Under the change of variables the backbone reads u, the uniform that importance sampling
    maps to t, so u(alpha(t(u))) = u."""
    from discdiff.objectives import masking_coordinate

    schedule = LogLinear()
    u = torch.linspace(0.0, 0.999, 50, dtype=torch.float64)
    t, _ = importance_times(schedule, u, 1e-3)
    back = masking_coordinate(schedule, schedule.alpha(t), 1e-3)
    assert torch.allclose(back, u, atol=1e-6)


def test_change_of_variables_trains_end_to_end(tmp_path, cache_dir, quick_overrides):
    from discdiff.config import compose
    from discdiff.factory import build_language_model

    cfg = compose(quick_overrides + ["algo=mdlm", "training.change_of_variables=true"])
    lm = build_language_model(cfg, vocab_size=12, mask_id=11, bos_id=1)
    seen = []
    lm.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    ids = torch.randint(0, 11, (16, 32))
    out = lm.loss({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    out.loss.backward()
    assert torch.isfinite(out.loss) and lm.importance_sampling
    assert 0 <= float(seen[0].min()) and float(seen[0].max()) <= 1
