#!/usr/bin/env bash
# One method of the QM9 guidance study: sample at each guidance strength and seed, score the
# molecules and add the rows to $STUDY_DIR/guidance.csv and guidance_pareto.png.
#   MODEL=ar|mdlm|udlm (default udlm)   PROP=qed|ring_count (default qed)
#   GUIDANCE=cfg|cbg|nos (mdlm, udlm) | cfg|fudge|pplm (ar) (default cfg)
#   GAMMA: one strength, or GAMMAS: a comma list (default 0,1,2,3)   SEEDS (default 1,2,3)
#   RUN_DIR (default runs/qm9-$MODEL-$PROP)   CLASSIFIER (default the run of scripts/train_classifier_qm9.sh)
#   STUDY_DIR (default runs/qm9-guidance-$PROP); extra arguments are overrides:
#   MODEL=mdlm GUIDANCE=cbg GAMMAS=0,1,3,5 bash scripts/guidance_qm9.sh sampling.num_samples=1024
set -euo pipefail
MODEL=${MODEL:-udlm}
PROP=${PROP:-qed}
GUIDANCE=${GUIDANCE:-cfg}
GAMMAS=${GAMMAS:-${GAMMA:-0,1,2,3}}
SEEDS=${SEEDS:-1,2,3}
RUN_DIR=${RUN_DIR:-runs/qm9-${MODEL}-${PROP}}
STUDY_DIR=${STUDY_DIR:-runs/qm9-guidance-${PROP}}
source "$(dirname "$0")/lib/guidance.sh"
KIND=$(classifier_kind "$GUIDANCE")
extra=()
if [ -n "$KIND" ]; then
  extra+=("guidance.classifier=${CLASSIFIER:-runs/qm9-${MODEL}-${PROP}-${KIND}-clf}")
fi
exec "${DISCDIFF:-discdiff}" eval guidance experiment=qm9 algo="${MODEL}" data.label_col="${PROP}" \
  run_dir="${RUN_DIR}" guidance="${GUIDANCE}" "study.gammas=[${GAMMAS}]" "study.seeds=[${SEEDS}]" \
  study.property="${PROP}" study.name="${MODEL}" study.output_dir="${STUDY_DIR}" "${extra[@]}" "$@"
