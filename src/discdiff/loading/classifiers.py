"""Classifiers trained by `discdiff train-classifier`, loaded for guidance and evaluation from their
run folder or .ckpt: configuration and weights (EMA where present) read from the checkpoint,
the network built by the factory; no training module is involved."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import checkpoints
from ..config import restore
from ..factory import build_classifier, build_language_model


def load_classifier(path: str | Path, *, device=None, disable_ema: bool = False) -> torch.nn.Module:
    """A classifier of `discdiff train-classifier` (a run folder: best.ckpt, else the newest
    readable one; or a .ckpt) in eval mode, with its EMA weights unless `disable_ema`: called as
    `classifier(x, sigma) -> log p(y | x)` (B, C), with `cfg`, `checkpoint` and `run_dir` set."""
    found = checkpoints.for_loading(Path(path), "classifier")
    state = checkpoints.read(found.path)
    params = state["hyper_parameters"]
    cfg = restore(params["config"])

    def build():
        generator = params.get("generator")
        lm = None if generator is None else build_language_model(restore(generator["config"]), **generator["vocab"])
        classifier, _ = build_classifier(cfg, params["vocab"], lm)
        checkpoints.load_network(state, "classifier", classifier, use_ema=not disable_ema)
        return classifier

    classifier = checkpoints.rebuilt(found.path, build).eval().requires_grad_(False)
    classifier.cfg, classifier.checkpoint, classifier.run_dir = cfg, found.path, found.path.parent.parent
    return classifier.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
