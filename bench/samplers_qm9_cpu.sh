#!/usr/bin/env bash
# Samplers against steps on QM9 at demo scale, on a CPU: the demo's label-conditional UDLM and an
# MDLM of the same size (experiment=demo algo=mdlm), 512 molecules per setting at 16 to 256 steps,
# each of sampling.method=ancestral|remdm|psi (their default keys) and ReMDM's conf schedule,
# unguided (gamma 0) and D-CFG gamma 3, into one study folder (guidance.csv, guidance_steps.png).
# Results: BENCHMARKS.md.
#   ROOT (default runs/samplers)   UDLM (default runs/demo: `make demo` trains it; trained here unless it exists)
#   DISCDIFF (default discdiff)    N (molecules per setting, default 512)   STEPS (default [16,32,64,128,256])
#   SAMPLERS (default "ancestral remdm remdm:conf psi": sampling.method[:sampling.remdm_schedule])
set -euo pipefail
ROOT=${ROOT:-runs/samplers}
UDLM=${UDLM:-runs/demo}
D=${DISCDIFF:-discdiff}
N=${N:-512}
STEPS=${STEPS:-[16,32,64,128,256]}
SAMPLERS=${SAMPLERS:-ancestral remdm remdm:conf psi}
[ -e "$UDLM/checkpoints/best.ckpt" ] || "$D" train experiment=demo run_dir="$UDLM" trainer.progress_bar=false
[ -e "$ROOT/mdlm/checkpoints/best.ckpt" ] || "$D" train experiment=demo algo=mdlm run_dir="$ROOT/mdlm" \
  trainer.progress_bar=false
for model in udlm mdlm; do
  run=$UDLM; [ "$model" = mdlm ] && run=$ROOT/mdlm
  for sampler in $SAMPLERS; do
    method=${sampler%%:*}; keys=()
    [ "$sampler" != "$method" ] && keys=(sampling.remdm_schedule="${sampler#*:}")
    "$D" eval guidance experiment=demo run_dir="$run" study.name="$model" guidance=cfg "study.gammas=[0,3]" \
      "study.steps=$STEPS" sampling.method="$method" "${keys[@]}" sampling.num_samples="$N" \
      sampling.batch_size="$N" study.output_dir="$ROOT/qm9"
  done
done
