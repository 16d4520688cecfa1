"""Molecule evaluation: the metrics (`discdiff.metrics.molecules`) against an independent loop of
the paper's definitions, the molecules domain's report (`evaluation.domains.molecules`: tables,
strict decoding from token ids, pictures) and samples files."""

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from rdkit import Chem

from discdiff.chem import canonical_smiles, mol_from_smiles, qed, ring_count
from discdiff.data.tokenizers import SmilesTokenizer
from discdiff.evaluation.domains import Context, molecules
from discdiff.evaluation.pictures import draw_molecule_grid, plot_property_histogram
from discdiff.evaluation.samples import Samples, read_samples
from discdiff.evaluation.tables import write_metrics
from discdiff.metrics.molecules import molecule_metrics, property_values, reference_row, strict_smiles

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BENZENE_QED = 0.44262837
# 8 samples: 6 valid strings, all distinct; canonical forms CCO (x2, in train), c1ccccc1 (x2,
# novel), CCN (novel), CCC (in train). As written, OCC and C1=CC=CC=C1 are not training strings.
SAMPLES = ["CCO", "OCC", "C1CC", "", "c1ccccc1", "C1=CC=CC=C1", "CCN", "CCC"]
TRAIN = {canonical_smiles(s) for s in ["CCO", "CCC", "CCCC"]}


def paper_counts(samples, train):
    """The paper's qm9_eval definitions written out directly: a sample is valid when it is a
    non-empty string RDKit parses; unique = distinct valid strings; novel = distinct valid strings
    not among the training set's canonical SMILES as written; QED of each novel string once."""
    valid = [s for s in samples if s and Chem.MolFromSmiles(s) is not None]
    unique = set(valid)
    novel = sorted(unique - set(train))
    return len(valid), len(unique), len(novel), [Chem.QED.qed(Chem.MolFromSmiles(s)) for s in novel]


def test_paper_columns_match_a_direct_loop():
    m = molecule_metrics(SAMPLES, TRAIN)
    valid, unique, novel, novel_qed = paper_counts(SAMPLES, TRAIN)
    assert (m["num_samples"], m["valid"], m["unique"], m["novel"]) == (8, valid, unique, novel) == (8, 6, 6, 4)
    assert m["valid_frac"] == pytest.approx(6 / 8) and m["novel_frac"] == pytest.approx(4 / 8)
    assert m["unique_of_valid"] == pytest.approx(1.0) and m["novel_of_valid"] == pytest.approx(4 / 6)
    assert m["qed_novel_mean"] == pytest.approx(np.mean(novel_qed))
    assert m["qed_novel_q25"] == pytest.approx(np.percentile(novel_qed, 25))


def test_canonical_counts_beside_the_paper_columns():
    m = molecule_metrics(SAMPLES, TRAIN)
    assert (m["unique_canonical"], m["novel_canonical"]) == (4, 2)
    assert m["novel_canonical_frac"] == pytest.approx(2 / 8)


@pytest.mark.parametrize("seed", range(3))
def test_paper_columns_on_random_strings(seed):
    """Random strings over a SMILES alphabet: many invalid, some duplicates, some in the training set."""
    rng = np.random.default_rng(seed)
    pool = ["CCO", "OCC", "CC", "C", "N", "O=C=O", "C1CC1", "c1ccccc1", "CC(", "C#N", "CN", "NC"]
    samples = list(rng.choice(pool + ["".join(rng.choice(list("CNO()=1"), 4)) for _ in range(8)], 60))
    train = {canonical_smiles(s) for s in ["CC", "CCO", "NC"]}
    m = molecule_metrics(samples, train)
    valid, unique, novel, novel_qed = paper_counts(samples, train)
    assert (m["valid"], m["unique"], m["novel"]) == (valid, unique, novel)
    assert m["qed_novel_mean"] == pytest.approx(np.mean(novel_qed)) if novel_qed else math.isnan(m["qed_novel_mean"])


def test_property_statistics_over_valid_and_novel():
    m = molecule_metrics(SAMPLES, TRAIN)
    # valid ring counts (duplicates included): [0, 0, 1, 1, 0, 0]
    assert m["ring_count_valid_mean"] == pytest.approx(2 / 6)
    assert m["ring_count_valid_median"] == 0
    assert m["ring_count_valid_q75"] == pytest.approx(0.75)
    # novel strings: OCC, c1ccccc1, C1=CC=CC=C1, CCN -> ring counts [0, 1, 1, 0]
    assert m["ring_count_novel_mean"] == pytest.approx(0.5)
    assert m["ring_count_novel_q25"] == pytest.approx(0.0)
    for prop in ("qed", "ring_count"):
        for group in ("valid", "novel"):
            for stat in ("mean", "median", "q25", "q75"):
                assert f"{prop}_{group}_{stat}" in m


def test_nan_statistics_without_novel_molecules():
    m = molecule_metrics(["CCO", "CCC", "C1CC"], TRAIN)
    assert m["novel"] == 0 and m["novel_frac"] == 0
    assert math.isnan(m["qed_novel_mean"]) and math.isnan(m["ring_count_novel_q75"])


def test_no_samples_gives_nan_fractions():
    m = molecule_metrics([], TRAIN)
    assert m["valid"] == 0 and math.isnan(m["valid_frac"])
    assert math.isnan(m["qed_valid_median"])


def test_unknown_property_rejected():
    with pytest.raises(ValueError, match="unknown properties"):
        molecule_metrics(SAMPLES, TRAIN, properties=("logp",))


SPECIAL, ENDS = {"[PAD]", "[BOS]", "[EOS]", "[MASK]", "[UNK]"}, {"[PAD]", "[EOS]"}


@pytest.mark.parametrize("tokens, expected", [
    (["[BOS]", "C", "C", "O", "[EOS]", "[PAD]"], "CCO"),      # clean: cut at the end
    (["C", "C", "O"], "CCO"),                                 # no end token: the whole body
    (["[BOS]", "C", "[PAD]", "C", "O"], "C"),                 # padding between atoms ends the molecule there
    (["[BOS]", "C", "[MASK]", "O", "[EOS]"], None),           # a special token among the atoms: invalid
    (["[BOS]", "[BOS]", "C"], None),                          # a second BOS is among the atoms
    (["[EOS]", "C", "C"], ""),                                # ends at once: empty, hence invalid as a molecule
])
def test_strict_decoding(tokens, expected):
    assert strict_smiles(tokens, SPECIAL, ENDS, bos="[BOS]") == expected


def test_strict_columns_differ_from_the_paper_decoding_on_padded_samples():
    # paper decoding drops special tokens anywhere: "C[PAD]CO" reads CCO; the strict one reads C
    paper = ["CCO", "CCN"]
    strict = [strict_smiles(["C", "[PAD]", "C", "O"], SPECIAL, ENDS), strict_smiles(["C", "[MASK]", "N"], SPECIAL, ENDS)]
    m = molecule_metrics(paper, TRAIN, strict=strict)
    assert (m["valid"], m["valid_strict"], m["novel"], m["novel_strict"]) == (2, 1, 1, 1)
    assert m["valid_strict_frac"] == pytest.approx(0.5)
    assert "qed_novel_strict_mean" in m
    with pytest.raises(ValueError, match="1 strict decodings for 2 samples"):
        molecule_metrics(paper, TRAIN, strict=strict[:1])


def test_reference_row_of_a_dataset():
    mols = [mol_from_smiles(s) for s in ["c1ccccc1", "CCO"]]
    row = reference_row(property_values(mols, ("qed", "ring_count")))
    assert row["num_samples"] == 2 and row["valid"] == 2
    assert row["ring_count_valid_mean"] == pytest.approx(0.5)
    assert row["qed_valid_q75"] <= BENZENE_QED + 1e-9
    assert not any(key.startswith(("qed_novel", "ring_count_novel")) for key in row)


def test_write_metrics_csv_and_json(tmp_path):
    other = tmp_path / "keep.txt"
    other.write_text("untouched")
    rows = [{"row": "a", "x": 1.5, "y": math.nan}, {"row": "b", "z": 2}]
    csv_path, json_path = write_metrics(rows, tmp_path, "m")
    assert (csv_path, json_path) == (tmp_path / "m.csv", tmp_path / "m.json")
    with open(csv_path, newline="") as f:
        lines = list(csv.reader(f))
    assert lines == [["row", "x", "y", "z"], ["a", "1.5", "nan", ""], ["b", "", "", "2"]]
    assert json.loads(json_path.read_text()) == [{"row": "a", "x": 1.5, "y": None},
                                                 {"row": "b", "z": 2}]
    assert other.read_text() == "untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "m.csv", "m.json"]


def test_write_metrics_single_dict_overwrites_own_files(tmp_path):
    write_metrics({"a": 1}, tmp_path, "m")
    _, json_path = write_metrics({"a": 2}, tmp_path, "m")
    assert json.loads(json_path.read_text()) == {"a": 2}


def _assert_png(path, size):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size


def test_molecule_grid_png(tmp_path):
    path = tmp_path / "grid.png"
    draw_molecule_grid(SAMPLES, path, n=4, per_row=3, sub_img_size=(100, 100))
    _assert_png(path, (300, 200))  # 4 valid molecules drawn on 2 rows of 3


def test_molecule_grid_needs_a_valid_molecule(tmp_path):
    with pytest.raises(ValueError, match="no valid molecules"):
        draw_molecule_grid(["C1CC", ""], tmp_path / "grid.png")
    assert not list(tmp_path.iterdir())


def test_property_histogram_png(tmp_path):
    path = tmp_path / "hist.png"
    plot_property_histogram([0.4, 0.5], [0.3, 0.45, 0.6], path)
    _assert_png(path, (600, 400))
    plot_property_histogram([], [1, 2, 2], tmp_path / "rings.png", prop="ring_count")
    _assert_png(tmp_path / "rings.png", (600, 400))


@pytest.mark.parametrize("content, reason", [
    (None, "No such file or directory"),
    ("not json{", "not valid JSON"),
    ('["CCO"]', "expected a JSON object"),
    ('{"samples": "CCO"}', "expected a JSON object"),
    ('{"samples": ["CCO", 3]}', "expected a JSON object"),
])
def test_read_samples_rejects_bad_files(tmp_path, content, reason):
    path = tmp_path / "samples.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=reason) as err:
        read_samples(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "'samples' list" in message


@pytest.fixture
def domain(monkeypatch):
    """The molecules domain over the training molecules TRAIN."""
    mols = [mol_from_smiles(s) for s in sorted(TRAIN)]
    table = pd.DataFrame({"canonical": sorted(TRAIN), "qed": [qed(m) for m in mols],
                          "ring_count": [ring_count(m) for m in mols]})
    monkeypatch.setattr(molecules, "qm9_train_table", lambda data: table)
    cfg = OmegaConf.create({"study": {"property": "qed"}})
    return molecules.Molecules(Context(OmegaConf.create({"name": "qm9"}), cfg, "cpu"))


def _samples(texts):
    return Samples(texts, None, 0, None)


def test_molecules_report(domain, tmp_path):
    out = tmp_path / "eval"
    rows, pictures = domain.evaluate(_samples(SAMPLES), out, {})
    write_metrics(rows, out, domain.table)
    assert domain.printed(rows) == molecule_metrics(SAMPLES, TRAIN)
    assert sorted(p.name for p in out.iterdir()) == [
        "molecules.png", "qed_hist.png", "qm9_metrics.csv", "qm9_metrics.json"]
    assert sorted(p.name for p in pictures) == ["molecules.png", "qed_hist.png"]
    rows = json.loads((out / "qm9_metrics.json").read_text())
    assert [r["row"] for r in rows] == ["samples", "data"]
    assert rows[0]["novel"] == 4 and rows[1]["num_samples"] == len(TRAIN)
    mols = [mol_from_smiles(s) for s in TRAIN]
    assert rows[1]["qed_valid_mean"] == pytest.approx(sum(qed(m) for m in mols) / len(mols))
    _assert_png(out / "molecules.png", (1200, 200))  # 6 valid samples, one row of 6
    _assert_png(out / "qed_hist.png", (600, 400))


def test_molecules_without_valid_samples_draw_no_grid(domain, tmp_path):
    rows, pictures = domain.evaluate(_samples(["C1CC", ""]), tmp_path / "eval", {})
    assert rows[0]["valid"] == 0 and math.isnan(rows[0]["qed_novel_mean"])
    assert [p.name for p in pictures] == ["qed_hist.png"]


def test_molecules_study_row_and_reference(domain):
    assert domain.score(_samples(SAMPLES)) == molecule_metrics(SAMPLES, TRAIN)
    reference = domain.reference()
    assert reference["method"] == "data" and reference["num_samples"] == len(TRAIN)
    assert domain.y.column == "qed_novel_mean"


def test_molecules_domain_reads_the_strict_decoding_from_token_ids(monkeypatch):
    """With the model's tokenizer and token ids, the row carries the strict columns: a sample with
    a mask token between atoms is a molecule under the paper's decoding and not under the strict one."""
    tok = SmilesTokenizer.from_corpus(["CCO", "CCN", "c1ccccc1"])
    rows = [[tok.bos_id, *tok.encode("CCN"), tok.eos_id, tok.pad_id],
            [tok.bos_id, *tok.encode("C"), tok.mask_id, *tok.encode("CO"), tok.eos_id]]
    ids = torch.tensor(rows)
    texts = tok.batch_decode(ids)
    assert texts == ["CCN", "CCO"]
    table = pd.DataFrame({"canonical": sorted(TRAIN), "qed": 0.5, "ring_count": 0})
    monkeypatch.setattr(molecules, "qm9_train_table", lambda data: table)
    pipe = type("Pipe", (), {"tokenizer": tok})()
    cfg = OmegaConf.create({"study": {"property": "qed"}})
    domain = molecules.Molecules(Context(OmegaConf.create({"name": "qm9"}), cfg, "cpu", pipe=pipe))
    row = domain.score(Samples(texts, ids, 0, None))
    assert (row["valid"], row["novel"]) == (2, 1)
    assert (row["valid_strict"], row["novel_strict"]) == (1, 1)
