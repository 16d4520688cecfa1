"""The QM9 guidance study (paper Sec. 5.1, Fig. 3 / Table 8): one method over guidance strengths
and seeds, each setting scored like `eval qm9`, collected in one table and one Pareto plot.

A study folder holds `guidance.csv` / `guidance.json` (one row per model, method, gamma and seed,
plus the dataset's reference row), `samples/<model>_<method>_g<gamma>_s<seed>.json` and
`guidance_pareto.png`. Running another method or model into the same folder adds its rows (a
setting run again replaces its row), so the table and the plot grow into the whole study.

Row columns: model, method, gamma, condition, seed, steps, num_samples, nfe, sampling_seconds, the
`qm9_metrics` columns (valid / unique / novel counts and fractions, property mean / median / q25 /
q75 over valid and over novel molecules, for qed and ring_count), `settings`, the method's
other options as JSON, and with an evaluation classifier `classifier_hit_rate`, the share of
samples it assigns to the target class.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable

from ..files import atomic_path, write_json
from .qm9 import DEFAULT_PROPERTIES, property_row, qm9_metrics, write_metrics

TABLE = "guidance"
KEY = ("model", "method", "gamma", "seed")
LEADING = ("model", "method", "gamma", "condition", "seed", "steps", "num_samples", "nfe", "sampling_seconds",
           "valid", "unique", "novel", "valid_frac", "unique_frac", "novel_frac")


def sweep(sample: Callable[[float, int], tuple[list[str], int, dict]], *, gammas: Iterable[float],
          seeds: Iterable[int], train_smiles: set[str], out_dir: Path, model: str, method: str, info: dict,
          progress: Callable[[str], None] = print) -> list[dict]:
    """Rows for every (seed, gamma): `sample(gamma, seed) -> (SMILES, nfe, extra columns)` draws the
    molecules. Each setting's samples are written to out_dir/samples/ as soon as they are drawn."""
    rows = []
    for seed in seeds:
        for gamma in gammas:
            start = time.perf_counter()
            smiles, nfe, extra = sample(float(gamma), int(seed))
            seconds = time.perf_counter() - start
            name = f"{model}_{method}_g{gamma:g}_s{seed}"
            write_json(out_dir / "samples" / f"{name}.json", {"samples": smiles, "gamma": gamma, "seed": seed,
                                                                "method": method, "model": model, **info})
            metrics = qm9_metrics(smiles, train_smiles)
            rows.append({"model": model, "method": method, "gamma": float(gamma), "seed": int(seed),
                         "nfe": nfe, "sampling_seconds": round(seconds, 2), **info, **metrics, **extra})
            progress(f"{name}: {metrics['valid']} valid, {metrics['novel']} novel of {len(smiles)}, "
                     f"mean QED of novel {metrics['qed_novel_mean']:.3f} ({seconds:.0f} s)")
    return rows


def data_row(train_properties: dict[str, list[float]]) -> dict:
    """The reference row: property statistics of the training molecules."""
    n = len(train_properties[DEFAULT_PROPERTIES[0]])
    return {"model": "data", "method": "data", **property_row(n, n, train_properties)}


def merge(out_dir: Path, rows: list[dict], reference: dict) -> list[dict]:
    """The study table after adding `rows` (replacing rows of the same setting) and the reference
    row; written to out_dir/guidance.{csv,json} atomically."""
    path = out_dir / f"{TABLE}.json"
    kept = json.loads(path.read_text()) if path.exists() else []
    new = {tuple(row[k] for k in KEY) for row in rows}
    table = [r for r in kept if r.get("method") != "data" and tuple(r.get(k) for k in KEY) not in new]
    table = [_ordered(row) for row in (reference, *table, *rows)]
    write_metrics(table, out_dir, TABLE)
    return table


def _ordered(row: dict) -> dict:
    """The row with the setting columns first (empty where a row has none, as the data row)."""
    return {**{k: row.get(k, "") for k in LEADING}, **row}


def pareto_plot(table: list[dict], path: Path, prop: str = "qed") -> None:
    """Novel valid molecules (fraction of samples) against the mean property of the novel ones: one
    curve per model and method through its gammas (seeds averaged), the data mean as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[tuple, dict[float, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    reference = None
    for row in table:
        y = _number(row.get(f"{prop}_novel_mean"))
        if row.get("method") == "data":
            reference = _number(row.get(f"{prop}_valid_mean"))
        elif y is not None:
            curves[(row["model"], row["method"])][float(row["gamma"])].append((float(row["novel_frac"]), y))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for (model, method), points in sorted(curves.items()):
        gammas = sorted(points)
        xs = [sum(p[0] for p in points[g]) / len(points[g]) for g in gammas]
        ys = [sum(p[1] for p in points[g]) / len(points[g]) for g in gammas]
        ax.plot(xs, ys, marker="o", label=f"{model} {method}")
        for g, x, y in zip(gammas, xs, ys):
            ax.annotate(f"{g:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label="data")
    ax.set_xlabel("novel valid molecules (fraction of samples)")
    ax.set_ylabel(f"mean {prop} of novel molecules")
    ax.set_title("QM9 guidance: labels are guidance strengths (gamma)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value
