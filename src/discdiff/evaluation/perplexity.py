"""Likelihood of a trained model as the paper reports it: the NELBO (exact NLL for AR) per
token, perplexity and bits per token on the test split where the dataset has one (LM1B, text8;
QM9 has only a validation split), with the EMA weights unless disabled.

Padding is left out of the count by default, whatever the model trained on
(`training.loss_on_pad`): the paper's QM9 models train on padding and validate without it.
`include_padding=True` gives the padding-included figure. For text8 a token is a character, so
bits per token are bits per character.
"""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from ..data import build_split
from ..loading import Pipeline


@torch.no_grad()
def evaluate_perplexity(pipe: Pipeline, *, split: str = "test", include_padding: bool = False, batch_size: int = 64,
                        max_batches: int | None = None, num_time_samples: int = 1, seed: int = 1) -> dict:
    """Average the per-token NELBO over `split` of the model's dataset (see the module docstring).

    Diffusion NELBOs are Monte Carlo estimates over t; `num_time_samples` draws per sequence
    lower their variance. Returns nll (nats per token), ppl = exp(nll), bpt = nll / ln 2, the
    tokens counted, the split used and what was counted."""
    data_cfg = OmegaConf.to_container(pipe.cfg.data)
    if (pipe.run_dir / "tokenizer").is_dir():
        data_cfg["tokenizer_dir"] = str(pipe.run_dir / "tokenizer")
    dataset, tokenizer, used = build_split(data_cfg, split)
    if tokenizer.vocab_size != pipe.tokenizer.vocab_size:
        raise ValueError(f"data={pipe.cfg.data.name} has a {tokenizer.vocab_size}-token vocabulary, the model "
                         f"{pipe.tokenizer.vocab_size}; give the model's dataset (data=...)")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    torch.manual_seed(seed)
    nll_sum, tokens, sequences = 0.0, 0.0, 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(pipe.device) for k, v in batch.items()}
        labels = batch.get("label") if pipe.lm.num_classes is not None else None
        for _ in range(num_time_samples):
            out = pipe.lm.loss(batch, labels, include_padding=include_padding)
            nll_sum += out.nll_sum.item() / num_time_samples
        tokens += out.num_tokens.item()
        sequences += batch["input_ids"].shape[0]
    nll = nll_sum / max(tokens, 1)
    counted = "every position, padding included" if include_padding else "real tokens (bos, eos included), padding left out"
    return {"nll": nll, "ppl": math.exp(nll), "bpt": nll / math.log(2), "tokens": int(tokens), "sequences": sequences,
            "split": used, "counted": counted, "dataset": pipe.cfg.data.name,
            "conditional": pipe.lm.num_classes is not None and "label" in dataset[0], "checkpoint": str(pipe.checkpoint)}
