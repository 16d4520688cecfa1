"""The `discdiff` command line: train, train-classifier, sample, prepare, export, eval ppl | qm9 | gen-ppl |
species | images | guidance, config.

Every command takes Hydra-style overrides (`key=value`, `group=option`); `discdiff config` prints
the configuration they resolve to. Refused input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
import math
import os
import sys
from pathlib import Path

from .files import write_json

COMMANDS = {
    "train": "train (or resume) a model: discdiff train experiment=qm9 algo=udlm run_dir=runs/qm9-udlm",
    "train-classifier": "train (or resume) a noisy classifier for guidance=cbg: discdiff train-classifier "
                        "algo=udlm data.label_col=qed run_dir=runs/qm9-udlm-qed-clf",
    "sample": "sample from a trained run: discdiff sample run_dir=runs/qm9-udlm sampling.num_samples=256",
    "eval ppl": "NELBO, perplexity and bits per token on the test split (valid where there is none), padding "
                "left out: discdiff eval ppl run_dir=runs/qm9-udlm",
    "eval qm9": "validity, uniqueness, novelty and properties of molecules: discdiff eval qm9 run_dir=... "
                "[eval.samples=path/to/samples.json]",
    "eval gen-ppl": "generative perplexity of text samples under a causal LM judge, unigram entropy and "
                    "n-gram diversity: discdiff eval gen-ppl run_dir=... eval.judge=gpt2-large [eval.samples=FILE]",
    "eval species": "k-mer JS distances, discriminator AUROC and an evaluation classifier's accuracy / F1 / MCC "
                    "of DNA samples per target species: discdiff eval species run_dir=... eval.classifier=ORACLE "
                    "[eval.samples=FILE]",
    "eval images": "FID / IS (Inception-v3), fid_clf and an evaluation classifier's accuracy / F1 of image samples "
                   "per target class, with PNG grids: discdiff eval images run_dir=... eval.classifier=ORACLE "
                   "[eval.inception=false] [eval.samples=FILE]",
    "eval guidance": "a guidance method over gammas and seeds, scored by the metrics of the model's domain: "
                     "table + Pareto plot: discdiff eval guidance run_dir=... guidance=cfg study.gammas=[0,1,2,3]",
    "eval qm9-guidance": "the earlier name of eval guidance (QM9 models)",
    "prepare": "read and tokenize a dataset once into the cache (before a training job): discdiff prepare "
               "data=lm1b",
    "export": "write a run's model as a HuggingFace folder: discdiff export run_dir=runs/demo out=hf/demo "
              "[push_to_hub=org/name]",
    "config": "print the resolved configuration: discdiff config algo=mdlm model=tiny; --help lists every key",
}


def _parser(key_reference: bool = False) -> argparse.ArgumentParser:
    """The argument parser; with key_reference, `config --help` lists every configuration key."""
    parser = argparse.ArgumentParser(
        prog="discdiff", description="Guided discrete diffusion language models (AR, MDLM, UDLM).",
        epilog="Overrides are key=value pairs, e.g. algo=mdlm model=tiny trainer.max_steps=100. "
               "Groups: algo, model, data, noise, lr_scheduler, logger, guidance, experiment. "
               "`discdiff config` shows every key.")
    commands = parser.add_subparsers(dest="command", metavar="command")
    for name in ("train", "train-classifier", "sample", "prepare", "export", "config"):
        epilog = None
        if name == "config" and key_reference:
            from .config.reference import as_text

            epilog = as_text()
        sub = commands.add_parser(name, help=COMMANDS[name], description=COMMANDS[name], epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("overrides", nargs="*", help="key=value overrides")
    evaluate = commands.add_parser("eval", help="evaluate a trained model (ppl | qm9 | gen-ppl | species | images | "
                                                "guidance)",
                                   description="evaluate a trained model")
    kinds = evaluate.add_subparsers(dest="kind", metavar="kind")
    for kind in ("ppl", "qm9", "gen-ppl", "species", "images", "guidance", "qm9-guidance"):
        sub = kinds.add_parser(kind, help=COMMANDS[f"eval {kind}"], description=COMMANDS[f"eval {kind}"])
        sub.add_argument("overrides", nargs="*", help="key=value overrides")
    return parser


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x)))


def _pipeline(cfg, guided: bool = False):
    """The trained model of run_dir / checkpoint; with guided=True also the guidance strategy of
    the `guidance` options, built (and refused) before anything is printed."""
    from .pipeline import load

    pipe = load(cfg.checkpoint or cfg.run_dir, disable_ema=bool(cfg.eval.disable_ema), data=cfg.data)
    guidance = _guidance(cfg, pipe) if guided else None
    print(f"loaded {pipe.checkpoint}", file=sys.stderr)
    if getattr(getattr(guidance, "classifier", None), "checkpoint", None) is not None:
        print(f"guided by the classifier {guidance.classifier.checkpoint}", file=sys.stderr)
    return (pipe, guidance) if guided else pipe


def _guidance(cfg, pipe):
    g = cfg.get("guidance")  # absent when guidance=null
    if g is None:
        return None
    return pipe.guidance(g.name, g.gamma, g.condition, classifier=g.get("classifier"), **_method_options(g))


def _method_options(g) -> dict:
    """The guidance group's method-specific options (all but name, gamma, condition, classifier)."""
    return {k: v for k, v in g.items() if k not in ("name", "gamma", "condition", "classifier")}


def cmd_train(cfg) -> None:
    from .training.run import train

    _report_run_folder(train(cfg))


def cmd_train_classifier(cfg) -> None:
    from .training.run import train_classifier

    _report_run_folder(train_classifier(cfg))


def _report_run_folder(run_dir) -> None:
    """Name the run folder once: from global rank 0 of a multi-process (DDP) run."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        print(f"run folder: {run_dir}")


def draw_samples(cfg, pipe, guidance=None) -> dict:
    """Sample with the `sampling` options and `guidance` (a strategy built by `_guidance`) and
    return the JSON-ready record."""
    from omegaconf import OmegaConf

    from .pipeline import sampler_options

    s, g = cfg.sampling, cfg.get("guidance")
    out = pipe.sample(s.num_samples, s.steps, label=s.label, batch_size=s.batch_size, seed=cfg.seed,
                      progress=True, guidance=guidance, **sampler_options(s))
    target = g.condition if g is not None else s.label
    return {"samples": pipe.decode(out.tokens), "token_ids": out.tokens.tolist(), "nfe": out.nfe,
            "conditions": [target] * len(out.tokens), "steps": s.steps, "label": s.label,
            "checkpoint": str(pipe.checkpoint),
            "guidance": None if g is None else OmegaConf.to_container(g)}


def cmd_sample(cfg) -> None:
    pipe, guidance = _pipeline(cfg, guided=True)
    record = draw_samples(cfg, pipe, guidance)
    path = Path(cfg.sampling.output or Path(cfg.run_dir) / "samples.json")
    write_json(path, record)
    for text in record["samples"][:8]:
        print(text)
    print(f"wrote {len(record['samples'])} samples to {path} (NFE {record['nfe']})")


def cmd_eval_ppl(cfg) -> None:
    from .evaluation.perplexity import evaluate_perplexity

    pipe = _pipeline(cfg)
    result = evaluate_perplexity(pipe, split=cfg.eval.split, include_padding=bool(cfg.eval.include_padding),
                                 batch_size=cfg.loader.eval_batch_size or 64, max_batches=cfg.eval.max_batches,
                                 num_time_samples=cfg.eval.num_time_samples, seed=cfg.seed)
    out_dir = Path(cfg.eval.output_dir or Path(cfg.run_dir) / "eval")
    write_json(out_dir / "ppl.json", result)
    _print_json(result)


def cmd_eval_qm9(cfg) -> None:
    from .data.qm9 import qm9_train_table
    from .evaluation.qm9 import evaluate_qm9_samples

    run_dir = Path(cfg.run_dir)
    out_dir = Path(cfg.eval.output_dir or run_dir / "eval")
    samples_path = cfg.eval.samples
    if samples_path is None:
        pipe, guidance = _pipeline(cfg, guided=True)
        samples_path = out_dir / "samples.json"
        write_json(samples_path, draw_samples(cfg, pipe, guidance))
        data_cfg = pipe.cfg.data
    else:
        from .pipeline import stored_config

        stored = stored_config(run_dir)
        data_cfg = cfg.data if stored is None else stored.data
    train = qm9_train_table(data_cfg)
    metrics = evaluate_qm9_samples(samples_path, set(train["canonical"]), out_dir,
                                   train_properties={p: train[p].tolist() for p in ("qed", "ring_count")})
    _print_json(metrics)
    print(f"wrote metrics and pictures to {out_dir}", file=sys.stderr)


def cmd_eval_gen_ppl(cfg) -> None:
    """Fluency and diversity of a text model's samples under a causal LM judge (eval.judge)."""
    from .evaluation.domains import judge_path
    from .evaluation.samples import check_token_ids, read_record
    from .evaluation.text import evaluate_text_samples, load_judge

    out_dir = Path(cfg.eval.output_dir or Path(cfg.run_dir) / "eval")
    pipe, guidance = _pipeline(cfg, guided=True)
    if cfg.eval.samples is None:
        texts = draw_samples(cfg, pipe, guidance)["samples"]
    else:
        record = read_record(cfg.eval.samples)
        check_token_ids(cfg.eval.samples, record, pipe)
        texts = record["samples"]
    judge = load_judge(judge_path(cfg.eval.judge), device=pipe.device)
    result = evaluate_text_samples(texts, judge, batch_size=cfg.eval.judge_batch_size)
    per_sample = result.pop("per_sample")
    write_json(out_dir / "gen_ppl.json", {**result, "samples": str(cfg.eval.samples or "sampled now"),
                                         "checkpoint": str(pipe.checkpoint)})
    write_json(out_dir / "gen_ppl_per_sample.json", [{"text": t, **row} for t, row in zip(texts, per_sample)])
    _print_json(result)
    print(f"wrote {out_dir / 'gen_ppl.json'} and gen_ppl_per_sample.json", file=sys.stderr)


def cmd_eval_guidance(cfg) -> None:
    """`eval guidance` (and its older name `eval qm9-guidance`): one method over study.gammas x
    study.seeds, toward guidance.condition or each class of study.conditions in turn, scored by the
    metrics of the model's domain."""
    from .config import ConfigError
    from .evaluation import guidance_study as study
    from .evaluation.domains import metrics_for

    g, st = cfg.get("guidance"), cfg.study
    if g is None:
        raise ConfigError("eval guidance sweeps one guidance method: add guidance=cfg|cbg|nos|fudge|pplm")
    pipe = _pipeline(cfg)
    conditions = [int(c) for c in (st.conditions or [g.condition])]
    classifier = _guidance_classifier(g, pipe)
    strategies = {(float(gamma), c): pipe.guidance(g.name, float(gamma), c, classifier=classifier,
                                                   **_method_options(g))
                  for gamma in st.gammas for c in conditions}  # every setting is checked before anything is sampled
    oracle = _oracle(st.eval_classifier, pipe, conditions)
    metrics = metrics_for(pipe, cfg, oracle)
    metrics.check_conditions(conditions)

    def sample(gamma, seed):
        return _steered(pipe, cfg.sampling, conditions, seed, lambda c: {"guidance": strategies[gamma, c]})

    out_dir = Path(st.output_dir or Path(cfg.run_dir) / "guidance_study")
    info = {"condition": conditions[0] if len(conditions) == 1 else " ".join(map(str, conditions)),
            "steps": int(cfg.sampling.steps), "settings": json.dumps(_method_options(g))}
    rows = study.sweep(sample, gammas=st.gammas, seeds=st.seeds, metrics=metrics, out_dir=out_dir,
                       model=st.name or Path(cfg.run_dir).resolve().name, method=g.name, info=info, oracle=oracle,
                       progress=lambda line: print(line, file=sys.stderr))
    table = study.merge(out_dir, rows, metrics.reference())
    study.pareto_plot(table, out_dir / "guidance_pareto.png", metrics)
    columns = ("gamma", "seed", "num_samples", *metrics.shown, *(("target_accuracy",) if oracle is not None else ()))
    _print_rows(rows, columns)
    print(f"wrote {out_dir / 'guidance.csv'} and {out_dir / 'guidance_pareto.png'}", file=sys.stderr)


def cmd_eval_species(cfg) -> None:
    """DNA metrics per target species (paper Sec. 5.2): k-mer JS distances and discriminator AUROC
    against the real validation windows of the species, and an evaluation classifier's verdicts."""
    from .data.dna import check_species, real_windows
    from .evaluation.domains import by_class
    from .evaluation.dna import species_metrics
    from .evaluation.samples import load_steered, steered_record
    from .evaluation.tables import write_metrics

    out_dir = Path(cfg.eval.output_dir or Path(cfg.run_dir) / "eval")
    pipe = _pipeline(cfg)
    real = real_windows(pipe.cfg.data)
    if cfg.eval.samples is None:
        classes = [int(c) for c in (cfg.study.conditions or sorted(real))]
        check_species(classes, real, pipe.cfg.data)
        samples = _steered(pipe, cfg.sampling, classes, cfg.seed, _toward(cfg, pipe))
        write_json(out_dir / "species_samples.json", steered_record(samples, checkpoint=str(pipe.checkpoint)))
    else:
        samples = load_steered(cfg.eval.samples, pipe)
        check_species(sorted(set(samples.conditions.tolist())), real, pipe.cfg.data)
    oracle = _oracle(cfg.eval.classifier, pipe, samples.conditions.unique().tolist())
    if oracle is not None:
        samples.predicted = oracle.predict(samples.tokens, samples.texts)
    generated, predicted = by_class(samples)
    rows = species_metrics(generated, real, predicted)
    write_metrics(rows, out_dir, "species")
    _print_rows(rows, list(dict.fromkeys(k for row in rows for k in row)))
    print(f"wrote {out_dir / 'species.csv'} and species.json", file=sys.stderr)


def cmd_eval_images(cfg) -> None:
    """Image metrics per target class (paper Sec. 5.4) against the real test images: fid_clf and the
    evaluation classifier's verdicts (eval.classifier), FID / IS with Inception-v3 (eval.inception),
    and PNG grids, all in run_dir/eval."""
    from .data.images import check_classes
    from .evaluation import image_eval as ie
    from .evaluation.tables import write_metrics

    out_dir = Path(cfg.eval.output_dir or Path(cfg.run_dir) / "eval")
    pipe = _pipeline(cfg)
    spec = ie.image_spec(pipe.cfg.data)
    samples = None if cfg.eval.samples is None else ie.load_image_samples(cfg.eval.samples, pipe)
    if samples is None:
        steerable = pipe.lm.num_classes is not None or cfg.get("guidance") is not None
        classes = ie.target_classes(cfg.study.conditions, steerable, spec.num_classes)
    else:
        classes = [] if samples.conditions is None else sorted(set(samples.conditions.tolist()))
    check_classes(classes, spec)  # everything is checked before anything is sampled
    inception = ie.InceptionScorer(ie.inception_dir(cfg), pipe.device) if cfg.eval.inception else None
    oracle = _oracle(cfg.eval.classifier, pipe, classes)
    if samples is None:
        samples = (_steered(pipe, cfg.sampling, classes, cfg.seed, _toward(cfg, pipe)) if classes else
                   ie.unguided(pipe, cfg.sampling, cfg.seed))
        write_json(out_dir / "image_samples.json", ie.image_record(samples, checkpoint=str(pipe.checkpoint)))
    features = None if oracle is None else ie.classifier_features(oracle)
    if oracle is not None:
        samples.predicted = oracle.predict(samples.tokens, samples.texts)
    reference = ie.image_reference(pipe.cfg.data)
    rows = ie.image_rows(samples, reference, spec, features=features, inception=inception)
    grids = ie.save_grids(samples, reference, out_dir)
    write_metrics(rows, out_dir, "images")
    _print_rows(rows, list(dict.fromkeys(k for row in rows for k in row)))
    print(f"wrote {out_dir / 'images.csv'}, images.json and {', '.join(g.name for g in grids)}", file=sys.stderr)


def _toward(cfg, pipe):
    """class -> the sampler's options steering toward it: the guidance group's method at its gamma,
    else the class as the label of a conditional model."""
    g = cfg.get("guidance")
    if g is None:
        return lambda c: {"label": c}
    classifier = _guidance_classifier(g, pipe)
    return lambda c: {"guidance": pipe.guidance(g.name, g.gamma, c, classifier=classifier, **_method_options(g))}


def _steered(pipe, s, classes: list[int], seed: int, toward):
    """s.num_samples samples toward each of `classes` in turn (`toward(c)`: the sampler's options)."""
    import torch

    from .evaluation.domains import Samples
    from .pipeline import sampler_options

    tokens, nfe = [], 0
    for c in classes:
        out = pipe.sample(s.num_samples, s.steps, batch_size=s.batch_size, seed=seed, **sampler_options(s),
                          **toward(c))
        tokens.append(out.tokens.cpu())
        nfe = out.nfe
    tokens = torch.cat(tokens)
    return Samples(pipe.decode(tokens), tokens, nfe, torch.tensor(classes).repeat_interleave(s.num_samples))


def _guidance_classifier(g, pipe):
    """The guidance group's classifier, loaded once (a run folder or .ckpt), or None."""
    from .pipeline import load_classifier

    classifier = g.get("classifier")
    return load_classifier(classifier, device=pipe.device) if isinstance(classifier, str) else classifier


def _oracle(path, pipe, classes: list[int]):
    """The evaluation classifier at `path` (None when not set), checked against the target classes."""
    from .evaluation.oracle import check_classes, load_oracle

    if path is None:
        return None
    oracle = load_oracle(path, pipe)
    check_classes(oracle, classes)
    print(f"evaluation classifier: {oracle.source}", file=sys.stderr)
    return oracle


def _print_rows(rows: list[dict], columns) -> None:
    print(",".join(columns))
    for row in rows:
        cells = (row.get(c, "") for c in columns)
        print(",".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in cells))


def cmd_prepare(cfg) -> None:
    """Tokenize (or find) the dataset's splits and print what they hold."""
    import time

    from .data import build_splits

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
    from .config import ConfigError
    from .hub import export

    if cfg.export.out is None:
        raise ConfigError("export needs a folder to write: out=FOLDER (export.out)")
    out = export(cfg.checkpoint or cfg.run_dir, cfg.export.out, push_to_hub=cfg.export.push_to_hub,
                 disable_ema=bool(cfg.eval.disable_ema))
    pushed = f" and pushed it to {cfg.export.push_to_hub}" if cfg.export.push_to_hub else ""
    print(f"wrote {out}{pushed} (config.json, model.safetensors, tokenizer, modelling code): load it with "
          f"discdiff.load('{out}') or AutoModelForMaskedLM.from_pretrained('{out}', trust_remote_code=True)")


#: `discdiff export out=... push_to_hub=...`: short forms of export.out / export.push_to_hub
EXPORT_SHORT = {"out": "export.out", "push_to_hub": "export.push_to_hub"}


def _expand(command: str, overrides: list[str]) -> list[str]:
    if command != "export":
        return overrides
    return [EXPORT_SHORT[k] + "=" + v if (k := o.partition("=")[0]) in EXPORT_SHORT else o
            for o in overrides for v in [o.partition("=")[2]]]


def cmd_config(cfg) -> None:
    from omegaconf import OmegaConf

    print(OmegaConf.to_yaml(cfg), end="")


HANDLERS = {"train": cmd_train, "train-classifier": cmd_train_classifier, "sample": cmd_sample, "config": cmd_config,
            "export": cmd_export, "prepare": cmd_prepare,
            "eval ppl": cmd_eval_ppl, "eval qm9": cmd_eval_qm9, "eval guidance": cmd_eval_guidance,
            "eval gen-ppl": cmd_eval_gen_ppl, "eval species": cmd_eval_species, "eval images": cmd_eval_images,
            "eval qm9-guidance": cmd_eval_guidance}


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


def _yielding_threads() -> None:
    """Let torch's OpenMP threads yield a core another program needs. libgomp's waiting threads
    spin 300,000 times at every barrier by default; with one of two cores busy elsewhere that made
    short demo trainings 11x slower (bench/demo_threads.sh, BENCHMARKS.md). 10,000 spins cut that to
    2.4x for a quarter of the idle speed (1,000: 1.2x, a third). Set before torch loads; an exported
    value wins."""
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _yielding_threads()
    _show_notes()
    _quiet_lightning()
    parser = _parser(key_reference=argv[:1] == ["config"] and bool({"-h", "--help"} & set(argv)))
    args = parser.parse_args(argv)
    if args.command is None or (args.command == "eval" and args.kind is None):
        parser.print_help() if args.command is None else parser.parse_args(["eval", "--help"])
        return 2
    name = args.command if args.command != "eval" else f"eval {args.kind}"
    from .config import compose

    try:
        cfg = compose(_expand(name, args.overrides))
        HANDLERS[name](cfg)
    except ValueError as err:  # refused input: configuration, checkpoints, data and samples files
        return _fail(name, _first_line(err), 2)
    except OSError as err:  # a file or folder that cannot be read or written, a full disk
        where = f": {err.filename}" if err.filename else ""
        return _fail(name, f"{err.strerror}{where}" if err.strerror else _first_line(err), 2)
    except Exception as err:
        if os.environ.get("DISCDIFF_DEBUG"):
            raise
        return _fail(name, f"unexpected {type(err).__name__}: {_first_line(err)} (a bug? rerun with DISCDIFF_DEBUG=1 "
                           "for the traceback and report it)", 1)
    return 0


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _fail(command: str, message: str, code: int) -> int:
    print(f"discdiff {command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
