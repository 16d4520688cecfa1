"""Building blocks of the DiT backbone.

Shape conventions: ``B`` batch, ``L`` sequence length, ``D`` hidden size,
``H`` attention heads, ``Dh = D // H`` head size, ``C`` conditioning size.

Numerics under autocast: the residual stream stays in the dtype of the token
embedding (fp32 for an fp32 module), linear layers run in the autocast dtype,
and every LayerNorm plus its adaLN shift/scale is computed in fp32 with
autocast switched off before being cast back to the residual dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _autocast_off(device_type: str):
    return torch.autocast(device_type=device_type, enabled=False)


def norm_and_modulate(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    shift: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``LayerNorm(x) * (1 + scale) + shift`` computed in fp32.

    x: (B, L, D); weight: (D,) or None; shift, scale: (B, D) or None.
    Returns a tensor of ``x.dtype`` and shape (B, L, D).
    """
    with _autocast_off(x.device.type):
        w = None if weight is None else weight.float()
        y = F.layer_norm(x.float(), (x.shape[-1],), w, None, eps)
        if scale is not None and shift is not None:  # one fused pass: shift + y * (1 + scale)
            y = torch.addcmul(shift.float()[:, None, :], y, 1.0 + scale.float()[:, None, :])
        elif scale is not None:
            y = y * (1.0 + scale.float()[:, None, :])
        elif shift is not None:
            y = y + shift.float()[:, None, :]
    return y.to(x.dtype)


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
    x' = [x1 cos - x2 sin, x2 cos + x1 sin]; cos / signed_sin from `Rotary.cos_sin`. fp32 math."""
    xf = x.float()
    half = xf.shape[-1] // 2
    swapped = torch.cat([xf[..., half:], xf[..., :half]], dim=-1)  # [x2, x1]
    return torch.addcmul(xf * cos, swapped, signed_sin).to(x.dtype)


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

    def forward(self, h, c):
        """h: (B, L, D); c: (B, C) activated conditioning -> logits (B, L, V)."""
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.linear(self.norm(h, shift, scale))
