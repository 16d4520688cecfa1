"""UNet backbone over discrete pixel tokens: a drop-in alternative to the DiT for images.

Following Schiff et al. (2024), every pixel channel of an image of shape (C, H, W) is one token
with values 0..255 (plus the mask token for masked diffusion, so V = 256 or 257; any V works).

Token <-> image order. A sequence (B, L) with L = C * H * W is the image in channel-height-width
order: token ``c * H * W + h * W + w`` is channel c of pixel (h, w), i.e. ``x.view(B, C, H, W)``.

Architecture (ADM / DDPM style)::

    e  = token_embedding(x)                                  (B, L, E)  shared by all channels
    u  = the C embeddings of a pixel side by side            (B, C * E, H, W)
    h  = Conv3x3(u)                                          (B, base, H, W)
    c  = silu(TimeMLP(sinusoid(sigma)) + label_emb(cond))    (B, cond_dim)  as DiT "silu_sum"
    down path: per level, num_res_blocks x [ResBlock(h, c) (+ self-attention)], then a stride-2
               Conv3x3 (all levels but the last); every output is kept as a skip connection
    middle:    ResBlock, self-attention, ResBlock
    up path:   per level, num_res_blocks + 1 x [ResBlock(concat(h, skip), c) (+ attention)],
               then nearest upsampling to the next skip's size + Conv3x3 (all levels but the first)
    f  = Conv3x3(silu(GroupNorm(h)))                         (B, C * D, H, W)
    hidden: token (c, h, w) reads f[:, c * D:(c + 1) * D, h, w]  (B, L, D)
    logits = head(hidden, c)  # adaLN + Linear(D -> V), zero-initialised (the DiT's FinalLayer)

ResBlock: ``skip(h) + Conv3x3(Dropout(silu(GN(Conv3x3(silu(GN(h))) + Linear(c)))))``; its last
conv is zero-initialised, as is the output projection of every self-attention block (GroupNorm,
1x1 qkv, multi-head attention over the H * W positions, heads of 64 channels when the width is a
multiple of 64, one head otherwise). GroupNorm uses gcd(channels, 32) groups.

Sizes that do not halve evenly: each stride-2 conv (padding 1) rounds up (28 -> 14 -> 7 -> 4), and
the up path interpolates to the exact size of the skip it joins next (4 -> 7), so no padding or
cropping is needed. A level's resolution (what ``attention_resolutions`` lists) is the height of
its feature maps: H, then ceil(H / 2), and so on.

Interface as the DiT's (both are `layers.ConditionedBackbone`s, which hold the embedding,
conditioning and head): ``forward(x, sigma, cond, inputs_embeds=..., return_hidden=...)`` with x token ids
(B, L) or a one-hot / relaxed distribution (B, L, V) (embedded as ``x @ token_embedding.weight``);
``embed(x)`` gives the (B, L, E) embeddings ``inputs_embeds`` accepts; ``head(hidden, sigma, cond)``
recomputes the logits of (perturbed) last hidden states. There is no causal form and no KV cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .fused_head import RowTerms
from .layers import ConditionedBackbone, FinalLayer, size_spec

#: Named UNet sizes: ``micro`` for CPU tests (8x8 and 28x28 grey images), ``small`` for the CPU
#: Fashion-MNIST demo, ``cifar10`` the paper-scale CIFAR10 UNet (the DDPM layout, ~36M parameters).
UNET_SIZES: dict[str, dict] = {
    "micro": dict(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_resolutions=(4, 7),
                  hidden_size=32, cond_dim=64, embedding_dim=16),
    "small": dict(base_channels=48, channel_mults=(1, 2, 2), num_res_blocks=2, attention_resolutions=(7,),
                  hidden_size=64, cond_dim=128, embedding_dim=32),
    "cifar10": dict(base_channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2, attention_resolutions=(16,),
                    hidden_size=128, cond_dim=512, embedding_dim=32),
}


def check_unet(what: str, image_shape, causal: bool, dataset: str = "this dataset") -> None:
    """The rule of every UNet (a generator's or a classifier's): it reads the pixel tokens of an
    image dataset (`image_shape` (C, H, W), None for other data) and has no causal form. Refused
    in one line naming `what` asked for it."""
    if image_shape is None:
        raise ValueError(f"{what} reads images; {dataset} is not an image dataset")
    if causal:
        raise ValueError(f"{what} has no causal form: autoregressive models and prefix classifiers use a DiT "
                         "(model=micro|tiny|small|medium) or a DiMamba")


def _groups(channels: int) -> int:
    """GroupNorm groups for a width: gcd(channels, 32)."""
    return math.gcd(channels, 32)


def _level_sizes(height: int, levels: int) -> list[int]:
    """Feature-map heights of the levels: height, then halved and rounded up per level."""
    sizes = [height]
    for _ in range(levels - 1):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class ResBlock(nn.Module):
    """Residual block with the conditioning vector projected and added between its two convs."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.cond = nn.Linear(cond_dim, out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """h: (B, in, H, W); c: (B, cond_dim) activated conditioning -> (B, out, H, W)."""
        y = self.conv1(F.silu(self.norm1(h))) + self.cond(c)[:, :, None, None].to(h.dtype)
        y = self.conv2(self.dropout(F.silu(self.norm2(y))))
        return self.skip(h) + y


class SpatialSelfAttention(nn.Module):
    """Residual multi-head self-attention over the positions of a feature map."""

    def __init__(self, channels: int, head_channels: int = 64):
        super().__init__()
        self.n_heads = channels // head_channels if channels % head_channels == 0 else 1
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, ch, H, W) -> (B, ch, H, W)."""
        B, ch, H, W = h.shape
        qkv = self.qkv(self.norm(h)).reshape(B, 3, self.n_heads, ch // self.n_heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, H * W, ch / heads)
        y = F.scaled_dot_product_attention(q, k, v)
        return h + self.proj(y.transpose(-1, -2).reshape(B, ch, H, W))


class ResAttnBlock(nn.Module):
    """A ResBlock, followed by self-attention when ``attention``."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, dropout: float, attention: bool):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, cond_dim, dropout)
        self.attn = SpatialSelfAttention(out_channels) if attention else None

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.res(h, c)
        return h if self.attn is None else self.attn(h)


class Upsample(nn.Module):
    """Nearest-neighbour resize to a given size, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(h, size=size, mode="nearest"))


class DownLevel(nn.Module):
    """One level of the down path: blocks, then an optional stride-2 conv; pushes every output
    onto ``skips``."""

    def __init__(self, blocks: list[ResAttnBlock], downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        ch = blocks[-1].res.conv2.out_channels
        self.downsample = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if downsample else None

    def forward(self, h: torch.Tensor, c: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block in self.blocks:
            h = block(h, c)
            skips.append(h)
        if self.downsample is not None:
            h = self.downsample(h)
            skips.append(h)
        return h


class UpLevel(nn.Module):
    """One level of the up path: blocks that each join a popped skip, then an optional upsampling
    to the size of the next skip."""

    def __init__(self, blocks: list[ResAttnBlock], upsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.upsample = Upsample(blocks[-1].res.conv2.out_channels) if upsample else None

    def forward(self, h: torch.Tensor, c: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block in self.blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), c)
        if self.upsample is not None:
            h = self.upsample(h, skips[-1].shape[-2:])
        return h


class UNet(ConditionedBackbone):
    """UNet over the C * H * W pixel tokens of an image, conditioned on (sigma, class label).

    Args:
        vocab_size: V, token values including the mask token, if any.
        length: L, must equal C * H * W.
        image_shape: (C, H, W).
        base_channels: width of the first level; level i has ``base_channels * channel_mults[i]``.
        channel_mults: one multiplier per level (len(channel_mults) - 1 downsamplings).
        num_res_blocks: residual blocks per level on the down path (one more on the up path).
        attention_resolutions: feature-map heights at which self-attention follows each block.
        dropout: dropout inside the residual blocks.
        hidden_size: D, features per token of the last hidden state (the head's input).
        cond_dim: size of the conditioning vector.
        num_classes: number of class labels, or None for an unconditional model.
        time_conditioning: if False, sigma is ignored (replaced by zeros).
        causal: must be False (autoregressive models use the DiT).
        embedding_dim: E, width of the token embedding shared by all channels.
    """

    def __init__(self, vocab_size: int, length: int, image_shape: tuple[int, int, int] = (3, 32, 32),
                 base_channels: int = 64, channel_mults: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 2,
                 attention_resolutions: tuple[int, ...] = (16,), dropout: float = 0.1, hidden_size: int = 64,
                 cond_dim: int = 128, num_classes: int | None = None, time_conditioning: bool = True,
                 causal: bool = False, embedding_dim: int = 32):
        image_shape = tuple(int(s) for s in image_shape)
        check_unet("a UNet", image_shape, causal)
        if len(image_shape) != 3 or length != math.prod(image_shape):
            raise ValueError(f"length {length} must equal C * H * W of image_shape {image_shape}")
        super().__init__(vocab_size, length, hidden_size, cond_dim, num_classes=num_classes,
                         time_conditioning=time_conditioning, embedding_dim=embedding_dim)
        self.image_shape, self.embedding_dim = image_shape, embedding_dim
        channels = image_shape[0]
        self.input_conv = nn.Conv2d(channels * embedding_dim, base_channels, 3, padding=1)
        widths = [base_channels * m for m in channel_mults]
        sizes = _level_sizes(image_shape[1], len(widths))
        attention = [size in attention_resolutions for size in sizes]
        skip_widths = self._build_down(base_channels, widths, attention, num_res_blocks, dropout)
        self.middle = ResAttnBlock(widths[-1], widths[-1], cond_dim, dropout, attention=True)
        self.middle_res = ResBlock(widths[-1], widths[-1], cond_dim, dropout)
        self._build_up(skip_widths, widths, attention, num_res_blocks, dropout)
        self.out = nn.Sequential(nn.GroupNorm(_groups(base_channels), base_channels), nn.SiLU(),
                                 nn.Conv2d(base_channels, channels * hidden_size, 3, padding=1))
        self.final = FinalLayer(hidden_size, vocab_size, cond_dim)
        self.n_blocks = sum(isinstance(m, ResBlock) for m in self.modules())
        self._init_embeddings()

    def _build_down(self, width: int, widths: list[int], attention: list[bool], num_res_blocks: int,
                    dropout: float) -> list[int]:
        """Create ``self.down``; return the widths of the skips it pushes (input conv's first)."""
        skip_widths, levels = [width], []
        for i, (out, attn) in enumerate(zip(widths, attention)):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResAttnBlock(width, out, self.cond_dim, dropout, attn))
                width = out
                skip_widths.append(width)
            downsample = i < len(widths) - 1
            skip_widths += [width] if downsample else []
            levels.append(DownLevel(blocks, downsample))
        self.down = nn.ModuleList(levels)
        return skip_widths

    def _build_up(self, skip_widths: list[int], widths: list[int], attention: list[bool], num_res_blocks: int,
                  dropout: float) -> None:
        """Create ``self.up``, consuming ``skip_widths`` in the order the skips are popped."""
        width, levels = widths[-1], []
        for i in reversed(range(len(widths))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResAttnBlock(width + skip_widths.pop(), widths[i], self.cond_dim, dropout,
                                           attention[i]))
                width = widths[i]
            levels.append(UpLevel(blocks, upsample=i > 0))
        self.up = nn.ModuleList(levels)

    def to_image(self, embeds: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, L, E) -> per-pixel features (B, C * E, H, W), the C channel
        embeddings of a pixel side by side."""
        C, H, W = self.image_shape
        B, L, E = embeds.shape
        if L != self.length:
            raise ValueError(f"got {L} tokens; this UNet reads {self.length} = C * H * W for image shape {self.image_shape}")
        return embeds.reshape(B, C, H, W, E).permute(0, 1, 4, 2, 3).reshape(B, C * E, H, W)

    def to_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map (B, C * D, H, W) -> per-token features (B, L, D): token c * H * W + h * W + w
        gets channels c * D .. (c + 1) * D - 1 at (h, w)."""
        C, H, W = self.image_shape
        B = features.shape[0]
        return features.reshape(B, C, self.hidden_size, H, W).permute(0, 1, 3, 4, 2).reshape(B, self.length, -1)

    def forward(self, x=None, sigma=None, cond=None, *, inputs_embeds=None, return_hidden: bool = False,
                kv_cache=None, terms: RowTerms | None = None):
        """Logits (B, L, V) in token order (module docstring).

        x: (B, L) token ids or (B, L, V) token distributions, or ``inputs_embeds`` (B, L, E) instead.
        sigma: (B,) noise level or None; cond: (B,) class ids or None.
        return_hidden: also return the last hidden states (B, L, D) the head reads.
        kv_cache: must be None (a UNet decodes no prefix).
        terms: a loss's per-position terms (`fused_head.RowTerms`): returns (loss, terms (B, L, k))
            computed from the head's rows in chunks, instead of logits.
        """
        if kv_cache is not None:
            raise ValueError("a UNet has no KV cache (not causal)")
        e = self._input(x, inputs_embeds)
        c = self.conditioning(sigma, cond, e.shape[0], e.device)
        h = self.input_conv(self.to_image(e))
        skips = [h]
        for level in self.down:
            h = level(h, c, skips)
        h = self.middle_res(self.middle(h, c), c)
        for level in self.up:
            h = level(h, c, skips)
        return self.outputs(self.to_tokens(self.out(h)), c, return_hidden, terms)


def build_unet(size_or_dict, vocab_size: int, length: int, image_shape: tuple[int, int, int], *,
               num_classes: int | None = None, time_conditioning: bool = True, dropout: float = 0.1) -> UNet:
    """UNet from a named size in UNET_SIZES or a dict of some of its keys (base_channels,
    channel_mults, num_res_blocks, attention_resolutions, hidden_size, cond_dim, embedding_dim;
    the rest take the UNet's defaults)."""
    spec = size_spec(size_or_dict, UNET_SIZES, keys=set(UNET_SIZES["micro"]), what="UNet")
    return UNet(vocab_size, length, image_shape, dropout=dropout, num_classes=num_classes,
                time_conditioning=time_conditioning, **spec)
