"""The recipe scripts compose valid configurations: each runs with DISCDIFF pointing at a stand-in
that hands the same overrides to `discdiff config`, so a misspelt key, a preset that does not
exist or an invalid combination fails here, not hours into a job."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
CASES = [
    ("train_qm9.sh", {}), ("train_lm1b.sh", {"MODEL": "mdlm"}), ("train_amazon_polarity.sh", {"MODEL": "ar"}),
    ("train_species10.sh", {}), ("train_species10.sh", {"MODEL": "ar"}),
    ("train_classifier_qm9.sh", {}), ("train_classifier_amazon_polarity.sh", {"KIND": "clean"}),
    ("train_classifier_species10.sh", {}), ("train_classifier_species10.sh", {"MODEL": "ar"}),
    ("train_classifier_species10.sh", {"KIND": "head"}),
    ("guidance_qm9.sh", {"GUIDANCE": "cbg"}), ("guidance_amazon_polarity.sh", {}),
    ("guidance_species10.sh", {"SOURCE": "offline"}), ("guidance_species10.sh", {"MODEL": "ar", "GUIDANCE": "fudge"}),
    ("train_cifar10.sh", {"MODEL": "mdlm"}), ("train_cifar10.sh", {}), ("train_classifier_cifar10.sh", {}),
    ("train_classifier_cifar10.sh", {"KIND": "noisy", "MODEL": "mdlm"}), ("guidance_cifar10.sh", {}),
    ("guidance_cifar10.sh", {"GUIDANCE": "cbg", "MODEL": "mdlm", "INCEPTION": "false"}),
]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """An executable that drops the command and runs `discdiff config` with the rest."""
    path = tmp_path_factory.mktemp("bin") / "discdiff-config"
    path.write_text(f"#!/bin/sh\nshift\nif [ \"$1\" = guidance ] || [ \"$1\" = species ]; then shift; fi\n"
                    f"exec {sys.executable} -m discdiff.cli config \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_every_script_is_covered():
    assert {p.name for p in SCRIPTS.glob("*.sh")} - {"demo.sh"} == {name for name, _ in CASES}


@pytest.mark.parametrize("script, env", CASES, ids=[f"{s}-{'-'.join(e.values()) or 'default'}" for s, e in CASES])
def test_script_composes(script, env, stand_in, tmp_path):
    runs = tmp_path / "runs"  # the classifier and generator folders the scripts point at must exist
    for name in ("species10-udlm", "species10-ar", "qm9-udlm-qed-noisy-clf", "species10-ar-prefix-clf",
                 "species10-clean-clf", "amazon_polarity-clean-clf", "cifar10-clean-clf", "cifar10-mdlm-noisy-clf"):
        (runs / name).mkdir(parents=True)
    result = subprocess.run(["bash", str(SCRIPTS / script)], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "DISCDIFF": str(stand_in), **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "run_dir: runs/" in result.stdout
