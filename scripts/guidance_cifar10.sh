#!/usr/bin/env bash
# One method of the CIFAR10 guidance study: at each strength and seed, SAMPLES images toward each
# class in turn, scored against the real test images: FID and Inception Score with the standard
# Inception-v3 (weights in INCEPTION_DIR, downloaded there when reachable; INCEPTION=false keeps
# the offline metrics only), fid_clf and the evaluation classifier's accuracy / macro F1.
#   MODEL=mdlm|udlm (default udlm)   GUIDANCE=cfg|cbg (default cfg)   GAMMAS (default 0,1,2,3)
#   SEEDS (default 1)   CLASSES (default 0,...,9)   SAMPLES per class (default 500)   STEPS (default
#   1000)   EVAL_CLASSIFIER (default runs/cifar10-clean-clf)   CLASSIFIER (cbg; default
#   runs/cifar10-$MODEL-noisy-clf)   STUDY_DIR (default runs/cifar10-guidance); extra arguments
#   are overrides
set -euo pipefail
MODEL=${MODEL:-udlm}
GUIDANCE=${GUIDANCE:-cfg}
extra=()
if [ "$GUIDANCE" = cbg ]; then extra+=("guidance.classifier=${CLASSIFIER:-runs/cifar10-${MODEL}-noisy-clf}"); fi
if [ -n "${INCEPTION_DIR:-}" ]; then extra+=("eval.inception_dir=${INCEPTION_DIR}"); fi
exec "${DISCDIFF:-discdiff}" eval guidance experiment=cifar10 algo="${MODEL}" run_dir="${RUN_DIR:-runs/cifar10-${MODEL}}" \
  guidance="${GUIDANCE}" "study.conditions=[${CLASSES:-0,1,2,3,4,5,6,7,8,9}]" "study.gammas=[${GAMMAS:-0,1,2,3}]" \
  "study.seeds=[${SEEDS:-1}]" study.name="${MODEL}" sampling.num_samples="${SAMPLES:-500}" \
  sampling.steps="${STEPS:-1000}" eval.inception="${INCEPTION:-true}" \
  eval.classifier="${EVAL_CLASSIFIER:-runs/cifar10-clean-clf}" \
  study.output_dir="${STUDY_DIR:-runs/cifar10-guidance}" "${extra[@]}" "$@"
