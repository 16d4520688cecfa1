"""Autoregressive sampling: cache vs. reference path, determinism, hooks, NFE."""

import pytest
import torch

from discdiff.guidance import CBG, Guidance
from discdiff.models import DiT
from discdiff.processes import sample_categorical
from discdiff.sampling import SampleOutput
from discdiff.sampling.autoregressive import sample_autoregressive

V, L, BOS = 30, 12, 0


def causal_model(num_classes=None, seed=0) -> DiT:
    torch.manual_seed(seed)
    model = DiT(V, L, hidden_size=32, n_blocks=2, n_heads=4, cond_dim=16, dropout=0.1,
                causal=True, num_classes=num_classes, time_conditioning=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def sample(model, seed=1, **kw) -> SampleOutput:
    kw.setdefault("generator", torch.Generator().manual_seed(seed))
    return sample_autoregressive(model, 6, L, BOS, **kw)


def test_cache_and_reference_paths_agree():
    model = causal_model()
    cached, ref = sample(model, use_cache=True), sample(model, use_cache=False)
    assert torch.equal(cached.tokens, ref.tokens)
    assert cached.nfe == ref.nfe == L - 1
    assert model.training  # mode restored
    shown = sample(model, use_cache=True, progress=True)
    assert torch.equal(shown.tokens, cached.tokens)


def test_shapes_bos_and_vocabulary():
    out = sample(causal_model())
    assert out.tokens.shape == (6, L) and out.tokens.dtype == torch.long
    assert (out.tokens[:, 0] == BOS).all()
    assert ((out.tokens >= 0) & (out.tokens < V)).all()
    assert len(torch.unique(out.tokens[:, 1:])) > 3  # actually random


def test_seeded_sampling_reproducible_and_seed_dependent():
    model = causal_model()
    assert torch.equal(sample(model, seed=5).tokens, sample(model, seed=5).tokens)
    assert not torch.equal(sample(model, seed=5).tokens, sample(model, seed=6).tokens)


def test_argmax_is_deterministic_and_greedy():
    model = causal_model()
    a = sample(model, seed=1, argmax=True).tokens
    b = sample(model, seed=2, argmax=True, use_cache=False).tokens
    assert torch.equal(a, b)
    model.eval()
    with torch.no_grad():
        logits = model(a[:, :-1])
    assert torch.equal(logits.argmax(-1), a[:, 1:])


def test_low_temperature_approaches_argmax():
    model = causal_model()
    greedy = sample(model, argmax=True).tokens
    assert torch.equal(sample(model, temperature=1e-4).tokens, greedy)
    with pytest.raises(ValueError):
        sample(model, temperature=0.0)


def test_guidance_strategy_receives_prefix_and_steers():
    model = causal_model()
    seen = []

    class OnlyToken7(Guidance):
        families = ("autoregressive",)

        def log_probs(self, step):
            seen.append(step.prefix.shape[1])
            assert torch.is_grad_enabled()  # gradient-based guidance may differentiate here
            log_p = step.log_probs()
            assert log_p.shape == (6, V) and log_p.dtype == torch.float32
            mask = torch.full_like(log_p, float("-inf"))
            mask[:, 7] = 0.0
            return log_p + mask

    out = sample(model, guidance=OnlyToken7())
    assert seen == list(range(1, L))
    assert (out.tokens[:, 1:] == 7).all() and out.nfe == L - 1


def test_diffusion_only_guidance_is_refused():
    with pytest.raises(ValueError, match="does not apply to autoregressive"):
        sample(causal_model(), guidance=CBG(lambda x, s: None, 1.0, 1))


def test_class_conditioning_reaches_the_model():
    model = causal_model(num_classes=2)
    a = sample(model, cond=0).tokens  # same seed, different labels
    b = sample(model, cond=torch.ones(6, dtype=torch.long)).tokens
    null = sample(model, cond=None, use_cache=False).tokens
    assert not torch.equal(a, b)
    assert torch.equal(null, sample(model, cond=2).tokens)
    mixed = sample(model, cond=torch.tensor([0, 0, 0, 1, 1, 1])).tokens
    assert torch.equal(mixed[:3], a[:3]) and torch.equal(mixed[3:], b[3:])


def test_gumbel_max_frequencies():
    probs = torch.tensor([0.1, 0.2, 0.7])
    logits = probs.log().expand(20000, 3)
    draws = sample_categorical(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    torch.testing.assert_close(freq, probs, rtol=0, atol=0.02)


def test_rejects_bidirectional_model():
    model = DiT(V, L, hidden_size=16, n_blocks=1, n_heads=2, cond_dim=8, causal=False)
    with pytest.raises(ValueError):
        sample_autoregressive(model, 2, L, BOS)
