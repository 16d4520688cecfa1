"""DNA metrics (`discdiff.metrics.dna`, `discdiff.metrics.classes`): k-mer statistics and JS
distances against a plain dictionary count and scipy's `jensenshannon` (the paper's definition),
the discriminators, the oracle scores against scikit-learn over all classes, and the per-species
table."""

import math
from collections import Counter
from itertools import product

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import f1_score

from discdiff.metrics.classes import classification_scores
from discdiff.metrics.dna import (
    DiscriminatorRecipe,
    discriminator_auroc,
    discriminator_auroc_kmer,
    invalid_fraction,
    js_distance,
    kmer_counts,
    kmer_distances,
    kmer_distribution,
    matched_real,
    species_metrics,
)

#: a discriminator small and quick enough for the suite (the paper's recipe trains 5 epochs at lr 1e-4)
QUICK = DiscriminatorRecipe(hidden_size=32, epochs=3, lr=3e-3)


def brute_force_counts(sequences, k):
    counts = [0] * 4 ** k
    for seq in sequences:
        for i in range(len(seq) - k + 1):
            window = seq[i:i + k]
            if all(letter in "ACGT" for letter in window):
                counts[sum("ACGT".index(letter) * 4 ** (k - 1 - j) for j, letter in enumerate(window))] += 1
    return counts


def random_sequences(rng, n, alphabet="ACGTNacgt-"):
    return ["".join(rng.choice(list(alphabet), rng.integers(0, 40))) for _ in range(n)]


def markov_sequences(rng, transitions, n, length):
    """n sequences of a first-order Markov chain (uniform start) over A, C, G, T."""
    cumulative = np.cumsum(transitions, axis=1)
    states = rng.integers(0, 4, n)
    columns = [states]
    for _ in range(length - 1):
        states = (rng.random(n)[:, None] > cumulative[states]).sum(axis=1).clip(max=3)
        columns.append(states)
    letters = np.array(list("ACGT"))[np.stack(columns, axis=1)]
    return ["".join(row) for row in letters]


def random_chain(rng):
    return rng.dirichlet(np.full(4, 0.5), size=4)


@pytest.mark.parametrize("k", range(1, 7))
def test_kmer_counts_match_brute_force(k):
    rng = np.random.default_rng(k)
    sequences = random_sequences(rng, 60) + ["", "A" * k, "N" * (k + 2), "ACGT" * 5]
    counts = kmer_counts(sequences, k)
    assert counts.shape == (4 ** k,)
    assert counts.tolist() == brute_force_counts(sequences, k)


def test_kmer_order_and_boundaries():
    # index order is lexicographic; no window crosses from one sequence into the next
    assert kmer_counts(["AC", "GT"], 2).nonzero()[0].tolist() == [1, 11]
    assert kmer_counts(["TTT"], 3)[-1] == 1 and kmer_counts(["AAA"], 3)[0] == 1
    assert kmer_distribution(["ACGT"], 1).tolist() == [0.25] * 4


def test_kmer_counts_large_input():
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACGT"), 2000)) for _ in range(1000)]  # 2M nucleotides
    assert kmer_counts(sequences, 6).sum() == 1000 * (2000 - 6 + 1)


def paper_spectrum(sequences, k):
    """The paper's k-mer frequencies written out: a dictionary of every upper-case ACGT window of
    each sequence, over all 4**k k-mers in lexicographic order, divided by the windows counted."""
    counts = Counter(seq[i:i + k] for seq in sequences for i in range(len(seq) - k + 1)
                     if set(seq[i:i + k]) <= set("ACGT"))
    total = sum(counts.values())
    return np.array([counts["".join(kmer)] / total for kmer in product("ACGT", repeat=k)])


@pytest.mark.parametrize("seed", range(3))
def test_js_columns_match_scipy_on_dictionary_counts(seed):
    rng = np.random.default_rng(seed)
    generated = random_sequences(rng, 40, "ACGTACGTacgtN")
    real = random_sequences(rng, 30, "AACCGGTTa")
    row = kmer_distances(generated, real)
    for k in (3, 6):
        p, q = paper_spectrum(real, k), paper_spectrum(generated, k)
        assert row[f"js_{k}mer"] == pytest.approx(jensenshannon(p, q))            # natural log, the paper's
        assert row[f"js_{k}mer_bits"] == pytest.approx(jensenshannon(p, q, base=2))
        assert row[f"js_{k}mer_bits"] == pytest.approx(row[f"js_{k}mer"] / math.sqrt(math.log(2)))


def test_soft_masked_letters_are_left_out():
    # a lower-case (soft-masked) window is not a k-mer of the spectrum, as the paper counts
    assert kmer_counts(["ACgT"], 2).sum() == 1 and kmer_counts(["acgt"], 1).sum() == 0


def test_invalid_fraction():
    assert invalid_fraction(["ACGN", "acgt", "Aé"]) == pytest.approx(6 / 10)
    assert math.isnan(invalid_fraction([""]))


def test_js_distance():
    p = np.array([0.1, 0.2, 0.7])
    assert js_distance(p, p) == 0
    assert js_distance([1, 0, 0], [0, 0.5, 0.5]) == pytest.approx(math.sqrt(math.log(2)))
    assert js_distance([1, 0, 0], [0, 0.5, 0.5], base=2) == pytest.approx(1)
    q = np.array([0.5, 0.4, 0.1])
    assert js_distance(p, q) == pytest.approx(js_distance(q, p))
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4)
    kl_p = math.log2(1 / 0.75)
    kl_q = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    assert js_distance([1, 0], [0.5, 0.5], base=2) == pytest.approx(math.sqrt((kl_p + kl_q) / 2))
    assert js_distance([2, 0], [3, 3]) == pytest.approx(js_distance([1, 0], [0.5, 0.5]))


def test_js_distance_agrees_with_scipy_and_never_nan():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, q = rng.random(64), rng.random(64)
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q))
        nearly_p = p * (1 + rng.normal(0, 1e-12, 64))
        assert 0 <= js_distance(p, nearly_p) < 1e-6


def test_kmer_discriminator_same_source_is_chance():
    rng = np.random.default_rng(1)
    chain = random_chain(rng)
    a, b = markov_sequences(rng, chain, 400, 200), markov_sequences(rng, chain, 300, 200)
    assert discriminator_auroc_kmer(a, b, seed=0) == pytest.approx(0.5, abs=0.15)
    assert discriminator_auroc_kmer(a, b, k=3, seed=0) == pytest.approx(0.5, abs=0.15)


def test_kmer_discriminator_separates_gc_from_at_rich():
    rng = np.random.default_rng(2)
    gc = ["".join(rng.choice(list("ACGT"), 200, p=[0.2, 0.3, 0.3, 0.2])) for _ in range(150)]
    at = ["".join(rng.choice(list("ACGT"), 200, p=[0.3, 0.2, 0.2, 0.3])) for _ in range(200)]
    assert discriminator_auroc_kmer(gc, at, seed=0) > 0.9
    assert discriminator_auroc_kmer(gc, at, k=3, seed=0) > 0.9


def test_kmer_discriminator_deterministic():
    rng = np.random.default_rng(3)
    chain = random_chain(rng)
    a, b = markov_sequences(rng, chain, 100, 100), markov_sequences(rng, random_chain(rng), 120, 100)
    assert discriminator_auroc_kmer(a, b, seed=5) == discriminator_auroc_kmer(a, b, seed=5)


@pytest.mark.parametrize("encoder", ["dit", "dimamba"])
def test_neural_discriminator_separates_and_is_seeded(encoder):
    """The paper's discriminator (one network, generated 0 / real 1, held-out AUROC): sequences
    rich in A and T are told from sequences rich in C and G; the same seed gives the same AUROC."""
    rng = np.random.default_rng(6)
    at = ["".join(rng.choice(list("ACGT"), 32, p=[0.4, 0.1, 0.1, 0.4])) for _ in range(40)]
    gc = ["".join(rng.choice(list("ACGT"), 32, p=[0.1, 0.4, 0.4, 0.1])) for _ in range(40)]
    recipe = DiscriminatorRecipe(encoder=encoder, hidden_size=32, epochs=3, lr=3e-3)
    auroc = discriminator_auroc(at, gc, seed=1, recipe=recipe)
    assert auroc > 0.9
    assert discriminator_auroc(at, gc, seed=1, recipe=recipe) == auroc


def test_matched_real_follows_the_generated_mix():
    real = {0: [f"r0_{i}" for i in range(10)], 1: [f"r1_{i}" for i in range(3)]}
    drawn = matched_real({0: ["g"] * 4, 1: ["g"] * 5}, real, seed=0)
    assert sum(s.startswith("r0") for s in drawn) == 4 and sum(s.startswith("r1") for s in drawn) == 3
    assert len(set(drawn)) == len(drawn)


def test_classification_scores_average_over_all_classes():
    """Macro F1 over ALL K classes as the paper (scikit-learn, labels=range(K)): a class neither
    targeted nor predicted counts 0, so it differs from the average over the classes present."""
    true, pred = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    m = classification_scores(true, pred, num_classes=5)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1_macro"] == pytest.approx(f1_score(true, pred, labels=list(range(5)), average="macro"))
    assert m["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 5)
    assert f1_score(true, pred, average="macro") == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # multi-class MCC: (c s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))
    assert m["mcc"] == pytest.approx((4 * 6 - (2 * 2 + 3 * 2 + 1 * 2)) / math.sqrt((36 - 14) * (36 - 12)))


@pytest.fixture(scope="module")
def species():
    """Three classes, each its own Markov chain: real sets (validation shares 0.5, 0.3, 0.2),
    generated from the right chain (shares 0.2, 0.3, 0.5) and from the next class's chain."""
    rng = np.random.default_rng(4)
    chains = [random_chain(rng) for _ in range(3)]
    sizes = {0: 20, 1: 30, 2: 50}
    real = {c: markov_sequences(rng, chains[c], n, 300) for c, n in {0: 100, 1: 60, 2: 40}.items()}
    right = {c: markov_sequences(rng, chains[c], n, 300) for c, n in sizes.items()}
    wrong = {c: markov_sequences(rng, chains[(c + 1) % 3], n, 300) for c, n in sizes.items()}
    return real, right, wrong


def test_species_metrics_rows(species):
    real, right, _ = species
    predicted = {0: [0] * 15 + [1] * 5, 1: [1] * 30, 2: [2] * 40 + [0] * 10}
    rows = species_metrics(right, real, predicted, num_classes=10, recipe=QUICK)
    assert [row["class"] for row in rows] == [0, 1, 2, "all"]
    assert [row["num_generated"] for row in rows] == [20, 30, 50, 100]
    assert [row["oracle_hit_rate"] for row in rows[:3]] == pytest.approx([0.75, 1.0, 0.8])
    assert all(row["invalid_fraction"] == 0 for row in rows)
    summary = rows[-1]
    for key in ("js_3mer", "js_6mer", "js_3mer_bits", "js_6mer_bits"):  # weighted by the validation shares
        assert summary[key] == pytest.approx(0.5 * rows[0][key] + 0.3 * rows[1][key] + 0.2 * rows[2][key])
    true, pred = [0] * 20 + [1] * 30 + [2] * 50, [label for c in range(3) for label in predicted[c]]
    assert summary["oracle_accuracy"] == pytest.approx(0.85)
    assert summary["oracle_f1_macro"] == pytest.approx(f1_score(true, pred, labels=list(range(10)), average="macro"))
    assert 0 <= summary["auroc"] <= 1 and 0 <= summary["auroc_kmer"] <= 1
    assert "auroc" not in rows[0] and "auroc_kmer" in rows[0]


def test_species_metrics_right_chain_beats_wrong_chain(species):
    real, right, wrong = species
    good, bad = species_metrics(right, real, recipe=None), species_metrics(wrong, real, recipe=None)
    assert "oracle_accuracy" not in good[-1] and "oracle_hit_rate" not in good[0] and "auroc" not in good[-1]
    for g, b in zip(good, bad):
        assert g["js_3mer"] < b["js_3mer"] and g["js_6mer"] < b["js_6mer"]
        assert g["auroc_kmer"] < b["auroc_kmer"]
    assert min(row["auroc_kmer"] for row in bad[:3]) > 0.9  # the "all" row mixes the chains on both sides


def test_species_metrics_reports_invalid_letters(species):
    real, _, _ = species
    generated = {0: ["ACGTACGTNN" * 10] * 10}
    rows = species_metrics(generated, real, recipe=None)
    assert rows[0]["invalid_fraction"] == rows[-1]["invalid_fraction"] == pytest.approx(0.2)


@pytest.mark.parametrize("generated, real, predicted, message", [
    ({0: ["ACGTACGT"] * 5, 1: []}, {0: ["ACGTAC"] * 5, 1: ["ACGTACG"] * 5}, None, "class 1 has no generated"),
    ({2: ["ACGTACGT"] * 5}, {0: ["ACGTAC"] * 5}, None, "class 2 has no real"),
    ({0: ["ACGTACGT"]}, {0: ["ACGTACGT"] * 5}, None, "class 0: discriminator needs"),
    ({0: ["ACG"] * 5}, {0: ["ACGTACGT"] * 5}, None, "class 0: no valid 6-mer"),
    ({0: ["ACGTACGT"] * 5}, {0: ["ACGTACGT"] * 5}, {0: [0, 0]}, "class 0: 2 oracle predictions for 5"),
    ({0: ["ACGTACGT"] * 5}, {0: ["ACGTACGT"] * 5}, {0: [0, 0, 0, 0, -1]}, "classes must lie in 0..0"),
])
def test_refusals_are_one_line(generated, real, predicted, message):
    with pytest.raises(ValueError, match=message) as info:
        species_metrics(generated, real, predicted, num_classes=1, recipe=None)
    assert "\n" not in str(info.value)


def test_other_refusals_are_one_line():
    for call in (lambda: kmer_counts(["ACGT"], 0), lambda: js_distance([0, 0], [1, 1]),
                 lambda: js_distance([1, 2, 3], [1, 2]), lambda: classification_scores([], [], 2),
                 lambda: species_metrics({0: ["ACGTACGT"] * 5}, {0: ["ACGTACGT"] * 5}, {0: [0] * 5}, recipe=None)):
        with pytest.raises(ValueError) as info:
            call()
        assert "\n" not in str(info.value)


def test_neural_discriminator_holds_out_both_kinds():
    """10% of each side is held out (at least one of each), so even 2 + 2 sequences give an AUROC;
    fewer are refused in one line."""
    auroc = discriminator_auroc(["ACGTACGT", "AAAACCCC"], ["GGGGTTTT", "ACGTTTTT"], seed=0, recipe=QUICK)
    assert auroc in (0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="at least 2 generated and 2 real") as info:
        discriminator_auroc(["ACGT"], ["ACGT", "ACGT"], recipe=QUICK)
    assert "\n" not in str(info.value)
