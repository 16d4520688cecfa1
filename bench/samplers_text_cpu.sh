#!/usr/bin/env bash
# Samplers against steps on the text study's generators (IMDB stand-in, bench/text_cpu.sh trains
# them at demo scale), on a CPU: gen-PPL, entropy and MAUVE (judge smollm2) of N samples per
# setting at each of STEPS for sampling.method=ancestral|remdm|psi, with and without
# sampling.top_p=0.9, unguided; then semi-autoregressive samples of 4x the training length
# (sampling.block_length=8 sampling.length=128). One study folder; results: BENCHMARKS.md.
#   ROOT (default runs/text-cpu: the generators and the oracle)   OUT (default runs/samplers/text)
#   N (samples per setting, default 32)   STEPS (default [16,64])   JUDGE (default smollm2)
#   MODELS (the sampler sweep, default "udlm mdlm")   SEMI_AR (the long samples, default "mdlm udlm")
#   SAMPLERS (default "ancestral remdm psi": sampling.method[:sampling.remdm_schedule])   TOP_PS (default "1.0 0.9")
# Offline, the word-piece vocabulary comes from DISCDIFF_BERT_VOCAB=tests/fixtures/bert/vocab.txt (and HF_HUB_OFFLINE=1).
set -euo pipefail
ROOT=${ROOT:-runs/text-cpu}
OUT=${OUT:-runs/samplers/text}
D=${DISCDIFF:-discdiff}
N=${N:-32}
STEPS=${STEPS:-[16,64]}
for algo in udlm mdlm; do
  [ -e "$ROOT/$algo/checkpoints/best.ckpt" ] || { echo "train the text generators first: bench/text_cpu.sh"; exit 2; }
done
study() {  # ALGO [overrides...]
  local algo=$1; shift
  "$D" eval guidance experiment=amazon_polarity data=imdb data.source=offline run_dir="$ROOT/$algo" algo="$algo" \
    study.name="$algo" guidance=cfg guidance.condition=1 "study.gammas=[0]" sampling.num_samples="$N" \
    sampling.batch_size="$N" eval.classifier="$ROOT/oracle" eval.judge="${JUDGE:-smollm2}" study.output_dir="$OUT" "$@"
}
for algo in ${MODELS:-udlm mdlm}; do
  for sampler in ${SAMPLERS:-ancestral remdm psi}; do
    method=${sampler%%:*}; keys=()
    [ "$sampler" != "$method" ] && keys=(sampling.remdm_schedule="${sampler#*:}")
    for top_p in ${TOP_PS:-1.0 0.9}; do
      study "$algo" "study.steps=$STEPS" sampling.method="$method" "${keys[@]}" sampling.top_p="$top_p"
    done
  done
done
for algo in ${SEMI_AR:-mdlm udlm}; do
  study "$algo" "study.steps=[64]" sampling.block_length=8 sampling.length=128
done
