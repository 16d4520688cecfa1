"""DNA sample evaluation (Schiff et al. 2024, Species10): k-mer statistics, a real-vs-generated
discriminator and oracle-classifier metrics, per species class.

Definitions:

* Nucleotides are the letters A, C, G, T (lower case a, c, g, t count as the same letters). Any
  other character (N, gaps, ...) is *invalid*: ``invalid_fraction`` is the number of invalid
  characters divided by the total number of characters (NaN for no characters).
* A k-mer is a window of k consecutive letters of one sequence; windows that contain an invalid
  character are skipped and no window crosses from one sequence into the next. k-mers are indexed
  by their base-4 code with A=0, C=1, G=2, T=3 and the first letter most significant, so index
  order is lexicographic (AA..A, AA..C, ..., TT..T).
* ``js_distance`` is the Jensen-Shannon distance with base-2 logarithms: the square root of
  JS(p, q) = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, which lies in [0, 1].
* ``discriminator_auroc`` is the held-out ROC AUC of a logistic regression telling generated
  from real sequences by their k-mer frequencies; 0.5 means indistinguishable (best), 1.0
  perfectly separable.
* Oracle metrics compare the class a sequence was generated for (true label) with the class an
  oracle classifier assigns to it (predicted label): accuracy, macro F1 and the (multi-class)
  Matthews correlation coefficient, computed with scikit-learn.

Needs scipy and scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix, diags, vstack
from scipy.special import rel_entr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

ALPHABET = "ACGT"
MAX_K = 12
_INVALID = 4


def _code_table() -> np.ndarray:
    """Byte value -> nucleotide code: A/a 0, C/c 1, G/g 2, T/t 3, anything else 4."""
    table = np.full(256, _INVALID, dtype=np.int64)
    for code, letter in enumerate(ALPHABET):
        table[ord(letter)] = table[ord(letter.lower())] = code
    return table


_CODES = _code_table()


def _letter_codes(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codes (A..T -> 0..3, anything else 4) of all sequences joined end to end, and the index of
    the sequence each position belongs to."""
    text = "".join(sequences).encode("ascii", errors="replace")
    codes = _CODES[np.frombuffer(text, dtype=np.uint8)]
    owner = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    return codes, owner


def _window_codes(sequences: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Base-4 codes of every valid k-mer window and the index of the sequence it lies in."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    codes, owner = _letter_codes(sequences)
    n = len(codes) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    window = np.zeros(n, dtype=np.int64)
    for offset in range(k):
        window = window * 4 + codes[offset:offset + n]
    invalid = np.concatenate([[0], np.cumsum(codes == _INVALID)])
    keep = (invalid[k:] == invalid[:n]) & (owner[:n] == owner[k - 1:])
    return window[keep], owner[:n][keep]


def kmer_counts(sequences: Sequence[str], k: int) -> np.ndarray:
    """Counts of the 4**k k-mers over all sequences (int64, lexicographic order, see module doc);
    windows with an invalid letter are skipped."""
    windows, _ = _window_codes(sequences, k)
    return np.bincount(windows, minlength=4 ** k)


def kmer_distribution(sequences: Sequence[str], k: int) -> np.ndarray:
    """``kmer_counts`` divided by their sum; ValueError if the sequences hold no valid k-mer."""
    counts = kmer_counts(sequences, k)
    total = counts.sum()
    if total == 0:
        raise ValueError(f"no valid {k}-mer in {len(sequences)} sequences")
    return counts / total


def kmer_features(sequences: Sequence[str], k: int) -> csr_matrix:
    """One sparse row per sequence: its k-mer counts divided by its number of valid k-mers, times
    4**k (so k-mers seen at the uniform rate get 1; a sequence without valid k-mer is all 0)."""
    windows, owner = _window_codes(sequences, k)
    rows = csr_matrix((np.ones(len(windows)), (owner, windows)), shape=(len(sequences), 4 ** k))
    per_sequence = np.maximum(np.bincount(owner, minlength=len(sequences)), 1)
    return csr_matrix(diags(4 ** k / per_sequence) @ rows)


def invalid_fraction(sequences: Sequence[str]) -> float:
    """Share of characters that are not A, C, G, T (either case); NaN for no characters."""
    codes, _ = _letter_codes(sequences)
    return float(np.mean(codes == _INVALID)) if len(codes) else math.nan


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2, between two distributions (normalised here if they are
    non-negative weights): sqrt((KL(p||m) + KL(q||m)) / 2), m = (p+q)/2, in [0, 1].

    Same value as scipy.spatial.distance.jensenshannon(p, q, base=2), which however returns NaN
    when rounding makes the divergence of near-identical distributions slightly negative; here
    the divergence is computed with scipy.special.rel_entr and clipped at 0."""
    p, q = (np.asarray(x, dtype=np.float64) for x in (p, q))
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"js_distance needs two 1-d arrays of one length, got shapes {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("js_distance needs non-negative weights with a positive sum")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    divergence = (rel_entr(p, m).sum() + rel_entr(q, m).sum()) / (2 * math.log(2))
    return math.sqrt(max(divergence, 0.0))


def _split(n: int, n_test: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    return order[n_test:], order[:n_test]


def discriminator_auroc(generated: Sequence[str], real: Sequence[str], k: int = 6, seed: int = 0,
                        test_fraction: float = 0.3) -> float:
    """Held-out ROC AUC of a k-mer logistic regression telling generated (label 1) from real
    (label 0) sequences.

    The larger set is subsampled to n = min(len(generated), len(real)) sequences; from each set
    n_test = round(test_fraction * n) sequences are held out (at least 1, and at least 1 left to
    train on). Features are ``kmer_features(k)``; the model is scikit-learn's
    LogisticRegression (L2, C=1, lbfgs) and the score sklearn.metrics.roc_auc_score of its
    probabilities on the held-out 2 * n_test sequences. Subsampling and splits are drawn from
    numpy's default_rng(seed), so the result is a deterministic function of the inputs and seed."""
    n = min(len(generated), len(real))
    n_test = max(1, round(test_fraction * n))
    if n_test >= n:
        raise ValueError(f"discriminator needs at least 2 sequences per side and room to train, got "
                         f"{len(generated)} generated and {len(real)} real with test_fraction={test_fraction}")
    rng = np.random.default_rng(seed)
    sides = [[s[i] for i in rng.choice(len(s), n, replace=False)] for s in (real, generated)]
    features = [kmer_features(side, k) for side in sides]
    splits = [_split(n, n_test, rng) for _ in sides]
    x_train = vstack([f[train] for f, (train, _) in zip(features, splits)], format="csr")
    x_test = vstack([f[test] for f, (_, test) in zip(features, splits)], format="csr")
    y_train = np.repeat([0, 1], n - n_test)
    y_test = np.repeat([0, 1], n_test)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(x_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


def classification_metrics(true_labels: Sequence[int], predicted_labels: Sequence[int], num_classes: int) -> dict:
    """Oracle metrics: accuracy, macro F1 (unweighted mean of the per-class F1 over the classes
    present in the true or predicted labels; a class never predicted has F1 0) and the multi-class
    Matthews correlation coefficient. Labels must lie in 0..num_classes-1."""
    true, pred = np.asarray(true_labels, dtype=np.int64), np.asarray(predicted_labels, dtype=np.int64)
    if true.shape != pred.shape or true.size == 0:
        raise ValueError(f"need as many predicted as true labels (at least one), got {pred.size} and {true.size}")
    if min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return {"accuracy": float(accuracy_score(true, pred)),
            "f1_macro": float(f1_score(true, pred, average="macro", zero_division=0)),
            "mcc": float(matthews_corrcoef(true, pred))}


def _check_inputs(generated: dict[int, list[str]], real: dict[int, list[str]],
                  predicted: dict[int, list[int]] | None) -> None:
    if not generated:
        raise ValueError("no generated classes")
    for c in sorted(generated):
        if not generated[c]:
            raise ValueError(f"class {c} has no generated sequences")
        if not real.get(c):
            raise ValueError(f"class {c} has no real sequences")
        if predicted is not None and len(predicted.get(c, ())) != len(generated[c]):
            raise ValueError(f"class {c}: {len(predicted.get(c, ()))} oracle predictions for "
                             f"{len(generated[c])} generated sequences")


def _class_row(c: int, generated: list[str], real: list[str], predicted: list[int] | None, seed: int) -> dict:
    try:
        row = _kmer_row(generated, real, seed)
    except ValueError as err:
        raise ValueError(f"class {c}: {err}") from None
    row = {"class": c, "num_generated": len(generated), **row}
    if predicted is not None:
        row["oracle_hit_rate"] = float(np.mean(np.asarray(predicted) == c))
    return row


def _kmer_row(generated: list[str], real: list[str], seed: int) -> dict:
    return {"invalid_fraction": invalid_fraction(generated),
            "js_3mer": js_distance(kmer_distribution(generated, 3), kmer_distribution(real, 3)),
            "js_6mer": js_distance(kmer_distribution(generated, 6), kmer_distribution(real, 6)),
            "auroc": discriminator_auroc(generated, real, k=6, seed=seed)}


def species_metrics(generated: dict[int, list[str]], real: dict[int, list[str]],
                    predicted: dict[int, list[int]] | None = None, seed: int = 0) -> list[dict]:
    """One row per generated class c (ascending), then an "all" row.

    Class row: class, num_generated, invalid_fraction, js_3mer / js_6mer (``js_distance`` between
    the k-mer distributions of the class-c generated and class-c real sequences), auroc
    (``discriminator_auroc`` with k=6 and ``seed``) and, with oracle predictions
    (``predicted[c]``: one label per ``generated[c]`` sequence), oracle_hit_rate, the share of
    class-c samples predicted as c.

    "all" row: num_generated (total), invalid_fraction over all generated characters, the means of
    js_3mer / js_6mer / auroc weighted by each class's share of the generated samples and, with
    predictions, ``classification_metrics`` over all generated samples (true label = the class
    they were generated for) as oracle_accuracy, oracle_f1_macro, oracle_mcc; num_classes is one
    more than the largest class index in ``generated``, ``real`` or the predictions (an oracle may
    know more classes than were generated). (The weighted mean of
    oracle_hit_rate is oracle_accuracy, so the "all" row has no oracle_hit_rate.)

    Refused with a one-line ValueError naming the class: no generated or no real sequences, no
    valid 3- or 6-mer, too few sequences for the discriminator, or predictions that do not match
    the generated sequences one to one."""
    _check_inputs(generated, real, predicted)
    classes = sorted(generated)
    rows = [_class_row(c, generated[c], real[c], None if predicted is None else predicted[c], seed) for c in classes]
    weights = np.array([row["num_generated"] for row in rows], dtype=np.float64)
    weights /= weights.sum()
    summary = {"class": "all", "num_generated": sum(row["num_generated"] for row in rows),
               "invalid_fraction": invalid_fraction([s for c in classes for s in generated[c]])}
    for key in ("js_3mer", "js_6mer", "auroc"):
        summary[key] = float(np.dot(weights, [row[key] for row in rows]))
    if predicted is not None:
        true = [c for c in classes for _ in generated[c]]
        pred = [label for c in classes for label in predicted[c]]
        num_classes = max(max(generated), max(real), max(pred)) + 1
        scores = classification_metrics(true, pred, num_classes)
        summary.update({f"oracle_{name}": value for name, value in scores.items()})
    return rows + [summary]
