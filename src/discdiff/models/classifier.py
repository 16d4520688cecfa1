"""Sequence classifiers for guidance and evaluation.

`SequenceClassifier`: an encoder (a DiT, a DiMamba or, for images, a UNet backbone, built without labels) whose last
hidden states (B, L, D) are pooled over positions and mapped to class log-probabilities by a
linear head:

    h = encoder(x, sigma, return_hidden=True)[1]                 (B, L, D)
    log p(y | x_t) = log_softmax(Linear(LayerNorm(pool(h))))       (B, C)

time-conditioned for D-CBG (noisy x_t), or not (clean x0, evaluation). With causal=True it is a
FUDGE prefix classifier: no pooling, a prediction log p(y | x_<=i) at every position i (B, L, C),
and `forward` returns the last position's. `forward(x, sigma)` takes token ids (B, L) or a float
one-hot / relaxed distribution (B, L, V) (embedded as ``x @ token_embedding.weight``, so
first-order guidance can differentiate with respect to it).

`HiddenStateClassifier`: a linear head on the mean of a frozen generator's last hidden states,
for NOS (diffusion) and PPLM (AR); it carries the generator and splits it at those states.
"""

from __future__ import annotations

import torch
from torch import nn

from .dimamba import DIMAMBA_SIZES, build_dimamba
from .dit import MODEL_SIZES, build_backbone
from .unet import UNET_SIZES, build_unet, check_unet

POOLINGS = ("mean", "max")
#: classifier.kind: what a classifier reads. noisy: x_t of a diffusion model's forward process
#: (D-CBG); clean: x0 (evaluation); prefix: every prefix of x0 (FUDGE); head: a frozen generator's
#: last hidden states (NOS, PPLM)
CLASSIFIER_KINDS = ("noisy", "clean", "prefix", "head")
#: classifier.model: a DiT size, dimamba_<size> (a DiMamba encoder, for long DNA sequences) or
#: unet_<size> (a UNet encoder, for images)
ENCODERS = (*MODEL_SIZES, *(f"dimamba_{size}" for size in DIMAMBA_SIZES), *(f"unet_{size}" for size in UNET_SIZES))


def _unet_encoder(size: str, vocab_size: int, length: int, *, image_shape=None, causal: bool = False, **options):
    check_unet(f"classifier.model=unet_{size}", image_shape, causal)
    return build_unet(size, vocab_size, length, image_shape, **options)


def _sequence_encoder(build):
    def encoder(size: str, vocab_size: int, length: int, *, image_shape=None, **options):
        return build(size, vocab_size, length, **options)

    return encoder


_FAMILIES = {"dimamba": _sequence_encoder(build_dimamba), "unet": _unet_encoder, "": _sequence_encoder(build_backbone)}


def build_encoder(name: str, vocab_size: int, length: int, **options) -> nn.Module:
    """The unlabelled encoder `name` (one of ENCODERS); `options`: causal, time_conditioning, dropout,
    image_shape (C, H, W) (read by UNet encoders only)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown classifier encoder '{name}'; allowed: {', '.join(ENCODERS)}")
    family, _, size = name.rpartition("_")
    return _FAMILIES[family](size, vocab_size, length, num_classes=None, **options)


class _SkipHead(nn.Module):
    """Stands in for the DiT's vocabulary head, which a classifier does not use (no wasted
    compute, no parameters left without gradients under DDP)."""

    def forward(self, h, c):
        return None


class SequenceClassifier(nn.Module):
    """p(y | x_t, sigma) over `num_classes` classes from an encoder.

    Args:
        encoder: a backbone (`discdiff.models.DiT` or `DiMamba`) with `num_classes=None`; its
            vocabulary head is dropped. Time-conditioned for D-CBG (noisy x_t), or not (clean x0,
            evaluation); causal for a prefix classifier (FUDGE).
        num_classes: C.
        pooling: "mean" (over all positions) or "max".
    """

    def __init__(self, encoder: nn.Module, num_classes: int, *, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}'; allowed: {', '.join(POOLINGS)}")
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        self.vocab_size, self.length, self.num_classes = encoder.vocab_size, encoder.length, num_classes
        self.pooling, self.causal = pooling, bool(encoder.causal)
        self.encoder = encoder
        self.encoder.final = _SkipHead()
        self.norm = nn.LayerNorm(self.encoder.hidden_size)
        self.classify = nn.Linear(self.encoder.hidden_size, num_classes)

    @property
    def backbone(self) -> nn.Module:
        return self.encoder

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.encoder.token_embedding

    def hidden(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """Last hidden states (B, L, D) for ids (B, L) or a one-hot / relaxed (B, L, V)."""
        return self.encoder(x, sigma, return_hidden=True)[1]

    def features(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """What the linear head reads (B, D): the pooled last hidden states, layer-normalised (a
        prefix classifier's: the last position's). Image evaluation's fid_clf is an FID in these."""
        hidden = self.hidden(x, sigma)
        if self.causal:
            pooled = hidden[:, -1]
        else:
            pooled = hidden.mean(1) if self.pooling == "mean" else hidden.amax(1)
        return self.norm(pooled.float())

    def logits(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """Unnormalised class scores (B, C); a prefix classifier's are those of the last position."""
        return self.classify(self.features(x, sigma))

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """log p(y | x) (B, C) in float32."""
        return self.logits(x, sigma).float().log_softmax(-1)

    @torch.no_grad()
    def continuation_log_probs(self, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """A prefix classifier's log p(y | prefix, v) (B, k, C) for candidate next tokens (B, k): the
        prefix (B, i) runs once into a KV cache, which each of its k continuations then reads."""
        if not self.causal:
            raise ValueError("continuation scores need a prefix classifier (classifier.kind=prefix)")
        (b, i), k = prefix.shape, tokens.shape[1]
        cache = self.encoder.new_kv_cache(b, i + 1)
        self.encoder(prefix, None, kv_cache=cache)
        _, hidden = self.encoder(tokens.reshape(-1, 1), None, kv_cache=cache.repeat_rows(k), return_hidden=True)
        return self.classify(self.norm(hidden[:, -1].float())).log_softmax(-1).view(b, k, -1)

    def training_log_probs(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """What the training loss scores: log p(y | x) (B, C), or for a prefix classifier the
        prediction at every prefix (B, L, C)."""
        if not self.causal:
            return self(x, sigma)
        return self.classify(self.norm(self.hidden(x, sigma).float())).log_softmax(-1)


class HiddenStateClassifier(nn.Module):
    """p(y | h) = softmax(Linear(LayerNorm(mean_l h_l))) on a frozen generator's last hidden states.

    `generator`: a discdiff language model (anything with `denoiser(x, sigma, cond,
    return_hidden=True)` and `decode_hidden(hidden, sigma, cond)`, and a `backbone` with
    `hidden_size` and `causal`); its weights are frozen and travel with the classifier, so NOS and
    PPLM can check they guide the very generator the head was trained on. For a causal generator
    the head is trained on the mean of every prefix (PPLM scores prefixes); otherwise on the whole
    sequence of a noisy x_t (NOS).
    """

    def __init__(self, generator: nn.Module, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        self.generator = generator.eval().requires_grad_(False)
        self.num_classes, self.causal = num_classes, bool(generator.backbone.causal)
        self.vocab_size = generator.backbone.vocab_size
        size = generator.backbone.hidden_size
        self.norm = nn.LayerNorm(size)
        self.linear = nn.Linear(size, num_classes)

    @property
    def backbone(self) -> nn.Module:
        return self.generator.backbone

    def train(self, mode: bool = True) -> "HiddenStateClassifier":
        super().train(mode)
        self.generator.eval()  # frozen: no dropout in the features, in training or not
        return self

    def hidden(self, x: torch.Tensor, sigma=None, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, L, V), last hidden states (B, L, D)) of the generator."""
        return self.generator.denoiser(x, sigma, cond, return_hidden=True)

    def decode(self, hidden: torch.Tensor, sigma=None, cond=None) -> torch.Tensor:
        """The generator's logits (B, L, V) for hidden states (B, L, D)."""
        return self.generator.decode_hidden(hidden, sigma, cond)

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """log p(y | h) (B, C) from the mean of hidden states (B, L, D)."""
        return self.linear(self.norm(hidden.float().mean(1))).log_softmax(-1)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """log p(y | x) (B, C) for token ids (B, L)."""
        with torch.no_grad():
            hidden = self.hidden(x, sigma)[1]
        return self.classify(hidden)

    def training_log_probs(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """log p(y | x) (B, C); for a causal generator the prediction of every prefix mean (B, L, C)."""
        with torch.no_grad():
            hidden = self.hidden(x, sigma)[1].float()
        if not self.causal:
            return self.classify(hidden)
        counts = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)[:, None]
        return self.linear(self.norm(hidden.cumsum(1) / counts)).log_softmax(-1)
