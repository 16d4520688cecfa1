"""Diffusion Transformer (DiT) backbone shared by the AR, MDLM and UDLM models.

The network maps tokens ``x`` (B, L), a noise level ``sigma`` (B,) and an
optional class label ``cond`` (B,) to logits (B, L, V):

    h0 = token_embedding(x)                                (B, L, D)
    c  = conditioning(sigma, cond)                         (B, C)   (`layers.ConditionedBackbone`)
    h  = blocks(h0, c)   # adaLN-zero transformer blocks, rotary attention
    logits = head(h, c)  # adaLN (shift/scale) + Linear(D -> V)

The embeddings, the conditioning vector (how time and label join, "silu_sum" or the published
checkpoints' "silu_each", see `discdiff.hub`) and the head are `ConditionedBackbone`'s.

Guidance hooks:
  * ``x`` may be token ids (B, L) or a one-hot / relaxed distribution (B, L, V),
    embedded as ``x @ token_embedding.weight`` (gradients reach x);
    ``model.embed(x)`` returns the (B, L, D) embeddings ``inputs_embeds`` accepts.
  * ``logits, hidden = model(x, sigma, cond, return_hidden=True)`` then
    ``model.head(hidden + delta, sigma, cond)`` recomputes logits of perturbed
    last hidden states.
  * causal models decode incrementally with ``model.new_kv_cache(...)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .fused_head import RowTerms
from .layers import ConditionedBackbone, DiTBlock, FinalLayer, Rotary, size_spec

#: Named backbone sizes; ``micro`` is sized for CPU demos and tests.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "micro": dict(n_blocks=4, hidden_size=128, n_heads=4, cond_dim=64),
    "tiny": dict(n_blocks=8, hidden_size=512, n_heads=8, cond_dim=128),
    "small": dict(n_blocks=12, hidden_size=768, n_heads=12, cond_dim=128),
    "medium": dict(n_blocks=24, hidden_size=1024, n_heads=16, cond_dim=128),
}


class KVCache:
    """Per-layer key/value buffers for incremental causal decoding.

    keys[i], values[i]: (B, H, max_length, Dh). ``length`` is the number of
    positions already stored; rotary positions of new tokens start there.
    Meant for decoding under ``torch.no_grad`` (the buffers are written in place).

    ``static=True`` keeps every shape fixed, as a CUDA graph needs: the stored length also lives on
    the device (``position``), new keys are written at it, and attention reads all ``max_length``
    keys through a mask of the stored ones (`attention_mask`).
    """

    def __init__(self, n_layers, batch_size, n_heads, head_dim, max_length, device, dtype, static=False):
        shape = (batch_size, n_heads, max_length, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.batch_size, self.max_length, self.length = batch_size, max_length, 0
        self.static = static
        self.position = torch.zeros((), dtype=torch.long, device=device)  # = length, on the device

    @property
    def offset(self):
        """Position of the next token: ``length``, or its device copy for a static cache."""
        return self.position if self.static else self.length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, H, n, Dh) after the cached prefix; return keys/values
        (B, H, length + n, Dh) of the whole prefix including them (static: all max_length)."""
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache overflow: {end} positions > max_length {self.max_length}")
        if k.shape[0] != self.batch_size:
            raise ValueError(f"KV cache batch {self.batch_size} != input batch {k.shape[0]}")
        if self.static:
            at = self.position + torch.arange(k.shape[2], device=k.device)
            self.keys[layer].index_copy_(2, at, k.to(self.keys[layer].dtype))
            self.values[layer].index_copy_(2, at, v.to(self.values[layer].dtype))
            return self.keys[layer], self.values[layer]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def attention_mask(self, n: int) -> torch.Tensor | None:
        """Boolean (n, keys) mask: new query i sees keys 0 .. offset + i; None when nothing is
        hidden (one new token of a dynamic cache)."""
        if not self.static and n == 1:
            return None
        keys = torch.arange(self.max_length if self.static else self.length + n, device=self.position.device)
        queries = self.offset + torch.arange(n, device=self.position.device)
        return keys[None, :] <= queries[:, None]

    def advance(self, n: int) -> None:
        """Mark n more positions as stored (called once per forward pass)."""
        self.length += n
        if self.static:
            self.position += n

    def rewind(self, length: int) -> None:
        """Forget the positions from `length` on (their buffers are overwritten when reached)."""
        self.length = length
        self.position.fill_(length)

    def reset(self) -> None:
        self.rewind(0)

    def repeat_rows(self, k: int) -> "KVCache":
        """Each row's prefix repeated k times in place (row b becomes rows bk .. bk + k - 1), so k
        continuations of every cached prefix decode in one batch."""
        self.keys = [key.repeat_interleave(k, 0) for key in self.keys]
        self.values = [value.repeat_interleave(k, 0) for value in self.values]
        self.batch_size *= k
        return self


class DiT(ConditionedBackbone):
    """Transformer over token sequences conditioned on (sigma, class label).

    Args:
        vocab_size: V, size of the token vocabulary (including mask token, if any).
        length: nominal sequence length L (default KV-cache size; rotary
            positions are computed on the fly, so other lengths also work).
        hidden_size, n_blocks, n_heads: D, number of blocks, attention heads.
        cond_dim: C, size of the conditioning vector fed to adaLN.
        dropout: residual dropout after attention and MLP.
        causal: causal self-attention (autoregressive model).
        num_classes: number of class labels, or None for an unconditional model.
        time_conditioning: if False, sigma is ignored (replaced by zeros).
        conditioning: how time and label embeddings join (module docstring): "silu_sum"
            (discdiff) or "silu_each" (published UDLM / MDLM checkpoints).
    """

    def __init__(self, vocab_size, length, hidden_size, n_blocks, n_heads, cond_dim=128,
                 dropout=0.1, causal=False, num_classes=None, time_conditioning=True,
                 conditioning: str = "silu_sum"):
        super().__init__(vocab_size, length, hidden_size, cond_dim, num_classes=num_classes,
                         time_conditioning=time_conditioning, causal=causal, conditioning=conditioning)
        self.n_blocks, self.n_heads = n_blocks, n_heads
        self.rotary = Rotary(hidden_size // n_heads)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, n_heads, cond_dim, dropout, causal) for _ in range(n_blocks)
        )
        self.final = FinalLayer(hidden_size, vocab_size, cond_dim)
        self._init_embeddings()

    #: `new_kv_cache(static=True)` exists: decoding steps of fixed shapes, for CUDA graphs
    static_kv_cache = True

    def new_kv_cache(self, batch_size: int, max_length: int | None = None, device=None,
                     dtype=None, static: bool = False) -> KVCache:
        """Empty KV cache for incremental decoding (causal models only); static=True keeps every
        shape fixed, for CUDA graphs (see `KVCache`)."""
        if not self.causal:
            raise ValueError("KV caching needs a causal DiT")
        p = self.token_embedding.weight
        return KVCache(self.n_blocks, batch_size, self.n_heads, self.hidden_size // self.n_heads,
                       max_length or self.length, device or p.device, dtype or p.dtype, static)

    # ---------------------------------------------------------------- forward
    def forward(self, x=None, sigma=None, cond=None, *, inputs_embeds=None,
                return_hidden=False, kv_cache: KVCache | None = None, terms: RowTerms | None = None):
        """Logits (B, L, V) in the compute dtype.

        x: (B, L) token ids or (B, L, V) token distributions, or ``inputs_embeds`` (B, L, D) instead.
        sigma: (B,) noise level or None; cond: (B,) class ids or None.
        return_hidden: also return the last hidden state (B, L, D) before the head.
        kv_cache: causal decoding; x holds only the n new positions, which are
            appended to the cache, and logits for them alone are returned.
        terms: a loss's per-position terms (`fused_head.RowTerms`): returns (loss, terms (B, L, k))
            computed from the head's rows in chunks, instead of logits.
        """
        h = self._input(x, inputs_embeds)
        B, L, _ = h.shape
        c = self.conditioning(sigma, cond, B, h.device)
        start = 0
        if kv_cache is not None:
            if not self.causal:
                raise ValueError("kv_cache needs a causal DiT")
            start = kv_cache.offset
        cos, sin = self.rotary.cos_sin(start, L, h.device)
        for i, block in enumerate(self.blocks):
            h = block(h, c, cos, sin, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance(L)
        return self.outputs(h, c, return_hidden, terms)


# -------------------------------------------------------------------- helpers
def build_backbone(size_or_dict, vocab_size: int, length: int, *, causal: bool = False,
                   num_classes: int | None = None, time_conditioning: bool = True,
                   dropout: float = 0.1, conditioning: str = "silu_sum") -> DiT:
    """DiT from a named size in MODEL_SIZES or a dict with n_blocks, hidden_size,
    n_heads and optionally cond_dim."""
    spec = size_spec(size_or_dict, MODEL_SIZES, keys={"n_blocks", "hidden_size", "n_heads", "cond_dim"},
                     required={"n_blocks", "hidden_size", "n_heads"})
    return DiT(vocab_size, length, dropout=dropout, causal=causal, num_classes=num_classes,
               time_conditioning=time_conditioning, conditioning=conditioning, **spec)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def per_token_matmul_parameters(model: DiT) -> int:
    """Weights of the linear layers applied at every position: attention q/k/v and output, the
    MLP, and the vocabulary head. The embedding lookup and the per-sequence conditioning (time
    MLP, adaLN modulations) take no per-token matrix product."""
    per_token = [model.final.linear] + [layer for block in model.blocks
                                        for layer in (block.attn.qkv, block.attn.out, block.mlp[0], block.mlp[2])]
    return sum(layer.weight.numel() for layer in per_token)


def flops_per_token(model: DiT, length: int, training: bool = True) -> int:
    """Matrix-product FLOPs per token, for MFU (PaLM appendix B convention).

    Forward: ``2 N + 4 n_blocks D L`` with N = `per_token_matmul_parameters` (each weight is one
    multiply-add per token) and ``4 D L`` per block for attention scores (Q K^T) and weighted
    values (A V) over L keys; causal masking is not discounted. Training (forward + backward) is
    three times the forward: ``6 N + 12 n_blocks D L``. Per-sequence work (conditioning) and
    elementwise work (norms, the NELBO over (B, L, V)) are not counted.
    """
    n = per_token_matmul_parameters(model)
    forward = 2 * n + 4 * model.n_blocks * model.hidden_size * length
    return 3 * forward if training else forward
