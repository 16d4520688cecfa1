"""The tables of bench/distil_qm9_cpu.sh and bench/distil_text_cpu.sh, from a study folder's
guidance.csv: seeds pooled per (model, sampler, steps, gamma).

QM9 (the default): valid and novel fractions of all samples, mean QED of the novel molecules,
and the guidance gain (QED of novel molecules at gamma minus at gamma 0, same model, sampler and
steps) with a standard error sqrt(se_g^2 + se_0^2), where each mean's se is a robust spread
(IQR / 1.349) over sqrt(novel molecules), pooled over seeds; D-CBG's gain is against the gamma 0
row of the seeds it was sampled with.
--sweep METHOD: one row per (model, steps, tail, gamma) of that method, its gain against its own
gamma 0 (e.g. first-order D-CBG over several gammas).
Text (--text): target accuracy, gen-PPL, entropy and MAUVE as the study wrote them.

    python bench/distil_report.py runs/distil/study
    python bench/distil_report.py runs/distil/cbg-sweep --sweep cbg
    python bench/distil_report.py runs/distil-text/study --text
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

Key = tuple[str, str, int]  # (model, sampler, steps)


def read(table: Path) -> list[dict]:
    with open(table) as f:
        return [row for row in csv.DictReader(f) if row["method"] != "data"]


def pooled(rows: list[dict]) -> dict[str, float]:
    """Valid/novel fractions, QED of novel molecules and its se over the rows (one per seed)."""
    samples = sum(int(r["num_samples"]) for r in rows)
    novel = [int(r["novel"]) for r in rows]
    qed = sum(float(r["qed_novel_mean"]) * n for r, n in zip(rows, novel)) / sum(novel)
    variance = sum(n * ((float(r["qed_novel_q75"]) - float(r["qed_novel_q25"])) / 1.349) ** 2
                   for r, n in zip(rows, novel))
    return {"valid": sum(int(r["valid"]) for r in rows) / samples, "novel": sum(novel) / samples,
            "qed": qed, "se": math.sqrt(variance) / sum(novel), "seeds": {r["seed"] for r in rows}}


def by_cell(rows: list[dict], method: str) -> dict[Key, dict[float, list[dict]]]:
    cells = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["method"] == method:
            cells[r["model"], r["sampler"], int(r["steps"])][float(r["gamma"])].append(r)
    return cells


def gain(guided: dict, base: dict) -> str:
    return f"{guided['qed'] - base['qed']:+.3f} ± {math.hypot(guided['se'], base['se']):.3f}"


def qm9_table(rows: list[dict]) -> list[str]:
    cfg, cbg = by_cell(rows, "cfg"), by_cell(rows, "cbg")
    lines = ["| model | steps | greedy tail | valid (g 0) | novel (g 0) | QED (g 0) | gamma | valid (g) | novel (g) "
             "| QED (g) | D-CFG QED gain | first-order D-CBG gain (g 3) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (model, sampler, steps), gammas in sorted(cfg.items()):
        base = pooled(gammas[0.0])
        for gamma in sorted(g for g in gammas if g > 0):
            guided = pooled(gammas[gamma])
            cbg_gain = ""
            if gamma == 3.0 and (model, sampler, steps) in cbg:
                cbg_rows = cbg[model, sampler, steps][3.0]
                seeds = {r["seed"] for r in cbg_rows}
                cbg_gain = gain(pooled(cbg_rows), pooled([r for r in gammas[0.0] if r["seed"] in seeds]))
            lines.append(f"| {model} | {steps} | {'yes' if sampler.endswith('greedy') else 'no'} | "
                         f"{base['valid']:.3f} | {base['novel']:.3f} | {base['qed']:.3f} | {gamma:g} | "
                         f"{guided['valid']:.3f} | {guided['novel']:.3f} | {guided['qed']:.3f} | "
                         f"{gain(guided, base)} | {cbg_gain} |")
    return lines


def sweep_table(rows: list[dict], method: str) -> list[str]:
    lines = ["| model | steps | greedy tail | gamma | valid | novel | QED of novel | QED gain |", "|---|---|---|---|---|---|---|---|"]
    for (model, sampler, steps), gammas in sorted(by_cell(rows, method).items()):
        base = pooled(gammas[0.0])
        for gamma in sorted(gammas):
            cell = pooled(gammas[gamma])
            lines.append(f"| {model} | {steps} | {'yes' if sampler.endswith('greedy') else 'no'} | {gamma:g} | "
                         f"{cell['valid']:.3f} | {cell['novel']:.3f} | {cell['qed']:.3f} | "
                         f"{gain(cell, base) if gamma else ''} |")
    return lines


def text_table(rows: list[dict]) -> list[str]:
    lines = ["| model | steps | greedy tail | gamma | target accuracy | gen-PPL | entropy | MAUVE |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["sampler"], int(r["steps"]), float(r["gamma"]))):
        lines.append(f"| {r['model']} | {r['steps']} | {'yes' if r['sampler'].endswith('greedy') else 'no'} | "
                     f"{float(r['gamma']):g} | {float(r['target_accuracy']):.2f} | {float(r['gen_ppl']):,.0f} | "
                     f"{float(r['entropy']):.2f} | {float(r['mauve']):.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study folder (with guidance.csv)")
    parser.add_argument("--text", action="store_true", help="the text study's columns")
    parser.add_argument("--sweep", metavar="METHOD", help="every gamma of one method (e.g. cbg)")
    args = parser.parse_args()
    if not (args.study / "guidance.csv").is_file():
        parser.error(f"{args.study} holds no guidance.csv (a study folder of `discdiff eval guidance`)")
    rows = read(args.study / "guidance.csv")
    try:
        table = text_table(rows) if args.text else sweep_table(rows, args.sweep) if args.sweep else qm9_table(rows)
    except KeyError as missing:
        parser.error(f"{args.study}/guidance.csv lacks {missing}: every cell needs its gamma 0 row "
                     "(and --text the text study's columns)")
    print("\n".join(table))


if __name__ == "__main__":
    main()
