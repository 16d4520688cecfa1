"""Datasets as model inputs: the stored tokens of every split (tokenized once into the token cache
for large corpora, in memory for small ones) and the sequences cut from them.

Items are dicts of tensors (see `discdiff.data.sequences` for how sequences are cut):

* ``input_ids``: LongTensor (L,), ``[bos] tokens [eos] [pad]...`` for padded
  datasets (QM9, LM1B), a block of the joined texts for lm1b_wrap and text8;
* ``attention_mask``: LongTensor (L,), 1 on real tokens (bos/eos included), 0 on pad;
* ``label``: LongTensor () when ``label_col`` is set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..files import atomic_path
from ..files import cache_root
from .cache import CacheError, load_or_build, read_manifest, write_manifest
from .registry import DataConfig, DatasetSpec
from .sequences import Specials, sequences
from .token_files import Tokens, encode, write
from .tokenizers import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")
TOKENS_VERSION = 1


def specials(tokenizer: Tokenizer) -> Specials:
    return Specials(tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)


def _tokenizer_for(cfg: DataConfig, spec: DatasetSpec, default) -> Tokenizer:
    """The tokenizer saved in ``cfg.tokenizer_dir`` (same kind required), else ``default()``."""
    if cfg.tokenizer_dir is None:
        return default()
    tokenizer = load_tokenizer(cfg.tokenizer_dir)
    if tokenizer.kind != spec.tokenizer:
        raise ValueError(f"tokenizer in {cfg.tokenizer_dir} is '{tokenizer.kind}', dataset '{spec.name}' needs '{spec.tokenizer}'")
    return tokenizer


def load_tokens(cfg: Mapping[str, Any] | DataConfig) -> tuple[dict[str, Tokens], Tokenizer]:
    """The stored tokens of every split the dataset has ({"train", "valid"[, "test"]}) and the
    tokenizer. Cached datasets are tokenized once into memory-mapped files under
    ``<cache>/tokens/`` (keyed by source and tokenizer, so data=lm1b and data=lm1b_wrap share
    them); the others are tokenized in memory."""
    cfg = DataConfig.from_mapping(cfg)
    spec, loader = cfg.spec, cfg.spec.module()
    if not spec.cached:
        splits = loader.load_splits(cfg, spec)
        tokenizer = _tokenizer_for(cfg, spec, lambda: splits.tokenizer)
        return {split: encode(tokenizer, texts, splits.labels.get(split)) for split in SPLITS
                if (texts := splits.texts(split)) is not None}, tokenizer
    tokenizer = _tokenizer_for(cfg, spec, lambda: loader.tokenizer(cfg, spec))
    identity = f"{loader.identity(cfg, spec)}|{tokenizer.fingerprint}"
    folder = cache_root(cfg.cache_dir) / "tokens" / hashlib.sha1(identity.encode()).hexdigest()[:16]
    return load_or_build(folder / "splits.json", {"identity": identity, "version": TOKENS_VERSION},
                         lambda tmp: _tokenize_splits(cfg, tmp, tokenizer), _open_splits), tokenizer


def _tokenize_splits(cfg: DataConfig, index: Path, tokenizer) -> dict:
    """Read the raw splits and tokenize each into <folder>/<split>.tokens (atomically, with its
    manifest); `index` lists them. Returns the facts for the index's manifest."""
    start = time.perf_counter()
    splits = cfg.spec.load_splits(cfg)
    found = {}
    for split in SPLITS:
        texts = splits.texts(split)
        if texts is None:
            continue
        path = index.parent / f"{split}.tokens"
        with atomic_path(path) as tmp:
            meta = write(tmp, tokenizer, texts, splits.labels.get(split), desc=f"tokenizing {cfg.name} {split}")
        write_manifest(path, meta)
        found[split] = meta
        log.info("%s %s: %d texts, %d tokens", cfg.name, split, meta["texts"], meta["tokens"])
    index.write_text(json.dumps(sorted(found)))
    return {"splits": sorted(found), "seconds": round(time.perf_counter() - start, 1)}


def _open_splits(index: Path, meta: dict) -> dict[str, Tokens]:
    tokens = {}
    for split in sorted(meta["splits"], key=SPLITS.index):
        path = index.parent / f"{split}.tokens"
        split_meta = read_manifest(path)
        if split_meta is None:
            raise CacheError(f"{path} has no manifest")
        tokens[split] = Tokens.open(path, split_meta)
    return tokens


def _dataset(cfg: DataConfig, tokens: Tokens, tokenizer, limit: Optional[int] = None):
    return sequences(cfg.spec.packing, tokens, cfg.seq_len, specials(tokenizer), cfg.label_col, limit)


def build_splits(cfg: Mapping[str, Any] | DataConfig) -> tuple[dict[str, Dataset], Tokenizer]:
    """Every split of the dataset ({"train", "valid"[, "test"]}) as model inputs, and the tokenizer."""
    cfg = DataConfig.from_mapping(cfg)
    tokens, tokenizer = load_tokens(cfg)
    return {split: _dataset(cfg, stored, tokenizer, cfg.max_train_examples if split == "train" else None)
            for split, stored in tokens.items()}, tokenizer


def build_datasets(cfg: Mapping[str, Any] | DataConfig) -> tuple[Dataset, Dataset, Tokenizer]:
    """Build (train, valid, tokenizer) for the dataset described by ``cfg``.

    ``cfg`` (dict or OmegaConf DictConfig) keys: ``name`` (required), ``length``,
    ``label_col``, ``label_percentile`` (90), ``source`` (auto | offline |
    hub), ``path``, ``cache_dir``, ``split_seed`` (1), ``max_train_examples``,
    ``tokenizer_dir``, ``bert_vocab``. ``max_train_examples`` keeps the first N
    training sequences (blocks for joined packings); valid is never cut.
    """
    cfg = DataConfig.from_mapping(cfg)
    splits, tokenizer = build_splits(cfg)
    train, valid = splits["train"], splits["valid"]
    log.info("%s: %d train / %d valid sequences of length %d, vocab %d",
             cfg.name, len(train), len(valid), cfg.seq_len, tokenizer.vocab_size)
    return train, valid, tokenizer


def build_split(cfg: Mapping[str, Any] | DataConfig, split: str) -> tuple[Dataset, Tokenizer, str]:
    """(dataset, tokenizer, split used) for evaluation: ``split`` = "test" falls back to "valid"
    where the dataset has no test split (QM9, local LM1B files)."""
    if split not in ("valid", "test"):
        raise ValueError(f"split '{split}' is not an evaluation split; allowed: valid, test")
    splits, tokenizer = build_splits(cfg)
    used = split if split in splits else "valid"
    return splits[used], tokenizer, used


def reference_texts(cfg: Mapping[str, Any] | DataConfig, classes: Sequence[Optional[int]], length: int, seed: int = 0,
                    split: str = "valid") -> list[str]:
    """Real texts to compare samples with (MAUVE's references): one per entry of `classes`, each
    the first `length` tokens of a text of `split` decoded, drawn at random without replacement
    (numpy default_rng(seed)). An entry k draws from the texts whose ``label_col`` label is k; None
    from all texts. Refused in one line when a class has fewer texts than asked for."""
    cfg = DataConfig.from_mapping(cfg)
    tokens, tokenizer = load_tokens(cfg)
    stored = tokens[split]
    labels = stored.labels.get(cfg.label_col) if cfg.label_col else None
    rng, chosen = np.random.default_rng(seed), [0] * len(classes)
    for k in sorted(set(classes), key=lambda c: -1 if c is None else c):
        slots = [j for j, c in enumerate(classes) if c == k]
        if k is not None and labels is None:
            raise ValueError(f"data={cfg.name} has no labels (data.label_col) to draw references of class {k} from")
        pool = np.arange(len(stored)) if k is None else np.flatnonzero(np.asarray(labels) == k)
        if len(pool) < len(slots):
            what = "texts" if k is None else f"texts of class {k}"
            raise ValueError(f"the {split} split of data={cfg.name} has {len(pool)} {what}, fewer than the "
                             f"{len(slots)} references asked for")
        for j, i in zip(slots, rng.choice(pool, len(slots), replace=False).tolist()):
            chosen[j] = i
    return [tokenizer.decode(stored.text_ids(i)[:length]) for i in chosen]
