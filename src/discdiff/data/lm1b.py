"""LM1B (One Billion Word benchmark): detokenized sentences as BERT word pieces, 128 tokens,
padded one sentence per sequence (`data=lm1b`, as the paper) or joined and wrapped into blocks
(`data=lm1b_wrap`, as MDLM reports).

Sources: ``hub`` / ``auto`` = HF dataset ``lm1b`` (train and test splits, column
``text``; test serves as valid, as in MDLM), ``cfg.path`` = a local parquet / jsonl / txt file with the same ``text`` column (one
sentence per line for txt), split 95/5 with ``split_seed`` (no test split). Every source goes
through the same detokenizer and tokenizer once its sentences are loaded; the tokens are cached
(`discdiff.data.tokens`), so later starts read neither.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .cache import local_source
from .registry import DataConfig, DatasetSpec, Splits, seeded_split
from .tokenizers import BertTokenizer

TEXT_COLUMN = "text"
VALID_FRACTION = 0.05

_URL_SCHEME = re.compile(r"\b(https?|ftp) : / / ")
_CLITIC = re.compile(r" (n't|'s|'re|'ve|'ll|'d|'m|')(?= |$)", re.IGNORECASE)
_SPACE_BEFORE = re.compile(r" +([.,;:!?%)\]}])")
_SPACE_AFTER = re.compile(r"([(\[{$#]) +")
_SPACES = re.compile(r" {2,}")


def _join_quotes(text: str) -> str:
    """Attach paired ``"`` to the text they enclose: ``say " hi " .`` -> ``say "hi" .``."""
    pieces = text.split('"')
    out = pieces[0]
    for k, piece in enumerate(pieces[1:]):
        out = out + '"' + piece.lstrip() if k % 2 == 0 else out.rstrip() + '"' + piece
    return out


def lm1b_detokenize(text: str) -> str:
    """Undo LM1B's tokenized spacing of one sentence.

    ``I do n't think it 's " over " ( yet ) , he said .`` ->
    ``I don't think it's "over" (yet), he said.``
    """
    text = _URL_SCHEME.sub(r"\1://", text.strip())
    text = _join_quotes(text)
    text = _CLITIC.sub(r"\1", text)
    text = _SPACE_BEFORE.sub(r"\1", text)
    text = _SPACE_AFTER.sub(r"\1", text)
    return _SPACES.sub(" ", text)


def read_sentences(path: Path) -> list[str]:
    """The ``text`` column of a local parquet / jsonl file, or the lines of a txt file."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix == ".parquet":
        df = pd.read_parquet(path)
    elif suffix in (".jsonl", ".json"):
        df = pd.read_json(path, lines=suffix == ".jsonl")
    else:
        raise ValueError(f"unsupported LM1B file {path.name}; allowed: .parquet, .jsonl, .json, .txt")
    if TEXT_COLUMN not in df.columns:
        raise ValueError(f"{path} has no '{TEXT_COLUMN}' column; found {list(df.columns)}")
    return df[TEXT_COLUMN].astype(str).tolist()


def _hub_sentences(hub_id: str) -> tuple[list[str], list[str]]:
    """(train, test) sentences of the HF dataset ``hub_id``."""
    import datasets  # heavy: only for the hub source

    dsd = datasets.load_dataset(hub_id)
    return list(dsd["train"][TEXT_COLUMN]), list(dsd["test"][TEXT_COLUMN])


DETOKENIZER_VERSION = 1


def identity(cfg: DataConfig, spec: DatasetSpec) -> str:
    """What the cached tokens are made from: the source (a local file by content) and the
    detokenizer's version."""
    return f"lm1b:{local_source(cfg) or f'hub:{spec.hub_id}'}:detokenizer={DETOKENIZER_VERSION}"


def tokenizer(cfg: DataConfig, spec: DatasetSpec) -> BertTokenizer:
    return BertTokenizer(cfg.bert_vocab)


def _local_split(sentences: list[str], seed: int) -> tuple[list[str], list[str]]:
    train_idx, valid_idx = seeded_split(len(sentences), seed, VALID_FRACTION)
    return [sentences[i] for i in train_idx], [sentences[i] for i in valid_idx]


def load_splits(cfg: DataConfig, spec: DatasetSpec) -> Splits:
    """Detokenized train / valid (/ test) sentences and the BERT tokenizer."""
    test = None
    if cfg.path is not None:
        train, valid = _local_split(read_sentences(Path(cfg.path).expanduser()), cfg.split_seed)
    else:
        train, valid = _hub_sentences(spec.hub_id)
        test = valid
    detokenized = lambda texts: None if texts is None else [lm1b_detokenize(s) for s in texts]  # noqa: E731
    return Splits(train=detokenized(train), valid=detokenized(valid), test=detokenized(test),
                  tokenizer=tokenizer(cfg, spec))
