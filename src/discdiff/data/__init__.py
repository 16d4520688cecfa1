"""Datasets and tokenizers for discdiff.

Entry point: :func:`build_datasets` turns a data config into pre-tokenized
train/valid datasets and their tokenizer. Items are dicts of tensors:

* ``input_ids``: LongTensor (L,), ``[bos] tokens [eos] [pad]...`` for padded
  datasets (QM9, LM1B), a block of the token stream for wrapped ones (text8);
* ``attention_mask``: LongTensor (L,), 1 on real tokens (bos/eos included), 0 on pad;
* ``label``: LongTensor () when ``label_col`` is set.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from discdiff.data.cache import cache_root
from discdiff.data.qm9 import qm9_train_smiles, qm9_train_table
from discdiff.data.registry import REGISTRY, DataConfig, DatasetSpec, Splits, get_spec, implemented
from discdiff.data.tokenizers import (
    BertTokenizer,
    CharTokenizer,
    SmilesTokenizer,
    Tokenizer,
    load_tokenizer,
)

__all__ = [
    "REGISTRY",
    "BertTokenizer",
    "CharTokenizer",
    "DataConfig",
    "DatasetSpec",
    "SmilesTokenizer",
    "TokenDataset",
    "Tokenizer",
    "build_datasets",
    "cache_root",
    "encode_blocks",
    "encode_padded",
    "get_spec",
    "implemented",
    "load_tokenizer",
    "qm9_train_smiles",
    "qm9_train_table",
]

log = logging.getLogger(__name__)
ENCODE_CHUNK = 10_000


class TokenDataset(Dataset):
    """Pre-tokenized fixed-length sequences kept in memory.

    Args:
        input_ids: (N, L) integer tensor (stored in the smallest dtype that fits).
        lengths: (N,) number of real tokens at the start of each row.
        labels: optional (N,) integer class labels.
    """

    def __init__(self, input_ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None = None):
        if lengths.shape != input_ids.shape[:1] or (labels is not None and labels.shape != lengths.shape):
            raise ValueError(f"shape mismatch: ids {tuple(input_ids.shape)}, lengths {tuple(lengths.shape)}, "
                             f"labels {None if labels is None else tuple(labels.shape)}")
        self.input_ids = input_ids
        self.lengths = lengths
        self.labels = labels
        self._positions = torch.arange(input_ids.shape[1])

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def seq_len(self) -> int:
        return self.input_ids.shape[1]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {
            "input_ids": self.input_ids[i].long(),
            "attention_mask": (self._positions < self.lengths[i]).long(),
        }
        if self.labels is not None:
            item["label"] = self.labels[i].long()
        return item


def _compact_dtype(vocab_size: int) -> torch.dtype:
    return torch.int16 if vocab_size <= torch.iinfo(torch.int16).max else torch.int32


def encode_padded(tokenizer: Tokenizer, texts: Sequence[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode each text as ``[bos] tokens [eos] [pad]...`` of ``length``, truncating tokens.

    Returns (ids (N, L) compact int tensor, lengths (N,) int32 count of non-pad tokens).
    """
    ids = np.full((len(texts), length), tokenizer.pad_id, dtype=np.int64)
    lengths = np.empty(len(texts), dtype=np.int32)
    truncated = 0
    for start in range(0, len(texts), ENCODE_CHUNK):
        for row, tokens in enumerate(tokenizer.encode_batch(texts[start : start + ENCODE_CHUNK]), start):
            truncated += len(tokens) > length - 2
            seq = [tokenizer.bos_id, *tokens[: length - 2], tokenizer.eos_id]
            ids[row, : len(seq)] = seq
            lengths[row] = len(seq)
    if truncated:
        log.warning("%d of %d examples truncated to %d tokens", truncated, len(texts), length)
    return torch.from_numpy(ids).to(_compact_dtype(tokenizer.vocab_size)), torch.from_numpy(lengths)


def encode_blocks(tokenizer: Tokenizer, texts: Sequence[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the token streams of ``texts`` and cut them into full blocks of ``length``.

    No special tokens are added; the last partial block is dropped.
    Returns (ids (N, L) compact int tensor, lengths (N,) all equal to L).
    """
    stream = torch.cat([tokenizer.encode_tensor(t) for t in texts])
    n_blocks = stream.numel() // length
    if n_blocks == 0:
        raise ValueError(f"text has {stream.numel()} tokens, fewer than one block of {length}")
    ids = stream[: n_blocks * length].view(n_blocks, length).to(_compact_dtype(tokenizer.vocab_size))
    return ids, torch.full((n_blocks,), length, dtype=torch.int32)


def _tokenizer_for(cfg: DataConfig, spec: DatasetSpec, splits: Splits) -> Tokenizer:
    """The loader's tokenizer, or the one saved in ``cfg.tokenizer_dir`` (same kind required)."""
    if cfg.tokenizer_dir is None:
        return splits.tokenizer
    tokenizer = load_tokenizer(cfg.tokenizer_dir)
    if tokenizer.kind != spec.tokenizer:
        raise ValueError(f"tokenizer in {cfg.tokenizer_dir} is '{tokenizer.kind}', dataset '{spec.name}' needs '{spec.tokenizer}'")
    return tokenizer


def _make_dataset(cfg: DataConfig, tokenizer: Tokenizer, texts: list[str], labels: dict[str, np.ndarray],
                  limit: int | None) -> TokenDataset:
    if cfg.spec.wrap:
        ids, lengths = encode_blocks(tokenizer, texts, cfg.seq_len)
        return TokenDataset(ids[:limit], lengths[:limit])
    label = None if cfg.label_col is None else torch.from_numpy(labels[cfg.label_col][:limit])
    ids, lengths = encode_padded(tokenizer, texts[:limit], cfg.seq_len)
    return TokenDataset(ids, lengths, label)


def build_datasets(cfg: Mapping[str, Any] | DataConfig) -> tuple[TokenDataset, TokenDataset, Tokenizer]:
    """Build (train, valid, tokenizer) for the dataset described by ``cfg``.

    ``cfg`` (dict or OmegaConf DictConfig) keys: ``name`` (required), ``length``,
    ``label_col``, ``label_percentile`` (90), ``source`` (auto | offline | hub |
    fixture), ``path``, ``cache_dir``, ``split_seed`` (1), ``max_train_examples``,
    ``tokenizer_dir``, ``bert_vocab``. ``max_train_examples`` keeps the first N
    training examples (blocks for wrapped datasets); valid is never cut.
    """
    cfg = DataConfig.from_mapping(cfg)
    spec = cfg.spec
    splits = spec.load_splits(cfg)
    tokenizer = _tokenizer_for(cfg, spec, splits)
    train = _make_dataset(cfg, tokenizer, splits.train, splits.train_labels, cfg.max_train_examples)
    valid = _make_dataset(cfg, tokenizer, splits.valid, splits.valid_labels, None)
    log.info("%s: %d train / %d valid sequences of length %d, vocab %d",
             spec.name, len(train), len(valid), cfg.seq_len, tokenizer.vocab_size)
    return train, valid, tokenizer
