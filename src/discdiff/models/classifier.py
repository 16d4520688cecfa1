"""A noisy (time-conditioned) sequence classifier for classifier-based guidance (D-CBG).

The encoder is a non-causal DiT: its blocks run as in the denoiser and its last hidden states
(B, L, D) are pooled over positions and mapped to class log-probabilities by a linear head:

    h = DiT(x, sigma, return_hidden=True)[1]         (B, L, D)
    log p(y | x_t) = log_softmax(Linear(LayerNorm(pool(h))))   (B, C)

`forward(x, sigma)` takes token ids (B, L) or a float one-hot / relaxed distribution (B, L, V)
(embedded as ``x @ token_embedding.weight``, so first-order guidance can differentiate with
respect to it), which is the classifier signature `discdiff.guidance.CBG` expects.
"""

from __future__ import annotations

import torch
from torch import nn

from .dit import MODEL_SIZES, DiT

POOLINGS = ("mean", "max")


class _SkipHead(nn.Module):
    """Stands in for the DiT's vocabulary head, which a classifier does not use (no wasted
    compute, no parameters left without gradients under DDP)."""

    def forward(self, h, c):
        return None


class DiTClassifier(nn.Module):
    """p(y | x_t, sigma) over `num_classes` classes from a DiT encoder.

    Args:
        vocab_size, length: as for the DiT (the vocabulary includes the mask token, if any).
        num_classes: C.
        size: a name in MODEL_SIZES or a dict with n_blocks, hidden_size, n_heads (cond_dim).
        time_conditioning: condition on sigma (noisy classifiers); False ignores sigma
            (a clean classifier trained on x0).
        pooling: "mean" (over all positions) or "max".
        dropout: residual dropout in the DiT blocks.
    """

    def __init__(self, vocab_size: int, length: int, num_classes: int, size="micro", *,
                 time_conditioning: bool = True, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}'; allowed: {', '.join(POOLINGS)}")
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        if isinstance(size, str):
            if size not in MODEL_SIZES:
                raise ValueError(f"unknown classifier size '{size}'; allowed: {', '.join(MODEL_SIZES)}")
            dims = dict(MODEL_SIZES[size])
        else:
            dims = dict(size)
        self.vocab_size, self.length, self.num_classes = vocab_size, length, num_classes
        self.pooling, self.time_conditioning = pooling, time_conditioning
        self.encoder = DiT(vocab_size, length, dropout=dropout, causal=False, num_classes=None,
                           time_conditioning=time_conditioning, **dims)
        self.encoder.final = _SkipHead()
        self.norm = nn.LayerNorm(self.encoder.hidden_size)
        self.classify = nn.Linear(self.encoder.hidden_size, num_classes)

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.encoder.token_embedding

    def logits(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """Unnormalised class scores (B, C) for ids (B, L) or a one-hot / relaxed (B, L, V)."""
        if x.is_floating_point():
            if x.shape[-1] != self.vocab_size:
                raise ValueError(f"one-hot input has {x.shape[-1]} columns, the vocabulary {self.vocab_size}")
            weight = self.token_embedding.weight
            _, hidden = self.encoder(inputs_embeds=x.to(weight.dtype) @ weight, sigma=sigma, return_hidden=True)
        else:
            _, hidden = self.encoder(x, sigma, return_hidden=True)
        pooled = hidden.mean(1) if self.pooling == "mean" else hidden.amax(1)
        return self.classify(self.norm(pooled.float()))

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """log p(y | x) (B, C) in float32."""
        return self.logits(x, sigma).float().log_softmax(-1)
