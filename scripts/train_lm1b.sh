#!/usr/bin/env bash
# The paper's LM1B recipe (DiT small, bert-base-uncased word pieces padded to 128, batch 512,
# bf16, 1M steps). Restarting the same command resumes from RUN_DIR/checkpoints/last.ckpt.
#   MODEL=ar|mdlm|udlm (default udlm)   RUN_DIR (default runs/lm1b-$MODEL)
#   LOGGER=csv|tensorboard|wandb (default csv); extra arguments are passed on as overrides:
#   MODEL=udlm LOGGER=wandb bash scripts/train_lm1b.sh trainer.devices=8 trainer.num_nodes=2
set -euo pipefail
MODEL=${MODEL:-udlm}
RUN_DIR=${RUN_DIR:-runs/lm1b-${MODEL}}
exec "${DISCDIFF:-discdiff}" train experiment=lm1b algo="${MODEL}" logger="${LOGGER:-csv}" run_dir="${RUN_DIR}" "$@"
