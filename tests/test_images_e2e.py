"""Images end to end on scikit-learn's 8 x 8 digits: a class-conditional MDLM on a micro UNet and a
clean UNet evaluation classifier train through the command line for a few steps; `eval images`
writes fid_clf / F1 rows and PNG grids (guided toward classes, or unguided from a samples file),
`eval guidance` runs the image study, and bad input (a class outside 0..9, missing Inception
weights, a folder that holds no images) is refused in one line."""

import csv
import json
import urllib.error

import pytest
from PIL import Image

from discdiff.cli import main

IMAGES = ["data=digits", "model=unet", "model.size=micro", "model.dropout=0.0", "loader.global_batch_size=16",
          "trainer.progress_bar=false", "trainer.accelerator=cpu", "training.ema=0.9", "trainer.max_steps=4",
          "trainer.val_check_interval=4", "checkpointing.every_n_steps=4", "trainer.limit_val_batches=1"]
SAMPLE = ["sampling.num_samples=4", "sampling.batch_size=8", "sampling.steps=4", "eval.inception=false"]


@pytest.fixture(scope="module")
def image_runs(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("images")
    assert main(["train", *IMAGES, f"run_dir={root / 'mdlm'}", "algo=mdlm", "training.guidance.cond_dropout=0.2"]) == 0
    assert main(["train-classifier", *IMAGES, f"run_dir={root / 'oracle'}", "classifier.kind=clean",
                 "classifier.model=unet_micro"]) == 0
    return root


def test_eval_images_rows_per_class_and_a_grid(image_runs, capsys):
    run = image_runs / "mdlm"
    assert main(["eval", "images", f"run_dir={run}", f"eval.classifier={image_runs / 'oracle'}", *SAMPLE,
                 "study.conditions=[0,3]", "guidance=cfg", "guidance.gamma=2"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "class,name,num_generated,fid_clf,oracle_hit_rate,oracle_accuracy,oracle_f1_macro,oracle_mcc"
    rows = list(csv.DictReader(open(run / "eval" / "images.csv")))
    assert [r["class"] for r in rows] == ["0", "3", "all"] and rows[-1]["num_generated"] == "8"
    assert all(float(r["fid_clf"]) >= 0 for r in rows)
    assert 0 <= float(rows[-1]["oracle_f1_macro"]) <= 1 and 0 <= float(rows[0]["oracle_hit_rate"]) <= 1
    grid = Image.open(run / "eval" / "grid_classes.png")
    assert grid.size == (4 * 10 + 2, 2 * 10 + 2)  # 4 samples of 8 x 8 per row, 2 classes, 2-pixel frames
    assert Image.open(run / "eval" / "grid_real.png").size[1] == 10 * 10 + 2
    samples = json.loads((run / "eval" / "image_samples.json").read_text())
    assert samples["conditions"] == [0] * 4 + [3] * 4 and len(samples["token_ids"][0]) == 64


def test_eval_images_unguided_from_a_samples_file(image_runs, tmp_path, capsys):
    run, path = image_runs / "mdlm", tmp_path / "s.json"
    assert main(["sample", f"run_dir={run}", *SAMPLE[:3], f"sampling.output={path}"]) == 0
    out = tmp_path / "eval"
    assert main(["eval", "images", f"run_dir={run}", f"eval.samples={path}", f"eval.classifier={image_runs / 'oracle'}",
                 "eval.inception=false", f"eval.output_dir={out}"]) == 0
    rows = json.loads((out / "images.json").read_text())
    assert [r["class"] for r in rows] == ["all"] and "oracle_f1_macro" not in rows[0] and rows[0]["fid_clf"] >= 0
    assert Image.open(out / "grid_unguided.png").size == (2 * 10 + 2, 2 * 10 + 2)


def test_image_guidance_study(image_runs, tmp_path, capsys):
    study = tmp_path / "study"
    assert main(["eval", "guidance", f"run_dir={image_runs / 'mdlm'}", "guidance=cfg", "study.gammas=[0,2]",
                 "study.conditions=[1,2]", f"eval.classifier={image_runs / 'oracle'}", *SAMPLE,
                 f"study.output_dir={study}"]) == 0
    rows = list(csv.DictReader(open(study / "guidance.csv")))
    assert [(r["gamma"], r["condition"], r["num_samples"]) for r in rows] == [("0.0", "1 2", "8"), ("2.0", "1 2", "8")]
    assert all(0 <= float(r["oracle_f1_macro"]) <= 1 and float(r["fid_clf"]) >= 0 for r in rows)
    assert (study / "guidance_pareto.png").stat().st_size > 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "gamma,seed,num_samples,fid_clf,oracle_accuracy,oracle_f1_macro,target_accuracy"


@pytest.fixture
def offline_inception(monkeypatch):
    """The Inception download fails at once, as on a machine without network access."""
    try:
        import cleanfid.downloads_helper as helper
    except ImportError:
        return  # without clean-fid the refusal names the package instead

    def offline(fpath):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(helper, "check_download_inception", offline)


@pytest.mark.parametrize("args, expected", [
    (["eval", "images", "study.conditions=[12]"], "class 12 is not a class of digits; allowed: 0 0, 1 1"),
    (["eval", "guidance", "guidance=cfg", "study.conditions=[0,12]", "eval.classifier=ORACLE"],
     "label 12 is not a class of this model; allowed: 0..9"),
    (["eval", "images", "eval.inception=true", "eval.inception_dir=WEIGHTS"], "eval.inception=false"),
    (["eval", "guidance", "guidance=cfg"], "the image study scores the target class with an evaluation classifier"),
])
def test_refusals_in_one_line(image_runs, tmp_path, args, expected, capsys, offline_inception):
    args = [a.replace("ORACLE", str(image_runs / "oracle")).replace("WEIGHTS", str(tmp_path)) for a in args]
    assert main([*args, f"run_dir={image_runs / 'mdlm'}", *SAMPLE[:3]]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and expected in err[0], err


def test_inception_refusal_names_the_missing_weights(image_runs, tmp_path, capsys, offline_inception):
    pytest.importorskip("cleanfid.downloads_helper")
    assert main(["eval", "images", f"run_dir={image_runs / 'mdlm'}", f"eval.inception_dir={tmp_path}", *SAMPLE[:3]]) == 2
    err = capsys.readouterr().err
    assert f"Inception-v3 weights not found at {tmp_path / 'inception-2015-12-05.pt'}" in err


@pytest.mark.parametrize("path, expected", [
    ("folder", "is not a Fashion-MNIST folder: it lacks train-images-idx3-ubyte[.gz]"),
    ("file", "is a file; fashion_mnist reads a folder there"),
])
def test_image_path_that_is_not_one(tmp_path, path, expected, capsys, cache_dir):
    (tmp_path / "notes.txt").write_text("not images")
    where = tmp_path if path == "folder" else tmp_path / "notes.txt"
    assert main(["prepare", "data=fashion_mnist", f"data.path={where}"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and expected in err[0], err
