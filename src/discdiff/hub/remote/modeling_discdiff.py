"""A discdiff DiT as a HuggingFace model (`discdiff export`), in plain PyTorch.

    model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
    logits = model(input_ids, timesteps=sigma, cond=labels).logits      # (B, L, V)

The weights keep the layout of the published UDLM / MDLM checkpoints (module names below), so
this code also runs those. Per block, with c the activated conditioning vector:

    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = adaLN_modulation(c)
    h = h + gate_a * attn_out(Attention(rotary(attn_qkv(LN(h) * (1 + scale_a) + shift_a))))
    h = h + gate_m * mlp(LN(h) * (1 + scale_m) + shift_m)
    logits = linear(LN(h) * (1 + scale) + shift),  shift, scale = output_layer.adaLN_modulation(c)

c = silu(sigma_map(sigma) + cond_map(cond)) ("silu_sum") or silu(sigma_map(sigma)) +
silu(cond_map(cond)) ("silu_each"); LayerNorms have no bias, the MLP uses tanh GELU, rotary
embeddings (base 10000, rotate-half) turn q and k. This file is shipped inside every exported
folder; it needs only torch and transformers (no flash-attn).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

try:
    from .configuration_discdiff import ARConfig, DiscdiffConfig, MDLMConfig, UDLMConfig
except ImportError:  # imported as a plain module
    from configuration_discdiff import ARConfig, DiscdiffConfig, MDLMConfig, UDLMConfig


class _Embedding(nn.Module):
    def __init__(self, vocab_size, dim):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(vocab_size, dim))

    def forward(self, ids):
        return self.embedding[ids]


class _TimeEmbedding(nn.Module):
    def __init__(self, cond_dim, frequencies=256, max_period=10000.0):
        super().__init__()
        self.frequencies, self.max_period = frequencies, max_period
        self.mlp = nn.Sequential(nn.Linear(frequencies, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma):
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, device=sigma.device) / half)
        args = sigma.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))


class _LabelEmbedding(nn.Module):
    def __init__(self, rows, cond_dim):
        super().__init__()
        self.embedding_table = nn.Embedding(rows, cond_dim)

    def forward(self, labels):
        return self.embedding_table(labels)


class _Rotary(nn.Module):
    def __init__(self, head_dim, base=10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim))

    def forward(self, x):
        """x (B, H, L, Dh) rotated by position."""
        angles = torch.arange(x.shape[-2], device=x.device).float()[:, None] * self.inv_freq[None]
        cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
        x1, x2 = x.float().chunk(2, dim=-1)
        return (x.float() * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


def _norm(x, weight, shift, scale):
    y = F.layer_norm(x.float(), (x.shape[-1],)) * weight.float()
    return y * (1 + scale[:, None].float()) + shift[:, None].float()


class _Block(nn.Module):
    def __init__(self, dim, n_heads, cond_dim, dropout, causal):
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        self.norm1, self.norm2 = _Scale(dim), _Scale(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h, c, rotary):
        b, n, d = h.shape
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        qkv = self.attn_qkv(_norm(h, self.norm1.weight, shift_a, scale_a).to(h.dtype))
        q, k, v = qkv.view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(rotary(q), rotary(k), v, is_causal=self.causal)
        h = h + gate_a[:, None] * self.dropout(self.attn_out(a.transpose(1, 2).reshape(b, n, d)))
        m = self.mlp(_norm(h, self.norm2.weight, shift_m, scale_m).to(h.dtype))
        return h + gate_m[:, None] * self.dropout(m)


class _Scale(nn.Module):
    """The weight of a bias-free LayerNorm."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))


class _OutputLayer(nn.Module):
    def __init__(self, dim, vocab_size, cond_dim):
        super().__init__()
        self.norm_final = _Scale(dim)
        self.linear = nn.Linear(dim, vocab_size)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim)

    def forward(self, h, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(_norm(h, self.norm_final.weight, shift, scale).to(h.dtype))


class _Backbone(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.vocab_embed = _Embedding(config.vocab_size, config.hidden_dim)
        self.sigma_map = _TimeEmbedding(config.cond_dim)
        self.cond_map = _LabelEmbedding(config.cfg_num_classes + 1, config.cond_dim) if config.cfg else None
        self.rotary_emb = _Rotary(config.hidden_dim // config.n_heads)
        self.blocks = nn.ModuleList(_Block(config.hidden_dim, config.n_heads, config.cond_dim, config.dropout,
                                          config.causal) for _ in range(config.n_blocks))
        self.output_layer = _OutputLayer(config.hidden_dim, config.vocab_size, config.cond_dim)

    def conditioning(self, sigma, cond, batch_size, device):
        if sigma is None or not self.config.time_conditioning:
            sigma = torch.zeros(batch_size, device=device)
        t = self.sigma_map(sigma.reshape(-1).expand(batch_size))
        if cond is None or self.cond_map is None:
            if cond is not None:
                raise ValueError("cond given to a model without label embeddings (cfg=false)")
            if self.cond_map is not None and self.config.conditioning == "silu_sum":
                cond = torch.full((batch_size,), self.config.cfg_num_classes, device=device, dtype=torch.long)
            else:
                return F.silu(t)
        label = self.cond_map(cond)
        return F.silu(t + label) if self.config.conditioning == "silu_sum" else F.silu(t) + F.silu(label)

    def forward(self, input_ids, sigma=None, cond=None, output_hidden_states=False):
        h = self.vocab_embed(input_ids)
        c = self.conditioning(sigma, cond, input_ids.shape[0], input_ids.device)
        hidden = [h]
        for block in self.blocks:
            h = block(h, c, self.rotary_emb)
            hidden.append(h)
        return self.output_layer(h, c), hidden if output_hidden_states else None


class DiscdiffPreTrainedModel(PreTrainedModel):
    config_class = DiscdiffConfig
    base_model_prefix = "discdiff"

    def _init_weights(self, module):
        """Weights always come from the checkpoint; nothing to initialise."""


class DiscdiffDiT(DiscdiffPreTrainedModel):
    """forward(input_ids (B, L), timesteps = sigma (B,) or None, cond = labels (B,) or None) -> logits."""

    def __init__(self, config):
        super().__init__(config)
        self.backbone = _Backbone(config)
        self.post_init()

    def forward(self, input_ids=None, timesteps=None, cond=None, output_hidden_states=None, return_dict=None,
                **kwargs):
        logits, hidden = self.backbone(input_ids, timesteps, cond, bool(output_hidden_states))
        if return_dict is False:
            return (logits, hidden) if output_hidden_states else logits
        return MaskedLMOutput(logits=logits, hidden_states=tuple(hidden) if hidden else None)


class UDLM(DiscdiffDiT):
    config_class = UDLMConfig


class MDLM(DiscdiffDiT):
    config_class = MDLMConfig


class DiscdiffAR(DiscdiffDiT):
    config_class = ARConfig
