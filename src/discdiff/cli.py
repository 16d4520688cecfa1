"""The `discdiff` command line: train, train-classifier, distil, sample, prepare, export, eval ppl | qm9 | gen-ppl |
species | images | guidance, config.

Every command takes Hydra-style overrides (`key=value`, `group=option`); `discdiff config` prints
the configuration they resolve to. Refused input ends with one line on stderr and exit code 2.

This module parses the command line and composes the configuration; what a command does is in
`discdiff.commands`, which it loads by name (`importlib`) only once a command runs, the way the data
registry loads a dataset's loader: the handlers import Lightning, RDKit and the evaluation
libraries, which take seconds to load, and neither `discdiff --help` nor `discdiff config` (which
only prints the composed configuration, `LIGHT_HANDLERS`) needs them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from pathlib import Path

from omegaconf import OmegaConf

from .config import compose
from .config.reference import as_text
from .errors import first_line

#: the module of the commands' handlers (`HANDLERS`), loaded when a command runs (module docstring)
HANDLERS_MODULE = "discdiff.commands"


def print_config(cfg) -> None:
    """`discdiff config`: the composed configuration as YAML."""
    print(OmegaConf.to_yaml(cfg), end="")


#: the handlers that need nothing but the composed configuration (no Lightning, no models)
LIGHT_HANDLERS = {"config": print_config}

COMMANDS = {
    "train": "train (or resume) a model: discdiff train experiment=qm9 algo=udlm run_dir=runs/qm9-udlm",
    "train-classifier": "train (or resume) a noisy classifier for guidance=cbg (or a clean, prefix or head one: "
                        "classifier.kind): discdiff train-classifier algo=udlm data.label_col=qed "
                        "run_dir=runs/qm9-udlm-qed-clf",
    "distil": "distil (or resume distilling) a UDLM into a few-step student by discrete consistency distillation: "
              "discdiff distil experiment=demo distil.teacher=runs/demo run_dir=runs/demo-dcd",
    "sample": "sample from a trained run: discdiff sample run_dir=runs/qm9-udlm sampling.num_samples=256",
    "eval ppl": "NELBO, perplexity and bits per token on the test split (valid where there is none), padding "
                "left out: discdiff eval ppl run_dir=runs/qm9-udlm",
    "eval qm9": "validity, uniqueness, novelty and properties of molecules: discdiff eval qm9 run_dir=... "
                "[eval.samples=path/to/samples.json]",
    "eval gen-ppl": "generative perplexity of text samples under a causal LM judge, unigram entropy and n-gram "
                    "diversity: discdiff eval gen-ppl run_dir=... eval.judge=gpt2-large [eval.samples=FILE]",
    "eval species": "k-mer JS distances, discriminator AUROC and an evaluation classifier's accuracy / F1 / MCC of "
                    "DNA samples per target species: discdiff eval species run_dir=... eval.classifier=ORACLE "
                    "[eval.samples=FILE]",
    "eval images": "FID / IS (Inception-v3), fid_clf and an evaluation classifier's accuracy / F1 of image samples "
                   "per target class, with PNG grids: discdiff eval images run_dir=... eval.classifier=ORACLE "
                   "[eval.inception=false] [eval.samples=FILE]",
    "eval guidance": "a guidance method over gammas and seeds, scored by the metrics of the model's domain: "
                     "table + Pareto plot: discdiff eval guidance run_dir=... guidance=cfg study.gammas=[0,1,2,3]",
    "eval qm9-guidance": "the earlier name of eval guidance (the same command)",
    "prepare": "read and tokenize a dataset once into the cache (before a training job): discdiff prepare "
               "data=lm1b",
    "export": "write a run's model as a HuggingFace folder: discdiff export run_dir=runs/demo out=hf/demo "
              "[push_to_hub=org/name]",
    "config": "print the resolved configuration: discdiff config algo=mdlm model=tiny; --help lists every key",
}
EVAL_KINDS = [c.partition(" ")[2] for c in COMMANDS if c.startswith("eval ")]


def _parser(key_reference: bool = False) -> argparse.ArgumentParser:
    """The argument parser; with key_reference, `config --help` lists every configuration key."""
    parser = argparse.ArgumentParser(
        prog="discdiff", description="Guided discrete diffusion language models (AR, MDLM, UDLM).",
        epilog="Overrides are key=value pairs, e.g. algo=mdlm model=tiny trainer.max_steps=100. "
               "Groups: algo, model, data, noise, lr_scheduler, logger, guidance, experiment. "
               "`discdiff config` shows every key.")
    commands = parser.add_subparsers(dest="command", metavar="command")
    for name in ("train", "train-classifier", "distil", "sample", "prepare", "export", "config"):
        epilog = as_text() if name == "config" and key_reference else None
        sub = commands.add_parser(name, help=COMMANDS[name], description=COMMANDS[name], epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("overrides", nargs="*", help="key=value overrides")
    evaluate_parser = commands.add_parser("eval", help=f"evaluate a trained model ({' | '.join(EVAL_KINDS[:-1])})",
                                          description="evaluate a trained model")
    kinds = evaluate_parser.add_subparsers(dest="kind", metavar="kind")
    for kind in EVAL_KINDS:
        sub = kinds.add_parser(kind, help=COMMANDS[f"eval {kind}"], description=COMMANDS[f"eval {kind}"])
        sub.add_argument("overrides", nargs="*", help="key=value overrides")
    return parser


#: `discdiff export out=... push_to_hub=...`: short forms of export.out / export.push_to_hub
EXPORT_SHORT = {"out": "export.out", "push_to_hub": "export.push_to_hub"}


def _expand(command: str, overrides: list[str]) -> list[str]:
    if command != "export":
        return overrides
    return [EXPORT_SHORT[k] + "=" + v if (k := o.partition("=")[0]) in EXPORT_SHORT else o
            for o in overrides for v in [o.partition("=")[2]]]


class _StderrNotes(logging.Handler):
    """discdiff's warnings (a skipped damaged checkpoint, a fallback) as plain lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stderr)


def _show_notes() -> None:
    notes = logging.getLogger("discdiff")
    if not any(isinstance(h, _StderrNotes) for h in notes.handlers):
        notes.addHandler(_StderrNotes(logging.WARNING))
        notes.propagate = False


class _NoAdverts(logging.Filter):
    """Drops Lightning's advertisement of its cloud logger, printed at every start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def _quiet_lightning() -> None:
    """Keep the job log to what a user acts on: no cloud-logger tip, no deprecation warning
    that Lightning's own pytree helper raises under newer torch (nothing a user can change), and
    under DDP no advice to sync the validation metrics (the modules sum them over ranks before
    logging them)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdverts())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('val/")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _show_notes()
    _quiet_lightning()
    parser = _parser(key_reference=argv[:1] == ["config"] and bool({"-h", "--help"} & set(argv)))
    args = parser.parse_args(argv)
    if args.command is None or (args.command == "eval" and args.kind is None):
        parser.print_help() if args.command is None else parser.parse_args(["eval", "--help"])
        return 2
    name = args.command if args.command != "eval" else f"eval {args.kind}"
    try:
        cfg = compose(_expand(name, args.overrides))
        if name in LIGHT_HANDLERS:
            LIGHT_HANDLERS[name](cfg)
        else:
            handlers = importlib.import_module(HANDLERS_MODULE)
            if name in handlers.READS_A_MODEL and _chooses_data(args.overrides):
                handlers.check_data_choice(cfg)
            handlers.HANDLERS[name](cfg)
    except ValueError as err:  # refused input: configuration, checkpoints, data and samples files
        return _fail(name, first_line(err), 2)
    except OSError as err:  # a file or folder that cannot be read or written, a full disk
        where = f": {err.filename}" if err.filename else ""
        return _fail(name, f"{err.strerror}{where}" if err.strerror else first_line(err), 2)
    except Exception as err:
        if os.environ.get("DISCDIFF_DEBUG"):
            raise
        return _fail(name, f"unexpected {type(err).__name__}: {first_line(err)} (a bug? rerun with DISCDIFF_DEBUG=1 "
                           "for the traceback and report it)", 1)
    return 0


def _chooses_data(overrides: list[str]) -> bool:
    """Whether the command line picks a dataset (data=NAME or data.name=NAME)."""
    return any(o.partition("=")[0].lstrip("+~") in ("data", "data.name") for o in overrides)


def _fail(command: str, message: str, code: int) -> int:
    print(f"discdiff {command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
