#!/usr/bin/env bash
# Discrete consistency distillation of the demo's label-conditional UDLM on QM9, on a CPU, and the
# few-step comparison of issue 23: students at 4 and 8 steps against the teacher at 8, 32 and 128
# steps, N molecules per cell, with and without a greedy last step, into one study folder
# (ROOT/study: guidance.csv, guidance_steps.png). Results: BENCHMARKS.md.
# Distillation: ROUNDS rounds of SPR steps (the demo's DDP set-up), delta 1/64 doubling to 1/8 at
# the fourth round (the step of an 8-step sampler), log-SNR window [-4, 2] (alpha 0.998 down to
# 0.03 for QM9's 34 tokens), lr 3e-4 constant after 50 warm-up steps (DUO distils at a fifth of its
# training lr), the demo's label dropout 0.1 (the student learns conditional and null labels).
# Two students: "student" distils the teacher as it is and is steered by D-CFG at gamma 3;
# "student-cfg3" distils the teacher's D-CFG prediction at gamma 3 (distil.cfg_gamma=3), so its
# gamma 1 (its plain conditional prediction) is the guided teacher's gamma 3.
# With CLASSIFIER (a noisy classifier run of the teacher's data), first-order D-CBG at gamma 3 too,
# at seed 1 only (a demo-scale noisy classifier barely beats the constant guess; see BENCHMARKS.md).
# The tables: python bench/distil_report.py ROOT/study (seeds pooled, standard errors).
#   TEACHER (default runs/demo)   ROOT (default runs/distil)   ROUNDS (default 4)   SPR (default 400)
#   N (default 512)   SEEDS (sampling seeds, default [1,2])   SEED (distillation seed, default 1)
#   DISCDIFF (default discdiff)   CLASSIFIER (default: none)
#   ARMS (default "student student-cfg3 teacher": which rows to measure)
set -euo pipefail
TEACHER=${TEACHER:-runs/demo}
ROOT=${ROOT:-runs/distil}
D=${DISCDIFF:-discdiff}
N=${N:-512}
SPR=${SPR:-400}
ARMS=${ARMS:-student student-cfg3 teacher}
distil() {  # NAME [overrides...]
  local name=$1; shift
  "$D" distil experiment=demo seed="${SEED:-1}" distil.teacher="$TEACHER" run_dir="$ROOT/$name" distil.rounds="${ROUNDS:-4}" \
    distil.steps_per_round="$SPR" distil.delta=0.015625 distil.log_snr_min=-4 distil.log_snr_max=2 optim.lr=3e-4 \
    lr_scheduler=constant_warmup lr_scheduler.warmup_steps=50 trainer.val_check_interval="$SPR" \
    checkpointing.every_n_steps="$SPR" trainer.progress_bar=false "$@"
}
study() {  # NAME RUN STEPS GAMMAS [overrides...]
  local name=$1 run=$2 steps=$3 gammas=$4; shift 4
  for greedy in false true; do
    "$D" eval guidance experiment=demo run_dir="$run" guidance=cfg "study.gammas=$gammas" "study.steps=$steps" \
      study.name="$name" sampling.greedy_last="$greedy" sampling.num_samples="$N" sampling.batch_size="$N" \
      "study.seeds=${SEEDS:-[1,2]}" study.output_dir="$ROOT/study" "$@"
    if [ -n "${CLASSIFIER:-}" ]; then
      "$D" eval guidance experiment=demo run_dir="$run" guidance=cbg guidance.use_approx=true \
        guidance.classifier="$CLASSIFIER" "study.gammas=[3]" "study.steps=$steps" study.name="$name" \
        sampling.greedy_last="$greedy" sampling.num_samples="$N" sampling.batch_size="$N" \
        study.output_dir="$ROOT/study" "$@"
    fi
  done
}
for arm in $ARMS; do
  case $arm in
    student) distil student; study student "$ROOT/student" "[4,8]" "[0,3]" ;;
    student-cfg3) distil student-cfg3 distil.cfg_gamma=3; study student-cfg3 "$ROOT/student-cfg3" "[4,8]" "[0,1,3]" ;;
    teacher) study teacher "$TEACHER" "[8,32,128]" "[0,3]" ;;
    *) echo "unknown arm '$arm'; allowed: student student-cfg3 teacher" >&2; exit 2 ;;
  esac
done
