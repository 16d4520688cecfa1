#!/usr/bin/env bash
# A classifier for the Species10 study, matched to the generator of scripts/train_species10.sh.
#   MODEL=ar|mdlm|udlm (default udlm)   SOURCE=auto | offline (as the generator)
#   KIND=noisy (D-CBG) | head (NOS for mdlm/udlm, PPLM for ar) | prefix (FUDGE) | clean (the oracle
#        of eval species and the study); default: noisy for mdlm/udlm, prefix for ar
#   GENERATOR (kind=head; default runs/species10-$MODEL)   RUN_DIR (default
#   runs/species10-$MODEL-$KIND-clf, or runs/species10-clean-clf for KIND=clean, which serves every model)
set -euo pipefail
MODEL=${MODEL:-udlm}
if [ "$MODEL" = ar ]; then KIND=${KIND:-prefix}; else KIND=${KIND:-noisy}; fi
if [ "$KIND" = clean ]; then RUN_DIR=${RUN_DIR:-runs/species10-clean-clf}; else RUN_DIR=${RUN_DIR:-runs/species10-${MODEL}-${KIND}-clf}; fi
extra=()
if [ "$KIND" = head ]; then extra+=("classifier.generator=${GENERATOR:-runs/species10-${MODEL}}"); fi
exec "${DISCDIFF:-discdiff}" train-classifier experiment=species10_classifier algo="${MODEL}" \
  data.source="${SOURCE:-auto}" classifier.kind="${KIND}" run_dir="${RUN_DIR}" "${extra[@]}" "$@"
