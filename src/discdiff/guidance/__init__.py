"""Guidance: strategies that reshape each sampling step toward a target class.

    from discdiff.guidance import CFG, CBG
    discdiff.sample(process, schedule, denoiser, shape, steps, guidance=CBG(classifier, gamma=2, condition=1))

Diffusion (MDLM, UDLM): CFG, CBG, NOS. Autoregressive: CFG, FUDGE, PPLM.
"""

from ..processes.base import temper
from .base import Classifier, Guidance, Step, TokenStep, normalize
from .cbg import CBG
from .cfg import CFG
from .fudge import FUDGE
from .hidden import HiddenStateModel
from .nos import NOS
from .pplm import PPLM

__all__ = ["CBG", "CFG", "FUDGE", "NOS", "PPLM", "Classifier", "Guidance", "HiddenStateModel", "Step", "TokenStep",
           "normalize", "temper"]
