"""Guidance: strategies that reshape each reverse step toward a target class.

    from discdiff.guidance import CFG, CBG
    discdiff.sample(process, schedule, denoiser, shape, steps, guidance=CBG(classifier, gamma=2, condition=1))
"""

from .base import Classifier, Guidance, Step, normalize
from .cbg import CBG
from .cfg import CFG, temper

__all__ = ["CBG", "CFG", "Classifier", "Guidance", "Step", "normalize", "temper"]
