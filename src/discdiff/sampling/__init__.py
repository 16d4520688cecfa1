"""Samplers: ancestral diffusion sampling and autoregressive decoding with a KV cache."""

from .diffusion import SampleOutput, sample, time_grid

__all__ = ["SampleOutput", "sample", "time_grid"]
