"""Neural backbones."""

from .classifier import ENCODERS, HiddenStateClassifier, SequenceClassifier, build_encoder
from .dit import (
    DiT,
    KVCache,
    MODEL_SIZES,
    build_backbone,
    count_parameters,
    flops_per_token,
    per_token_matmul_parameters,
)

__all__ = ["DiT", "ENCODERS", "HiddenStateClassifier", "KVCache", "MODEL_SIZES", "SequenceClassifier", "build_backbone",
           "build_encoder", "count_parameters", "flops_per_token", "per_token_matmul_parameters"]
