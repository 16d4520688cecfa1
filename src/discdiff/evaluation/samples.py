"""Samples files: the JSON `discdiff sample` writes (`samples`: decoded strings, `token_ids`,
`nfe`, ...), read back by every evaluation."""

from __future__ import annotations

import json
import os


def load_samples(path: str | os.PathLike) -> list[str]:
    """Read the ``samples`` list of strings from a sampler's JSON file.

    Raises a one-line ``ValueError`` naming the file if it cannot be read, is
    not JSON, or lacks a non-empty ``samples`` list of strings.
    """
    expected = "expected a JSON object with a non-empty 'samples' list of strings"
    try:
        with open(path) as f:
            payload = json.load(f)
    except OSError as err:
        raise ValueError(f"{path}: {err.strerror or err}; {expected}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); {expected}") from None
    samples = payload.get("samples") if isinstance(payload, dict) else None
    if not isinstance(samples, list) or not samples or not all(isinstance(s, str) for s in samples):
        raise ValueError(f"{path}: {expected}")
    return samples
