"""The package's architecture, enforced: the layers contract of pyproject.toml (import-linter), and
every import of discdiff's own modules at the top of its module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "discdiff"


def test_the_layers_contract_holds():
    """import-linter's `layers` contract: no module imports a higher layer (the report names the
    offending import when one does)."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def _own_imports_in_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            own = (isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("discdiff"))
                   or isinstance(node, ast.Import) and any(a.name.startswith("discdiff") for a in node.names))
            if own:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_module_imports_discdiff_inside_a_function():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _own_imports_in_functions(path)]
    assert not found, found


def test_third_party_imports_inside_functions_say_why():
    """An optional or heavy library imported where it is used carries a comment saying why."""
    silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and "#" not in lines[node.lineno - 1]:
                        silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not silent, silent
