"""Image data: the pixel tokenizer, the digits / Fashion-MNIST / CIFAR10 readers (the committed
Fashion-MNIST fixture and a CIFAR10 folder made here in the python-batch format), the fixed
layout, horizontal flips in channel-height-width order, the vocabulary each family reads, and
one-line refusals of bad paths and lengths."""

import gzip
import pickle
import subprocess

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import SAMPLES
from discdiff.data import build_splits, load_tokenizer
from discdiff.data.augment import build_augment, hflip
from discdiff.data.cache import debian_package
from discdiff.data.images import digit_levels, read_idx
from discdiff.data.registry import DataConfig, get_spec
from discdiff.data.tokenizers import CharTokenizer, PixelTokenizer
from discdiff.lm import data_vocab_size, model_vocab_size

FIXTURE = SAMPLES["fashion_mnist"]


# --- tokenizer --------------------------------------------------------------------------------------

def test_pixel_tokenizer_round_trip_and_save(tmp_path):
    tok = PixelTokenizer()
    assert (tok.vocab_size, tok.mask_id, tok.bos_id, tok.eos_id, tok.pad_id) == (257, 256, None, None, None)
    values = np.array([0, 7, 128, 255], dtype=np.uint8)
    ids = tok.encode(values)
    assert ids == [0, 7, 128, 255]
    text = tok.decode(ids)
    assert text == "000780ff" and tok.encode(text) == ids
    assert tok.decode([1, 256, 2], skip_special=False) == "01--02" and tok.decode([1, 256, 2]) == "0102"
    assert tok.encode("01--02") == [1, 256, 2]
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.kind == "pixel" and again.fingerprint == tok.fingerprint
    for bad in (np.array([256]), np.array([-1]), np.array([0.5]), "0g"):
        with pytest.raises(ValueError) as info:
            tok.encode(bad)
        assert "\n" not in str(info.value)


def test_each_family_reads_its_vocabulary():
    pixel, chars = PixelTokenizer(), CharTokenizer()
    assert model_vocab_size("absorbing_state", pixel) == 257  # MDLM: the 256 values and the mask
    assert model_vocab_size("uniform", pixel) == 256 == data_vocab_size(pixel)  # UDLM: no wasted mask
    assert model_vocab_size("uniform", chars) == model_vocab_size("absorbing_state", chars) == chars.vocab_size


# --- readers ------------------------------------------------------------------------------------------

def test_digits_rescaled_split_and_fixed_packing(cache_dir):
    splits, tok = build_splits({"name": "digits", "label_col": "label"})
    assert tok.kind == "pixel" and {k: len(v) for k, v in splits.items()} == {"train": 1617, "valid": 180, "test": 180}
    item = splits["train"][0]
    assert item["input_ids"].shape == (64,) and item["attention_mask"].tolist() == [1] * 64
    assert set(item["input_ids"].tolist()) <= set(digit_levels(np.arange(17)).tolist())
    assert 0 <= int(item["label"]) <= 9
    assert digit_levels(np.array([0, 8, 16])).tolist() == [0, 128, 255]
    other, _ = build_splits({"name": "digits", "split_seed": 2})
    assert not torch.equal(other["test"][0]["input_ids"], splits["test"][0]["input_ids"])


def test_fashion_mnist_fixture_in_channel_height_width_order(cache_dir):
    splits, _ = build_splits({"name": "fashion_mnist", "path": str(SAMPLES["fashion_mnist"]), "label_col": "label"})
    assert {k: len(v) for k, v in splits.items()} == {"train": 200, "valid": 100, "test": 100}
    images = read_idx(FIXTURE / "train-images-idx3-ubyte.gz")
    labels = read_idx(FIXTURE / "train-labels-idx1-ubyte.gz")
    assert images.shape == (200, 28, 28) and labels.shape == (200,)
    item = splits["train"][3]
    assert item["input_ids"].tolist() == images[3].reshape(-1).tolist() and int(item["label"]) == labels[3]
    assert sorted(set(labels.tolist())) == list(range(10))


def _cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": rng.integers(0, 10, size=n).tolist()}, f)
    return data


def test_cifar10_reads_the_python_batches_of_a_folder(tmp_path):
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    first = _cifar_batch(folder / "data_batch_1", 3, 0)
    for k in range(2, 6):
        _cifar_batch(folder / f"data_batch_{k}", 3, k)
    test = _cifar_batch(folder / "test_batch", 4, 9)
    splits, _ = build_splits({"name": "cifar10", "path": str(tmp_path / "cifar"), "cache_dir": str(tmp_path / "c")})
    assert {k: len(v) for k, v in splits.items()} == {"train": 15, "valid": 4, "test": 4}
    assert splits["train"][0]["input_ids"].tolist() == first[0].tolist()  # the batches are C, H, W already
    assert splits["test"][3]["input_ids"].tolist() == test[3].tolist()


@pytest.mark.parametrize("make, match", [
    (lambda p: (p / "notes.txt").write_text("x"), "is not a Fashion-MNIST folder: it lacks train-images-idx3-ubyte"),
    (lambda p: [(p / f).write_bytes(gzip.compress(b"hello world")) for f in
                ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")], "is not an idx file"),
])
def test_a_folder_that_is_not_an_image_folder_is_one_line(tmp_path, make, match):
    make(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        build_splits({"name": "fashion_mnist", "path": str(tmp_path), "cache_dir": str(tmp_path / "c")})
    assert "\n" not in str(info.value)


def test_cifar10_folder_without_batches_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="holds no CIFAR10 batches") as info:
        build_splits({"name": "cifar10", "path": str(tmp_path), "cache_dir": str(tmp_path / "c")})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cfg, match", [
    ({"name": "fashion_mnist", "path": str(FIXTURE / "README.md")}, "is a file; fashion_mnist reads a folder"),
    ({"name": "fashion_mnist", "length": 100}, "data.length=100 does not fit fashion_mnist: its images are 1x28x28"),
    ({"name": "digits", "augment": "hflip"}, "data.augment=hflip does not apply to digits"),
    ({"name": "cifar10", "source": "fixture"}, "data.source=fixture was removed: give the committed test sample as data.path"),
])
def test_bad_image_data_options_are_one_line(cfg, match):
    with pytest.raises(ValueError, match=match) as info:
        DataConfig.from_mapping(cfg)
    assert "\n" not in str(info.value)


def test_debian_fetch_failure_is_one_line(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise subprocess.CalledProcessError(100, args[0])

    monkeypatch.setattr(subprocess, "run", refuse)
    with pytest.raises(ValueError, match="offline Fashion-MNIST source is Debian's dataset-fashion-mnist") as info:
        debian_package("dataset-fashion-mnist", "no/such/folder", tmp_path, "Fashion-MNIST")
    assert "\n" not in str(info.value)


# --- augmentation ----------------------------------------------------------------------------------------

def test_hflip_mirrors_each_channel_row_in_chw_order():
    shape = (2, 2, 3)  # C, H, W: token c*6 + h*3 + w
    ids = torch.arange(12).repeat(64, 1)
    torch.manual_seed(0)
    out = hflip(shape)({"input_ids": ids})["input_ids"]
    mirrored = [c * 6 + h * 3 + (2 - w) for c in range(2) for h in range(2) for w in range(3)]
    flipped = (out != ids).any(1)
    assert 0 < int(flipped.sum()) < 64
    assert all(row == mirrored for row in out[flipped].tolist())
    assert torch.equal(out[~flipped], ids[~flipped])


def test_fashion_mnist_augment_is_a_28_pixel_flip():
    augment = build_augment(OmegaConf.create({"name": "fashion_mnist", "augment": "hflip"}))
    image = torch.arange(784).view(1, 784).repeat(16, 1)
    torch.manual_seed(1)
    out = augment({"input_ids": image})["input_ids"]
    flipped = (out != image).any(1)
    assert torch.equal(out[flipped][0].view(28, 28), image[0].view(28, 28).flip(-1))
