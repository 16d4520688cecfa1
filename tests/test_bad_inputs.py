"""Damaged and foreign inputs of every kind end in one line (exit code 2) and leave what was
written before untouched: checkpoints (a damaged last.ckpt no longer stops a resume), run folders,
samples files, data files, tokenizers, stored configurations; and a crash during a checkpoint
write keeps the previous checkpoint."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from discdiff import checkpoints
from discdiff.training.checkpoint_io import AtomicCheckpointIO
from discdiff.cli import main
from discdiff.config import compose
from discdiff.training.run import train
from test_training import read_metric


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(argv, capsys, expected: str) -> str:
    assert main(argv) == 2, argv
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error:" in line]
    assert len(err) == 1 and expected in err[0], err
    return err[0]


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of the session's trained UDLM run, free to damage."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


# ------------------------------------------------------------------------------ writing


class _Unpicklable:
    def __reduce__(self):
        raise OSError(28, "No space left on device")


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 10, "state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()
    with pytest.raises(OSError):
        io.save_checkpoint({"global_step": 20, "state_dict": {"w": torch.zeros(3)}, "x": _Unpicklable()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.json", "last.ckpt"]  # no temporary left
    assert checkpoints.recorded_step(path) == 10


# ----------------------------------------------------------------------------- resuming


def test_a_damaged_last_checkpoint_resumes_from_the_newest_readable_one(tmp_path, cache_dir, quick_overrides, capsys):
    """last.ckpt (step 15) truncated: the restart continues from best.ckpt (step 10), says so, and
    steps 10..19 equal those of a run that never stopped."""
    common = quick_overrides + ["algo=udlm", "lr_scheduler=constant_warmup", "lr_scheduler.warmup_steps=3",
                                "checkpointing.every_n_steps=5", "trainer.val_check_interval=10"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    train(compose(common + [f"run_dir={whole}", "trainer.max_steps=20"]))
    train(compose(common + [f"run_dir={broken}", "trainer.max_steps=15"]))
    assert checkpoints.recorded_step(broken / "checkpoints" / "last.ckpt") == 15
    _truncate(broken / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    train(compose(common + [f"run_dir={broken}", "trainer.max_steps=20"]))
    note = capsys.readouterr().err
    assert "last.ckpt cannot be read" in note and "resuming from best.ckpt at step 10" in note
    assert "steps 10..15 (5) are trained again" in note
    a, b = read_metric(whole, "train/loss"), read_metric(broken, "train/loss")
    assert sorted(a) == sorted(b) == list(range(20))
    for step in range(10, 20):
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step
    assert checkpoints.peek(broken / "checkpoints" / "last.ckpt").step == 20  # rewritten whole


def test_no_readable_checkpoint_is_refused_without_touching_the_folder(run_copy, quick_overrides, capsys):
    for name in ("last.ckpt", "best.ckpt"):
        (run_copy / "checkpoints" / name).write_bytes(b"not a checkpoint")
    before = _snapshot(run_copy)
    _refused(["train", *quick_overrides, f"run_dir={run_copy}", "data.label_col=qed",
              "training.guidance.cond_dropout=0.1"], capsys,
             "no other checkpoint of")
    assert _snapshot(run_copy) == before


def test_resuming_with_other_defining_keys_is_refused(run_copy, quick_overrides, capsys):
    before = _snapshot(run_copy)
    _refused(["train", *quick_overrides, f"run_dir={run_copy}", "data.label_col=qed", "model.hidden_size=64",
              "model.n_heads=4"], capsys,
             "was started with model.hidden_size=None; resuming it with model.hidden_size=64 would make it another run")
    _refused(["train-classifier", *quick_overrides, f"run_dir={run_copy}", "data.label_col=qed"], capsys,
             "holds a generator run, not a classifier run")
    assert _snapshot(run_copy) == before


# ---------------------------------------------------------------------- sample and eval


def test_sampling_skips_a_damaged_best_checkpoint(run_copy, capsys):
    _truncate(run_copy / "checkpoints" / "best.ckpt")
    out = run_copy / "s.json"
    assert main(["sample", f"run_dir={run_copy}", "sampling.num_samples=2", "sampling.steps=2",
                 f"sampling.output={out}"]) == 0
    err = capsys.readouterr().err
    assert "best.ckpt cannot be read" in err and "using last.ckpt (step 40)" in err
    assert json.loads(out.read_text())["checkpoint"].endswith("last.ckpt")


def _forged(run_dir: Path, edit) -> Path:
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    edit(state)
    path = run_dir / "checkpoints" / "forged.ckpt"
    torch.save(state, path)
    return path


def _other_width(state):
    key = "lm.backbone.token_embedding.weight"
    state["state_dict"][key] = torch.zeros(3, 7)


def test_foreign_and_damaged_checkpoints(run_copy, tmp_path, capsys):
    cases = {
        "truncated file": (lambda: _truncate(run_copy / "checkpoints" / "last.ckpt")
                           or run_copy / "checkpoints" / "last.ckpt", "not a complete checkpoint archive"),
        "another program's checkpoint": (lambda: _forged(run_copy, lambda s: s.pop("discdiff")),
                                         "was not written by discdiff"),
        "not a Lightning checkpoint": (lambda: torch.save([1, 2], tmp_path / "list.ckpt") or tmp_path / "list.ckpt",
                                       "is not a Lightning checkpoint"),
        "another version's network": (lambda: _forged(run_copy, _other_width),
                                      "does not match the network its configuration describes"),
        "a classifier": (lambda: _forged(run_copy, lambda s: s["discdiff"].update(kind="classifier")),
                         "holds a classifier, not a generator"),
    }
    for case, (make, expected) in cases.items():
        path = make()
        _refused(["sample", f"checkpoint={path}", f"run_dir={run_copy}", "sampling.num_samples=1"], capsys, expected)


def test_bad_samples_files(trained_run, tmp_path, capsys):
    files = {"empty list": {"samples": []}, "numbers": {"samples": [1, 2]}, "no samples key": {"smiles": ["C"]}}
    for name, payload in files.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(payload))
        _refused(["eval", "qm9", f"run_dir={trained_run}", f"eval.samples={path}"], capsys,
                 "expected a JSON object with a non-empty 'samples' list of strings")
    _refused(["eval", "qm9", f"run_dir={trained_run}", f"eval.samples={tmp_path}"], capsys, "is a folder, not a file")


def test_a_damaged_stored_configuration_falls_back_to_the_checkpoints(run_copy, tmp_path, capsys):
    (run_copy / "config.yaml").write_text("model: [unclosed")
    samples = tmp_path / "s.json"
    samples.write_text(json.dumps({"samples": ["CCO", "C1CC1", "c1ccccc1"]}))
    assert main(["eval", "qm9", f"run_dir={run_copy}", f"eval.samples={samples}",
                 f"eval.output_dir={tmp_path / 'eval'}"]) == 0
    captured = capsys.readouterr()
    assert "config.yaml cannot be read" in captured.err and json.loads(captured.out)["valid"] == 3


def test_a_damaged_tokenizer_is_refused(run_copy, capsys):
    (run_copy / "tokenizer" / "discdiff_tokenizer.json").write_text("{broken")
    _refused(["sample", f"run_dir={run_copy}", "sampling.num_samples=1"], capsys, "no readable tokenizer in")


def test_data_files(tmp_path, quick_overrides, capsys):
    no_smiles = tmp_path / "a.csv"
    no_smiles.write_text("a,b\n1,2\n")
    one = tmp_path / "one.csv"
    one.write_text("SMILES\nCCO\n")
    common = ["train", *quick_overrides, "data.source=auto", "trainer.max_steps=2"]
    _refused([*common, f"run_dir={tmp_path / 'r1'}", f"data.path={no_smiles}"], capsys, "has no SMILES column")
    _refused([*common, f"run_dir={tmp_path / 'r2'}", f"data.path={one}"], capsys,
             "the training split of qm9 has 0 sequences, fewer than one batch of 32")
    _refused([*common, f"run_dir={tmp_path / 'r3'}", f"data.path={tmp_path}"], capsys, "is a folder; qm9 reads a file there")


def test_run_dir_that_is_a_file(tmp_path, quick_overrides, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    _refused(["train", *quick_overrides, f"run_dir={target}"], capsys, "is a file, not a folder")


def test_an_unforeseen_error_is_one_line_with_exit_code_1(monkeypatch, capsys):
    from discdiff import cli

    def broken(cfg):
        raise TypeError("something inside")

    monkeypatch.setitem(cli.LIGHT_HANDLERS, "config", broken)
    assert main(["config"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("discdiff config: error: unexpected TypeError: something inside (a bug? rerun with "
                   "DISCDIFF_DEBUG=1 for the traceback and report it)")
    monkeypatch.setenv("DISCDIFF_DEBUG", "1")
    with pytest.raises(TypeError):
        main(["config"])


def test_an_option_a_command_cannot_honour_is_refused(trained_run, capsys):
    """A QM9 run: data= naming another dataset, and the eval command of another domain, are refused
    in one line before anything is loaded or written (eval ppl used to score QM9 and exit 0)."""
    before = _snapshot(trained_run)
    for argv in (["eval", "ppl", f"run_dir={trained_run}", "data=text8"],
                 ["sample", f"run_dir={trained_run}", "data.name=lm1b", "sampling.num_samples=1"],
                 ["eval", "qm9", f"checkpoint={trained_run / 'checkpoints' / 'last.ckpt'}", "data=text8"]):
        line = _refused(argv, capsys, "cannot apply: the model in")
        assert "was trained on data=qm9" in line
    _refused(["eval", "species", f"run_dir={trained_run}"], capsys, "eval species scores dna; this model was trained "
                                                                     "on data=qm9 (molecules): use eval qm9")
    _refused(["eval", "gen-ppl", f"run_dir={trained_run}"], capsys, "use eval qm9")
    assert _snapshot(trained_run) == before
