"""Every backbone plugs into everything: the factory builds it from model=..., it trains through
the same loop on the QM9 fixture, samples with every family's sampler (AR with its incremental
cache), and resumes; misfits are refused when the configuration is composed."""

import pytest
import torch

from discdiff.config import ConfigError, compose
from discdiff.loading import load
from discdiff.training.run import train

DIMAMBA = ["model=dimamba", "model.size=micro", "model.hidden_size=32", "model.n_blocks=2", "model.d_state=4",
           "model.chunk_size=8"]


@pytest.mark.parametrize("algo", ["udlm", "mdlm", "ar"])
def test_dimamba_trains_samples_and_resumes(tmp_path, cache_dir, quick_overrides, algo):
    common = [o for o in quick_overrides if not o.startswith("model.dropout")] + DIMAMBA + [
        f"algo={algo}", f"run_dir={tmp_path}", "data.length=24", "trainer.val_check_interval=4",
        "checkpointing.every_n_steps=4", "data.label_col=qed", "training.guidance.cond_dropout=0.2"]
    train(compose(common + ["trainer.max_steps=4"]))
    train(compose(common + ["trainer.max_steps=8"]))  # resumed from step 4
    pipe = load(tmp_path, device="cpu")
    assert type(pipe.lm.backbone).__name__ == "DiMamba" and pipe.lm.backbone.causal == (algo == "ar")
    out = pipe.sample(3, 4, seed=0, guidance=pipe.guidance("cfg", 2.0, 1))
    assert out.tokens.shape == (3, 24) and int(out.tokens.max()) < pipe.tokenizer.vocab_size
    if algo == "ar":  # the state cache decodes exactly what recomputing the prefix gives
        cached = pipe.lm.sample(2, argmax=True, use_cache=True, cond=torch.tensor([1, 0]))
        fresh = pipe.lm.sample(2, argmax=True, use_cache=False, cond=torch.tensor([1, 0]))
        assert torch.equal(cached.tokens, fresh.tokens)


@pytest.mark.parametrize("overrides, expected", [
    (["model=unet"], "model=unet reads images; data=qm9 is not an image dataset"),
    (["model=dimamba", "model.size=huge"], "model.size='huge' is not allowed; allowed: micro, tiny, small, medium"),
    (["model=dimamba", "model.d_state=0"], "model.d_state=0 is not allowed; allowed: an integer >= 1"),
])
def test_backbone_misfits_are_refused_when_composed(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        compose(overrides)
