"""What each `discdiff` command does, once the command line (`discdiff.cli`) has parsed it and
composed its configuration: the handlers, by command name (`HANDLERS`); `discdiff config` needs
none of this and is handled in `discdiff.cli`.

The command line loads this module only when it runs a command, so that `discdiff --help` does not
load Lightning, the judges' libraries or RDKit (see `discdiff.cli`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only

from .config import ConfigError
from .data import build_splits
from .evaluation.domains import DOMAINS
from .evaluation.evaluate import check_data_choice, evaluate, guidance_classifier, load_model, loaded
from .evaluation.perplexity import evaluate_perplexity
from .evaluation.samples import configured_target, draw, drawn_with, steer, steering, write_samples
from .evaluation.study import run_study
from .files import write_json
from .loading import export
from .training.run import distil, train, train_classifier


def _note(line: str) -> None:
    print(line, file=sys.stderr)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x)))


def _print_rows(rows: list[dict], columns) -> None:
    print(",".join(columns))
    for row in rows:
        cells = (row.get(c, "") for c in columns)
        print(",".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in cells))


def cmd_train(cfg) -> None:
    _report_run_folder(train(cfg))


def cmd_train_classifier(cfg) -> None:
    _report_run_folder(train_classifier(cfg))


def cmd_distil(cfg) -> None:
    _report_run_folder(distil(cfg))


def _report_run_folder(run_dir) -> None:
    """Name the run folder once: from global rank 0 of a multi-process (DDP) run."""
    if rank_zero_only.rank == 0:
        print(f"run folder: {run_dir}")


def cmd_sample(cfg) -> None:
    """Samples toward guidance.condition (with the guidance group's method) or sampling.label."""
    pipe = load_model(cfg)
    classifier = guidance_classifier(cfg, pipe)
    steered = steer(steering(pipe, cfg.get("guidance"), classifier, cfg.sampling.label), [configured_target(cfg)])
    loaded(_note, pipe, classifier)
    samples = draw(pipe, cfg.sampling, steered, cfg.seed, progress=True)
    path = Path(cfg.sampling.output or Path(cfg.run_dir) / "samples.json")
    write_samples(path, samples, **drawn_with(cfg, pipe))
    for text in samples.texts[:8]:
        print(text)
    print(f"wrote {len(samples.texts)} samples to {path} (NFE {samples.nfe})")


def cmd_eval_ppl(cfg) -> None:
    pipe = load_model(cfg)
    loaded(_note, pipe)
    result = evaluate_perplexity(pipe, split=cfg.eval.split, include_padding=bool(cfg.eval.include_padding),
                                 batch_size=cfg.loader.eval_batch_size or 64, max_batches=cfg.eval.max_batches,
                                 num_time_samples=cfg.eval.num_time_samples, seed=cfg.seed)
    out_dir = Path(cfg.eval.output_dir or Path(cfg.run_dir) / "eval")
    write_json(out_dir / "ppl.json", result)
    _print_json(result)


def _eval_domain(command: str):
    """The handler of `eval <command>` of an evaluation domain."""
    def handler(cfg) -> None:
        report = evaluate(cfg, command, _note)
        if isinstance(report.printed, dict):
            _print_json(report.printed)
        else:
            _print_rows(report.printed, list(dict.fromkeys(k for row in report.printed for k in row)))
        _note(f"wrote {', '.join(p.name for p in report.files)} to {report.out_dir}")

    return handler


def cmd_eval_guidance(cfg) -> None:
    """`eval guidance` (and its earlier name `eval qm9-guidance`): see evaluation.study.run_study."""
    result = run_study(cfg, _note)
    _print_rows(result.rows, result.columns)
    _note(f"wrote {result.table} and {result.plot}")


def cmd_prepare(cfg) -> None:
    """Tokenize (or find) the dataset's splits and print what they hold."""
    start = time.perf_counter()
    splits, tokenizer = build_splits(cfg.data)
    report = {"dataset": cfg.data.name, "tokenizer": f"{tokenizer.kind}, {tokenizer.vocab_size} tokens",
              "length": cfg.data.length, "seconds": round(time.perf_counter() - start, 1)}
    for split, dataset in splits.items():
        stored = dataset.tokens
        report[split] = {"texts": len(stored), "tokens": int(len(stored.ids)), "sequences": len(dataset),
                         "file": str(stored.path) if stored.path is not None else "in memory (small dataset)"}
    _print_json(report)


def cmd_export(cfg) -> None:
    if cfg.export.out is None:
        raise ConfigError("export needs a folder to write: out=FOLDER (export.out)")
    out = export(cfg.checkpoint or cfg.run_dir, cfg.export.out, push_to_hub=cfg.export.push_to_hub,
                 disable_ema=bool(cfg.eval.disable_ema))
    pushed = f" and pushed it to {cfg.export.push_to_hub}" if cfg.export.push_to_hub else ""
    print(f"wrote {out}{pushed} (config.json, model.safetensors, tokenizer, modelling code): load it with "
          f"discdiff.load('{out}') or AutoModelForMaskedLM.from_pretrained('{out}', trust_remote_code=True)")


#: command name -> handler(cfg)
#: the commands that read a trained model: `data=` there is checked by `check_data_choice`
READS_A_MODEL = frozenset({"sample", "export", "eval ppl", "eval guidance", "eval qm9-guidance",
                           *(f"eval {d.command}" for d in DOMAINS.values())})
HANDLERS = {"train": cmd_train, "train-classifier": cmd_train_classifier, "distil": cmd_distil, "sample": cmd_sample,
            "export": cmd_export, "prepare": cmd_prepare, "eval ppl": cmd_eval_ppl,
            **{f"eval {d.command}": _eval_domain(d.command) for d in DOMAINS.values()},
            "eval guidance": cmd_eval_guidance, "eval qm9-guidance": cmd_eval_guidance}
