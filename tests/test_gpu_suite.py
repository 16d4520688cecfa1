"""The GPU suite runs end to end at tiny shapes on the CPU, so the code a GPU session runs in its
single call cannot rot in between: every section reports, every check passes."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_tiny_on_cpu(tmp_path, cache_dir):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--out", str(tmp_path), "--cpu",
                             "--tiny"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert {f["section"] for f in report["figures"]} == {"limits", "sampling", "decoding", "profile", "reference", "training"}
    assert not [n for n in report["notes"] if "failed" in n], report["notes"]
    names = {c["check"] for c in report["checks"]}
    assert len(names) == 13 and all(c["passed"] for c in report["checks"]), report["checks"]
    assert any("resumed" in n for n in names) and any("FLOP" in n for n in names)
    trained = {(f["shape"]["algo"], f["shape"]["batch"]) for f in report["figures"] if f["unit"] == "tokens/s"
               and f["section"] == "training"}
    assert trained == {(a, b) for a in ("udlm", "mdlm", "ar") for b in (2, 4)}
    table = (tmp_path / "gpu_suite.md").read_text()
    assert "| check | result | detail |" in table and "**FAIL**" not in table
