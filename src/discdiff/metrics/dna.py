"""DNA metrics (Species10, paper Sec. 5.2, Table 3), defined as the paper's
`guidance_eval/ten_species_eval.py` computes them: k-mer spectra and their Jensen-Shannon distance
to real windows of the target species, a discriminator telling generated from real windows, and
(in `discdiff.metrics.classes`) the evaluation classifier's F1 / accuracy / MCC.

The paper's definitions (the default columns):

* **k-mers** are windows of k consecutive letters of one sequence (never across two), indexed by
  their base-4 code with A=0, C=1, G=2, T=3, first letter most significant (lexicographic
  order). Only upper-case A, C, G, T count, as the paper's counter: a window holding any other
  character (N, a gap, or a lower-case, soft-masked a/c/g/t) is left out of the spectrum. (The
  paper divides by all windows and scipy renormalises, which is the same.) discdiff's DNA data
  upper-cases genomes when it builds its token cache, so its real windows keep their soft-masked
  repeats; sequences handed in from elsewhere are read as they are;
* ``js_3mer`` / ``js_6mer``: scipy's ``jensenshannon`` of the two spectra with its default
  natural logarithm: sqrt((KL(p || m) + KL(q || m)) / 2), m = (p + q) / 2, in [0, sqrt(ln 2)];
  ``js_*_bits`` beside it: the same in base 2, in [0, 1] (discdiff's figure before this version,
  1.20 times the natural-log one);
* the ``all`` row weighs each class's distance by its share of the real (validation) windows, as
  the paper weighs by the validation set's species shares (renormalised over the classes that
  were generated);
* ``auroc``: ONE binary classifier, trained from scratch to tell all generated sequences (label
  0) from real windows (label 1) of the same species mix (for each class as many real windows,
  drawn at random, as were generated), 10% held out; the held-out ROC AUC of its class-1 logit
  after the last of 5 epochs (batch 8, AdamW lr 1e-4, no weight decay). discdiff holds out 10%
  of each side (the paper 10% of the pooled set), so that the held-out set always holds both. The paper's network is a
  2-layer, width-128 HyenaDNA (long convolutions); discdiff's is its own backbone of the same
  size, a DiT (default) or a DiMamba, seeded (`discriminator_auroc`). 0.5: indistinguishable
  (best), 1: perfectly separable;
* ``auroc_kmer`` beside it: a 6-mer logistic regression on the same two sets (fast; per class as
  well), held-out ROC AUC (`discriminator_auroc_kmer`).

``invalid_fraction``: the share of characters that are not upper-case A, C, G, T.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix, diags, vstack
from scipy.spatial.distance import jensenshannon
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ..models.classifier import SequenceClassifier
from ..models.dimamba import build_dimamba
from ..models.dit import build_backbone
from .classes import classification_scores

ALPHABET = "ACGT"
MAX_K = 12
_INVALID = 4


def _code_table() -> np.ndarray:
    """Byte value -> nucleotide code: A 0, C 1, G 2, T 3, anything else (lower case too) 4."""
    table = np.full(256, _INVALID, dtype=np.int64)
    for code, letter in enumerate(ALPHABET):
        table[ord(letter)] = code
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
    """Share of characters that are not upper-case A, C, G, T; NaN for no characters."""
    codes, _ = _letter_codes(sequences)
    return float(np.mean(codes == _INVALID)) if len(codes) else math.nan


def js_distance(p: np.ndarray, q: np.ndarray, base: Optional[float] = None) -> float:
    """scipy's Jensen-Shannon distance of two distributions (non-negative weights, normalised
    there), natural logarithm unless `base`; 0 where rounding makes the divergence of nearly equal
    distributions slightly negative (scipy returns NaN there)."""
    p, q = (np.asarray(x, dtype=np.float64) for x in (p, q))
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"js_distance needs two 1-d arrays of one length, got shapes {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("js_distance needs non-negative weights with a positive sum")
    with np.errstate(invalid="ignore"):  # sqrt of a divergence rounded below 0: NaN, read as 0 below
        distance = float(jensenshannon(p, q, base=base))
    return 0.0 if math.isnan(distance) else distance


def kmer_distances(generated: Sequence[str], real: Sequence[str], ks: Sequence[int] = (3, 6)) -> dict:
    """js_{k}mer (natural log, the paper's) and js_{k}mer_bits (base 2) of the k-mer spectra of the
    generated and real sequences, for each k."""
    row = {}
    for k in ks:
        p, q = kmer_distribution(real, k), kmer_distribution(generated, k)
        row[f"js_{k}mer"], row[f"js_{k}mer_bits"] = js_distance(p, q), js_distance(p, q, base=2)
    return row


def _split(n: int, n_test: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    return order[n_test:], order[:n_test]


def discriminator_auroc_kmer(generated: Sequence[str], real: Sequence[str], k: int = 6, seed: int = 0,
                             test_fraction: float = 0.3) -> float:
    """Held-out ROC AUC of a k-mer logistic regression telling generated (label 0) from real
    (label 1) sequences.

    The larger set is subsampled to n = min(len(generated), len(real)) sequences; from each set
    n_test = round(test_fraction * n) sequences are held out (at least 1, and at least 1 left to
    train on). Features are ``kmer_features(k)``; the model is scikit-learn's
    LogisticRegression (L2, C=1, lbfgs) and the score roc_auc_score of its class-1 probabilities
    on the held-out 2 * n_test sequences. Subsampling and splits are drawn from numpy's
    default_rng(seed)."""
    n = min(len(generated), len(real))
    n_test = max(1, round(test_fraction * n))
    if n_test >= n:
        raise ValueError(f"discriminator needs at least 2 sequences per side and room to train, got "
                         f"{len(generated)} generated and {len(real)} real with test_fraction={test_fraction}")
    rng = np.random.default_rng(seed)
    sides = [[s[i] for i in rng.choice(len(s), n, replace=False)] for s in (generated, real)]
    features = [kmer_features(side, k) for side in sides]
    splits = [_split(n, n_test, rng) for _ in sides]
    x_train = vstack([f[train] for f, (train, _) in zip(features, splits)], format="csr")
    x_test = vstack([f[test] for f, (_, test) in zip(features, splits)], format="csr")
    y_train, y_test = np.repeat([0, 1], n - n_test), np.repeat([0, 1], n_test)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(x_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


#: the discriminator's vocabulary: A C G T, N (any other character), padding
_NUCLEOTIDE_IDS = {letter: i for i, letter in enumerate(ALPHABET)}
_N_ID, _PAD_ID = 4, 5
DISCRIMINATORS = ("dit", "dimamba")


@dataclass(frozen=True)
class DiscriminatorRecipe:
    """How the paper trains its discriminator (module docstring): network size, epochs, batch,
    AdamW learning rate, held-out share; `encoder`: dit or dimamba."""

    encoder: str = "dit"
    hidden_size: int = 128
    n_blocks: int = 2
    epochs: int = 5
    batch_size: int = 8
    lr: float = 1e-4
    held_out: float = 0.1


def _encode(sequences: Sequence[str]) -> torch.Tensor:
    """Ids (N, L_max) of upper-cased sequences: A C G T -> 0..3, anything else N, right-padded."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), _PAD_ID, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor([_NUCLEOTIDE_IDS.get(c, _N_ID) for c in seq.upper()], dtype=torch.long)
    return ids


def _discriminator(recipe: DiscriminatorRecipe, length: int) -> SequenceClassifier:
    vocab, options = _PAD_ID + 1, {"time_conditioning": False, "dropout": 0.0}
    if recipe.encoder == "dit":
        size = {"n_blocks": recipe.n_blocks, "hidden_size": recipe.hidden_size, "n_heads": max(1, recipe.hidden_size // 64)}
        encoder = build_backbone(size, vocab, length, **options)
    elif recipe.encoder == "dimamba":
        encoder = build_dimamba({"n_blocks": recipe.n_blocks, "hidden_size": recipe.hidden_size}, vocab, length, **options)
    else:
        raise ValueError(f"unknown discriminator {recipe.encoder!r}; allowed: {', '.join(DISCRIMINATORS)}")
    return SequenceClassifier(encoder, 2)


def _held_out(n_generated: int, n_real: int, share: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices into generated + real: `share` of each side held out (at least one),
    drawn by `generator`."""
    test, train = [], []
    for start, n in ((0, n_generated), (n_generated, n_real)):
        order = start + torch.randperm(n, generator=generator)
        k = max(1, round(share * n))
        test.append(order[:k]), train.append(order[k:])
    return torch.cat(train), torch.cat(test)


def discriminator_auroc(generated: Sequence[str], real: Sequence[str], seed: int = 0,
                        recipe: DiscriminatorRecipe = DiscriminatorRecipe(), device="cpu") -> float:
    """The paper's discriminator AUROC (module docstring): a classifier of `recipe` trained from
    scratch on generated (label 0) and real (label 1) sequences, `recipe.held_out` of each side
    held out (the paper holds out 10% of the pooled set; per side, the held-out set always has
    both kinds, so the AUROC is defined however few sequences there are); the ROC AUC of its
    class-1 logit on those after the last epoch. Initialisation, split and batch order follow
    `seed`."""
    if min(len(generated), len(real)) < 2:
        raise ValueError(f"the discriminator needs at least 2 generated and 2 real sequences (one to train on, one "
                         f"to test), got {len(generated)} generated and {len(real)} real")
    sequences = list(generated) + list(real)
    labels = torch.tensor([0] * len(generated) + [1] * len(real))
    generator = torch.Generator().manual_seed(seed)
    train, test = _held_out(len(generated), len(real), recipe.held_out, generator)
    ids = _encode(sequences)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _discriminator(recipe, ids.shape[1]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8)
    model.train()
    for _ in range(recipe.epochs):
        for batch in train[torch.randperm(len(train), generator=generator)].split(recipe.batch_size):
            loss = F.cross_entropy(model.logits(ids[batch].to(device)), labels[batch].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model.logits(ids[chunk].to(device))[:, 1].float().cpu()
                            for chunk in test.split(max(recipe.batch_size, 64))])
    return float(roc_auc_score(labels[test].numpy(), scores.numpy()))


def _check_inputs(generated: dict[int, list[str]], real: dict[int, list[str]],
                  predicted: Optional[dict[int, list[int]]]) -> None:
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


def _class_row(c: int, generated: list[str], real: list[str], predicted: Optional[list[int]], seed: int) -> dict:
    try:
        row = {"class": c, "num_generated": len(generated), "invalid_fraction": invalid_fraction(generated),
               **kmer_distances(generated, real), "auroc_kmer": discriminator_auroc_kmer(generated, real, seed=seed)}
    except ValueError as err:
        raise ValueError(f"class {c}: {err}") from None
    if predicted is not None:
        row["oracle_hit_rate"] = float(np.mean(np.asarray(predicted) == c))
    return row


def matched_real(generated: dict[int, list[str]], real: dict[int, list[str]], seed: int) -> list[str]:
    """Real windows of the generated species mix: for each class, as many windows of that class,
    drawn without replacement (numpy default_rng(seed)), as were generated (all when fewer)."""
    rng = np.random.default_rng(seed)
    drawn = []
    for c in sorted(generated):
        pool = real[c]
        drawn += [pool[i] for i in rng.permutation(len(pool))[:len(generated[c])]]
    return drawn


def species_metrics(generated: dict[int, list[str]], real: dict[int, list[str]],
                    predicted: Optional[dict[int, list[int]]] = None, num_classes: Optional[int] = None,
                    seed: int = 0, recipe: Optional[DiscriminatorRecipe] = DiscriminatorRecipe(),
                    device="cpu") -> list[dict]:
    """One row per generated class c (ascending), then an "all" row (module docstring).

    Class row: class, num_generated, invalid_fraction, js_3mer / js_6mer (and _bits) between the
    class-c generated and real sequences, auroc_kmer and, with oracle predictions (``predicted[c]``:
    one class per ``generated[c]`` sequence), oracle_hit_rate, the share predicted as c.

    "all" row: num_generated (total), invalid_fraction over all generated characters, the js
    columns weighted by the classes' shares of the real windows, auroc (`discriminator_auroc` of
    `recipe` on all generated sequences against `matched_real`; left out for recipe None) and
    auroc_kmer on the same two sets, and with predictions `classes.classification_scores` over
    all `num_classes` classes as oracle_accuracy, oracle_f1_macro, oracle_mcc.

    Refused with a one-line ValueError naming the class: no generated or no real sequences, no
    valid 3- or 6-mer, too few sequences for a discriminator, predictions that do not match the
    generated sequences one to one, or no `num_classes` with predictions."""
    _check_inputs(generated, real, predicted)
    if predicted is not None and num_classes is None:
        raise ValueError("oracle predictions need num_classes, the evaluation classifier's number of classes")
    classes = sorted(generated)
    rows = [_class_row(c, generated[c], real[c], None if predicted is None else predicted[c], seed) for c in classes]
    weights = np.array([len(real[c]) for c in classes], dtype=np.float64)
    weights /= weights.sum()
    every = [s for c in classes for s in generated[c]]
    reference = matched_real(generated, real, seed)
    summary = {"class": "all", "num_generated": len(every), "invalid_fraction": invalid_fraction(every)}
    for key in rows[0]:
        if key.startswith("js_"):
            summary[key] = float(np.dot(weights, [row[key] for row in rows]))
    if recipe is not None:
        summary["auroc"] = discriminator_auroc(every, reference, seed=seed, recipe=recipe, device=device)
    summary["auroc_kmer"] = discriminator_auroc_kmer(every, reference, seed=seed)
    if predicted is not None:
        true = [c for c in classes for _ in generated[c]]
        scores = classification_scores(true, [p for c in classes for p in predicted[c]], num_classes)
        summary.update({f"oracle_{name}": value for name, value in scores.items()})
    return rows + [summary]
