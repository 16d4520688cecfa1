"""`discdiff eval <command>` for every domain, and the loading the commands share.

One flow for molecules, text, DNA and images: read the samples file (`eval.samples`) or draw
samples now toward the domain's target classes (written to `<output dir>/<domain's samples
file>`); let the evaluation classifier (`eval.classifier`) judge them; score them with the
domain's plug-in (`evaluation.domains`), which writes its pictures; write the table
`<output dir>/<table>.csv` and `.json`. The model is loaded when it samples, when the file's
token ids are to be checked against it, or when an evaluation classifier needs it; a file of
strings alone (e.g. SMILES from elsewhere) is scored with the run's stored configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from omegaconf import DictConfig

from ..loading import Pipeline, is_huggingface, load, load_classifier, stored_config
from .domains import Context, Domain, of_data
from .oracle import Oracle, check_predictable, load_oracle
from .samples import Samples, check_model, draw, drawn_with, read_samples, steer, steering, write_samples
from .tables import write_metrics

#: where a command's notes go (the command line: stderr)
Note = Callable[[str], None]


@dataclass
class Report:
    """What `eval <command>` wrote: its table's rows, what it prints (rows, or one row), the other
    files (samples drawn, pictures) and the folder."""

    rows: list[dict]
    printed: dict | list[dict]
    files: list[Path]
    out_dir: Path


def load_model(cfg: DictConfig) -> Pipeline:
    """The model of `checkpoint` (else `run_dir`) with the `eval.disable_ema` choice."""
    return load(cfg.checkpoint or cfg.run_dir, disable_ema=bool(cfg.eval.disable_ema), data=cfg.data)


def check_data_choice(cfg: DictConfig) -> None:
    """Refuse a `data=` choice that a command reading a discdiff run cannot honour: the run is
    sampled and evaluated on the dataset it was trained with (its tokenizer, its vocabulary), and
    `data=` only names the dataset of a published HuggingFace model."""
    source = cfg.checkpoint or cfg.run_dir
    if is_huggingface(source):
        return
    run_dir = Path(source).parent.parent if Path(source).is_file() else Path(source)
    stored = stored_config(run_dir)
    if stored is not None and stored.data.name != cfg.data.name:
        raise ValueError(f"data={cfg.data.name} cannot apply: the model in {source} was trained on "
                         f"data={stored.data.name}, which this command uses; data= only names the dataset of a "
                         "published HuggingFace model (leave it out, or give a run trained on it)")


def guidance_classifier(cfg: DictConfig, pipe: Pipeline):
    """The guidance group's classifier (guidance.classifier), loaded once; None when it has none."""
    path = (cfg.get("guidance") or {}).get("classifier")
    return None if path is None else load_classifier(path, device=pipe.device)


def loaded(note: Note, pipe: Pipeline, classifier=None) -> None:
    """Name the checkpoints a command reads (once its options are known to be good)."""
    note(f"loaded {pipe.checkpoint}")
    if classifier is not None:
        note(f"guided by the classifier {classifier.checkpoint}")


def evaluation_classifier(cfg: DictConfig, pipe: Pipeline) -> Optional[Oracle]:
    """The evaluation classifier of `eval.classifier` (None when not set)."""
    return None if cfg.eval.classifier is None else load_oracle(cfg.eval.classifier, pipe)


def evaluate(cfg: DictConfig, command: str, note: Note) -> Report:
    """`discdiff eval <command>` (module docstring). Every input is checked before anything is
    sampled or written."""
    out_dir = Path(cfg.eval.output_dir or Path(cfg.run_dir) / "eval")
    path = cfg.eval.samples
    samples = None if path is None else read_samples(path)
    needs_model = samples is None or samples.tokens is not None or cfg.eval.classifier is not None
    pipe = load_model(cfg) if needs_model else None
    model_cfg = pipe.cfg if pipe is not None else _stored(cfg)
    domain_class = of_data(model_cfg.data, command)
    if samples is not None:
        _check_file(path, samples, domain_class, pipe)
    oracle = None if pipe is None else evaluation_classifier(cfg, pipe)
    device = pipe.device if pipe is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    domain = domain_class(Context(model_cfg.data, cfg, device, oracle, pipe,
                                  cfg.sampling.length or model_cfg.data.length))
    targets = domain.targets() if samples is None else _file_targets(samples)
    classes = [c for c in targets if c is not None]
    domain.check_targets(classes)
    if oracle is not None:
        check_predictable(oracle, classes)
    domain.prepare()
    if samples is None:
        classifier = guidance_classifier(cfg, pipe)
        steered = steer(steering(pipe, cfg.get("guidance"), classifier, cfg.sampling.label), targets)
        loaded(note, pipe, classifier)
    elif pipe is not None:
        loaded(note, pipe)
    if oracle is not None:
        note(f"evaluation classifier: {oracle.source}")
    files = []
    if samples is None:
        samples = draw(pipe, cfg.sampling, steered, cfg.seed, progress=True)
        files.append(out_dir / domain.samples_file)
        write_samples(files[-1], samples, **drawn_with(cfg, pipe))
    if oracle is not None:
        samples.predicted = oracle.predict(samples.tokens, samples.texts)
    provenance = {"samples": str(path or "sampled now"), "checkpoint": None if pipe is None else str(pipe.checkpoint)}
    rows, written = domain.evaluate(samples, out_dir, provenance)
    write_metrics(rows, out_dir, domain.table)
    return Report(rows, domain.printed(rows), [out_dir / f"{domain.table}.csv", out_dir / f"{domain.table}.json",
                                               *files, *written], out_dir)


def _file_targets(samples: Samples) -> list[Optional[int]]:
    """The target classes of a samples file ([None]: sampled without one)."""
    return [None] if samples.conditions is None else sorted(set(samples.conditions.tolist()))


def _stored(cfg: DictConfig) -> DictConfig:
    """The configuration the run was trained with (its config.yaml or checkpoints), else the command's."""
    stored = stored_config(Path(cfg.run_dir))
    return cfg if stored is None else stored


def _check_file(path, samples: Samples, domain: type[Domain], pipe: Optional[Pipeline]) -> None:
    """Refuse a samples file the model or the domain cannot score, in one line naming it."""
    if pipe is not None:
        check_model(path, samples, pipe)
    if domain.needs_tokens and samples.tokens is None:
        raise ValueError(f"{path}: has no token_ids; give a samples file written by discdiff sample or eval")
    if domain.needs_targets and samples.conditions is None:
        raise ValueError(f"{path}: records no target class for every sample (sampled unconditionally?); sample "
                         "with guidance.condition=K or sampling.label=K")
