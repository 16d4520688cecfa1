"""Validation likelihood of a trained model: NELBO (exact NLL for AR) per token, perplexity and
bits per token, with the EMA weights unless disabled."""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader


@torch.no_grad()
def evaluate_perplexity(pipe, *, batch_size: int = 64, max_batches: int | None = None,
                        num_time_samples: int = 1, seed: int = 1) -> dict:
    """Average the per-token NELBO over the validation split of the model's dataset.

    Diffusion NELBOs are Monte Carlo estimates over t; `num_time_samples` draws per sequence
    lower their variance. Returns nll (nats/token), ppl = exp(nll), bpt = nll / ln 2, tokens.
    """
    from ..data import build_datasets

    data_cfg = OmegaConf.to_container(pipe.cfg.data)
    data_cfg["tokenizer_dir"] = str(pipe.run_dir / "tokenizer")
    _, valid, _ = build_datasets(data_cfg)
    loader = DataLoader(valid, batch_size=batch_size, shuffle=False)
    torch.manual_seed(seed)
    nll_sum, tokens = 0.0, 0.0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(pipe.device) for k, v in batch.items()}
        for _ in range(num_time_samples):
            out = pipe.lm.loss(batch)
            nll_sum += out.nll_sum.item() / num_time_samples
        tokens += out.num_tokens.item()
    nll = nll_sum / max(tokens, 1)
    return {"nll": nll, "ppl": math.exp(nll), "bpt": nll / math.log(2), "tokens": int(tokens),
            "checkpoint": str(pipe.checkpoint)}
