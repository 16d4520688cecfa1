"""The loading boundary: trained models in (run folders, .ckpt files, HuggingFace folders and hub
ids) and out (HuggingFace folders).

Every source is read through small format readers (`discdiff.checkpoints` for .ckpt files, which
runs no code from the file; `discdiff.hub.format` for HuggingFace folders; the run's saved
tokenizer) and built by `discdiff.factory`; nothing here imports Lightning or the training
modules, which are for training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig

from ..hub import format as hf_format
from .classifiers import load_classifier
from .huggingface import read_folder, write_folder
from .pipeline import GUIDANCE, Pipeline, sampler_label, sampler_options
from .runs import load_run, stored_config

__all__ = ["GUIDANCE", "Pipeline", "export", "is_huggingface", "load", "load_classifier", "sampler_label", "sampler_options",
           "stored_config"]


def is_huggingface(source: str | Path) -> bool:
    """Whether `source` is a HuggingFace model folder or hub id (else a run folder or .ckpt file)."""
    return hf_format.is_model_folder(source) or hf_format.is_hub_id(str(source))


def load(source: str | Path, *, device=None, disable_ema: bool = False, data: Optional[DictConfig] = None) -> Pipeline:
    """A trained model, ready to sample: a run folder or checkpoint file of `discdiff train` (EMA
    weights unless `disable_ema`), or a HuggingFace model folder or hub id (the published UDLM /
    MDLM checkpoints, or `discdiff export`'s; `data` names the dataset of a published one, e.g.
    for eval ppl). On `device` (default: CUDA when available)."""
    if is_huggingface(source):
        pipe = read_folder(source, data=data)
    else:
        pipe = load_run(source, disable_ema=disable_ema)
    return pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def export(source: str | Path, out: str | Path, *, push_to_hub: Optional[str] = None,
           disable_ema: bool = False) -> Path:
    """Write the model of a run folder / checkpoint (EMA weights unless `disable_ema`) as the
    HuggingFace folder `out`; with `push_to_hub`, upload it to that repository. Returns `out`."""
    pipe = load(source, device="cpu", disable_ema=disable_ema)
    return write_folder(pipe, out, source=source, push_to_hub=push_to_hub)
