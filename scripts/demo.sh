#!/usr/bin/env bash
# The embedded demo (`make demo`): train a small UDLM on QM9, sample molecules, evaluate them.
# RUN: run folder (default runs/demo). DISCDIFF: the discdiff command (default: discdiff on PATH).
# Re-running continues or reuses the run in RUN; delete the folder to start over.
set -euo pipefail
RUN=${RUN:-runs/demo}
DISCDIFF=${DISCDIFF:-discdiff}
start=$(date +%s)
"$DISCDIFF" train experiment=demo run_dir="$RUN" trainer.progress_bar=false
"$DISCDIFF" sample experiment=demo run_dir="$RUN"
"$DISCDIFF" eval qm9 experiment=demo run_dir="$RUN" eval.samples="$RUN/samples.json"
echo "demo finished in $(( $(date +%s) - start )) s; run folder: $RUN (samples.json, eval/molecules.png, eval/qm9_metrics.csv)"
