"""Molecule evaluation: the metrics (`evaluation.molecule_metrics`), the molecules domain's report
(`evaluation.domains.molecules`: tables and pictures) and samples files."""

import csv
import json
import math

import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from discdiff.chem import canonical_smiles, mol_from_smiles, qed, ring_count
from discdiff.evaluation.domains import Context, molecules
from discdiff.evaluation.molecule_metrics import (
    draw_molecule_grid,
    plot_property_histogram,
    property_row,
    property_values,
    qm9_metrics,
)
from discdiff.evaluation.samples import Samples, read_samples
from discdiff.evaluation.tables import write_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BENZENE_QED = 0.44262837
# 8 samples: 6 valid; canonical forms CCO (x2, in train), c1ccccc1 (x2, novel),
# CCN (novel), CCC (in train).
SAMPLES = ["CCO", "OCC", "C1CC", "", "c1ccccc1", "C1=CC=CC=C1", "CCN", "CCC"]
TRAIN = {canonical_smiles(s) for s in ["CCO", "CCC", "CCCC"]}


def test_counts_and_fractions():
    m = qm9_metrics(SAMPLES, TRAIN)
    assert (m["num_samples"], m["valid"], m["unique"], m["novel"]) == (8, 6, 4, 2)
    assert m["valid_frac"] == pytest.approx(6 / 8)
    assert m["unique_frac"] == pytest.approx(4 / 8)
    assert m["novel_frac"] == pytest.approx(2 / 8)


def test_property_statistics_over_valid_and_novel():
    m = qm9_metrics(SAMPLES, TRAIN)
    # valid ring counts (duplicates included): [0, 0, 1, 1, 0, 0]
    assert m["ring_count_valid_mean"] == pytest.approx(2 / 6)
    assert m["ring_count_valid_median"] == 0
    assert m["ring_count_valid_q75"] == pytest.approx(0.75)
    # novel (one per canonical SMILES): benzene and ethylamine
    assert m["ring_count_novel_mean"] == pytest.approx(0.5)
    assert m["ring_count_novel_q25"] == pytest.approx(0.25)
    assert m["qed_novel_q75"] <= BENZENE_QED + 1e-9
    for prop in ("qed", "ring_count"):
        for group in ("valid", "novel"):
            for stat in ("mean", "median", "q25", "q75"):
                assert f"{prop}_{group}_{stat}" in m


def test_nan_statistics_without_novel_molecules():
    m = qm9_metrics(["CCO", "OCC", "C1CC"], TRAIN)
    assert m["novel"] == 0 and m["novel_frac"] == 0
    assert math.isnan(m["qed_novel_mean"]) and math.isnan(m["ring_count_novel_q75"])
    assert m["qed_valid_mean"] == pytest.approx(0.4068, abs=1e-3)


def test_no_samples_gives_nan_fractions():
    m = qm9_metrics([], TRAIN)
    assert m["valid"] == 0 and math.isnan(m["valid_frac"])
    assert math.isnan(m["qed_valid_median"])


def test_unknown_property_rejected():
    with pytest.raises(ValueError, match="unknown properties"):
        qm9_metrics(SAMPLES, TRAIN, properties=("logp",))


def test_property_row_of_a_dataset():
    mols = [m for m in map(mol_from_smiles, ["c1ccccc1", "CCO", "C1CC"]) if m is not None]
    row = property_row(3, len(mols), property_values(mols, ("qed", "ring_count")))
    assert row["num_samples"] == 3 and row["valid"] == 2
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
    assert domain.printed(rows) == qm9_metrics(SAMPLES, TRAIN)
    assert sorted(p.name for p in out.iterdir()) == [
        "molecules.png", "qed_hist.png", "qm9_metrics.csv", "qm9_metrics.json"]
    assert sorted(p.name for p in pictures) == ["molecules.png", "qed_hist.png"]
    rows = json.loads((out / "qm9_metrics.json").read_text())
    assert [r["row"] for r in rows] == ["samples", "data"]
    assert rows[0]["novel"] == 2 and rows[1]["num_samples"] == len(TRAIN)
    mols = [mol_from_smiles(s) for s in TRAIN]
    assert rows[1]["qed_valid_mean"] == pytest.approx(sum(qed(m) for m in mols) / len(mols))
    _assert_png(out / "molecules.png", (1200, 200))  # 6 valid samples, one row of 6
    _assert_png(out / "qed_hist.png", (600, 400))


def test_molecules_without_valid_samples_draw_no_grid(domain, tmp_path):
    rows, pictures = domain.evaluate(_samples(["C1CC", ""]), tmp_path / "eval", {})
    assert rows[0]["valid"] == 0 and math.isnan(rows[0]["qed_novel_mean"])
    assert [p.name for p in pictures] == ["qed_hist.png"]


def test_molecules_study_row_and_reference(domain):
    assert domain.score(_samples(SAMPLES)) == qm9_metrics(SAMPLES, TRAIN)
    reference = domain.reference()
    assert reference["method"] == "data" and reference["num_samples"] == len(TRAIN)
    assert domain.y.column == "qed_novel_mean"
