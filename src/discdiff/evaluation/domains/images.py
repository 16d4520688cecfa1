"""Images (CIFAR10, paper Sec. 5.4): samples scored against the real test images (`discdiff eval
images` and the image domain of the guidance study; the metric math is `discdiff.metrics.images`
and `discdiff.metrics.classes`).

Per target class (samples steered toward it) and over all samples:

* ``fid_clf``: FID in the features of the evaluation classifier (`eval.classifier`, a discdiff
  clean classifier: its pooled, normalised last hidden states), against the real test images of
  that class (all of them for the ``all`` row); the offline stand-in for FID;
* ``oracle_hit_rate`` (per class), ``oracle_accuracy``, ``oracle_f1_macro`` (over all the
  classifier's classes) and ``oracle_mcc`` (``all``): the evaluation classifier's verdicts with
  the target class as truth (the paper's F1 column);
* ``fid``, ``is_mean``, ``is_std`` (``all`` row, `eval.inception=true`): FID against the whole test
  split and Inception Score (10 splits, fewer for fewer samples) with the standard Inception-v3,
  computed by torchmetrics from the features.

Unguided samples (no target class) get the ``all`` row without the class scores. The real
statistics are cached in ``<data cache>/image_stats`` under a digest of the reference images (and
the classifier checkpoint for fid_clf), so a second evaluation computes only the samples'.

eval images writes images.csv / .json and the PNG grids (grid_classes.png or grid_unguided.png,
grid_real.png). The study plots the FID (Inception-v3 when `eval.inception`, else in the
evaluation classifier's features) against the evaluation classifier's macro F1: guidance should
raise the F1 at a small cost in FID.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...files import cache_root
from ...data.images import check_image_classes, real_images
from ...data.registry import DataConfig, DatasetSpec
from ...metrics import images as ev
from ...metrics.classes import classification_scores
from ..pictures import class_rows, save_grid
from ..samples import Samples
from .base import Axis, Context, Domain, without

GRID_COLUMNS = 10
CHUNK = 256


@dataclass
class ImageReference:
    """The real images samples are compared with: token ids (N, C*H*W), labels (N,), the image
    shape (C, H, W), a key naming them in the statistics cache, and that cache's folder."""

    tokens: np.ndarray
    labels: np.ndarray
    image_shape: tuple[int, int, int]
    key: str
    stats_dir: Path

    def of_class(self, k: Optional[int]) -> np.ndarray:
        """Token ids of the images of class k (all images for None)."""
        return self.tokens if k is None else self.tokens[self.labels == k]

    def images(self, k: Optional[int] = None) -> np.ndarray:
        """uint8 images (N, H, W, C) of class k (all for None)."""
        return ev.tokens_to_images(self.of_class(k), self.image_shape)


def image_spec(data_cfg) -> DatasetSpec:
    """The dataset spec of a model's data; one line when it is not an image dataset."""
    spec = DataConfig.from_mapping(data_cfg).spec
    if spec.image_shape is None:
        raise ValueError(f"eval images scores image models; this model was trained on data={spec.name} ({spec.domain})")
    return spec


def image_reference(data_cfg, split: str = "test") -> ImageReference:
    """The real images of `split` of a model's dataset, from its token cache."""
    spec = image_spec(data_cfg)
    tokens, labels = real_images(data_cfg, split)
    digest = hashlib.sha1(np.ascontiguousarray(tokens).tobytes() + labels.tobytes()).hexdigest()[:16]
    stats_dir = cache_root(data_cfg.get("cache_dir")) / "image_stats"
    key = f"{spec.name}|{split}|{len(tokens)}|{digest}"
    return ImageReference(tokens, labels, tuple(spec.image_shape), key, stats_dir)


# ------------------------------------------------------------------------ the classifier

class ClassifierFeatures:
    """A discdiff clean classifier as `evaluation.images`' classifier: token ids (B, L) ->
    (features (B, D), class logits (B, K)); `key` names its checkpoint in the statistics cache."""

    def __init__(self, classifier):
        self.classifier = classifier
        stat = Path(classifier.checkpoint).stat()
        self.key = f"{Path(classifier.checkpoint).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.classifier.features(ids)
        return features, self.classifier.classify(features)


def classifier_features(oracle) -> ClassifierFeatures:
    """The features of an evaluation classifier (`evaluation.oracle`); one line for a HuggingFace one."""
    classifier = getattr(oracle, "classifier", None)
    if not hasattr(classifier, "features"):
        raise ValueError(f"{oracle.source} is not a discdiff clean classifier; image metrics read its features "
                         "(discdiff train-classifier classifier.kind=clean)")
    return ClassifierFeatures(classifier)


def _device(fn: ClassifierFeatures):
    return next(fn.classifier.parameters()).device


def _stats(features: np.ndarray) -> ev.FeatureStatistics:
    """The statistics of features (N, D); for N < 2 only the count (an FID with them is NaN)."""
    if len(features) >= 2:
        return ev.feature_statistics(features)
    return ev.FeatureStatistics(np.zeros(0), np.zeros((0, 0)), len(features))


def _reference_stats(reference: ImageReference, fn: ClassifierFeatures, k: Optional[int]) -> ev.FeatureStatistics:
    """Cached classifier-feature statistics of the real images of class k (all for None); only the
    count when fewer than two exist (the FID is then NaN)."""
    real = reference.of_class(k)
    if len(real) < 2:
        return _stats(np.zeros((len(real), 0)))
    key = f"clf|{fn.key}|{reference.key}|class={'all' if k is None else k}"
    return ev.cached_statistics(reference.stats_dir, key,
                                lambda: ev.classifier_outputs(real, fn, CHUNK, _device(fn))[0])


# ------------------------------------------------------------------------------ Inception

class InceptionScorer:
    """FID and IS with the standard Inception-v3, its weights loaded once from `weights_dir`; one
    line naming the missing file (and the offline switch) when they cannot be had."""

    def __init__(self, weights_dir, device="cpu"):
        try:
            self.features, self.probabilities = ev.inception_extractors(weights_dir, download=True, device=device)
        except ImportError:
            raise ValueError("FID / IS need clean-fid (pip install --no-deps clean-fid==0.1.35); or set "
                             "eval.inception=false for the offline metrics only") from None
        except ValueError as err:
            raise ValueError(f"{err}; or set eval.inception=false for the offline metrics only") from None
        self.device = device

    def score(self, images: np.ndarray, reference: ImageReference) -> dict:
        """{fid, is_mean, is_std} of uint8 images (N, H, W, C) against the whole reference."""
        ref = ev.cached_statistics(reference.stats_dir, f"{ev.INCEPTION_FILE}|{reference.key}",
                                   lambda: ev.features(reference.images(), self.features, 100, self.device))
        sample_stats = _stats(ev.features(images, self.features, 100, self.device))
        probabilities = ev.features(images, self.probabilities, 100, self.device)
        is_mean, is_std = ev.inception_score(probabilities, splits=min(10, len(images)))
        return {"fid": ev.fid(sample_stats, ref), "is_mean": is_mean, "is_std": is_std}


def inception_dir(cfg) -> Path:
    """eval.inception_dir, else <data cache>/inception."""
    return Path(cfg.eval.inception_dir or cache_root(cfg.data.get("cache_dir")) / "inception").expanduser()


# ---------------------------------------------------------------------------------- rows

def _class_row(k: int, tokens: np.ndarray, predicted: Optional[np.ndarray], reference: ImageReference,
               fn: Optional[ClassifierFeatures], names) -> dict:
    row = {"class": k, "name": names[k] if k < len(names) else str(k), "num_generated": len(tokens)}
    if fn is not None:
        features = ev.classifier_outputs(tokens, fn, CHUNK, _device(fn))[0]
        row["fid_clf"] = ev.fid(_stats(features), _reference_stats(reference, fn, k))
    if predicted is not None:
        row["oracle_hit_rate"] = float((predicted == k).mean())
    return row


def _all_row(samples: Samples, reference: ImageReference, fn, inception, num_classes: int) -> dict:
    tokens = samples.tokens.numpy()
    row = {"class": "all", "name": "", "num_generated": len(tokens)}
    if fn is not None:
        features = ev.classifier_outputs(tokens, fn, CHUNK, _device(fn))[0]
        row["fid_clf"] = ev.fid(_stats(features), _reference_stats(reference, fn, None))
    if inception is not None:
        row.update(inception.score(ev.tokens_to_images(tokens, reference.image_shape), reference))
    if samples.predicted is not None and samples.conditions is not None:
        scores = classification_scores(samples.conditions.numpy(), samples.predicted.numpy(), num_classes)
        row.update({f"oracle_{name}": value for name, value in scores.items()})
    return row


def image_rows(samples: Samples, reference: ImageReference, spec, *, features: Optional[ClassifierFeatures] = None,
               inception: Optional[InceptionScorer] = None) -> list[dict]:
    """One row per target class (none for unguided samples, `samples.conditions` None), then the
    ``all`` row (module docstring). `samples.predicted`: the evaluation classifier's classes, if any."""
    rows = []
    if samples.conditions is not None:
        conditions = samples.conditions.numpy()
        predicted = None if samples.predicted is None else samples.predicted.numpy()
        for k in sorted(set(conditions.tolist())):
            chosen = conditions == k
            rows.append(_class_row(k, samples.tokens.numpy()[chosen], None if predicted is None else predicted[chosen],
                                   reference, features, spec.class_names))
    return rows + [_all_row(samples, reference, features, inception, spec.num_classes)]


# ---------------------------------------------------------------------------------- grids

def save_grids(samples: Samples, reference: ImageReference, out_dir: Path, per_row: int = GRID_COLUMNS) -> list[Path]:
    """PNG grids in `out_dir`: grid_classes.png (one row per target class, its first `per_row`
    samples) or grid_unguided.png (all samples, square), and grid_real.png (one row per class of
    the real test images)."""
    images = ev.tokens_to_images(samples.tokens, reference.image_shape)
    if samples.conditions is not None:
        written = [save_grid(images, out_dir / "grid_classes.png", class_rows(samples.conditions, per_row))]
    else:
        written = [save_grid(images, out_dir / "grid_unguided.png")]
    real = reference.images()
    written.append(save_grid(real, out_dir / "grid_real.png", class_rows(reference.labels, per_row)))
    return written


# --------------------------------------------------------------------------------- domain

class Images(Domain):
    name, command, table, samples_file = "images", "images", "images", "image_samples.json"
    title = "Class guidance of images"
    y = Axis("oracle_f1_macro", "macro F1 of the evaluation classifier (target class as truth)")
    needs_tokens = True
    oracle_scores = "the image study scores the target class"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.spec = image_spec(ctx.data)
        self.features = None if ctx.oracle is None else classifier_features(ctx.oracle)
        self.inception = None
        self.real = image_reference(ctx.data)
        self.x = (Axis("fid", "FID to the real test images (Inception-v3)") if ctx.cfg.eval.inception else
                  Axis("fid_clf", "FID to the real test images in the evaluation classifier's features"))

    def prepare(self) -> None:
        """The standard Inception-v3 when `eval.inception` (refused in one line when its weights
        cannot be had)."""
        if self.ctx.cfg.eval.inception:
            self.inception = InceptionScorer(inception_dir(self.ctx.cfg), self.ctx.device)

    def targets(self) -> list[Optional[int]]:
        """study.conditions; null = every class when the model can be steered (a conditional model
        or a guidance method), else none; none ([]) = unguided samples."""
        conditions, cfg, pipe = self.ctx.cfg.study.conditions, self.ctx.cfg, self.ctx.pipe
        if conditions is None:
            steerable = pipe.lm.num_classes is not None or cfg.get("guidance") is not None
            conditions = range(self.spec.num_classes) if steerable else []
        return [int(c) for c in conditions] or [None]

    def check_targets(self, classes: list[int]) -> None:
        check_image_classes(classes, self.spec)

    def _rows(self, samples: Samples) -> list[dict]:
        return image_rows(samples, self.real, self.spec, features=self.features, inception=self.inception)

    def evaluate(self, samples: Samples, out_dir: Path, provenance: dict) -> tuple[list[dict], list[Path]]:
        return self._rows(samples), save_grids(samples, self.real, out_dir)

    def score(self, samples: Samples) -> dict:
        return without(self._rows(samples)[-1], "class", "name", "num_generated")

    @property
    def shown(self) -> tuple[str, ...]:
        inception = ("fid", "is_mean") if self.ctx.cfg.eval.inception else ()
        return ("fid_clf", *inception, "oracle_accuracy", "oracle_f1_macro")
