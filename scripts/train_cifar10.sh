#!/usr/bin/env bash
# Discretized CIFAR10 generators (experiment=cifar10: the paper's UNet, 3,072 pixel tokens per
# image, class-conditional with condition dropout for D-CFG, random horizontal flips). The first
# start reads CIFAR10 (torchvision's download into the data cache, else the HF dataset
# uoft-cs/cifar10, or data.path=a folder holding cifar-10-batches-py) and tokenizes it once.
#   MODEL=mdlm|udlm (default udlm)   RUN_DIR (default runs/cifar10-$MODEL)   LOGGER (default csv);
#   extra arguments are overrides:  MODEL=mdlm bash scripts/train_cifar10.sh trainer.max_steps=100000
set -euo pipefail
MODEL=${MODEL:-udlm}
exec "${DISCDIFF:-discdiff}" train experiment=cifar10 algo="${MODEL}" logger="${LOGGER:-csv}" \
  run_dir="${RUN_DIR:-runs/cifar10-${MODEL}}" "$@"
