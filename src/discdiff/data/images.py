"""Discretized images with class labels: CIFAR10 (the paper), Fashion-MNIST (its offline stand-in)
and scikit-learn's 8 x 8 digits (a tiny set for tests).

Every pixel channel is one token with its value 0..255 (`PixelTokenizer`; id 256 is the mask of
masked diffusion), and an image of shape (C, H, W) is the sequence of its C * H * W values in
channel-height-width order: token ``c * H * W + h * W + w`` is channel c of pixel (h, w). The
sequences have no special tokens (layout "fixed", L = C * H * W) and the label column ``label``
is the class (10 classes). `data.augment=hflip` mirrors a random half of each training batch
(`discdiff.data.augment`; CIFAR10 and Fashion-MNIST, not digits, whose mirror images are other
shapes). The validation split is the test split, as the paper's image runs validate.

Sources (`data.source`, `data.path`):

* ``cifar10``: a folder of the python-version batches (``cifar-10-batches-py``: data_batch_1..5,
  test_batch), read directly: ``data.path`` (that folder or one holding it), else
  ``<cache>/cifar10``, filled by torchvision's download when torchvision is installed, else the HF
  dataset ``uoft-cs/cifar10`` (columns img, label). 50,000 train / 10,000 test 3 x 32 x 32 images.
* ``fashion_mnist``: a folder of the four idx files (``{train,t10k}-{images-idx3,labels-idx1}-
  ubyte[.gz]``): ``data.path``, else (``auto`` / ``offline``) Debian's ``dataset-fashion-mnist``
  fetched into ``<cache>/fashion_mnist`` (`discdiff.data.cache.debian_package`); the tests give
  ``tests/fixtures/fashion_mnist`` (200 train / 100 test images of the real set). 60,000 train /
  10,000 test 1 x 28 x 28 images.
* ``digits``: ``sklearn.datasets.load_digits`` (1,797 1 x 8 x 8 images, values 0..16, rescaled to
  0..255 as ``round(v * 255 / 16)`` so every image dataset shares the tokenizer, the metrics and the
  grids), split 90 / 10 into train / test with ``split_seed``.
"""

from __future__ import annotations

import gzip
import math
import pickle
from pathlib import Path
from typing import Optional

import numpy as np
from sklearn.datasets import load_digits

from ..errors import described, first_line
from ..files import cache_root
from .cache import debian_package, file_digest
from .datasets import load_tokens
from .registry import DataConfig, DatasetSpec, Splits
from .tokenizers import PixelTokenizer

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{k}" for k in range(1, 6))
CIFAR_TEST = "test_batch"
FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_INSIDE = Path("usr/share/datasets/fashion-mnist")
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DIGITS_TEST_FRACTION = 0.1
DIGITS_MAX = 16

#: (train images (N, C*H*W) uint8, train labels (N,), test images, test labels)
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# --------------------------------------------------------------------------------- CIFAR10

def _cifar_batches(root: Path) -> Optional[Path]:
    """The cifar-10-batches-py folder at or inside `root`, or None."""
    for folder in (root, root / CIFAR_FOLDER):
        if all((folder / name).is_file() for name in (*CIFAR_TRAIN, CIFAR_TEST)):
            return folder
    return None


def _read_cifar_batch(path: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, C*H*W) uint8 in C, H, W order, labels (N,)) of one python-version batch file."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data, labels = np.asarray(batch[b"data"], dtype=np.uint8), np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path} is not a CIFAR10 batch file (python version): {type(err).__name__}") from None
    if data.ndim != 2 or data.shape[1] != math.prod(shape) or len(labels) != len(data):
        raise ValueError(f"{path} holds data of shape {data.shape}; a CIFAR10 batch is (N, {math.prod(shape)})")
    return data, labels


def _cifar_from_folder(folder: Path, shape) -> Arrays:
    parts = [_read_cifar_batch(folder / name, shape) for name in CIFAR_TRAIN]
    test = _read_cifar_batch(folder / CIFAR_TEST, shape)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), *test


def _torchvision_download(root: Path) -> Optional[Path]:
    """The batches downloaded by torchvision into `root`; None when torchvision is not installed."""
    try:
        from torchvision.datasets import CIFAR10  # optional: its download, where installed
    except ImportError:
        return None
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as err:  # network or archive failures
        raise ValueError(f"torchvision could not download CIFAR10 into {root}: {described(err)}") from None
    return _cifar_batches(root)


def _cifar_from_hub(hub_id: str) -> Arrays:
    """CIFAR10 from the HF dataset `hub_id` (columns img: PIL image, label)."""
    try:
        import datasets  # heavy: only for the hub source

        dsd = datasets.load_dataset(hub_id)
    except Exception as err:  # unreachable hub, missing dataset
        raise ValueError(f"CIFAR10 could not be loaded: torchvision is not installed and the HF dataset {hub_id} is "
                         f"unreachable ({first_line(err)}); give data.path=a folder holding {CIFAR_FOLDER}") from None

    def arrays(split):
        images = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in dsd[split]["img"]])
        return images.transpose(0, 3, 1, 2).reshape(len(images), -1), np.asarray(dsd[split]["label"], np.int64)

    return *arrays("train"), *arrays("test")


def _cifar_folder(cfg: DataConfig, spec: DatasetSpec) -> Optional[Path]:
    """The batches folder a CIFAR10 run reads: data.path's, else the cache's (None: none there yet)."""
    if cfg.path is not None:
        root = Path(cfg.path).expanduser()
        found = _cifar_batches(root)
        if found is None:
            raise ValueError(f"data.path={root} holds no CIFAR10 batches (python version: {CIFAR_FOLDER}/ with "
                             f"{', '.join(CIFAR_TRAIN[:1])}..{CIFAR_TRAIN[-1][-1]}, {CIFAR_TEST})")
        return found
    return _cifar_batches(cache_root(cfg.cache_dir) / spec.name)


def _cifar10(cfg: DataConfig, spec: DatasetSpec) -> Arrays:
    folder = _cifar_folder(cfg, spec)
    if folder is None:
        folder = _torchvision_download(cache_root(cfg.cache_dir) / spec.name)
    if folder is None:
        return _cifar_from_hub(spec.hub_id)
    return _cifar_from_folder(folder, spec.image_shape)


# ---------------------------------------------------------------------------- Fashion-MNIST

def read_idx(path: Path) -> np.ndarray:
    """The array of an idx file (gzipped or not): uint8 images (N, H, W) or labels (N,); one-line
    ValueError when the file is not an idx file of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path} cannot be read as an idx file: {err}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise ValueError(f"{path} is not an idx file of unsigned bytes (magic 0x0801 or 0x0803)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise ValueError(f"{path} declares {dims} values but holds {body.size}")
    return body.reshape(dims)


def _idx_file(folder: Path, name: str) -> Path:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    wanted = ", ".join(f"{a}[.gz], {b}[.gz]" for a, b in IDX_FILES.values())
    raise ValueError(f"{folder} is not a Fashion-MNIST folder: it lacks {name}[.gz] (expected {wanted})")


def _idx_split(folder: Path, split: str, shape) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = IDX_FILES[split]
    images, labels = read_idx(_idx_file(folder, images_name)), read_idx(_idx_file(folder, labels_name))
    if images.ndim != 3 or images.shape[1:] != tuple(shape[1:]) or labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{folder}: {split} images {images.shape} and labels {labels.shape} are not N images of "
                         f"{shape[1]} x {shape[2]} with N labels")
    return images.reshape(len(images), -1), labels.astype(np.int64)


def _fashion_folder(cfg: DataConfig, spec: DatasetSpec) -> Path:
    if cfg.path is not None:
        return Path(cfg.path).expanduser()
    return debian_package(FASHION_PACKAGE, FASHION_INSIDE, cache_root(cfg.cache_dir) / spec.name, "Fashion-MNIST")


def _fashion_mnist(cfg: DataConfig, spec: DatasetSpec) -> Arrays:
    folder = _fashion_folder(cfg, spec)
    return *_idx_split(folder, "train", spec.image_shape), *_idx_split(folder, "test", spec.image_shape)


# ---------------------------------------------------------------------------------- digits

def digit_levels(values: np.ndarray) -> np.ndarray:
    """scikit-learn's digit values 0..16 as pixel values 0..255: round(v * 255 / 16)."""
    return np.rint(np.asarray(values, dtype=np.float64) * 255 / DIGITS_MAX).astype(np.uint8)


def _digits(cfg: DataConfig, spec: DatasetSpec) -> Arrays:
    if cfg.path is not None:
        raise ValueError("data=digits reads scikit-learn's copy; it takes no data.path")
    bunch = load_digits()
    images, labels = digit_levels(bunch.images).reshape(len(bunch.images), -1), bunch.target.astype(np.int64)
    order = np.random.default_rng(cfg.split_seed).permutation(len(images))
    n_test = max(1, round(len(images) * DIGITS_TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


# ------------------------------------------------------------------------------ interface

def _no_folder(cfg: DataConfig, spec: DatasetSpec) -> None:
    return None


#: dataset -> (its reader, the local folder it reads (None: none, or not fetched yet))
READERS = {"cifar10": (_cifar10, _cifar_folder), "fashion_mnist": (_fashion_mnist, _fashion_folder),
           "digits": (_digits, _no_folder)}


def _reader(spec: DatasetSpec):
    if spec.name not in READERS:
        raise ValueError(f"no image reader for {spec.name}; have: {', '.join(READERS)}")
    return READERS[spec.name]


def _arrays(cfg: DataConfig, spec: DatasetSpec) -> Arrays:
    arrays = _reader(spec)[0](cfg, spec)
    for labels in (arrays[1], arrays[3]):
        if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise ValueError(f"{spec.name} labels must lie in 0..{spec.num_classes - 1}")
    return arrays


def identity(cfg: DataConfig, spec: DatasetSpec) -> str:
    """What the tokens are made from (keys the token cache): the digests of the local files read, or
    the remote source's name."""
    folder = _reader(spec)[1](cfg, spec)
    if folder is not None:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix != ".md")
        source = "files:" + "|".join(file_digest(p) for p in files)
    else:
        source = f"source:{cfg.source}:{spec.hub_id}"
    return f"images:{spec.name}:{source}:seed={cfg.split_seed}"


def tokenizer(cfg: DataConfig, spec: DatasetSpec) -> PixelTokenizer:
    return PixelTokenizer()


def load_splits(cfg: DataConfig, spec: DatasetSpec) -> Splits:
    """Train and test images as (N, C*H*W) uint8 arrays with their labels; validation = test."""
    train_x, train_y, test_x, test_y = _arrays(cfg, spec)
    labels = {"train": {"label": train_y}, "valid": {"label": test_y}, "test": {"label": test_y}}
    return Splits(train=train_x, valid=test_x, test=test_x, tokenizer=tokenizer(cfg, spec), labels=labels)


def real_images(data_cfg, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(token ids (N, C*H*W) int64, labels (N,)) of a split, read from the token cache the run
    was trained with (the reference of the image metrics)."""
    tokens, _ = load_tokens(data_cfg)
    stored = tokens[split if split in tokens else "valid"]
    length = math.prod(DataConfig.from_mapping(data_cfg).spec.image_shape)
    ids = np.asarray(stored.ids, dtype=np.int64).reshape(-1, length)
    return ids, np.asarray(stored.labels["label"], dtype=np.int64)


def check_image_classes(classes, spec: DatasetSpec) -> None:
    """Refuse target classes outside the dataset's 0..num_classes-1 in one line."""
    outside = [c for c in classes if not 0 <= int(c) < spec.num_classes]
    if outside:
        names = ", ".join(f"{k} {n}" for k, n in enumerate(spec.class_names)) or f"0..{spec.num_classes - 1}"
        raise ValueError(f"class {outside[0]} is not a class of {spec.name}; allowed: {names}")
