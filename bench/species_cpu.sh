#!/usr/bin/env bash
# The Species10 study at demo scale, on a CPU: the offline genomes (Debian's ragout-examples, four
# bacteria) in windows of LENGTH nucleotides, a micro DiMamba UDLM and MDLM trained for MINUTES
# each with species labels (condition dropout 0.1), a clean DiT oracle, then D-CFG at gamma
# 0 / 1 / 3 toward each species, scored by `eval guidance` (3-mer / 6-mer JS distance, AUROC of a
# real-vs-generated discriminator, the oracle's macro F1 and MCC). Results: BENCHMARKS.md.
#   ROOT (default runs/species-cpu)   LENGTH (default 256)   MINUTES (per generator, default 7)
#   N (sequences per species and setting, default 16)   DISCDIFF (default discdiff)
# The DiMamba keeps 4 states per channel and no expansion (d_state=4, expand=1): the plain-PyTorch
# scan holds (B, L, channels, states) tensors, which the CPU reads at memory speed (BENCHMARKS.md).
set -euo pipefail
ROOT=${ROOT:-runs/species-cpu}
D=${DISCDIFF:-discdiff}
N=${N:-16}
DATA=(data.source=offline data.length="${LENGTH:-256}" trainer.precision=32 trainer.progress_bar=false
      trainer.val_check_interval=50 checkpointing.every_n_steps=50 trainer.limit_val_batches=4
      loader.global_batch_size=16 loader.batch_size=16 lr_scheduler.warmup_steps=100)
for algo in udlm mdlm; do
  [ -e "$ROOT/$algo/checkpoints/best.ckpt" ] || "$D" train experiment=species10 "${DATA[@]}" algo="$algo" \
    model.size=micro model.dropout=0.0 model.d_state=4 model.expand=1 trainer.max_steps=100000 trainer.max_minutes="${MINUTES:-7}" \
    trainer.progress_every=200 run_dir="$ROOT/$algo"
done
[ -e "$ROOT/oracle/checkpoints/best.ckpt" ] || "$D" train-classifier experiment=species10_classifier "${DATA[@]}" \
  classifier.kind=clean classifier.model=micro trainer.max_steps=100000 trainer.max_minutes=3 run_dir="$ROOT/oracle"
for algo in udlm mdlm; do
  "$D" eval guidance experiment=species10 "${DATA[@]}" run_dir="$ROOT/$algo" study.name="$algo" guidance=cfg \
    "study.gammas=[0,1,3]" "study.conditions=[0,1,2,3]" sampling.num_samples="$N" sampling.batch_size="$N" \
    sampling.steps=32 eval.classifier="$ROOT/oracle" study.output_dir="$ROOT/study"
done
