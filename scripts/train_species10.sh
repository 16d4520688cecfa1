#!/usr/bin/env bash
# Species10 generators (experiment=species10: DiMamba, 32,768 nucleotides, species-conditional with
# condition dropout for D-CFG, reverse-complement augmentation). The first start tokenizes the
# genomes into the token cache.
#   MODEL=ar|mdlm|udlm (default udlm)   SOURCE=auto (HF yairschiff/ten_species) | offline (Debian's
#   ragout-examples genomes)   RUN_DIR (default runs/species10-$MODEL); extra arguments are overrides:
#   MODEL=mdlm LOGGER=wandb bash scripts/train_species10.sh data.length=16384
set -euo pipefail
MODEL=${MODEL:-udlm}
exec "${DISCDIFF:-discdiff}" train experiment=species10 algo="${MODEL}" data.source="${SOURCE:-auto}" \
  logger="${LOGGER:-csv}" run_dir="${RUN_DIR:-runs/species10-${MODEL}}" "$@"
