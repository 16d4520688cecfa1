#!/usr/bin/env bash
# Amazon Polarity generators for the sentiment study (experiment=amazon_polarity: DiT small,
# 128 word pieces, label-conditional). The first start tokenizes the reviews into the token cache.
#   MODEL=ar|mdlm|udlm (default udlm)   DATA=amazon_polarity | imdb (the offline stand-in)
#   RUN_DIR (default runs/$DATA-$MODEL); extra arguments are overrides:
#   MODEL=mdlm LOGGER=wandb bash scripts/train_amazon_polarity.sh trainer.devices=8
set -euo pipefail
MODEL=${MODEL:-udlm}
DATA=${DATA:-amazon_polarity}
RUN_DIR=${RUN_DIR:-runs/${DATA}-${MODEL}}
exec "${DISCDIFF:-discdiff}" train experiment=amazon_polarity data="${DATA}" algo="${MODEL}" \
  logger="${LOGGER:-csv}" run_dir="${RUN_DIR}" "$@"
