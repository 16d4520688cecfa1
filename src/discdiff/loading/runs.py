"""Generators trained by `discdiff train`, loaded from their run folder or .ckpt: configuration,
weights (EMA where present) and tokenizer read from the files, the network built by the
factory; no training module is involved."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from .. import checkpoints
from ..config import restore
from ..data import load_tokenizer
from ..errors import described
from ..factory import build_language_model
from .pipeline import Pipeline

log = logging.getLogger(__name__)


def load_run(path: str | Path, *, disable_ema: bool = False) -> Pipeline:
    """The generator of a run folder (best.ckpt, else the newest readable checkpoint) or of a .ckpt
    file, on the CPU, with its EMA weights unless `disable_ema`."""
    found = checkpoints.for_loading(Path(path), "generator")
    run_dir = found.path.parent.parent
    tokenizer = run_tokenizer(run_dir)
    state = checkpoints.read(found.path)
    params = state["hyper_parameters"]
    cfg = restore(params["config"])

    def build():
        lm = build_language_model(cfg, **params["vocab"])
        checkpoints.load_network(state, "lm", lm, use_ema=not disable_ema)
        return lm

    return Pipeline(checkpoints.rebuilt(found.path, build), tokenizer, cfg, found.path, run_dir)


def run_tokenizer(run_dir: Path):
    """The tokenizer a run folder keeps next to checkpoints/."""
    folder = Path(run_dir) / "tokenizer"
    if not folder.exists():
        raise FileNotFoundError(f"{folder} is missing: a run folder keeps its tokenizer next to checkpoints/")
    return load_tokenizer(folder)


def stored_config(run_dir: Path) -> Optional[DictConfig]:
    """The configuration a run folder was trained with: its config.yaml, or when that is missing
    or damaged, its newest readable checkpoint's; None for a folder with neither."""
    try:
        return restore(OmegaConf.load(Path(run_dir) / "config.yaml"))
    except Exception as err:  # missing, unreadable or not YAML
        reason = described(err)
    try:
        found, _ = checkpoints.loadable(Path(run_dir))
    except checkpoints.CheckpointError:
        return None
    log.warning(f"{run_dir}/config.yaml cannot be read ({reason}); using the configuration in {found.path}")
    return restore(found.config)
