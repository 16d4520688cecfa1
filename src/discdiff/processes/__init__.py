"""Forward noising processes: absorbing (MDLM) and uniform (UDLM)."""

from .absorbing import AbsorbingProcess
from .base import DiscreteProcess, sample_categorical
from .uniform import UniformProcess

__all__ = ["AbsorbingProcess", "DiscreteProcess", "UniformProcess", "sample_categorical"]
