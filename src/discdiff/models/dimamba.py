"""DiMamba: a bidirectional Mamba (S6) backbone, a drop-in alternative to the DiT.

Same interface and conditioning as `discdiff.models.dit.DiT` (both are `ConditionedBackbone`s:
token / one-hot / embedding inputs, "silu_sum" time + label conditioning, ``return_hidden`` and
``head`` for guidance; incremental causal decoding through a state cache), with the attention
blocks replaced by
Mamba blocks whose cost is linear in the sequence length:

    h0 = token_embedding(x)                                    (B, L, D)
    c  = silu(TimeMLP(sinusoid(sigma)) + label_emb(cond))      (B, C)
    h  = h + gate * Dropout(Mix(LN(h) * (1 + scale) + shift))  per block; (shift, scale, gate) =
                                                               Linear(c), zero-initialised
    logits = FinalLayer(h, c)                                  adaLN shift/scale + Linear(D -> V)

Mamba mixer (Gu & Dao 2023), with E = expand, Din = E * D, N = d_state, R = ceil(D / 16):

    x, z   = in_proj(u)                                  (B, L, Din) each
    x      = silu(causal depthwise conv1d_K(x))          kernel K = d_conv, left window of K - 1
    dt     = softplus(dt_proj(x W_dt) + dt_bias)         (B, L, Din), W_dt: Din -> R (low rank)
    B_t, C_t = x W_B, x W_C                              (B, L, N) each
    A      = -exp(A_log)                                 (Din, N), diagonal per (channel, state)
    h_t    = exp(dt_t A) * h_{t-1} + dt_t B_t x_t        state (B, Din, N)
    y_t    = C_t . h_t + D * x_t                         (B, L, Din)
    Mix(u) = out_proj(y * silu(z))                       (B, L, D)

Initialisation follows the paper: A = 1..N for every channel (S4D-real), dt_bias the inverse
softplus of dt ~ log-uniform in [1e-3, 1e-1], D = 1.

Bidirectional combination: a non-causal model (diffusion) holds two mixers per block with
separate weights, one reading the sequence left to right and one right to left, and sums them:
``Mix(u) = Mix_fwd(u) + flip(Mix_bwd(flip(u)))``. This makes a block about 12 D^2 parameters,
the same as a DiT block (4 D^2 attention + 8 D^2 MLP), so DIMAMBA_SIZES reuse DiT's widths and
depths. A causal model (AR) holds the forward mixer only (about half the parameters).

Chunked parallel scan (`chunked_selective_scan`): the recurrence h_t = a_t h_{t-1} + b_t with
a_t = exp(dt_t A) in (0, 1] and b_t = dt_t B_t x_t (both (B, Din, N) per position) is an
associative scan over the pairs (a_t, b_t) with (a, b) then (a', b') = (a a', a' b + b'). Inside
a chunk of T positions it runs as log2(T) doubling steps over whole tensors (Hillis & Steele
1986): at step d every position t >= d combines with position t - d,

    b_t <- a_t b_{t-d} + b_t,    a_t <- a_t a_{t-d},

after which b_t is the state reached from zeros and a_t = a_1 ... a_t, so with a carried-in
state h_0 the chunk's states are h_t = b_t + a_t h_0; the last one is carried to the next chunk
by a loop over the L / T chunks. Only products of decays in (0, 1] are formed (no division by a
cumulative product), so it is stable in fp32 for any length. The work is O(L log T Din N), linear
in L; the largest tensors are the chunk's (B, Din, N, T) pairs (B = 8, Din = 1536, N = 16,
T = 64: 50 MB each), never a T x T matrix per channel and state. Under autograd every chunk is
checkpointed, so backward keeps only the chunk inputs and the carried states (B * Din * N * L / T)
and recomputes one chunk at a time. The scan runs in fp32 with autocast off. If the package
``mamba_ssm`` is importable and the tensors are on CUDA, its fused ``selective_scan_fn`` replaces
the chunked scan when there is no carried-in state (the full-sequence forward).

Incremental causal decoding (`MambaStateCache`): per block, the last K - 1 conv inputs
(B, Din, K - 1) and the SSM state (B, Din, N); new positions continue from them, which equals
the full forward over the prefix (whose conv window starts as zeros, its state as zeros).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .fused_head import RowTerms
from .layers import ConditionedBackbone, FinalLayer, ScaledLayerNorm, size_spec

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _fused_scan
except (ImportError, OSError, RuntimeError):  # optional; a build for another CUDA fails with OSError
    _fused_scan = None

#: Named backbone sizes; ``micro`` is sized for CPU demos and tests. The widths and depths
#: of DiT's MODEL_SIZES give about the same parameter count (module docstring).
DIMAMBA_SIZES: dict[str, dict[str, int]] = {
    "micro": dict(n_blocks=4, hidden_size=128, cond_dim=64),
    "tiny": dict(n_blocks=8, hidden_size=512, cond_dim=128),
    "small": dict(n_blocks=12, hidden_size=768, cond_dim=128),
    "medium": dict(n_blocks=24, hidden_size=1024, cond_dim=128),
}

_SPEC_KEYS = {"n_blocks", "hidden_size", "cond_dim", "d_state", "d_conv", "expand", "chunk_size"}


# ------------------------------------------------------------------- scans
def _scan_chunk(x, dt, Bm, Cm, A, h0):
    """One chunk of T positions: x, dt (B, Din, T); Bm, Cm (B, N, T); A (Din, N); carried-in state
    h0 (B, Din, N) -> outputs without the D skip (B, Din, T) and the last state (B, Din, N), by
    log2(T) doubling steps of the associative scan (module docstring). Positions lead the working
    tensors (T, B, Din, N), so every shifted slice is one contiguous block."""
    dt_t = dt.permute(2, 0, 1)[..., None]                           # (T, B, Din, 1)
    a = torch.exp(dt_t * A)                                         # a_t = exp(dt_t A): (T, B, Din, N)
    b = (dt_t * x.permute(2, 0, 1)[..., None]) * Bm.permute(2, 0, 1)[:, :, None, :]  # b_t = dt_t B_t x_t
    d = 1
    while d < a.shape[0]:
        b = torch.cat([b[:d], torch.addcmul(b[d:], a[d:], b[:-d])])
        a = torch.cat([a[:d], a[d:] * a[:-d]])
        d *= 2
    states = torch.addcmul(b, a, h0)                                # h_t = b_t + (a_1 ... a_t) h_0
    return torch.einsum("tbdn,tbn->bdt", states, Cm.permute(2, 0, 1)), states[-1]


def chunked_selective_scan(x, dt, A, Bm, Cm, D, h0=None, chunk_size: int = 64):
    """Selective scan in plain PyTorch, chunked (module docstring).

    x, dt: (B, Din, L); A: (Din, N) (negative); Bm, Cm: (B, N, L); D: (Din,);
    h0: (B, Din, N) or None (zeros). Returns y (B, Din, L) in x's dtype and the last
    state (B, Din, N) in fp32. Differentiable in every input.
    """
    with torch.autocast(x.device.type, enabled=False):
        xf, dtf, Bf, Cf, Af = (t.float() for t in (x, dt, Bm, Cm, A))
        h = xf.new_zeros(x.shape[0], x.shape[1], A.shape[1]) if h0 is None else h0.float()
        recompute = torch.is_grad_enabled() and any(t.requires_grad for t in (xf, dtf, Bf, Cf, Af, h))
        ys = []
        for start in range(0, x.shape[-1], chunk_size):
            part = slice(start, start + chunk_size)
            args = (xf[..., part], dtf[..., part], Bf[..., part], Cf[..., part], Af, h)
            y, h = checkpoint(_scan_chunk, *args, use_reentrant=False) if recompute else _scan_chunk(*args)
            ys.append(y)
        y = torch.cat(ys, dim=-1) + D.float()[:, None] * xf
    return y.to(x.dtype), h


def selective_scan(x, dt, A, Bm, Cm, D, h0=None, chunk_size: int = 64):
    """`chunked_selective_scan`, or mamba_ssm's fused kernel (in fp32) for CUDA tensors without
    a carried-in state when that package is installed. Same shapes and returns."""
    if _fused_scan is not None and x.is_cuda and h0 is None:
        y, h = _fused_scan(x.float(), dt.float(), A.float(), Bm.float(), Cm.float(), D.float(),
                           return_last_state=True)
        return y.to(x.dtype), h.float()
    return chunked_selective_scan(x, dt, A, Bm, Cm, D, h0, chunk_size)


# ------------------------------------------------------------------ cache
class MambaStateCache:
    """Per-block conv windows and SSM states for incremental causal decoding (DiT's KVCache
    protocol: ``length``, ``batch_size``, ``max_length``, ``advance``, ``reset``, ``repeat_rows``).

    conv[i]: (B, Din, K - 1) last conv inputs, in ``dtype``; ssm[i]: (B, Din, N), fp32.
    ``length`` counts the positions consumed; ``max_length`` bounds it.
    """

    def __init__(self, n_layers: int, batch_size: int, inner: int, d_state: int, d_conv: int,
                 max_length: int, device, dtype):
        self.conv = [torch.zeros(batch_size, inner, d_conv - 1, device=device, dtype=dtype)
                     for _ in range(n_layers)]
        self.ssm = [torch.zeros(batch_size, inner, d_state, device=device, dtype=torch.float32)
                    for _ in range(n_layers)]
        self.batch_size, self.max_length, self.length = batch_size, max_length, 0

    def check(self, batch_size: int, n: int) -> None:
        """ValueError unless n more positions of a batch of batch_size rows fit."""
        if batch_size != self.batch_size:
            raise ValueError(f"state cache batch {self.batch_size} != input batch {batch_size}")
        if self.length + n > self.max_length:
            raise ValueError(f"state cache overflow: {self.length + n} positions > max_length {self.max_length}")

    def store(self, layer: int, conv: torch.Tensor, ssm: torch.Tensor) -> None:
        """Replace block ``layer``'s conv window (B, Din, K - 1) and SSM state (B, Din, N)."""
        self.conv[layer] = conv.to(self.conv[layer].dtype)
        self.ssm[layer] = ssm.float()

    def advance(self, n: int) -> None:
        """Mark n more positions as consumed (called once per forward pass)."""
        self.length += n

    def reset(self) -> None:
        """Back to the empty prefix: zero windows and states."""
        self.conv = [torch.zeros_like(c) for c in self.conv]
        self.ssm = [torch.zeros_like(s) for s in self.ssm]
        self.length = 0

    def repeat_rows(self, k: int) -> MambaStateCache:
        """Each row's state repeated k times in place (row b becomes rows bk .. bk + k - 1)."""
        self.conv = [c.repeat_interleave(k, 0) for c in self.conv]
        self.ssm = [s.repeat_interleave(k, 0) for s in self.ssm]
        self.batch_size *= k
        return self


# ----------------------------------------------------------------- layers
class MambaMixer(nn.Module):
    """Mamba (S6) mixer over one direction: (B, L, D) -> (B, L, D) (module docstring)."""

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 chunk_size: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        inner, self.dt_rank = expand * dim, math.ceil(dim / 16)
        self.d_state, self.d_conv, self.chunk_size = d_state, d_conv, chunk_size
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, d_conv, groups=inner)  # the left window is prepended
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self._init_dt(dt_min, dt_max)

    def _init_dt(self, dt_min: float, dt_max: float) -> None:
        """dt_proj weight ~ U(+-R^-1/2); bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max]."""
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        log_dt = torch.empty_like(self.dt_proj.bias).uniform_(math.log(dt_min), math.log(dt_max))
        dt = log_dt.exp().clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, u: torch.Tensor, cache: MambaStateCache | None = None, layer: int = 0) -> torch.Tensor:
        """u: (B, L, D) -> (B, L, D). With ``cache`` the L positions continue block ``layer``'s
        stored conv window and SSM state, which are then replaced by the new ones."""
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = x.transpose(1, 2)                                        # (B, Din, L)
        window = (x.new_zeros(x.shape[0], x.shape[1], self.d_conv - 1) if cache is None
                  else cache.conv[layer].to(x.dtype))
        x_padded = torch.cat([window, x], dim=-1)                    # (B, Din, K - 1 + L)
        x = F.silu(self.conv(x_padded))
        dt_low, Bm, Cm = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt_low)).transpose(1, 2)        # (B, Din, L)
        y, state = selective_scan(x, dt, -torch.exp(self.A_log.float()), Bm.transpose(1, 2), Cm.transpose(1, 2),
                                  self.D, None if cache is None else cache.ssm[layer], self.chunk_size)
        if cache is not None:
            cache.store(layer, x_padded[..., x_padded.shape[-1] - (self.d_conv - 1):], state)
        return self.out_proj(y.transpose(1, 2) * F.silu(z))


class DiMambaBlock(nn.Module):
    """Pre-norm Mamba block with adaLN-zero modulation (the identity map at initialisation):
    ``h = h + gate * Dropout(Mix(LN(h) * (1 + scale) + shift))`` with Mix the sum of a forward
    and a backward mixer (separate weights), or the forward mixer alone when causal."""

    def __init__(self, dim: int, cond_dim: int, dropout: float, causal: bool, **mixer_kw):
        super().__init__()
        self.norm = ScaledLayerNorm(dim)
        self.forward_mixer = MambaMixer(dim, **mixer_kw)
        self.backward_mixer = None if causal else MambaMixer(dim, **mixer_kw)
        self.dropout = nn.Dropout(dropout)
        self.modulation = nn.Linear(cond_dim, 3 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h, c, cache: MambaStateCache | None = None, layer: int = 0) -> torch.Tensor:
        """h: (B, L, D); c: (B, C) activated conditioning -> (B, L, D)."""
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        u = self.norm(h, shift, scale)
        m = self.forward_mixer(u, cache, layer)
        if self.backward_mixer is not None:
            m = m + self.backward_mixer(u.flip(1)).flip(1)
        return torch.addcmul(h, gate[:, None, :], self.dropout(m)).to(h.dtype)


# ------------------------------------------------------------------ model
class DiMamba(ConditionedBackbone):
    """Bidirectional (or causal) Mamba over token sequences conditioned on (sigma, class label).

    Args:
        vocab_size, length, hidden_size, n_blocks, cond_dim, dropout, causal, num_classes,
            time_conditioning: as for `DiT` (``length`` is the default state-cache size; any
            length works). Conditioning is DiT's "silu_sum".
        d_state: N, SSM state size per channel; d_conv: K, conv kernel; expand: E, Din = E * D.
        chunk_size: T, positions per chunk of the parallel scan (module docstring for memory).
    """

    def __init__(self, vocab_size: int, length: int, hidden_size: int, n_blocks: int, cond_dim: int = 128,
                 dropout: float = 0.1, causal: bool = False, num_classes: int | None = None,
                 time_conditioning: bool = True, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 chunk_size: int = 64):
        super().__init__(vocab_size, length, hidden_size, cond_dim, num_classes=num_classes,
                         time_conditioning=time_conditioning, causal=causal)
        self.n_blocks = n_blocks
        self.d_state, self.d_conv, self.expand, self.chunk_size = d_state, d_conv, expand, chunk_size
        self.blocks = nn.ModuleList(
            DiMambaBlock(hidden_size, cond_dim, dropout, causal, d_state=d_state, d_conv=d_conv,
                         expand=expand, chunk_size=chunk_size)
            for _ in range(n_blocks)
        )
        self.final = FinalLayer(hidden_size, vocab_size, cond_dim)
        self._init_embeddings()

    def new_kv_cache(self, batch_size: int, max_length: int | None = None, device=None,
                     dtype=None) -> MambaStateCache:
        """Empty state cache for incremental decoding (causal models only)."""
        if not self.causal:
            raise ValueError("state caching needs a causal DiMamba")
        p = self.token_embedding.weight
        return MambaStateCache(self.n_blocks, batch_size, self.expand * self.hidden_size, self.d_state,
                               self.d_conv, max_length or self.length, device or p.device, dtype or p.dtype)

    def forward(self, x=None, sigma=None, cond=None, *, inputs_embeds=None,
                return_hidden: bool = False, kv_cache: MambaStateCache | None = None,
                terms: RowTerms | None = None):
        """Logits (B, L, V), or (logits, last hidden states (B, L, D)) with ``return_hidden``.

        x: (B, L) token ids or (B, L, V) token distributions, or ``inputs_embeds`` (B, L, D).
        sigma: (B,) noise level or None; cond: (B,) class ids or None.
        kv_cache: causal decoding; x holds only the n new positions, which continue the cached
            states, and logits for them alone are returned.
        terms: a loss's per-position terms (`fused_head.RowTerms`): returns (loss, terms (B, L, k))
            computed from the head's rows in chunks, instead of logits.
        """
        h = self._input(x, inputs_embeds)
        B, L, _ = h.shape
        c = self.conditioning(sigma, cond, B, h.device)
        if kv_cache is not None:
            if not self.causal:
                raise ValueError("kv_cache needs a causal DiMamba")
            kv_cache.check(B, L)
        for i, block in enumerate(self.blocks):
            h = block(h, c, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance(L)
        return self.outputs(h, c, return_hidden, terms)


def build_dimamba(size_or_dict, vocab_size: int, length: int, *, causal: bool = False,
                  num_classes: int | None = None, time_conditioning: bool = True,
                  dropout: float = 0.1) -> DiMamba:
    """DiMamba from a named size in DIMAMBA_SIZES or a dict with n_blocks, hidden_size and
    optionally cond_dim, d_state, d_conv, expand, chunk_size."""
    spec = size_spec(size_or_dict, DIMAMBA_SIZES, keys=_SPEC_KEYS, required={"n_blocks", "hidden_size"})
    return DiMamba(vocab_size, length, dropout=dropout, causal=causal, num_classes=num_classes,
                   time_conditioning=time_conditioning, **spec)
