"""Samples files: the JSON `discdiff sample` (and the guidance study) writes — `samples`: decoded
strings, `token_ids`, `conditions`: the class each sample was steered toward (null when sampled
unconditionally), `nfe`, ... — read back by every evaluation."""

from __future__ import annotations

import json
import os

EXPECTED = "expected a JSON object with a non-empty 'samples' list of strings"


def read_record(path: str | os.PathLike) -> dict:
    """The samples file as a dict; one-line ValueError naming the file when it cannot be read, is
    not JSON, or lacks a non-empty ``samples`` list of strings."""
    try:
        with open(path) as f:
            payload = json.load(f)
    except OSError as err:
        raise ValueError(f"{path}: {err.strerror or err}; {EXPECTED}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); {EXPECTED}") from None
    samples = payload.get("samples") if isinstance(payload, dict) else None
    if not isinstance(samples, list) or not samples or not all(isinstance(s, str) for s in samples):
        raise ValueError(f"{path}: {EXPECTED}")
    return payload


def load_samples(path: str | os.PathLike) -> list[str]:
    """The ``samples`` strings of a samples file (see `read_record`)."""
    return read_record(path)["samples"]


def check_token_ids(path, record: dict, pipe) -> None:
    """Refuse a samples file whose token ids are not this model's: out of its vocabulary, or not
    decoding to the file's texts with its tokenizer."""
    ids = record.get("token_ids")
    if ids is None:
        return
    vocab = pipe.tokenizer.vocab_size
    if any(not 0 <= i < vocab for row in ids for i in row) or pipe.decode(ids) != record["samples"]:
        raise ValueError(f"{path}: its token ids are not this model's ({pipe.tokenizer.kind} tokenizer, {vocab} "
                         "tokens): samples of another model? give that model's run_dir")


def load_steered(path: str | os.PathLike, pipe):
    """The `Samples` of a file whose samples were steered toward a class each (guidance.condition
    or sampling.label): token ids checked against `pipe`'s model, `conditions` required."""
    import torch

    from .domains import Samples

    record = read_record(path)
    if record.get("token_ids") is None:
        raise ValueError(f"{path}: has no token_ids; give a samples file written by discdiff sample or eval guidance")
    check_token_ids(path, record, pipe)
    conditions = record.get("conditions")
    if not isinstance(conditions, list) or len(conditions) != len(record["samples"]) or None in conditions:
        raise ValueError(f"{path}: records no target class for every sample (sampled unconditionally?); sample with "
                         "guidance.condition=K or sampling.label=K")
    return Samples(record["samples"], torch.tensor(record["token_ids"]), int(record.get("nfe", 0)),
                   torch.tensor(conditions, dtype=torch.long))


def steered_record(samples, **info) -> dict:
    """The JSON-ready samples file of `Samples` (what `load_steered` reads back)."""
    return {"samples": samples.texts, "token_ids": samples.tokens.tolist(), "conditions": samples.conditions.tolist(),
            "nfe": samples.nfe, **info}
