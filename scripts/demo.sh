#!/usr/bin/env bash
# The embedded demo (`make demo`): train a small label-conditional UDLM on QM9, sample molecules,
# evaluate them, then steer sampling toward high QED with D-CFG at several strengths.
# RUN: run folder (default runs/demo). DISCDIFF: the discdiff command (default: discdiff on PATH).
# Re-running continues or reuses the run in RUN; delete the folder to start over.
set -euo pipefail
RUN=${RUN:-runs/demo}
DISCDIFF=${DISCDIFF:-discdiff}
start=$(date +%s)
"$DISCDIFF" train experiment=demo run_dir="$RUN" trainer.progress_bar=false
"$DISCDIFF" sample experiment=demo run_dir="$RUN"
"$DISCDIFF" eval qm9 experiment=demo run_dir="$RUN" eval.samples="$RUN/samples.json"
# D-CFG toward high QED with the same (label-conditional) model: 256 molecules per strength, 64 steps
"$DISCDIFF" eval guidance experiment=demo run_dir="$RUN" guidance=cfg "study.gammas=[0,1,3]" \
  study.name=demo study.output_dir="$RUN" sampling.num_samples=256 sampling.batch_size=256 sampling.steps=64
echo "demo finished in $(( $(date +%s) - start )) s; run folder: $RUN (samples.json, eval/molecules.png,"
echo "  eval/qm9_metrics.csv, guidance.csv, guidance_pareto.png, samples/demo_cfg_g*_s1.json)"
