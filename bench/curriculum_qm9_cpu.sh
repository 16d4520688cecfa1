#!/usr/bin/env bash
# DUO's Gaussian curriculum against plain UDLM training on QM9 at demo scale, on a CPU: the demo's
# label-conditional UDLM (experiment=demo) trained for STEPS optimizer steps with a constant
# learning rate after the warm-up (so that the run can stop at each STAGE and resume exactly), the
# curriculum arm on the relaxation for the first half (DUO trains half its steps on it) over the
# log-SNR window [-3.5, 1] (alpha 0.999 down to 0.064 for QM9's 34 tokens; DUO's LM1B window
# [-3.5, -1.75] gives 0.94 down to 0.05 for 30,522 word pieces), both for SEEDS. At each stage:
# the validation NELBO (logged every 250 steps) and the valid fraction of N molecules (64 steps,
# unguided and D-CFG gamma 3). Table and plot: bench/curriculum_report.py; results: BENCHMARKS.md.
#   ROOT (default runs/curriculum)   STEPS (default 2500)   STAGES (default "500 1250 2500")
#   SEEDS (default "1 2")   N (molecules per point, default 512)   DISCDIFF (default discdiff)
#   PYTHON (default python: one with matplotlib, e.g. .venv/bin/python)
set -euo pipefail
ROOT=${ROOT:-runs/curriculum}
STEPS=${STEPS:-2500}
D=${DISCDIFF:-discdiff}
N=${N:-512}
for seed in ${SEEDS:-1 2}; do
  for arm in plain curriculum; do
    run=$ROOT/$arm-s$seed
    extra=(); [ "$arm" = curriculum ] && extra=(training.curriculum.steps=$((STEPS / 2)) training.curriculum.log_snr_max=1.0)
    for stage in ${STAGES:-500 1250 2500}; do
      "$D" train experiment=demo run_dir="$run" seed="$seed" lr_scheduler=constant_warmup \
        trainer.max_minutes=null trainer.max_steps="$stage" trainer.val_check_interval=250 \
        checkpointing.every_n_steps=250 trainer.progress_bar=false "${extra[@]}"
      "$D" eval guidance experiment=demo run_dir="$run" checkpoint="$run/checkpoints/last.ckpt" guidance=cfg \
        "study.gammas=[0,3]" "study.steps=[64]" study.name="$arm-s$seed-$stage" sampling.num_samples="$N" \
        sampling.batch_size="$N" study.output_dir="$ROOT/study"
    done
  done
done
"${PYTHON:-python}" "$(dirname "$0")/curriculum_report.py" "$ROOT"
