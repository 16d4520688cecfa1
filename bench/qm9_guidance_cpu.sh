#!/usr/bin/env bash
# Every guidance method on QM9 at demo scale, on a CPU: the demo's label-conditional UDLM and an AR
# model of the same size (experiment=demo), their classifiers, and `eval guidance` for each
# method into one study folder (guidance.csv, guidance_pareto.png). Results: BENCHMARKS.md.
#   ROOT (default runs/cpu-study)   UDLM (default $ROOT/udlm; trained unless it exists)
#   DISCDIFF (default discdiff)     N (molecules per setting, default 512)
# Exact D-CBG is left out: it scores L x V = 1,280 candidates per molecule and step (see
# bench/guidance_cost.py), hours on a CPU; run it on a GPU with GUIDANCE=cbg scripts/guidance_qm9.sh.
set -euo pipefail
ROOT=${ROOT:-runs/cpu-study}
UDLM=${UDLM:-$ROOT/udlm}
D=${DISCDIFF:-discdiff}
N=${N:-512}
CLF=(experiment=demo trainer.progress_bar=false optim.lr=1e-3 trainer.val_check_interval=500
     checkpointing.every_n_steps=500 lr_scheduler.warmup_steps=100)
STUDY=(experiment=demo study.output_dir="$ROOT/study" "study.gammas=[0,1,2,3]" sampling.num_samples="$N"
       sampling.batch_size="$N" sampling.steps=64)
[ -e "$UDLM/checkpoints/best.ckpt" ] || "$D" train experiment=demo run_dir="$UDLM" trainer.progress_bar=false
"$D" train experiment=demo algo=ar run_dir="$ROOT/ar" trainer.progress_bar=false
"$D" train-classifier "${CLF[@]}" classifier.kind=noisy trainer.max_steps=2000 run_dir="$ROOT/udlm-noisy"
"$D" train-classifier "${CLF[@]}" classifier.kind=head classifier.generator="$UDLM" trainer.max_steps=1000 run_dir="$ROOT/udlm-head"
"$D" train-classifier "${CLF[@]}" algo=ar classifier.kind=prefix trainer.max_steps=2000 run_dir="$ROOT/ar-prefix"
"$D" train-classifier "${CLF[@]}" algo=ar classifier.kind=head classifier.generator="$ROOT/ar" trainer.max_steps=1000 run_dir="$ROOT/ar-head"
"$D" eval guidance "${STUDY[@]}" run_dir="$UDLM" study.name=udlm guidance=cfg
"$D" eval guidance "${STUDY[@]}" run_dir="$UDLM" study.name=udlm guidance=cbg guidance.use_approx=true \
  guidance.classifier="$ROOT/udlm-noisy"
"$D" eval guidance "${STUDY[@]}" run_dir="$UDLM" study.name=udlm guidance=nos guidance.classifier="$ROOT/udlm-head"
"$D" eval guidance "${STUDY[@]}" run_dir="$ROOT/ar" study.name=ar guidance=cfg
"$D" eval guidance "${STUDY[@]}" run_dir="$ROOT/ar" study.name=ar guidance=fudge guidance.classifier="$ROOT/ar-prefix"
"$D" eval guidance "${STUDY[@]}" run_dir="$ROOT/ar" study.name=ar guidance=pplm guidance.classifier="$ROOT/ar-head"
