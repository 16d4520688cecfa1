#!/usr/bin/env bash
# A classifier for the sentiment study, matched to the generator of scripts/train_amazon_polarity.sh.
#   MODEL=ar|mdlm|udlm (default udlm)   DATA=amazon_polarity | imdb
#   KIND=noisy (D-CBG) | head (NOS for mdlm/udlm, PPLM for ar) | prefix (FUDGE) | clean (the evaluation
#        classifier: eval.classifier); default: noisy for mdlm/udlm, prefix for ar
#   GENERATOR (kind=head; default runs/$DATA-$MODEL)   RUN_DIR (default runs/$DATA-$MODEL-$KIND-clf, or
#   runs/$DATA-clean-clf for KIND=clean, which serves every model)
set -euo pipefail
MODEL=${MODEL:-udlm}
DATA=${DATA:-amazon_polarity}
if [ "$MODEL" = ar ]; then KIND=${KIND:-prefix}; else KIND=${KIND:-noisy}; fi
GENERATOR=${GENERATOR:-runs/${DATA}-${MODEL}}
if [ "$KIND" = clean ]; then RUN_DIR=${RUN_DIR:-runs/${DATA}-clean-clf}; else RUN_DIR=${RUN_DIR:-runs/${DATA}-${MODEL}-${KIND}-clf}; fi
extra=()
if [ "$KIND" = head ]; then extra+=("classifier.generator=${GENERATOR}"); fi
exec "${DISCDIFF:-discdiff}" train-classifier experiment=amazon_polarity_classifier data="${DATA}" algo="${MODEL}" \
  classifier.kind="${KIND}" run_dir="${RUN_DIR}" "${extra[@]}" "$@"
