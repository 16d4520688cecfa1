"""Result tables: rows of metrics written as CSV and JSON side by side."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from ..files import atomic_path


def _json_safe(value):
    """NaN/inf become ``null`` so the JSON output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(rows: list[dict] | dict, out_dir: str | os.PathLike,
                  stem: str) -> tuple[Path, Path]:
    """Write ``rows`` to ``out_dir/stem.csv`` and ``out_dir/stem.json`` atomically.

    The CSV has one line per row; its columns are the union of the rows' keys
    in first-seen order, missing cells are empty and NaN is written as
    ``nan``. The JSON mirrors the input (an object for a dict, a list for a
    list) with NaN written as ``null``. Only these two files are replaced.
    """
    as_list = [rows] if isinstance(rows, dict) else list(rows)
    columns = list(dict.fromkeys(k for row in as_list for k in row))
    out_dir = Path(out_dir)
    csv_path, json_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(as_list)
    safe = [{k: _json_safe(v) for k, v in row.items()} for row in as_list]
    with atomic_path(json_path) as tmp, open(tmp, "w") as f:
        json.dump(safe[0] if isinstance(rows, dict) else safe, f, indent=2)
        f.write("\n")
    return csv_path, json_path
