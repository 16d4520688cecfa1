#!/usr/bin/env bash
# Discrete consistency distillation of the text study's label-conditional UDLM (IMDB stand-in for
# Amazon Polarity, bert-base-uncased word pieces, 32 tokens, micro DiT; bench/text_cpu.sh trains it
# and the evaluation classifier: METHODS=none ALGOS=udlm bash bench/text_cpu.sh), on a CPU. The
# student at 4 and 8 steps against the teacher at 8 and 128 steps, D-CFG gamma 0 and 3 toward
# positive reviews, N samples per cell, with and without a greedy last step: target accuracy by the
# evaluation classifier, gen-PPL, entropy and MAUVE under the judge (smollm2 offline). One study
# folder (OUT/guidance.csv); results: BENCHMARKS.md.
# Distillation: ROUNDS rounds of SPR steps, delta 1/64 doubling to 1/8 at the fourth round, DUO's
# log-SNR window [-4, -1] (alpha ~1 down to ~0 for 30,522 tokens), lr 3e-4 constant after 20
# warm-up steps, the teacher's label dropout 0.1. ARMS "student-cfg3" adds a student distilled on
# the teacher's D-CFG prediction at gamma 3 (distil.cfg_gamma=3; its gamma 1 is the guided teacher).
#   ROOT (default runs/text-cpu: the teacher ROOT/udlm and ROOT/oracle)   OUT (default runs/distil-text)
#   ROUNDS (4)   SPR (default 100)   N (default 64)   JUDGE (default smollm2)   DISCDIFF (default discdiff)
#   ARMS (default "student teacher")
# Offline, the word-piece vocabulary comes from DISCDIFF_BERT_VOCAB=tests/fixtures/bert/vocab.txt (and HF_HUB_OFFLINE=1).
set -euo pipefail
ROOT=${ROOT:-runs/text-cpu}
OUT=${OUT:-runs/distil-text}
D=${DISCDIFF:-discdiff}
N=${N:-64}
SPR=${SPR:-100}
TEXT=(experiment=amazon_polarity data=imdb data.source=offline)
for run in udlm oracle; do
  [ -e "$ROOT/$run/checkpoints/best.ckpt" ] || { echo "train the teacher first: METHODS=none ALGOS=udlm bash bench/text_cpu.sh"; exit 2; }
done
distil() {  # NAME [overrides...]
  local name=$1; shift
  "$D" distil "${TEXT[@]}" algo=udlm model=micro data.length=32 trainer.precision=32 loader.global_batch_size=32 \
    loader.batch_size=32 trainer.limit_val_batches=4 distil.teacher="$ROOT/udlm" run_dir="$OUT/$name" \
    distil.rounds="${ROUNDS:-4}" distil.steps_per_round="$SPR" distil.delta=0.015625 distil.log_snr_min=-4 \
    distil.log_snr_max=-1 optim.lr=3e-4 lr_scheduler=constant_warmup lr_scheduler.warmup_steps=20 \
    trainer.val_check_interval="$SPR" checkpointing.every_n_steps="$SPR" trainer.progress_bar=false "$@"
}
study() {  # NAME RUN STEPS GAMMAS
  local name=$1 run=$2 steps=$3 gammas=$4
  for greedy in false true; do
    "$D" eval guidance "${TEXT[@]}" run_dir="$run" algo=udlm study.name="$name" guidance=cfg guidance.condition=1 \
      "study.gammas=$gammas" "study.steps=$steps" sampling.greedy_last="$greedy" sampling.num_samples="$N" \
      sampling.batch_size="$N" eval.classifier="$ROOT/oracle" eval.judge="${JUDGE:-smollm2}" study.output_dir="$OUT/study"
  done
}
for arm in ${ARMS:-student teacher}; do
  case $arm in
    student) distil student; study student "$OUT/student" "[4,8]" "[0,3]" ;;
    student-cfg3) distil student-cfg3 distil.cfg_gamma=3; study student-cfg3 "$OUT/student-cfg3" "[4,8]" "[0,1,3]" ;;
    teacher) study teacher "$ROOT/udlm" "[8,128]" "[0,3]" ;;
    *) echo "unknown arm '$arm'; allowed: student student-cfg3 teacher" >&2; exit 2 ;;
  esac
done
