"""How well samples hit the class they were steered toward, judged by an evaluation classifier
(the paper's oracle columns: Species10's F1 / accuracy / MCC, Table 3; CIFAR10's F1, Table 4; the
target accuracy of the guidance studies).

Inputs are the target class of each sample (true) and the class the evaluation classifier
predicts for it; classes are 0..K-1 with K the classifier's number of classes.

* ``accuracy``: the share of samples predicted as their target;
* ``f1_macro``: the unweighted mean over ALL K classes of the per-class F1 (scikit-learn's
  ``f1_score(average="macro", labels=range(K))``, as the paper's evaluation scripts): a class
  never targeted and never predicted counts 0, so steering toward only some classes caps it;
* ``mcc``: the multi-class Matthews correlation coefficient (scikit-learn);
* ``hit_rates``: per class, the share of the samples steered toward it predicted as it (NaN for
  a class not targeted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def _labels(true: Sequence[int], predicted: Sequence[int], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    true, pred = np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if true.ndim != 1 or true.shape != pred.shape or not true.size:
        raise ValueError(f"need as many predicted as target classes (at least one), got {pred.size} and {true.size}")
    if min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= num_classes:
        raise ValueError(f"classes must lie in 0..{num_classes - 1}")
    return true, pred


def target_accuracy(true: Sequence[int], predicted: Sequence[int]) -> float:
    """The share of samples predicted as their target class."""
    true, pred = np.asarray(true), np.asarray(predicted)
    if true.shape != pred.shape or not true.size:
        raise ValueError(f"need as many predicted as target classes (at least one), got {pred.size} and {true.size}")
    return float((true == pred).mean())


def classification_scores(true: Sequence[int], predicted: Sequence[int], num_classes: int) -> dict:
    """accuracy, f1_macro (over all `num_classes` classes) and mcc (module docstring)."""
    true, pred = _labels(true, predicted, num_classes)
    return {"accuracy": float(accuracy_score(true, pred)),
            "f1_macro": float(f1_score(true, pred, labels=list(range(num_classes)), average="macro",
                                       zero_division=0)),
            "mcc": float(matthews_corrcoef(true, pred))}


def hit_rates(true: Sequence[int], predicted: Sequence[int], num_classes: int) -> list[float]:
    """Per class k, the share of the samples targeted at k predicted as k (NaN if none was)."""
    true, pred = _labels(true, predicted, num_classes)
    return [float((pred[true == k] == k).mean()) if (true == k).any() else math.nan for k in range(num_classes)]
