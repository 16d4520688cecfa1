"""Image metrics (CIFAR10, paper Sec. 5.4, Table 4): FID and Inception Score with the standard
Inception-v3, a classifier-feature FID for offline runs, and the tokens <-> images layout.

Definitions:

* An image of shape (C, H, W) is C * H * W tokens with values 0..255 in channel-height-width
  order: token ``c * H * W + h * W + w`` is channel c of pixel (h, w). Images are uint8 arrays
  (N, H, W, C).
* Statistics of a feature set (N, D): its mean mu and unbiased covariance sigma (N - 1), float64.
* ``fid``: the Frechet distance ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of N(mu1, S1) and
  N(mu2, S2), computed by torchmetrics' ``FrechetInceptionDistance`` (double precision, the
  trace of the root from the eigenvalues of S1 S2) fed with the statistics: torchmetrics is the
  metrics library Lightning already installs, maintained and widely used for FID, and it takes
  features from any extractor.
* ``is_mean`` / ``is_std``: torchmetrics' ``InceptionScore``: exp(E_x KL(p(y|x) || p(y))) on each
  of `splits` splits of the samples (shuffled by torchmetrics; seeded here, so the score is a
  function of the samples and the seed), p(y) the split's mean; mean and standard deviation
  (torch's, N - 1) over the splits.
* Inception features are those of the TF-compatible Inception-v3 of the original FID / IS (the
  TorchScript port ``inception-2015-12-05.pt`` that clean-fid and StyleGAN2-ADA load): its 2048
  pool features for FID, its 1008-way softmax without the output bias for IS, as the original IS
  code. It takes uint8 images of any size and resizes them inside, as TensorFlow did. Needs
  clean-fid (``pip install --no-deps clean-fid==0.1.35``; its pip metadata asks for torchvision,
  which the TorchScript path never imports).
* ``fid_clf`` is the same FID in the penultimate features of a classifier trained on the data.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore

from ..errors import described
from ..files import atomic_path

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = f"https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/{INCEPTION_FILE}"
NUM_VALUES = 256

Extractor = Callable[[torch.Tensor], torch.Tensor]


def as_numpy(x) -> np.ndarray:
    """A tensor or array-like as a numpy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_pixel_values(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= NUM_VALUES):
        bad = int(((arr < 0) | (arr >= NUM_VALUES)).sum())
        raise ValueError(f"{what} must lie in 0..{NUM_VALUES - 1}: {bad} values outside "
                         f"(min {arr.min()}, max {arr.max()}; a left-over mask token?)")


def tokens_to_images(tokens, image_shape: Sequence[int]) -> np.ndarray:
    """Token ids (N, C*H*W) in channel-height-width order -> uint8 images (N, H, W, C)."""
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) of positive sizes, got {tuple(image_shape)}")
    c, h, w = (int(s) for s in image_shape)
    arr = as_numpy(tokens)
    if arr.ndim != 2 or arr.shape[1] != c * h * w:
        raise ValueError(f"tokens must have shape (N, {c * h * w}) for images {(c, h, w)}, got {arr.shape}")
    _check_pixel_values(arr, "image tokens")
    return arr.reshape(-1, c, h, w).transpose(0, 2, 3, 1).astype(np.uint8)


def checked_images(images) -> np.ndarray:
    arr = as_numpy(images)
    if arr.ndim != 4 or min(arr.shape[1:]) < 1:
        raise ValueError(f"images must have shape (N, H, W, C), got {arr.shape}")
    _check_pixel_values(arr, "image pixels")
    return arr.astype(np.uint8)


@dataclass(frozen=True)
class FeatureStatistics:
    """Mean mu (D,), unbiased covariance sigma (D, D) (float64) and size n of a feature set."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def feature_statistics(features) -> FeatureStatistics:
    """The statistics of features (N, D), N >= 2."""
    arr = np.asarray(as_numpy(features), dtype=np.float64)
    if arr.ndim != 2 or len(arr) < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {arr.shape}")
    return FeatureStatistics(arr.mean(axis=0), np.atleast_2d(np.cov(arr, rowvar=False)), len(arr))


class _Given(nn.Module):
    """Hands torchmetrics the features it is given: the extractor runs before."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid(samples: FeatureStatistics, reference: FeatureStatistics) -> float:
    """Frechet distance of two feature sets (module docstring), by torchmetrics; NaN when either
    has fewer than two members."""
    if samples.n < 2 or reference.n < 2:
        return math.nan
    if samples.mu.shape != reference.mu.shape:
        raise ValueError(f"feature sets of different sizes: {samples.mu.shape[0]} and {reference.mu.shape[0]}")
    metric = FrechetInceptionDistance(feature=_Given(len(samples.mu)))
    for side, stats in (("fake", samples), ("real", reference)):
        mu, n = torch.from_numpy(stats.mu), stats.n
        setattr(metric, f"{side}_features_sum", mu * n)
        setattr(metric, f"{side}_features_cov_sum", torch.from_numpy(stats.sigma) * (n - 1) + n * torch.outer(mu, mu))
        setattr(metric, f"{side}_features_num_samples", torch.tensor(n))
    metric.orig_dtype = torch.float64  # set by update(), which statistics bypass
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*called before the ``update`` method", category=UserWarning)
        return float(metric.compute())


def inception_score(class_probabilities, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the Inception Score of class probabilities p(y|x) (N, K) (module docstring),
    by torchmetrics. Rows must be non-negative and sum to 1 (within 1e-3)."""
    p = torch.as_tensor(as_numpy(class_probabilities), dtype=torch.float64)
    if p.ndim != 2 or len(p) < splits or splits < 1:
        raise ValueError(f"class probabilities must have shape (N, K) with N >= splits = {splits}, got {tuple(p.shape)}")
    if p.min() < 0 or not torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype), atol=1e-3):
        raise ValueError("class probabilities must be non-negative rows summing to 1")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
        metric = InceptionScore(feature=_Given(p.shape[1]), splits=splits)
    metric.update(p.clamp_min(torch.finfo(p.dtype).tiny).log())  # logits whose softmax is p
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std) if splits > 1 else 0.0


@torch.no_grad()
def _outputs(inputs: np.ndarray, fn: Callable, batch_size: int, device) -> list[np.ndarray]:
    """`fn` on consecutive batches of `inputs` (as torch tensors on `device`); its output (one
    tensor or a tuple of them, each with a row per input) gathered as float64 arrays."""
    parts = []
    for start in range(0, len(inputs), batch_size):
        out = fn(torch.from_numpy(inputs[start:start + batch_size]).to(device))
        parts.append([as_numpy(o.float()) for o in (out if isinstance(out, tuple) else (out,))])
    gathered = [np.concatenate(column).astype(np.float64) for column in zip(*parts)]
    if any(g.ndim != 2 or len(g) != len(inputs) for g in gathered):
        raise ValueError(f"the network must give (N, D) outputs for N = {len(inputs)} inputs, "
                         f"got {[g.shape for g in gathered]}")
    return gathered


def features(images, extractor: Extractor, batch_size: int = 100, device="cpu") -> np.ndarray:
    """`extractor` applied to uint8 images (N, H, W, C), handed over as uint8 tensors (B, C, H, W)
    on `device`; returns its (N, D) outputs (features, or class probabilities for IS) as float64."""
    arr = np.ascontiguousarray(checked_images(images).transpose(0, 3, 1, 2))
    return _outputs(arr, extractor, batch_size, device)[0]


def _inception_file(folder: Path, download: bool) -> Path:
    """The weights file in `folder`, downloaded there first (atomically) if absent and allowed."""
    path = folder / INCEPTION_FILE
    hint = f"download {INCEPTION_URL} to {path} (or run once with network access)"
    if path.is_file():
        return path
    if not download:
        raise ValueError(f"Inception-v3 weights not found at {path} (download disabled); {hint}")
    from cleanfid.downloads_helper import check_download_inception  # optional: installed apart (Makefile)

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        try:
            Path(check_download_inception(fpath=tmp)).replace(path)
        except Exception as err:  # any download failure: network, HTTP, disk
            raise ValueError(f"Inception-v3 weights not found at {path} and their download failed "
                             f"({described(err)}); {hint}") from err
    return path


def inception_extractors(weights_dir, download: bool = True, device="cpu") -> tuple[Extractor, Extractor]:
    """(pool features (N, 2048), class probabilities (N, 1008)) of the standard TF-compatible
    Inception-v3, each taking uint8 images (B, C, H, W) with C = 1 or 3, loaded through clean-fid
    from `weights_dir`/inception-2015-12-05.pt (downloaded there if absent and `download`).
    Raises a one-line ValueError naming that path when the weights cannot be loaded."""
    path = _inception_file(Path(weights_dir).expanduser(), download)
    from cleanfid.inception_torchscript import InceptionV3W  # optional: installed apart (Makefile)

    try:
        net = InceptionV3W(str(path.parent), download=False, resize_inside=True).to(device).eval()
    except (RuntimeError, OSError) as err:
        raise ValueError(f"Inception-v3 weights at {path} could not be loaded ({described(err)}); "
                         f"delete the file and download {INCEPTION_URL} again") from err

    def rgb(x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    return (lambda x: net(rgb(x))), (lambda x: net.base(rgb(x), no_output_bias=True))


def _cache_path(cache_dir, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
    return Path(cache_dir).expanduser() / f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"


def cached_statistics(cache_dir, key: str, compute: Callable[[], np.ndarray]) -> FeatureStatistics:
    """Feature statistics stored in `cache_dir` under `key`: read back when a file for the same key
    is there and readable, else `compute()`d (features (N, D)) and written."""
    path = _cache_path(cache_dir, key)
    try:
        with np.load(path) as stored:
            if str(stored["key"]) == key:
                return FeatureStatistics(stored["mu"], stored["sigma"], int(stored["n"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # absent or unreadable: compute it again
    stats = feature_statistics(compute())
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, key=key, mu=stats.mu, sigma=stats.sigma, n=stats.n)
    return stats


def _checked_tokens(tokens) -> np.ndarray:
    arr = as_numpy(tokens)
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise ValueError(f"token ids must be an integer array (N, L), got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def classifier_outputs(tokens, classifier: Callable, batch_size: int = 256, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), logits (N, K)) of `classifier`, a callable mapping int64 token ids
    (B, L) on `device` to (features, logits), over all rows of `tokens` (N, L)."""
    outputs = _outputs(_checked_tokens(tokens), classifier, batch_size, device)
    if len(outputs) != 2:
        raise ValueError(f"the classifier must return (features, logits), got {len(outputs)} outputs")
    return outputs[0], outputs[1]
