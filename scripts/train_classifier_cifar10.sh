#!/usr/bin/env bash
# A classifier for the CIFAR10 study (experiment=cifar10_classifier, a UNet encoder).
#   KIND=clean (default: the evaluation classifier of eval images and the study: fid_clf and the F1
#        toward each class; serves every model) | noisy (D-CBG, matched to MODEL's process)
#   MODEL=mdlm|udlm (kind=noisy; default udlm)   RUN_DIR (default runs/cifar10-clean-clf, or
#   runs/cifar10-$MODEL-noisy-clf); extra arguments are overrides
set -euo pipefail
MODEL=${MODEL:-udlm}
KIND=${KIND:-clean}
if [ "$KIND" = clean ]; then RUN_DIR=${RUN_DIR:-runs/cifar10-clean-clf}; else RUN_DIR=${RUN_DIR:-runs/cifar10-${MODEL}-${KIND}-clf}; fi
exec "${DISCDIFF:-discdiff}" train-classifier experiment=cifar10_classifier algo="${MODEL}" classifier.kind="${KIND}" \
  run_dir="${RUN_DIR}" "$@"
