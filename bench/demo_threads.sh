#!/usr/bin/env bash
# The demo's training speed under each OpenMP thread setting, on an idle machine and with one core
# kept busy by another process (a laptop running other things). Run it on an otherwise idle
# machine: bash bench/demo_threads.sh [STEPS]   (default 300 steps per run, ~8 minutes in all)
#
# Settings: libgomp's own default wait (GOMP_SPINCOUNT=300000: waiting threads spin), the CLI's
# default (GOMP_SPINCOUNT=10000, see discdiff.cli), a short spin (1000), and a single thread.
set -euo pipefail
STEPS=${STEPS:-${1:-300}}
DISCDIFF=${DISCDIFF:-.venv/bin/discdiff}
WORK=$(mktemp -d)
trap 'kill $BUSY 2>/dev/null || true; rm -rf "$WORK"' EXIT
BUSY=
printf "| setting | idle: steps/s | one core busy: steps/s | slowdown |\n|---|---|---|---|\n"
for setting in GOMP_SPINCOUNT=300000 GOMP_SPINCOUNT=10000 GOMP_SPINCOUNT=1000 OMP_NUM_THREADS=1; do
  rates=()
  for load in idle busy; do
    if [ "$load" = busy ]; then python3 -c "while True: pass" & BUSY=$!; fi
    rm -rf "$WORK/run"
    start=$(date +%s.%N)
    env "$setting" "$DISCDIFF" train experiment=demo run_dir="$WORK/run" trainer.progress_bar=false \
      trainer.max_steps="$STEPS" trainer.val_check_interval="$STEPS" checkpointing.every_n_steps="$STEPS" \
      trainer.limit_val_batches=1 > "$WORK/log" 2>&1
    seconds=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
    rates+=("$(python3 -c "import sys; print(f'{int(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$STEPS" "$seconds")")
    if [ -n "$BUSY" ]; then kill "$BUSY"; wait "$BUSY" 2>/dev/null || true; BUSY=; fi
  done
  slowdown=$(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.1f}x')" "${rates[0]}" "${rates[1]}")
  printf "| %s | %s | %s | %s |\n" "$setting" "${rates[0]}" "${rates[1]}" "$slowdown"
done
echo "(steps/s over whole runs of $STEPS steps: start-up, data loading and one validation batch included)"
