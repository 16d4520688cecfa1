#!/usr/bin/env bash
# The paper's QM9 recipe (DiT small, length 32, batch 2048, 25k steps, label-conditional with
# condition dropout 0.1 so the model also serves D-CFG).
#   MODEL=ar|mdlm|udlm (default udlm)   PROP=qed|ring_count (default qed)
#   RUN_DIR (default runs/qm9-$MODEL-$PROP); any extra arguments are passed on as overrides:
#   MODEL=mdlm PROP=ring_count bash scripts/train_qm9.sh trainer.devices=4
set -euo pipefail
MODEL=${MODEL:-udlm}
PROP=${PROP:-qed}
RUN_DIR=${RUN_DIR:-runs/qm9-${MODEL}-${PROP}}
exec "${DISCDIFF:-discdiff}" train experiment=qm9 algo="${MODEL}" data.label_col="${PROP}" run_dir="${RUN_DIR}" "$@"
