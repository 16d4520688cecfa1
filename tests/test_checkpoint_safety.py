"""Loading runs no code from the file: a checkpoint that carries a pickled payload (here one that
would create a file when unpickled) is refused in one line by every reader of checkpoints, and
the payload never runs."""

from __future__ import annotations

import shutil

import pytest
import torch

import discdiff
from discdiff.checkpoints import CheckpointError
from discdiff.cli import main


class Payload:
    """Unpickling this calls open(path, "w"): the file appears if the payload runs."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _poison(run_dir, marker) -> None:
    """Every checkpoint of `run_dir` rewritten with the payload inside its discdiff state."""
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(path, map_location="cpu", weights_only=True)  # our own file: plain data
        state["discdiff"]["note"] = Payload(marker)
        torch.save(state, path)
    assert not marker.exists()


@pytest.fixture
def poisoned(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    marker = tmp_path / "payload-ran"
    _poison(run, marker)
    return run, marker


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_python_loader_refuses_the_payload(poisoned):
    run, marker = poisoned
    with pytest.raises(CheckpointError, match="holds a pickled io.open, which no discdiff checkpoint holds"):
        discdiff.load(run)
    with pytest.raises(CheckpointError, match="refused without running it"):
        discdiff.load(run / "checkpoints" / "last.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("command", [
    ["sample", "sampling.num_samples=2"],
    ["sample", "CHECKPOINT", "sampling.num_samples=2"],
    ["eval", "ppl", "eval.max_batches=1"],
    ["export", "out=OUT"],
    ["train", "trainer.max_steps=60"],
])
def test_commands_refuse_the_payload_in_one_line(poisoned, quick_overrides, tmp_path, capsys, command):
    run, marker = poisoned
    extra = quick_overrides if command[0] == "train" else []
    words = 2 if command[0] == "eval" else 1  # the command's name
    options = [a.replace("CHECKPOINT", f"checkpoint={run / 'checkpoints' / 'last.ckpt'}").replace("OUT", str(tmp_path / "hf"))
               for a in command[words:]]
    line = _refused([*command[:words], *extra, f"run_dir={run}", *options], capsys)
    assert "holds a pickled io.open" in line and "refused without running it" in line
    assert not marker.exists()


def test_classifier_loader_refuses_the_payload(cache_dir, quick_overrides, tmp_path):
    run = tmp_path / "clf"
    assert main(["train-classifier", *quick_overrides, f"run_dir={run}", "algo=udlm", "data.label_col=qed",
                 "classifier.kind=clean", "trainer.max_steps=2", "trainer.val_check_interval=2"]) == 0
    marker = tmp_path / "payload-ran"
    _poison(run, marker)
    with pytest.raises(CheckpointError, match="holds a pickled io.open"):
        discdiff.load_classifier(run)
    assert not marker.exists()
