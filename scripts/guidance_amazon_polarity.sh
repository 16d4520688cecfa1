#!/usr/bin/env bash
# One method of the sentiment guidance study: samples at each strength and seed, scored by the
# evaluation classifier (target_accuracy) and a causal LM judge (gen-PPL, entropy, diversity).
#   MODEL=ar|mdlm|udlm (default udlm)   DATA=amazon_polarity | imdb   CONDITION=1 (positive) | 0
#   GUIDANCE=cfg|cbg|nos (mdlm, udlm) | cfg|fudge|pplm (ar) (default cfg)
#   GAMMAS (default 0,1,3)   SEEDS (default 1)   JUDGE (default gpt2-large; smollm2 offline)
#   STUDY_DIR (default runs/$DATA-guidance); extra arguments are overrides
set -euo pipefail
MODEL=${MODEL:-udlm}
DATA=${DATA:-amazon_polarity}
GUIDANCE=${GUIDANCE:-cfg}
source "$(dirname "$0")/lib/guidance.sh"
KIND=$(classifier_kind "$GUIDANCE")
extra=()
if [ -n "$KIND" ]; then extra+=("guidance.classifier=${CLASSIFIER:-runs/${DATA}-${MODEL}-${KIND}-clf}"); fi
exec "${DISCDIFF:-discdiff}" eval guidance experiment=amazon_polarity data="${DATA}" algo="${MODEL}" \
  run_dir="${RUN_DIR:-runs/${DATA}-${MODEL}}" guidance="${GUIDANCE}" guidance.condition="${CONDITION:-1}" \
  "study.gammas=[${GAMMAS:-0,1,3}]" "study.seeds=[${SEEDS:-1}]" study.name="${MODEL}" \
  eval.classifier="${EVAL_CLASSIFIER:-runs/${DATA}-clean-clf}" eval.judge="${JUDGE:-gpt2-large}" \
  study.output_dir="${STUDY_DIR:-runs/${DATA}-guidance}" "${extra[@]}" "$@"
