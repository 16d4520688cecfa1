#!/usr/bin/env bash
# One method of the Species10 guidance study: at each strength and seed, SAMPLES sequences toward
# each species in turn, scored against the real validation windows of that species (3-mer / 6-mer
# JS distance, discriminator AUROC) and by the evaluation classifier (accuracy, macro F1, MCC).
#   MODEL=ar|mdlm|udlm (default udlm)   SOURCE=auto | offline   GUIDANCE=cfg|cbg|nos (mdlm, udlm) |
#   cfg|fudge|pplm (ar) (default cfg)   GAMMAS (default 0,1,2,3)   SEEDS (default 1)
#   SPECIES (default all: 0,...,9 for the hub data, 0,1,2,3 offline)   SAMPLES per species (default 64)
#   EVAL_CLASSIFIER (default runs/species10-clean-clf)   STUDY_DIR (default runs/species10-guidance)
set -euo pipefail
MODEL=${MODEL:-udlm}
SOURCE=${SOURCE:-auto}
GUIDANCE=${GUIDANCE:-cfg}
if [ "$SOURCE" = offline ]; then ALL=0,1,2,3; else ALL=0,1,2,3,4,5,6,7,8,9; fi
source "$(dirname "$0")/lib/guidance.sh"
KIND=$(classifier_kind "$GUIDANCE")
extra=()
if [ -n "$KIND" ]; then extra+=("guidance.classifier=${CLASSIFIER:-runs/species10-${MODEL}-${KIND}-clf}"); fi
exec "${DISCDIFF:-discdiff}" eval guidance experiment=species10 algo="${MODEL}" data.source="${SOURCE}" \
  run_dir="${RUN_DIR:-runs/species10-${MODEL}}" guidance="${GUIDANCE}" "study.conditions=[${SPECIES:-$ALL}]" \
  "study.gammas=[${GAMMAS:-0,1,2,3}]" "study.seeds=[${SEEDS:-1}]" study.name="${MODEL}" \
  sampling.num_samples="${SAMPLES:-64}" eval.classifier="${EVAL_CLASSIFIER:-runs/species10-clean-clf}" \
  study.output_dir="${STUDY_DIR:-runs/species10-guidance}" "${extra[@]}" "$@"
