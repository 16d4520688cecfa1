"""Samplers: ancestral diffusion sampling and autoregressive decoding with a KV cache."""

from .autoregressive import sample_autoregressive
from .diffusion import SampleOutput, sample, time_grid

__all__ = ["SampleOutput", "sample", "sample_autoregressive", "time_grid"]
