"""Image metrics (Schiff et al. 2024, CIFAR10): FID and Inception Score with the
standard Inception-v3, a classifier-feature FID for offline runs, class scores and sample grids.

Definitions:

* An image of shape (C, H, W) is C * H * W tokens with values 0..255 in channel-height-width
  order: token ``c * H * W + h * W + w`` is channel c of pixel (h, w). Images are uint8 arrays
  (N, H, W, C).
* Statistics of a feature set (N, D) are its mean mu and unbiased covariance sigma (N - 1).
* FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), the Frechet distance of the Gaussians
  N(mu1, S1) and N(mu2, S2), with the matrix square root of scipy.linalg.sqrtm.
* IS = exp(E_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x) over the split, computed on each of
  `splits` consecutive near-equal splits of the samples; reported as mean and (population)
  standard deviation over the splits.
* Inception metrics use the TF-compatible Inception-v3 of the original FID / IS (the TorchScript
  port `inception-2015-12-05.pt` that clean-fid and StyleGAN2-ADA load): FID on its 2048 pool
  features, IS on its 1008-way softmax without the output bias, as the original IS code. It
  takes uint8 images of any size and resizes them inside, as TensorFlow did. Needs clean-fid
  (`pip install --no-deps clean-fid==0.1.35`; its pip metadata asks for torchvision, which the
  TorchScript path never imports).
* ``fid_clf`` is the FID in the penultimate features of a classifier trained on the data.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import linalg
from scipy.special import rel_entr
from sklearn.metrics import accuracy_score, f1_score

from ..errors import described
from ..files import atomic_path

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = f"https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/{INCEPTION_FILE}"
NUM_VALUES = 256

Extractor = Callable[[torch.Tensor], torch.Tensor]


def _numpy(x) -> np.ndarray:
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
    arr = _numpy(tokens)
    if arr.ndim != 2 or arr.shape[1] != c * h * w:
        raise ValueError(f"tokens must have shape (N, {c * h * w}) for images {(c, h, w)}, got {arr.shape}")
    _check_pixel_values(arr, "image tokens")
    return arr.reshape(-1, c, h, w).transpose(0, 2, 3, 1).astype(np.uint8)


def _checked_images(images) -> np.ndarray:
    arr = _numpy(images)
    if arr.ndim != 4 or min(arr.shape[1:]) < 1:
        raise ValueError(f"images must have shape (N, H, W, C), got {arr.shape}")
    _check_pixel_values(arr, "image pixels")
    return arr.astype(np.uint8)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), N >= 2, in float64."""
    arr = np.asarray(_numpy(features), dtype=np.float64)
    if arr.ndim != 2 or len(arr) < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {arr.shape}")
    return arr.mean(axis=0), np.atleast_2d(np.cov(arr, rowvar=False))


def _sqrtm(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """scipy.linalg.sqrtm(matrix) and whether scipy warned that the matrix is singular."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(matrix)
    return root, any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)


def _nearly_real(root: np.ndarray) -> bool:
    """Finite, with imaginary parts (rounding on near-singular products) below 1e-3 on the diagonal."""
    return bool(np.isfinite(root).all() and np.abs(np.diagonal(root).imag).max() <= 1e-3)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)). When S1 S2 is singular or sqrt(S1 S2) is not
    nearly real (see _nearly_real), the root is recomputed as sqrt((S1 + eps I)(S2 + eps I));
    its remaining tiny imaginary part is dropped. Raises ValueError if it still is not nearly real."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    d = len(mu1)
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"statistics must be mu (D,) and sigma (D, D) alike, got {mu1.shape}, "
                         f"{sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    root, singular = _sqrtm(sigma1 @ sigma2)
    if singular or not _nearly_real(root):
        offset = eps * np.eye(d)
        root, _ = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not _nearly_real(root):
            raise ValueError("sqrt(S1 S2) is not real even with an eps offset; too few samples for the feature size?")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root.real))


def inception_score(class_probabilities, splits: int = 10) -> tuple[float, float]:
    """IS of class probabilities p(y|x) (N, K): exp(mean_x KL(p(y|x) || p(y))) on each of `splits`
    consecutive near-equal splits, p(y) the split's mean; returns (mean, std) over the splits.
    Rows must be non-negative and sum to 1 (within 1e-3); they are renormalised."""
    p = np.asarray(_numpy(class_probabilities), dtype=np.float64)
    if p.ndim != 2 or len(p) < splits or splits < 1:
        raise ValueError(f"class probabilities must have shape (N, K) with N >= splits = {splits}, got {p.shape}")
    if p.min() < 0 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("class probabilities must be non-negative rows summing to 1")
    p = p / p.sum(axis=1, keepdims=True)
    scores = [math.exp(rel_entr(part, part.mean(axis=0)).sum(axis=1).mean()) for part in np.array_split(p, splits)]
    return float(np.mean(scores)), float(np.std(scores))


@torch.no_grad()
def _outputs(inputs: np.ndarray, fn: Callable, batch_size: int, device) -> list[np.ndarray]:
    """`fn` on consecutive batches of `inputs` (as torch tensors on `device`); its output (one
    tensor or a tuple of them, each with a row per input) gathered as float64 arrays."""
    parts = []
    for start in range(0, len(inputs), batch_size):
        out = fn(torch.from_numpy(inputs[start:start + batch_size]).to(device))
        parts.append([_numpy(o.float()) for o in (out if isinstance(out, tuple) else (out,))])
    gathered = [np.concatenate(column).astype(np.float64) for column in zip(*parts)]
    if any(g.ndim != 2 or len(g) != len(inputs) for g in gathered):
        raise ValueError(f"the network must give (N, D) outputs for N = {len(inputs)} inputs, "
                         f"got {[g.shape for g in gathered]}")
    return gathered


def features(images, extractor: Extractor, batch_size: int = 100, device="cpu") -> np.ndarray:
    """`extractor` applied to uint8 images (N, H, W, C), handed over as uint8 tensors (B, C, H, W)
    on `device`; returns its (N, D) outputs (features, or class probabilities for IS) as float64."""
    arr = np.ascontiguousarray(_checked_images(images).transpose(0, 3, 1, 2))
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


def cached_statistics(cache_dir, key: str, compute: Callable[[], np.ndarray]) -> dict:
    """Feature statistics {mu, sigma, n} stored in `cache_dir` under `key`: read back when a file
    for the same key is there and readable, else `compute()`d (features (N, D)) and written."""
    path = _cache_path(cache_dir, key)
    try:
        with np.load(path) as stored:
            if str(stored["key"]) == key:
                return {"mu": stored["mu"], "sigma": stored["sigma"], "n": int(stored["n"])}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # absent or unreadable: compute it again
    feats = compute()
    mu, sigma = feature_statistics(feats)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, key=key, mu=mu, sigma=sigma, n=len(feats))
    return {"mu": mu, "sigma": sigma, "n": len(feats)}


def _checked_tokens(tokens) -> np.ndarray:
    arr = _numpy(tokens)
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


def class_scores(predicted, targets, num_classes: int) -> dict:
    """Scores of the classes an evaluation classifier predicts for samples generated for `targets`:
    accuracy, macro F1 over all `num_classes` classes (sklearn; an undefined F1 counts 0) and
    per_class[k], the share of samples generated for class k predicted as k (NaN if none)."""
    pred, true = _numpy(predicted).astype(np.int64), _numpy(targets).astype(np.int64)
    if pred.ndim != 1 or pred.shape != true.shape or not len(true):
        raise ValueError(f"predicted and targets must be non-empty 1-D and alike, got {pred.shape} and {true.shape}")
    if min(pred.min(), true.min()) < 0 or max(pred.max(), true.max()) >= num_classes:
        raise ValueError(f"classes must lie in 0..{num_classes - 1}")
    labels = list(range(num_classes))
    per_class = [float((pred[true == k] == k).mean()) if (true == k).any() else math.nan for k in labels]
    return {"accuracy": float(accuracy_score(true, pred)),
            "f1_macro": float(f1_score(true, pred, labels=labels, average="macro", zero_division=0)),
            "per_class": per_class}


def class_rows(classes, per_class: int) -> list[list[int]]:
    """Grid rows for save_grid: per class present in `classes` (ascending), the indices of its
    first `per_class` samples."""
    arr = _numpy(classes)
    return [np.flatnonzero(arr == k)[:per_class].tolist() for k in np.unique(arr)]


def save_grid(images, path, rows: Sequence[Sequence[int]] | None = None, pad: int = 2) -> Path:
    """Write uint8 images (N, H, W, C), C = 1 (grey) or 3 (RGB), as one PNG grid, atomically.

    `rows` lists the image indices of each row (e.g. class_rows: one row per class); None lays
    all images out in ceil(sqrt(N)) columns. Images are separated and framed by `pad` white
    pixels: the PNG is cols * (W + pad) + pad wide and len(rows) * (H + pad) + pad high."""
    arr = _checked_images(images)
    n, h, w, c = arr.shape
    if c not in (1, 3):
        raise ValueError(f"grids take grey (C=1) or RGB (C=3) images, got C={c}")
    if rows is None:
        cols = math.ceil(math.sqrt(n))
        rows = [list(range(start, min(start + cols, n))) for start in range(0, n, cols)]
    cols = max((len(r) for r in rows), default=0)
    if not cols:
        raise ValueError("the grid has no images")
    canvas = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, index in enumerate(row):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            canvas[top:top + h, left:left + w] = arr[index]
    picture = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return Path(path)
