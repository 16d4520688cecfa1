"""The guidance study (paper Sec. 5, Fig. 3 / Table 8 for QM9; the same for text, DNA and images):
one guidance method of a trained model over guidance strengths and seeds, each setting's samples
scored by the metrics of the model's domain (`evaluation.domains`), collected in one table and one
Pareto plot (`discdiff eval guidance`: `run_study`).

A study folder holds `guidance.csv` / `guidance.json` (the domain's reference row, if any, then one
row per model, method, sampler, steps, gamma and seed),
`samples/<model>_<method>_<sampler>_T<steps>_g<gamma>_s<seed>.json`, `guidance_pareto.png` and, once
some setting has rows at several steps (study.steps), `guidance_steps.png`: the domain's
`steps_axes` against steps, one line per model, method, gamma and sampler. Running another method or model into the same folder adds its rows (a
setting run again replaces its row), so the table and the plot grow into the whole study.

Row columns: model, method, sampler (`loading.sampler_label`: the sampling method with its keys,
nucleus, greedy last step, blocks), steps, gamma, condition (the target class, or the classes
steered toward in turn, space-separated), seed, num_samples, nfe, sampling_seconds, the domain's scores,
`target_accuracy` when the study has an evaluation classifier, and `settings`, the method's other
options as JSON.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from matplotlib.figure import Figure  # the object API: no pyplot state, Agg rendering
from omegaconf import DictConfig

from ..config import ConfigError
from ..files import atomic_path
from ..metrics.classes import target_accuracy
from .domains import Context, Domain, of_data
from .evaluate import Note, evaluation_classifier, guidance_classifier, load_model, loaded
from .oracle import Oracle, check_predictable
from ..loading import sampler_label
from .samples import Samples, draw, method_options, write_samples
from .tables import write_metrics

TABLE = "guidance"
KEY = ("model", "method", "sampler", "steps", "gamma", "condition", "seed")
LEADING = ("model", "method", "sampler", "steps", "gamma", "condition", "seed", "num_samples", "nfe",
           "sampling_seconds")


@dataclass
class StudyResult:
    """The rows of this run, the columns worth printing, and the files written."""

    rows: list[dict]
    columns: tuple[str, ...]
    table: Path
    plot: Path


def run_study(cfg: DictConfig, note: Note) -> StudyResult:
    """`eval guidance`: the `guidance` group's method over study.gammas x study.seeds, toward
    guidance.condition or each class of study.conditions in turn, scored by the metrics of the
    model's domain. Every setting is checked before anything is sampled."""
    g, st = cfg.get("guidance"), cfg.study
    if g is None:
        raise ConfigError("eval guidance sweeps one guidance method: add guidance=cfg|cbg|nos|fudge|pplm")
    pipe = load_model(cfg)
    conditions = [int(c) for c in (st.conditions or [g.condition])]
    classifier = guidance_classifier(cfg, pipe)
    strategies = {(float(gamma), c): pipe.guidance(g.name, float(gamma), c, classifier=classifier, **method_options(g))
                  for gamma in st.gammas for c in conditions}
    domain_class = of_data(pipe.cfg.data)
    oracle = evaluation_classifier(cfg, pipe)
    if oracle is None and domain_class.oracle_scores:
        raise ConfigError(f"{domain_class.oracle_scores} with an evaluation classifier: set eval.classifier=RUN_DIR "
                          "(train-classifier classifier.kind=clean) or a HuggingFace sequence-classification model")
    if oracle is not None:
        check_predictable(oracle, conditions)
    domain = domain_class(Context(pipe.cfg.data, cfg, pipe.device, oracle, pipe,
                                  cfg.sampling.length or pipe.cfg.data.length))
    domain.check_targets(conditions)
    domain.prepare()
    loaded(note, pipe, classifier)
    if oracle is not None:
        note(f"evaluation classifier: {oracle.source}")

    def sample(gamma: float, seed: int, steps: int) -> Samples:
        return draw(pipe, cfg.sampling, [(c, {"guidance": strategies[gamma, c]}) for c in conditions], seed,
                    steps=steps)

    out_dir = Path(st.output_dir or Path(cfg.run_dir) / "guidance_study")
    info = {"condition": conditions[0] if len(conditions) == 1 else " ".join(map(str, conditions)),
            "sampler": sampler_label(cfg.sampling), "settings": json.dumps(method_options(g))}
    rows = sweep(sample, gammas=st.gammas, seeds=st.seeds, steps=st.steps or [cfg.sampling.steps], domain=domain,
                 out_dir=out_dir, model=st.name or Path(cfg.run_dir).resolve().name, method=g.name, info=info,
                 oracle=oracle, progress=note)
    table = merge(out_dir, rows, domain.reference())
    pareto_plot(table, out_dir / "guidance_pareto.png", domain)
    steps_plot(table, out_dir / "guidance_steps.png", domain)
    columns = ("gamma", "seed", "num_samples", *domain.shown, *(("target_accuracy",) if oracle is not None else ()))
    return StudyResult(rows, columns, out_dir / f"{TABLE}.csv", out_dir / "guidance_pareto.png")


def sweep(sample: Callable[[float, int, int], Samples], *, gammas: Iterable[float], seeds: Iterable[int],
          steps: Iterable[int], domain: Domain, out_dir: Path, model: str, method: str, info: dict,
          oracle: Optional[Oracle] = None, progress: Callable[[str], None] = print) -> list[dict]:
    """Rows for every (seed, steps, gamma): `sample(gamma, seed, steps)` draws the setting's samples
    (written to out_dir/samples/ as soon as they are drawn), the `oracle`, when given, predicts their
    classes (target_accuracy: the share predicted as their target) and `domain` scores them."""
    rows = []
    for seed in seeds:
        for count in steps:
            for gamma in gammas:
                rows.append(_setting(sample, float(gamma), int(seed), int(count), domain, out_dir, model, method,
                                     info, oracle, progress))
    return rows


def _setting(sample, gamma, seed, steps, domain, out_dir, model, method, info, oracle, progress) -> dict:
    start = time.perf_counter()
    samples = sample(gamma, seed, steps)
    seconds = time.perf_counter() - start
    row = {"model": model, "method": method, "gamma": gamma, "seed": seed, "steps": steps, "nfe": samples.nfe,
           "sampling_seconds": round(seconds, 2), "num_samples": len(samples.texts), **info}
    name = samples_name(row)
    write_samples(out_dir / "samples" / f"{name}.json", samples, gamma=gamma, seed=seed, method=method,
                  model=model, steps=steps, **info)
    if oracle is not None:
        samples.predicted = oracle.predict(samples.tokens, samples.texts)
    row.update(domain.score(samples))
    if samples.predicted is not None:
        row["target_accuracy"] = target_accuracy(samples.conditions.tolist(), samples.predicted.tolist())
    progress(f"{name}: {domain.summary(row)} ({seconds:.0f} s)")
    return row


def samples_name(row: dict) -> str:
    """The name (without .json) of a study row's samples file in the study's samples/ folder."""
    return (f"{row['model']}_{row['method']}_{row.get('sampler') or 'ancestral'}_T{row['steps']}"
            f"_g{float(row['gamma']):g}_s{row['seed']}")


def merge(out_dir: Path, rows: list[dict], reference: Optional[dict]) -> list[dict]:
    """The study table after adding `rows` (replacing rows of the same setting) after the reference
    row; written to out_dir/guidance.{csv,json} atomically."""
    path = out_dir / f"{TABLE}.json"
    kept = json.loads(path.read_text()) if path.exists() else []
    new = {tuple(row[k] for k in KEY) for row in rows}
    table = [r for r in kept if r.get("method") != "data" and tuple(r.get(k) for k in KEY) not in new]
    table = [_ordered(row) for row in ([reference] if reference else []) + table + rows]
    write_metrics(table, out_dir, TABLE)
    return table


def _ordered(row: dict) -> dict:
    """The row with the setting columns first (empty where a row has none, as the data row)."""
    return {**{k: row.get(k, "") for k in LEADING}, **row}


def pareto_plot(table: list[dict], path: Path, domain: Domain) -> None:
    """The domain's x against its y: one curve per model and method through its gammas (seeds
    averaged), the reference row's y (if any) as a line."""
    curves: dict[tuple, dict[float, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    reference = None
    for row in table:
        x, y = _number(row.get(domain.x.column)), _number(row.get(domain.y.column))
        if row.get("method") == "data":
            reference = _number(row.get(domain.y.column.replace("_novel_", "_valid_")))
        elif x is not None and y is not None:
            curves[(row["model"], row["method"])][float(row["gamma"])].append((x, y))
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for (model, method), points in sorted(curves.items()):
        gammas = sorted(points)
        xs = [sum(p[0] for p in points[g]) / len(points[g]) for g in gammas]
        ys = [sum(p[1] for p in points[g]) / len(points[g]) for g in gammas]
        ax.plot(xs, ys, marker="o", label=f"{model} {method}")
        for g, x, y in zip(gammas, xs, ys):
            ax.annotate(f"{g:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label="data")
    ax.set_xlabel(domain.x.label)
    ax.set_ylabel(domain.y.label)
    ax.set_title(f"{domain.title}: labels are guidance strengths (gamma)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def steps_plot(table: list[dict], path: Path, domain: Domain) -> None:
    """Each of the domain's `steps_axes` against sampling steps (log scale): one line per model,
    method, gamma and sampler that has rows at two or more steps (seeds averaged). Nothing is
    written when no setting has."""
    lines: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in table:
        if row.get("method") != "data" and _number(row.get("steps")) is not None:
            key = (row["model"], row["method"], float(row["gamma"]), row.get("sampler") or "ancestral")
            lines[key][int(row["steps"])].append(row)
    lines = {key: by_steps for key, by_steps in lines.items() if len(by_steps) > 1}
    if not lines:
        return
    axes = domain.steps_axes()
    legend_inches = 0.2 + 0.17 * math.ceil(len(lines) / 2)  # two columns of entries below the panels
    fig = Figure(figsize=(4.4 * len(axes), 4.2 + legend_inches))
    panels = fig.subplots(1, len(axes), squeeze=False)[0]
    style = _line_styles(lines)
    for panel, axis in zip(panels, axes):
        for key, by_steps in sorted(lines.items()):
            points = [(steps, _mean(rows, axis.column)) for steps, rows in sorted(by_steps.items())]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                model, method, gamma, sampler = key
                panel.plot(*zip(*points), **style[key], label=f"{model} {sampler} {method} gamma {gamma:g}")
        panel.set_xscale("log", base=2)
        panel.set_xlabel("sampling steps")
        panel.set_ylabel(axis.label)
    handles, labels = panels[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.suptitle(f"{domain.title}: quality against sampling steps")
    fig.tight_layout(rect=(0, legend_inches / (4.2 + legend_inches), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def _line_styles(lines) -> dict[tuple, dict]:
    """A colour per sampler, a line style per gamma, a marker per model and method."""
    def index(position):
        values = sorted({key[position] for key in lines}, key=str)
        return {v: i for i, v in enumerate(values)}
    samplers, gammas = index(3), index(2)
    models = {v: i for i, v in enumerate(sorted({key[:2] for key in lines}))}
    dashes, markers = ("-", "--", ":", "-."), "osD^v<>"
    return {key: {"color": f"C{samplers[key[3]] % 10}", "linestyle": dashes[gammas[key[2]] % 4],
                  "marker": markers[models[key[:2]] % len(markers)]} for key in lines}


def _mean(rows: list[dict], column: str) -> Optional[float]:
    values = [v for v in (_number(r.get(column)) for r in rows) if v is not None]
    return sum(values) / len(values) if values else None


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value
