"""Samplers: diffusion sampling (ancestral or predictor-corrector, guided, semi-autoregressive)
and autoregressive decoding with a KV cache."""

from .autoregressive import sample_autoregressive
from ..step_schedules import Ancestral, Psi, ReMDM, StepSchedule, step_schedule, time_grid
from .diffusion import SampleOutput, sample

__all__ = ["Ancestral", "Psi", "ReMDM", "SampleOutput", "StepSchedule", "sample", "sample_autoregressive",
           "step_schedule", "time_grid"]
