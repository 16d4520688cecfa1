#!/usr/bin/env bash
# A classifier for the QM9 guidance study, matched to the generator of scripts/train_qm9.sh.
#   MODEL=ar|mdlm|udlm (default udlm)   PROP=qed|ring_count (default qed)
#   KIND=noisy (D-CBG) | head (NOS for mdlm/udlm, PPLM for ar) | prefix (FUDGE) | clean (evaluation);
#        default: noisy for mdlm/udlm, prefix for ar
#   GENERATOR (kind=head; default runs/qm9-$MODEL-$PROP)   RUN_DIR (default runs/qm9-$MODEL-$PROP-$KIND-clf)
#   MODEL=mdlm KIND=head bash scripts/train_classifier_qm9.sh trainer.devices=2
set -euo pipefail
MODEL=${MODEL:-udlm}
PROP=${PROP:-qed}
if [ "$MODEL" = ar ]; then KIND=${KIND:-prefix}; else KIND=${KIND:-noisy}; fi
GENERATOR=${GENERATOR:-runs/qm9-${MODEL}-${PROP}}
RUN_DIR=${RUN_DIR:-runs/qm9-${MODEL}-${PROP}-${KIND}-clf}
extra=()
if [ "$KIND" = head ]; then extra+=("classifier.generator=${GENERATOR}"); fi
exec "${DISCDIFF:-discdiff}" train-classifier experiment=qm9_classifier algo="${MODEL}" data.label_col="${PROP}" \
  classifier.kind="${KIND}" run_dir="${RUN_DIR}" "${extra[@]}" "$@"
