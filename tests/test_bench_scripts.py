"""The CPU benchmark scripts run at tiny shapes, so they cannot rot between the sessions that time
them (figures come from BENCHMARKS.md runs, never from here)."""

import json
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


def test_loss_memory_prints_one_line_per_family():
    out = subprocess.run([sys.executable, str(BENCH / "loss_memory.py"), "--batch", "2", "--length", "8", "--hidden", "16",
                          "--vocab", "50", "--chunk-mib", "0.0005", "--repeats", "0", "--families", "mdlm"],
                         capture_output=True, text=True, timeout=300, cwd=BENCH)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["family"] for r in rows] == ["mdlm"]
    for r in rows:
        assert {"peak_mib_plain", "peak_mib_chunked", "ms_plain", "ms_chunked"} <= set(r)
        assert r["peak_mib_plain"] >= 0 and r["ms_plain"] is None  # --repeats 0: memory only


def test_sampler_cost_prints_a_row_per_sampler_and_guidance():
    out = subprocess.run([sys.executable, str(BENCH / "sampler_cost.py"), "--algo", "udlm", "--batch", "2", "--steps", "2",
                          "--iters", "1", "--warmup", "0", "--guidance", "none,cfg", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300, cwd=BENCH)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:]]
    assert len(rows) == 12 and {r[-4] for r in rows} == {"none", "cfg"}  # 6 samplers x 2 methods
    assert all(float(r[-1]) == 1.0 for r in rows)  # one network call per step, corrected or not


def test_nucleus_cost_prints_a_row_per_logit_scale():
    out = subprocess.run([sys.executable, str(BENCH / "nucleus_cost.py"), "--rows", "8", "--vocab", "600",
                          "--scales", "0.1,6", "--iters", "1", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300, cwd=BENCH)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == ["0.1", "6"]
    assert rows[0][1] == "100%" and rows[1][1] == "0%"  # flat rows pass the top-512, peaked ones stop there
