#!/usr/bin/env bash
# The image study at demo scale, on a CPU: Fashion-MNIST (the offline stand-in for CIFAR10) on the
# small UNet, MDLM and UDLM trained for MINUTES each with class labels (condition dropout 0.1), a
# clean micro-UNet evaluation classifier, then D-CFG at gamma 0 / 1 / 4 toward each class with 128
# and 32 sampling steps, scored by `eval guidance` (fid_clf against the real test images, the
# classifier's macro F1 toward the target class), and class grids by `eval images`.
# Results: BENCHMARKS.md.
#   ROOT (default runs/images-cpu)   MINUTES (per generator, default 8)   N (images per class and
#   setting, default 8)   DISCDIFF (default discdiff)
set -euo pipefail
ROOT=${ROOT:-runs/images-cpu}
D=${DISCDIFF:-discdiff}
N=${N:-8}
for algo in mdlm udlm; do
  [ -e "$ROOT/$algo/checkpoints/best.ckpt" ] || "$D" train experiment=fashion_mnist algo="$algo" \
    trainer.max_minutes="${MINUTES:-8}" trainer.max_steps=100000 trainer.val_check_interval=100 \
    checkpointing.every_n_steps=100 trainer.progress_bar=false run_dir="$ROOT/$algo"
done
[ -e "$ROOT/oracle/checkpoints/best.ckpt" ] || "$D" train-classifier experiment=fashion_mnist_classifier \
  classifier.kind=clean trainer.max_minutes=4 trainer.max_steps=100000 trainer.val_check_interval=100 \
  checkpointing.every_n_steps=100 trainer.progress_bar=false run_dir="$ROOT/oracle"
for algo in mdlm udlm; do
  for steps in 128 32; do
    "$D" eval guidance experiment=fashion_mnist run_dir="$ROOT/$algo" study.name="$algo-T$steps" guidance=cfg \
      "study.gammas=[0,1,4]" "study.conditions=[0,1,2,3,4,5,6,7,8,9]" sampling.num_samples="$N" sampling.batch_size=80 \
      sampling.steps="$steps" eval.classifier="$ROOT/oracle" study.output_dir="$ROOT/study"
  done
  "$D" eval images experiment=fashion_mnist run_dir="$ROOT/$algo" eval.classifier="$ROOT/oracle" guidance=cfg \
    guidance.gamma=4 sampling.num_samples=10 sampling.steps=128 eval.output_dir="$ROOT/$algo/eval-g4"
done
