"""Token ids of a split, stored once and read without copying.

A split is stored as `Tokens`: every text's ids concatenated without special tokens, `ids` (T,)
(uint16 when the vocabulary fits, else int32), the start of each text in `offsets` (N + 1,) and
per-text integer `labels` (N,) for each label column. Large corpora (LM1B, text8) are tokenized
once, in worker processes, into one cache file per split (`write` / `read`: the arrays back to back
with a JSON manifest, see `discdiff.data.cache`), which every later start, rank and data-loader
worker memory-maps read-only: resident memory stays far below the corpus size. Small datasets
(QM9) keep the same arrays in memory.

How stored tokens become model inputs is `discdiff.data.sequences`.
"""

from __future__ import annotations

import logging
import os
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)
STORE_VERSION = 1
CHUNK = 20_000  # texts per tokenizer call / worker task
PARALLEL_MIN_TEXTS = 200_000  # below this, worker processes cost more than they save


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


class Tokens:
    """A split's stored tokens: `ids` (T,), `offsets` (N + 1,), `labels` {column: (N,)}.

    Built in memory (`Tokens(ids, offsets, labels)`) or opened from a cache file (`Tokens.open`),
    in which case the arrays are memory-mapped on first use in each process (pickling, as for
    data-loader workers, sends the file name, never the arrays)."""

    def __init__(self, ids=None, offsets=None, labels=None, *, path: Optional[Path] = None,
                 meta: Optional[dict] = None):
        self._ids, self._offsets, self._labels = ids, offsets, labels or {}
        self.path, self.meta = path, meta

    @classmethod
    def open(cls, path: Path, meta: dict) -> "Tokens":
        """The arrays of a cache file described by its manifest (checked, then mapped lazily)."""
        expected = _positions(meta)[-1]
        if path.stat().st_size != expected:
            raise ValueError(f"{path} holds {path.stat().st_size} bytes, its manifest describes {expected}")
        return cls(path=path, meta=meta)

    def _map(self) -> None:
        (ids_at, offsets_at, labels_at, _), m = _positions(self.meta), self.meta
        self._ids = np.memmap(self.path, dtype=m["dtype"], mode="r", offset=ids_at, shape=(m["tokens"],))
        self._offsets = np.memmap(self.path, dtype=np.int64, mode="r", offset=offsets_at, shape=(m["texts"] + 1,))
        self._labels = {col: np.memmap(self.path, dtype=np.int64, mode="r", offset=at, shape=(m["texts"],))
                        for col, at in labels_at.items()}

    @property
    def ids(self) -> np.ndarray:
        if self._ids is None:
            self._map()
        return self._ids

    @property
    def offsets(self) -> np.ndarray:
        if self._offsets is None:
            self._map()
        return self._offsets

    @property
    def labels(self) -> dict[str, np.ndarray]:
        if self.path is not None and self._ids is None:
            self._map()
        return self._labels

    def __len__(self) -> int:
        """Number of texts."""
        return len(self.offsets) - 1

    def text_ids(self, i: int) -> np.ndarray:
        """The ids of text i (its slice of `ids`)."""
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.path is not None:  # workers map the file themselves
            state.update(_ids=None, _offsets=None, _labels={})
        return state


def _positions(meta: dict) -> tuple[int, int, dict[str, int], int]:
    """Byte positions in a cache file: ids, offsets (8-aligned), each label column, and the end."""
    ids_bytes = meta["tokens"] * np.dtype(meta["dtype"]).itemsize
    offsets_at = -(-ids_bytes // 8) * 8
    at = offsets_at + (meta["texts"] + 1) * 8
    labels_at = {}
    for col in meta.get("labels", []):
        labels_at[col] = at
        at += meta["texts"] * 8
    return 0, offsets_at, labels_at, at


# ------------------------------------------------------------------------------ tokenizing

_WORKER_TOKENIZER = None


def _init_worker(tokenizer) -> None:
    global _WORKER_TOKENIZER
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one process per core already
    _WORKER_TOKENIZER = tokenizer


def _encode_chunk(texts: Sequence[str], tokenizer=None) -> tuple[np.ndarray, np.ndarray]:
    """(ids of the chunk's texts concatenated, their lengths) as numpy arrays."""
    tokenizer = tokenizer or _WORKER_TOKENIZER
    encoded = tokenizer.encode_batch(list(texts))
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    if encoded and isinstance(encoded[0], np.ndarray):  # vectorised tokenizers (characters)
        return np.concatenate(encoded).astype(np.int64), lengths
    ids = np.fromiter((i for e in encoded for i in e), dtype=np.int64, count=int(lengths.sum()))
    return ids, lengths


def _chunks(texts: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(texts), size):
        yield texts[start:start + size]


def encoded_chunks(tokenizer, texts: Sequence[str], workers: Optional[int] = None, desc: str = "tokenizing"):
    """(ids, lengths) per chunk of `texts`, in order; worker processes for large corpora, a
    progress bar on stderr."""
    workers = 1 if len(texts) < PARALLEL_MIN_TEXTS else workers or os.cpu_count() or 1
    total = -(-len(texts) // CHUNK)
    with tqdm(total=total, desc=desc, unit="chunk", disable=total < 10, leave=False) as bar:
        if workers == 1:
            for chunk in _chunks(texts):
                yield _encode_chunk(chunk, tokenizer)
                bar.update()
            return
        with get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(tokenizer,)) as pool:
            for result in pool.imap(_encode_chunk, _chunks(texts)):
                yield result
                bar.update()


def encode(tokenizer, texts: Sequence[str], labels: Optional[dict[str, np.ndarray]] = None) -> Tokens:
    """`Tokens` of `texts` in memory (small datasets)."""
    dtype = id_dtype(tokenizer.vocab_size)
    parts = list(encoded_chunks(tokenizer, texts))
    ids = np.concatenate([p[0] for p in parts]).astype(dtype) if parts else np.zeros(0, dtype)
    lengths = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Tokens(ids, offsets, {k: np.asarray(v, dtype=np.int64) for k, v in (labels or {}).items()})


def write(path: Path, tokenizer, texts: Sequence[str], labels: Optional[dict[str, np.ndarray]] = None,
          workers: Optional[int] = None, desc: str = "tokenizing") -> dict:
    """Tokenize `texts` into the cache file `path` (ids streamed to disk as chunks finish) and
    return its manifest facts (for `discdiff.data.cache.load_or_build`)."""
    dtype = id_dtype(tokenizer.vocab_size)
    lengths = []
    with open(path, "wb") as f:
        for ids, chunk_lengths in encoded_chunks(tokenizer, texts, workers, desc):
            f.write(ids.astype(dtype).tobytes())
            lengths.append(chunk_lengths)
        all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        meta = {"dtype": dtype.name, "tokens": int(all_lengths.sum()), "texts": len(all_lengths),
                "labels": sorted(labels or {}), "store_version": STORE_VERSION}
        _, offsets_at, _, _ = _positions(meta)
        f.write(b"\0" * (offsets_at - f.tell()))
        f.write(np.concatenate([[0], np.cumsum(all_lengths)]).astype(np.int64).tobytes())
        for col in meta["labels"]:
            f.write(np.asarray(labels[col], dtype=np.int64).tobytes())
    return meta
