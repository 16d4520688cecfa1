"""discdiff: guided discrete diffusion language models (AR, MDLM, UDLM).

    import discdiff
    model = discdiff.load("runs/qm9-udlm")          # a run folder, a .ckpt, a HuggingFace folder or hub id
    out = model.sample(64, steps=32)
    print(model.decode(out.tokens)[:4], out.nfe)

`discdiff.sample` is ancestral sampling with any denoiser callable and optional guidance
(`discdiff.sampling.sample`, `discdiff.guidance`); `discdiff.load_classifier` loads a classifier
of `discdiff train-classifier` for guidance or evaluation.
"""

import os
import sys
from pathlib import Path

# The command line (`discdiff ...`, `python -m discdiff ...`) lets torch's OpenMP threads yield a
# core another program needs. libgomp's waiting threads spin 300,000 times at every barrier by
# default; with one of two cores busy elsewhere that made short demo trainings 11x slower
# (bench/demo_threads.sh, BENCHMARKS.md). 10,000 spins cut that to 2.4x for a quarter of the idle
# speed (1,000: 1.2x, a third). libgomp reads the setting when torch loads, which importing the
# command line does, hence here; an exported value wins, and `import discdiff` in a program of
# one's own leaves it alone.
if Path(sys.argv[0]).name == "discdiff" or sys.orig_argv[1:3] == ["-m", "discdiff"]:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from .loading import export, load, load_classifier  # noqa: E402  (after the thread setting above)
from .sampling import sample  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["__version__", "export", "load", "load_classifier", "sample"]
