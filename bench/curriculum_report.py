"""The table and plot of bench/curriculum_qm9_cpu.sh: per arm (plain, curriculum) and seed, the
validation NELBO (nats per token, from the runs' CSV logs) and, at each stage, the valid fraction
and the QED of novel molecules without guidance and the D-CFG gamma 3 QED gain (from the study
table). Prints a markdown table; writes ROOT/curriculum_qm9.png.

    python bench/curriculum_report.py runs/curriculum
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

NAME = re.compile(r"(?P<arm>\w+)-s(?P<seed>\d+)-(?P<stage>\d+)$")


def validation_nll(run: Path) -> dict[int, float]:
    """{optimizer step: val/nll} over every (re)start of a run."""
    values = {}
    for path in sorted(run.glob("logs/version_*/metrics.csv")):
        with open(path) as f:
            values.update({int(r["step"]) + 1: float(r["val/nll"]) for r in csv.DictReader(f) if r.get("val/nll")})
    return values


def study_rows(table: Path) -> dict[tuple[str, int, int], dict[float, dict]]:
    """{(arm, seed, stage): {gamma: row}} of the study table."""
    rows = defaultdict(dict)
    with open(table) as f:
        for row in csv.DictReader(f):
            match = NAME.match(row["model"])
            if match:
                rows[match["arm"], int(match["seed"]), int(match["stage"])][float(row["gamma"])] = row
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("root", type=Path)
    root = p.parse_args().root
    rows = study_rows(root / "study" / "guidance.csv")
    nll = {(arm, seed): validation_nll(root / f"{arm}-s{seed}") for arm, seed, _ in rows}
    print("| arm | seed | steps | val NELBO (nats/token) | valid (gamma 0) | QED of novel (gamma 0) | "
          "D-CFG 3 QED gain | valid (gamma 3) |")
    print("|---|---|---|---|---|---|---|---|")
    for arm, seed, stage in sorted(rows, key=lambda k: (k[1], k[0], k[2])):
        plain, guided = rows[arm, seed, stage].get(0.0), rows[arm, seed, stage].get(3.0)
        gain = float(guided["qed_novel_mean"]) - float(plain["qed_novel_mean"]) if plain and guided else float("nan")
        print(f"| {arm} | {seed} | {stage} | {nll[arm, seed].get(stage, float('nan')):.4f} | "
              f"{float(plain['valid_frac']):.3f} | {float(plain['qed_novel_mean']):.3f} | {gain:+.3f} | "
              f"{float(guided['valid_frac']):.3f} |")
    figure = Figure(figsize=(10, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    colours = {"plain": "tab:blue", "curriculum": "tab:orange"}
    for (arm, seed), values in sorted(nll.items()):
        steps = sorted(values)
        left.plot(steps, [values[s] for s in steps], color=colours.get(arm), ls="-" if seed == 1 else "--",
                  label=f"{arm}, seed {seed}")
        stages = sorted(stage for a, s, stage in rows if (a, s) == (arm, seed))
        right.plot(stages, [float(rows[arm, seed, st][0.0]["valid_frac"]) for st in stages], marker="o",
                   color=colours.get(arm), ls="-" if seed == 1 else "--", label=f"{arm}, seed {seed}")
    left.set(xlabel="optimizer steps", ylabel="validation NELBO (nats / token)", title="likelihood")
    right.set(xlabel="optimizer steps", ylabel="valid fraction (512 molecules, 64 steps)", title="samples")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.savefig(root / "curriculum_qm9.png", dpi=120)


if __name__ == "__main__":
    main()
