"""The weight names of the published UDLM / MDLM checkpoints (kuleshov-group/udlm-lm1b, udlm-qm9,
mdlm-owt, ...) and how they map onto discdiff's DiT. The model's forward is
`(input_ids, timesteps, cond=None) -> logits` with `timesteps` = sigma.

Weights (under `backbone.`) -> discdiff DiT:

    vocab_embed.embedding (V, D)                 token_embedding.weight
    sigma_map.mlp.{0,2}.{weight,bias}            time_embedding.mlp.{0,2}.*
    cond_map.embedding_table.weight              label_embedding.weight ((classes + 1), C)
    rotary_emb.inv_freq                          (recomputed: base 10000, rotate-half on q, k)
    blocks.i.norm1.weight / norm2.weight         blocks.i.norm1.weight / norm2.weight
    blocks.i.attn_qkv.weight (3D, D)             blocks.i.attn.qkv.weight
    blocks.i.attn_out.weight (D, D)              blocks.i.attn.out.weight
    blocks.i.mlp.{0,2}.{weight,bias}             blocks.i.mlp.{0,2}.*   (tanh GELU between)
    blocks.i.adaLN_modulation.{weight,bias}      blocks.i.modulation.*
    output_layer.norm_final.weight               final.norm.weight
    output_layer.linear.{weight,bias}            final.linear.*
    output_layer.adaLN_modulation.{weight,bias}  final.modulation.*

In that architecture the adaLN input is silu(time) + silu(label) (`DiT(conditioning="silu_each")`);
discdiff's own models use silu(time + label) ("silu_sum"), recorded as `conditioning` in the
config.json discdiff writes.
"""

from __future__ import annotations

import re

import torch

PREFIX = "backbone."
#: (discdiff key, published key) templates: {i} a block index, {j} a layer index, {p} weight | bias.
RENAMES = (
    ("token_embedding.weight", "vocab_embed.embedding"),
    ("time_embedding.mlp.{j}.{p}", "sigma_map.mlp.{j}.{p}"),
    ("label_embedding.weight", "cond_map.embedding_table.weight"),
    ("blocks.{i}.norm{j}.weight", "blocks.{i}.norm{j}.weight"),
    ("blocks.{i}.attn.qkv.weight", "blocks.{i}.attn_qkv.weight"),
    ("blocks.{i}.attn.out.weight", "blocks.{i}.attn_out.weight"),
    ("blocks.{i}.mlp.{j}.{p}", "blocks.{i}.mlp.{j}.{p}"),
    ("blocks.{i}.modulation.{p}", "blocks.{i}.adaLN_modulation.{p}"),
    ("final.norm.weight", "output_layer.norm_final.weight"),
    ("final.linear.{p}", "output_layer.linear.{p}"),
    ("final.modulation.{p}", "output_layer.adaLN_modulation.{p}"),
)
ROTARY = "rotary_emb.inv_freq"
_SLOTS = {"i": r"(?P<i>\d+)", "j": r"(?P<j>\d+)", "p": r"(?P<p>weight|bias)"}


def _regex(template: str) -> str:
    parts = re.split(r"\{(\w)\}", template)  # literal, slot, literal, slot, ...
    return "".join(_SLOTS[part] if k % 2 else re.escape(part) for k, part in enumerate(parts))


def _rename(key: str, pairs) -> str | None:
    for source, target in pairs:
        match = re.fullmatch(_regex(source), key)
        if match:
            return target.format(**match.groupdict())
    return None


def to_upstream(state: dict[str, torch.Tensor], inv_freq: torch.Tensor) -> dict[str, torch.Tensor]:
    """A DiT's state dict in the published layout (under `backbone.`), rotary frequencies included."""
    out = {PREFIX + _rename(k, RENAMES): v for k, v in state.items()}
    out[PREFIX + ROTARY] = inv_freq
    return out


def from_upstream(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The published layout (with or without the `backbone.` prefix) as a DiT state dict; the
    stored rotary frequencies are dropped (the DiT recomputes the same ones). Keys of another
    layout raise ValueError naming them."""
    backwards = [(target, source) for source, target in RENAMES]
    out, unknown = {}, []
    for key, value in state.items():
        bare = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if bare == ROTARY:
            continue
        name = _rename(bare, backwards)
        if name is None:
            unknown.append(key)
        else:
            out[name] = value
    if unknown:
        raise ValueError(f"weights in an unknown layout: {', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''}")
    return out

