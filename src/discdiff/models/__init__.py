"""Neural backbones."""

from .classifier import DiTClassifier, HiddenStateClassifier
from .dit import (
    DiT,
    KVCache,
    MODEL_SIZES,
    build_backbone,
    count_parameters,
    flops_per_token,
    per_token_matmul_parameters,
)

__all__ = ["DiT", "DiTClassifier", "HiddenStateClassifier", "KVCache", "MODEL_SIZES", "build_backbone", "count_parameters",
           "flops_per_token", "per_token_matmul_parameters"]
