"""The CPU benchmark scripts run at tiny shapes, so they cannot rot between the sessions that time
them (figures come from BENCHMARKS.md runs, never from here)."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_long_sequences_runs_both_backbones_at_each_length():
    out = subprocess.run([sys.executable, str(BENCH / "long_sequences.py"), "--lengths", "32", "64", "--iters", "1",
                          "--d-state", "2", "--expand", "1", "--chunk", "8", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300, cwd=BENCH)
    assert out.returncode == 0, out.stderr
    rows = [line.split("|")[1:3] for line in out.stdout.splitlines() if line.startswith("| d")]
    assert [(name.strip(), length.strip()) for name, length in rows] == [
        ("dimamba", "32"), ("dit", "32"), ("dimamba", "64"), ("dit", "64")]
