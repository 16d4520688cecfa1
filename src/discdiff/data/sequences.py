"""Fixed-length model inputs (B, L) cut from stored tokens (`token_files.Tokens`): the dataset's
packing (`DatasetSpec.packing`), one of

* `Padded` ("pad"): one text per sequence, ``[bos] text[:L-2] [eos] [pad] ...`` (QM9, LM1B as the paper);
* `Wrapped` ("wrap"): texts joined, each followed by [eos], and cut into blocks
  ``[bos] 126 tokens [eos]`` (L = 128; MDLM's wrapped LM1B);
* `Blocks` ("blocks"): the plain token stream cut into blocks of L (text8 characters);
* `Fixed` ("fixed"): one text of exactly L tokens per sequence, no special tokens (images: C * H * W
  pixel values in channel-height-width order).
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .token_files import Tokens

@dataclass
class Specials:
    """The tokenizer's ids a packing inserts."""

    bos: int
    eos: int
    pad: int


class _Packed(Dataset, ABC):
    """Items: `input_ids` (L,) long, `attention_mask` (L,) long (1 on real tokens), `label` () long."""

    def __init__(self, tokens: Tokens, length: int, specials: Specials, label_col: Optional[str] = None,
                 limit: Optional[int] = None):
        self.tokens, self.length, self.specials, self.label_col = tokens, length, specials, label_col
        self.limit = limit
        if label_col is not None and label_col not in tokens.labels:
            raise ValueError(f"no labels '{label_col}' in these tokens; have: {', '.join(tokens.labels) or 'none'}")

    @property
    def seq_len(self) -> int:
        return self.length

    @abstractmethod
    def _size(self) -> int:
        """Items before `limit`."""

    def __len__(self) -> int:
        n = self._size()
        return n if self.limit is None else min(n, self.limit)

    def _item(self, ids: np.ndarray, real: int, text: Optional[int]) -> dict[str, torch.Tensor]:
        item = {"input_ids": torch.from_numpy(ids.astype(np.int64)),
                "attention_mask": (torch.arange(self.length) < real).long()}
        if self.label_col is not None:
            item["label"] = torch.tensor(int(self.tokens.labels[self.label_col][text]))
        return item


class Padded(_Packed):
    """One text per item: [bos] text[:L-2] [eos] [pad]... (longer texts are truncated)."""

    def _size(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int):
        start, end = self.tokens.offsets[i], self.tokens.offsets[i + 1]
        body = np.asarray(self.tokens.ids[start:min(end, start + self.length - 2)])
        ids = np.full(self.length, self.specials.pad, dtype=np.int64)
        ids[0], ids[1:len(body) + 1], ids[len(body) + 1] = self.specials.bos, body, self.specials.eos
        return self._item(ids, len(body) + 2, i)


class Wrapped(_Packed):
    """Texts joined, each followed by [eos], cut into blocks [bos] + L - 2 tokens + [eos]; the
    last partial block is dropped. No labels (a block spans texts).

    In the joined stream text k starts at offsets[k] + k; a block finds its first text by
    bisection over the (memory-mapped) offsets and reads the few texts it spans."""

    def _size(self) -> int:
        return (len(self.tokens.ids) + len(self.tokens)) // (self.length - 2)

    def __getitem__(self, i: int):
        width, offsets, ids = self.length - 2, self.tokens.offsets, self.tokens.ids
        position = i * width
        k = bisect.bisect_right(range(len(self.tokens)), position, key=lambda j: int(offsets[j]) + j) - 1
        within = position - (int(offsets[k]) + k)  # position inside text k followed by its [eos]
        body = []
        while width > 0:
            start, end = int(offsets[k]), int(offsets[k + 1])
            piece = np.asarray(ids[start + within:min(end, start + within + width)], dtype=np.int64)
            body.append(piece)
            width -= len(piece)
            if width > 0:  # this text's [eos], then the next text
                body.append(np.array([self.specials.eos]))
                width -= 1
                k, within = k + 1, 0
        row = np.concatenate([[self.specials.bos], *body, [self.specials.eos]])
        return self._item(row, self.length, None)


class Blocks(_Packed):
    """The token stream cut into blocks of L, no special tokens; the last partial block is dropped."""

    def _size(self) -> int:
        return len(self.tokens.ids) // self.length

    def __getitem__(self, i: int):
        return self._item(np.asarray(self.tokens.ids[i * self.length:(i + 1) * self.length]), self.length, None)


class Fixed(_Packed):
    """One text per item, exactly L tokens and no special tokens (images: their C * H * W values);
    a text of another length is refused when its item is read (the loaders check every length)."""

    def _size(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int):
        start, end = int(self.tokens.offsets[i]), int(self.tokens.offsets[i + 1])
        if end - start != self.length:
            raise ValueError(f"item {i} holds {end - start} tokens; fixed packing reads exactly {self.length}")
        return self._item(np.asarray(self.tokens.ids[start:end]), self.length, i)


PACKINGS = {"pad": Padded, "wrap": Wrapped, "blocks": Blocks, "fixed": Fixed}


def sequences(packing: str, tokens: Tokens, length: int, specials: Specials, label_col: Optional[str] = None,
              limit: Optional[int] = None) -> _Packed:
    """The dataset of `length`-token sequences `packing` cuts from `tokens` (module docstring)."""
    if packing not in PACKINGS:
        raise ValueError(f"unknown packing '{packing}'; allowed: {', '.join(PACKINGS)}")
    if packing in ("wrap", "blocks") and label_col is not None:
        raise ValueError(f"packing '{packing}' joins texts; labels need packing 'pad' or 'fixed'")
    return PACKINGS[packing](tokens, length, specials, label_col, limit)

