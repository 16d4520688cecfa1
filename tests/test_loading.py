"""The loading boundary builds the same networks the training modules hold: `discdiff.load` and
`discdiff.load_classifier` read configuration, weights and EMA from the checkpoint through the
factory, without Lightning; here they are compared with the Lightning module restored from the same
file (what loading did before), for run folders and .ckpt files, with and without the EMA."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import discdiff
from discdiff import checkpoints
from discdiff.cli import main
from discdiff.training.classifier_module import LitClassifier
from discdiff.training.module import LitLanguageModel


def _restored(module_class, path, use_ema: bool):
    """The training module of a checkpoint, restored the way Lightning does, EMA applied."""
    state = checkpoints.read(path)
    module = module_class(**state["hyper_parameters"])
    module.load_state_dict(state["state_dict"])
    module.on_load_checkpoint(state)
    if use_ema:
        module.ema.copy_to(module.network)
    return module.network


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


@pytest.mark.parametrize("use_ema", [True, False])
def test_generators_load_as_the_training_module_holds_them(trained_run, use_ema):
    best = trained_run / "checkpoints" / "best.ckpt"
    expected = _restored(LitLanguageModel, best, use_ema)
    for source in (trained_run, best):
        pipe = discdiff.load(source, device="cpu", disable_ema=not use_ema)
        assert pipe.checkpoint == best and _same(pipe.lm, expected)
    assert not _same(expected, _restored(LitLanguageModel, best, not use_ema))  # the EMA is not the live weights


def test_classifiers_load_as_the_training_module_holds_them(cache_dir, quick_overrides, tmp_path):
    run = tmp_path / "clf"
    assert main(["train-classifier", *quick_overrides, f"run_dir={run}", "algo=udlm", "data.label_col=qed",
                 "trainer.max_steps=4", "trainer.val_check_interval=4"]) == 0
    for use_ema in (True, False):
        classifier = discdiff.load_classifier(run, device="cpu", disable_ema=not use_ema)
        assert _same(classifier, _restored(LitClassifier, run / "checkpoints" / "best.ckpt", use_ema))
        assert classifier.cfg.classifier.kind == "noisy" and classifier.run_dir == run


def test_loading_does_not_import_lightning(trained_run):
    code = (f"import sys, discdiff; discdiff.load({str(trained_run)!r}, device='cpu'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning') "
            "or m.startswith('discdiff.training')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("vocab_size, chosen, expected", [(40, None, False), (30522, None, True),
                                                          (30522, False, False), (40, True, True)])
def test_sampling_precision_follows_the_vocabulary_unless_set(trained_run, monkeypatch, vocab_size, chosen, expected):
    """sampling.float64=null draws in float64 for word-piece vocabularies (>= 1,000 tokens), float32
    below; an explicit true / false is kept."""
    pipe = discdiff.load(trained_run, device="cpu")
    seen = {}

    def sample(n, steps, **options):
        seen.update(options)
        return pipe_sample(n, steps, **options)

    pipe_sample = pipe.lm.sample
    monkeypatch.setattr(pipe.lm, "sample", sample)
    monkeypatch.setattr(type(pipe.tokenizer), "vocab_size", property(lambda self: vocab_size))
    pipe.sample(2, 2, float64=chosen)
    assert seen["float64"] is expected
