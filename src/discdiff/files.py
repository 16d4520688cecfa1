"""Files written whole or not at all.

Every file discdiff writes (checkpoints, configurations, samples, metrics, plots, processed data)
goes to a temporary file in the target's folder, is flushed to disk and then renamed onto the
target: a crash, a preemption or a full disk during the write leaves the previous file as it was.
Caches of derived files live under one root (`cache_root`).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CACHE_ENV = "DISCDIFF_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$DISCDIFF_CACHE``, else ``~/.cache/discdiff``."""
    root = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "discdiff"
    return Path(root).expanduser()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path next to `path`; once the block has written it, flush it to
    disk and rename it onto `path`. On any failure `path` is untouched and the temporary goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj, indent: int = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent))
