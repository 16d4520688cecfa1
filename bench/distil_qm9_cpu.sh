#!/usr/bin/env bash
# Discrete consistency distillation of the demo's label-conditional UDLM on QM9, on a CPU, and the
# few-step comparison of issue 23: the student at 4 and 8 steps against the teacher at 8, 32 and
# 128 steps, N molecules per cell, unguided and D-CFG gamma 3, each with and without a greedy last
# step, into one study folder (ROOT/study: guidance.csv, guidance_steps.png). Results: BENCHMARKS.md.
# Distillation: ROUNDS rounds of SPR steps (the demo's DDP set-up), delta 1/64 doubling to 1/8 at
# the fourth round (the step of an 8-step sampler), log-SNR window [-4, 2] (alpha 0.998 down to
# 0.03 for QM9's 34 tokens), lr 3e-4 constant after 50 warm-up steps (DUO distils at a fifth of its
# training lr), the demo's label dropout 0.1 (the student learns conditional and null labels).
#   TEACHER (default runs/demo)   ROOT (default runs/distil)   ROUNDS (default 4)   SPR (default 400)
#   N (default 512)   DISCDIFF (default discdiff)
set -euo pipefail
TEACHER=${TEACHER:-runs/demo}
ROOT=${ROOT:-runs/distil}
D=${DISCDIFF:-discdiff}
N=${N:-512}
SPR=${SPR:-400}
"$D" distil experiment=demo distil.teacher="$TEACHER" run_dir="$ROOT/student" distil.rounds="${ROUNDS:-4}" \
  distil.steps_per_round="$SPR" distil.delta=0.015625 distil.log_snr_min=-4 distil.log_snr_max=2 optim.lr=3e-4 \
  lr_scheduler=constant_warmup lr_scheduler.warmup_steps=50 trainer.val_check_interval="$SPR" \
  checkpointing.every_n_steps="$SPR" trainer.progress_bar=false
study() {  # NAME RUN STEPS [overrides...]
  local name=$1 run=$2 steps=$3; shift 3
  for greedy in false true; do
    "$D" eval guidance experiment=demo run_dir="$run" guidance=cfg "study.gammas=[0,3]" "study.steps=$steps" \
      study.name="$name" sampling.greedy_last="$greedy" sampling.num_samples="$N" sampling.batch_size="$N" \
      study.output_dir="$ROOT/study" "$@"
  done
}
study student "$ROOT/student" "[4,8]"
study teacher "$TEACHER" "[8,32,128]"
