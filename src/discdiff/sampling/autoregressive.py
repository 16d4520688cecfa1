"""Left-to-right sampling from a causal DiT.

Every sequence starts with ``bos_id``; the remaining ``length - 1`` tokens are
drawn one at a time with the Gumbel-max trick (``argmax(logits / T + G)``,
``G ~ Gumbel(0, 1)`` from the given ``torch.Generator``), or greedily.

``logits_hook(prefix_ids, next_logits)`` is the extension point for guided
decoding (classifier-free guidance, FUDGE, PPLM): it receives the prefix
(B, i) and the fp32 next-token logits (B, V) and returns (B, V) logits or
log-probabilities, which are then sampled from. The network call itself runs
under ``torch.no_grad``; the hook runs outside it, so it may compute gradients.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from ..processes import sample_categorical
from .diffusion import SampleOutput

LogitsHook = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _labels(cond, batch_size: int, device) -> torch.Tensor | None:
    """cond as None, an int, or (B,) ids -> None or a (B,) LongTensor."""
    if cond is None:
        return None
    cond = torch.as_tensor(cond, dtype=torch.long, device=device).reshape(-1)
    return cond.expand(batch_size) if cond.numel() == 1 else cond


def _next_logits(model, tokens, i, cond, cache) -> torch.Tensor:
    """fp32 logits (B, V) for position i given tokens[:, :i] (one network call)."""
    with torch.no_grad():
        if cache is None:
            logits = model(tokens[:, :i], None, cond)
        else:
            logits = model(tokens[:, cache.length:i], None, cond, kv_cache=cache)
    return logits[:, -1].float()


def sample_autoregressive(
    model,
    num_samples: int,
    length: int,
    bos_id: int,
    *,
    cond=None,
    use_cache: bool = True,
    argmax: bool = False,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    logits_hook: LogitsHook | None = None,
    progress: bool = False,
) -> SampleOutput:
    """Generate ``num_samples`` sequences of ``length`` tokens (BOS included).

    Args:
        model: causal DiT (``model.causal``), called as ``model(x, None, cond)``.
        cond: None, an int or (B,) class ids passed to the model on every call.
        use_cache: incremental decoding with a KV cache; False recomputes the
            whole prefix each step (the reference path).
        argmax: greedy decoding instead of sampling.
        temperature: logits are divided by it after ``logits_hook``.
        generator: torch.Generator for the Gumbel noise (any device).
        logits_hook: ``(prefix_ids (B, i), next_logits (B, V)) -> (B, V)``;
            prefix_ids is a read-only view into the output buffer.
        progress: show a tqdm bar.

    Returns:
        SampleOutput with tokens (B, length) and nfe == length - 1 network calls.
    """
    if not getattr(model, "causal", False):
        raise ValueError("sample_autoregressive needs a causal model")
    if not argmax and temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); use argmax=True")
    device = next(model.parameters()).device
    tokens = torch.full((num_samples, length), bos_id, dtype=torch.long, device=device)
    labels = _labels(cond, num_samples, device)
    cache = model.new_kv_cache(num_samples, length, device) if use_cache else None
    was_training, nfe = model.training, 0
    model.eval()
    try:
        for i in tqdm(range(1, length), disable=not progress, desc="AR sampling"):
            logits = _next_logits(model, tokens, i, labels, cache)
            nfe += 1
            if logits_hook is not None:
                logits = logits_hook(tokens[:, :i], logits)
            tokens[:, i] = logits.argmax(-1) if argmax else sample_categorical(logits / temperature, generator)
    finally:
        model.train(was_training)
    return SampleOutput(tokens=tokens, nfe=nfe)
