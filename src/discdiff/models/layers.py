"""Building blocks of the backbones: what DiT, DiMamba and UNet share (`ConditionedBackbone`), and
the DiT's layers.

Shape conventions: ``B`` batch, ``L`` sequence length, ``D`` hidden size,
``H`` attention heads, ``Dh = D // H`` head size, ``C`` conditioning size.

Numerics under autocast (bf16-mixed): the residual stream is held in the autocast
dtype (the embeddings are cast once, `ConditionedBackbone._input`), so the residual
additions, the LayerNorms with their adaLN shift / scale and the rotary rotation
each read and write bf16 instead of making fp32 passes over (B, L, D); LayerNorm
accumulates its mean and variance in fp32 inside the kernel, and matrix products
accumulate in fp32 as always. Without autocast everything runs in the module's
dtype. bench/gpu_suite.py checks that the bf16 NELBO stays within 1e-3 of the fp32
one; tests/test_dit.py checks the same on the CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .fused_head import RowTerms


def _autocast_off(device_type: str):
    return torch.autocast(device_type=device_type, enabled=False)


def norm_and_modulate(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    shift: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``LayerNorm(x) * (1 + scale) + shift`` in the dtype of x (statistics in fp32).

    x: (B, L, D); weight: (D,) or None; shift, scale: (B, D) or None.
    Returns a tensor of ``x.dtype`` and shape (B, L, D).
    """
    dtype = x.dtype
    with _autocast_off(x.device.type):
        w = None if weight is None else weight.to(dtype)
        y = F.layer_norm(x, (x.shape[-1],), w, None, eps)
        if scale is not None and shift is not None:  # one fused pass: shift + y * (1 + scale)
            y = torch.addcmul(shift.to(dtype)[:, None, :], y, 1.0 + scale.to(dtype)[:, None, :])
        elif scale is not None:
            y = y * (1.0 + scale.to(dtype)[:, None, :])
        elif shift is not None:
            y = y + shift.to(dtype)[:, None, :]
    return y


class ScaledLayerNorm(nn.Module):
    """LayerNorm with a learnable scale and no bias (the adaLN shift plays the bias)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, shift=None, scale=None):
        """x: (B, L, D) -> (B, L, D), see :func:`norm_and_modulate`."""
        return norm_and_modulate(x, self.weight, shift, scale)


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half form) over the full head size."""

    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head size, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def cos_sin(self, start, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin of shape (length, Dh) in fp32 for positions start..start+length-1
        (start an int or a 0-d device tensor): [cos a, cos a] and [-sin a, sin a] for the angles
        a (length, Dh / 2)."""
        pos = start + torch.arange(length, device=device, dtype=torch.float32)
        angles = torch.outer(pos, self.inv_freq.to(device))
        return torch.cat([angles.cos(), angles.cos()], dim=-1), torch.cat([-angles.sin(), angles.sin()], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., L, Dh) by position in rotate-half form: with x = [x1, x2],
    x' = [x1 cos - x2 sin, x2 cos + x1 sin]; cos / signed_sin (fp32) from `Rotary.cos_sin`, the
    math in the dtype of x."""
    cos, signed_sin = cos.to(x.dtype), signed_sin.to(x.dtype)
    half = x.shape[-1] // 2
    swapped = torch.cat([x[..., half:], x[..., :half]], dim=-1)  # [x2, x1]
    return torch.addcmul(x * cos, swapped, signed_sin)


class TimestepEmbedding(nn.Module):
    """sigma (B,) -> sinusoidal features (B, F) -> MLP -> (B, C)."""

    def __init__(self, cond_dim: int, freq_dim: int = 256, max_period: float = 10_000.0):
        super().__init__()
        half = freq_dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * half, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim)
        )

    def sinusoid(self, sigma: torch.Tensor) -> torch.Tensor:
        """sigma (B,) -> [cos(sigma * f), sin(sigma * f)] of shape (B, F), fp32."""
        args = sigma.float()[:, None] * self.freqs[None, :]
        return torch.cat([args.cos(), args.sin()], dim=-1)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoid(sigma))


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary q/k through ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, n_heads: int, causal: bool):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {n_heads} heads")
        self.n_heads, self.head_dim, self.causal = n_heads, dim // n_heads, causal
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x, cos, sin, cache=None, layer: int = 0):
        """x: (B, n, D) -> (B, n, D). With ``cache`` the n new positions attend to
        the cached prefix plus themselves (causally)."""
        B, n, _ = x.shape
        qkv = self.qkv(x).view(B, n, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(qkv[:2], cos, sin)  # q and k rotated in one pass
        v = qkv[2]
        mask, is_causal = None, self.causal
        if cache is not None:
            mask, is_causal = cache.attention_mask(n), False  # before update: it reads the stored length
            k, v = cache.update(layer, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(B, n, -1))


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-zero modulation.

    ``h = h + gate_a * Attn(LN(h) * (1 + scale_a) + shift_a)``
    ``h = h + gate_m * MLP(LN(h) * (1 + scale_m) + shift_m)``
    The six modulation vectors come from ``Linear(c)`` of the activated conditioning
    vector (`DiT.conditioning`), zero-initialised, so every block starts as the identity map.
    """

    def __init__(self, dim: int, n_heads: int, cond_dim: int, dropout: float, causal: bool,
                 mlp_ratio: int = 4):
        super().__init__()
        self.norm1, self.norm2 = ScaledLayerNorm(dim), ScaledLayerNorm(dim)
        self.attn = SelfAttention(dim, n_heads, causal)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * dim, dim),
        )
        self.dropout = nn.Dropout(dropout)
        self.modulation = nn.Linear(cond_dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h, c, cos, sin, cache=None, layer: int = 0):
        """h: (B, L, D); c: (B, C) activated conditioning -> (B, L, D)."""
        mod = self.modulation(c).chunk(6, dim=-1)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod
        a = self.attn(self.norm1(h, shift_a, scale_a), cos, sin, cache, layer)
        h = torch.addcmul(h, gate_a[:, None, :], self.dropout(a)).to(h.dtype)  # h + gate * a in one pass
        m = self.mlp(self.norm2(h, shift_m, scale_m))
        return torch.addcmul(h, gate_m[:, None, :], self.dropout(m)).to(h.dtype)


class FinalLayer(nn.Module):
    """adaLN (shift/scale, zero-initialised) + linear to the vocabulary (zero-initialised)."""

    def __init__(self, dim: int, vocab_size: int, cond_dim: int):
        super().__init__()
        self.norm = ScaledLayerNorm(dim)
        self.modulation = nn.Linear(cond_dim, 2 * dim)
        self.linear = nn.Linear(dim, vocab_size)
        for layer in (self.modulation, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def features(self, h, c):
        """What the linear map reads: LN(h) * (1 + scale) + shift (B, L, D), for c (B, C)."""
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.norm(h, shift, scale)

    def forward(self, h, c):
        """h: (B, L, D); c: (B, C) activated conditioning -> logits (B, L, V)."""
        return self.linear(self.features(h, c))


def size_spec(size_or_dict, sizes: dict[str, dict], *, keys: set[str], required: set[str] = frozenset(),
              what: str = "model") -> dict:
    """A backbone's dimensions: the named size `size_or_dict` of `sizes`, or a dict of some of
    `keys` holding the `required` ones; refused in one line otherwise."""
    if isinstance(size_or_dict, str):
        if size_or_dict not in sizes:
            raise ValueError(f"unknown {what} size {size_or_dict!r}; allowed: {', '.join(sizes)}")
        return dict(sizes[size_or_dict])
    spec = dict(size_or_dict)
    unknown, missing = set(spec) - set(keys), set(required) - set(spec)
    if unknown or missing:
        raise ValueError(f"bad {what} spec: unknown keys {sorted(unknown)}, missing {sorted(missing)}; "
                         f"keys: {', '.join(sorted(keys))}")
    return spec


#: how time and label embeddings join in the conditioning vector (`ConditionedBackbone`)
CONDITIONINGS = ("silu_sum", "silu_each")


class ConditionedBackbone(nn.Module):
    """What every backbone (DiT, DiMamba, UNet) shares: the token embedding, the conditioning vector
    of noise level and class label, and the output head.

        e = token_embedding(x)                                  (B, L, E)   ids, or x @ weight for
                                                                            distributions (B, L, V)
        c = silu(TimeMLP(sinusoid(sigma)) + label_emb(cond))    (B, C)      conditioning="silu_sum"
        c = silu(TimeMLP(sinusoid(sigma))) + silu(label_emb(cond))          conditioning="silu_each"
        logits = final(h, c)                                    (B, L, V)   adaLN + Linear(D -> V)

    Class labels use ``nn.Embedding(num_classes + 1, C)``; index ``num_classes`` is the null class
    of classifier-free guidance. ``cond=None`` means the null class under "silu_sum" (discdiff's
    models) and no label term under "silu_each" (the published UDLM / MDLM checkpoints). With
    ``time_conditioning=False`` sigma is replaced by zeros.

    A subclass calls ``super().__init__`` (which creates the embeddings, in this order: token,
    time, label), builds its body and ``self.final`` (a `FinalLayer` over its last hidden states of
    width ``hidden_size``), then calls ``self._init_embeddings()``; its forward maps
    ``self._input(x, inputs_embeds)`` and ``self.conditioning(...)`` through the body to
    ``self.outputs(h, c, return_hidden, terms)``.
    """

    def __init__(self, vocab_size: int, length: int, hidden_size: int, cond_dim: int, *,
                 num_classes: int | None = None, time_conditioning: bool = True, causal: bool = False,
                 conditioning: str = "silu_sum", embedding_dim: int | None = None):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning '{conditioning}'; allowed: {', '.join(CONDITIONINGS)}")
        self.conditioning_mode = conditioning
        self.vocab_size, self.length, self.hidden_size, self.cond_dim = vocab_size, length, hidden_size, cond_dim
        self.causal, self.num_classes, self.time_conditioning = causal, num_classes, time_conditioning
        self.token_embedding = nn.Embedding(vocab_size, embedding_dim or hidden_size)
        self.time_embedding = TimestepEmbedding(cond_dim)
        self.label_embedding = nn.Embedding(num_classes + 1, cond_dim) if num_classes is not None else None

    def _init_embeddings(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        for layer in self.time_embedding.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        if self.label_embedding is not None:
            nn.init.normal_(self.label_embedding.weight, std=0.02)

    @property
    def null_class(self) -> int | None:
        """Label index of the null (unconditional) class, or None without labels."""
        return self.num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L), or a one-hot / relaxed distribution over tokens (B, L, V) (embedded as
        ``x @ token_embedding.weight``, differentiable in x) -> embeddings (B, L, E)."""
        if not x.is_floating_point():
            return self.token_embedding(x)
        if x.shape[-1] != self.vocab_size:
            raise ValueError(f"one-hot input has {x.shape[-1]} columns, the vocabulary {self.vocab_size}")
        weight = self.token_embedding.weight
        return x.to(weight.dtype) @ weight

    def _input(self, x, inputs_embeds) -> torch.Tensor:
        """The embeddings (B, L, E) that start the residual stream, in the autocast dtype when
        autocast is on (module docstring)."""
        if (x is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of x and inputs_embeds")
        h = self.embed(x) if inputs_embeds is None else inputs_embeds
        if torch.is_autocast_enabled(h.device.type):
            h = h.to(torch.get_autocast_dtype(h.device.type))
        return h

    def conditioning(self, sigma, cond, batch_size: int, device) -> torch.Tensor:
        """Conditioning vector c (B, C), activated: what the adaLN modulations read.

        sigma: (B,) float, a scalar, or None (zeros); ignored when time_conditioning is False.
        cond: (B,) class ids, value ``num_classes`` meaning null; None (see the class docstring).
        """
        t = self.time_embedding(self._sigma(sigma, batch_size, device))
        if self.label_embedding is None:
            if cond is not None:
                raise ValueError(f"cond given to a {type(self).__name__} built without num_classes")
            return F.silu(t)
        if self.conditioning_mode == "silu_each":
            return F.silu(t) if cond is None else F.silu(t) + F.silu(self.label_embedding(cond))
        if cond is None:
            cond = torch.full((batch_size,), self.num_classes, device=device, dtype=torch.long)
        return F.silu(t + self.label_embedding(cond))

    def _sigma(self, sigma, batch_size: int, device) -> torch.Tensor:
        """sigma as a (B,) float tensor: zeros when None or time conditioning is off; a scalar is
        broadcast to the batch."""
        if sigma is None or not self.time_conditioning:
            return torch.zeros(batch_size, device=device)
        sigma = torch.as_tensor(sigma, device=device, dtype=torch.float32).reshape(-1)
        return sigma.expand(batch_size) if sigma.numel() == 1 else sigma

    def output_logits(self, hidden: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, L, D) and conditioning (B, C) -> logits (B, L, V)."""
        return self.final(hidden, c)

    def outputs(self, hidden: torch.Tensor, c: torch.Tensor, return_hidden: bool, terms: RowTerms | None = None):
        """What forward returns: logits (B, L, V), with the last hidden states (B, L, D) when
        `return_hidden`; or with `terms` a loss's per-position terms instead of logits,
        (loss, terms (B, L, k)), computed in chunks of rows (`fused_head`)."""
        if terms is not None:
            return terms.of_features(self.final.features(hidden, c), self.final.linear)
        logits = self.output_logits(hidden, c)
        return (logits, hidden) if return_hidden else logits

    def head(self, hidden: torch.Tensor, sigma=None, cond=None) -> torch.Tensor:
        """Logits (B, L, V) of (possibly perturbed) last hidden states (B, L, D)."""
        c = self.conditioning(sigma, cond, hidden.shape[0], hidden.device)
        return self.output_logits(hidden, c)
