#!/usr/bin/env bash
# The paper's LM1B recipe (DiT small, bert-base-uncased word pieces padded to 128, batch 512,
# bf16, 1M steps). Restarting the same command resumes from RUN_DIR's newest readable checkpoint.
#   MODEL=ar|mdlm|udlm (default udlm)   DATA=lm1b (padded, as the paper) | lm1b_wrap (MDLM's wrapped)
#   RUN_DIR (default runs/$DATA-$MODEL)   LOGGER=csv|tensorboard|wandb (default csv)
# The first start tokenizes LM1B once into the token cache ($DISCDIFF_CACHE); `discdiff prepare
# data=lm1b` does that ahead of a GPU job. Extra arguments are passed on as overrides:
#   MODEL=udlm LOGGER=wandb bash scripts/train_lm1b.sh trainer.devices=8 trainer.num_nodes=2
set -euo pipefail
MODEL=${MODEL:-udlm}
DATA=${DATA:-lm1b}
RUN_DIR=${RUN_DIR:-runs/${DATA}-${MODEL}}
exec "${DISCDIFF:-discdiff}" train experiment=lm1b data="${DATA}" algo="${MODEL}" logger="${LOGGER:-csv}" \
  run_dir="${RUN_DIR}" "$@"
