"""Checkpoint files of a run folder: crash-safe writes, and finding the newest one that reads.

A run folder keeps `checkpoints/last.ckpt` (every `checkpointing.every_n_steps`) and
`checkpoints/best.ckpt` (lowest validation loss). Each is written to a temporary file in the same
folder, flushed to disk and renamed over the old one, so a crash, a preemption or a full disk
during a write leaves the previous checkpoint whole. `checkpoints/index.json` records the step and
size of every file written, which tells a damaged file (a broken copy, a truncated transfer) and
the steps it had reached even when the file itself no longer reads.

Reading runs no code from the file: every read unpickles with `torch.load(weights_only=True)`,
whose allowlist is tensors and plain containers (dict, OrderedDict, list, tuple, str, numbers,
None, torch sizes and dtypes), exactly what a discdiff checkpoint holds (weights, the optimizer's
and Lightning's counters, the configuration as plain dicts, the EMA). A file that needs any other
type is refused in one line naming it, and nothing in it runs.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar

import torch

from .ema import EMA
from .errors import first_line
from .files import write_json

log = logging.getLogger(__name__)
T = TypeVar("T")

INDEX = "index.json"


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message is one line."""


@dataclass(frozen=True)
class Checkpoint:
    """A readable checkpoint file: its path, optimizer step, what it holds and the configuration
    of the run that wrote it (a plain dict)."""

    path: Path
    step: int
    kind: str  # "generator" | "classifier"
    config: dict


def read(path: Path) -> dict:
    """The checkpoint's contents (tensors memory-mapped); CheckpointError when it cannot be read
    or was not written by discdiff."""
    if not zipfile.is_zipfile(path):  # truncated, damaged, or another kind of file
        raise CheckpointError(f"{path} cannot be read (not a complete checkpoint archive: truncated, damaged "
                              "or another kind of file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:  # the weights-only unpickler met a type off its allowlist
        raise CheckpointError(_refusal(path, err)) from None
    except Exception as err:  # truncated zip, garbage, permissions
        raise CheckpointError(f"{path} cannot be read ({_reason(err)})") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    if "discdiff" not in state:
        raise CheckpointError(f"{path} was not written by discdiff train / train-classifier (no discdiff state)")
    return state


def peek(path: Path) -> Checkpoint:
    """Step and kind of a readable checkpoint (CheckpointError otherwise)."""
    state = read(path)
    config = (state.get("hyper_parameters") or {}).get("config") or {}
    return Checkpoint(Path(path), int(state.get("global_step", 0)), state["discdiff"].get("kind", "generator"),
                      dict(config))


def _reason(err: Exception) -> str:
    """The error's type and first sentence (torch's loader explains at length)."""
    return f"{type(err).__name__}: {first_line(err).split('. ')[0].rstrip('.')}"


def _refusal(path: Path, err: pickle.UnpicklingError) -> str:
    """One line for a file the weights-only unpickler refused, naming the type it asked for."""
    found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(err))
    what = f"a pickled {found.group(1)}" if found else "a pickled object of a type off the allowlist"
    return (f"{path} holds {what}, which no discdiff checkpoint holds; refused without running it (checkpoints "
            "are read as tensors and plain containers only)")


def recorded_step(path: Path) -> Optional[int]:
    """The step index.json recorded for a checkpoint file (None when unknown)."""
    entry = _load_index(path.parent).get(path.name)
    return None if entry is None else entry.get("step")


def _load_index(folder: Path) -> dict:
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _write_index(folder: Path, index: dict) -> None:
    write_json(folder / INDEX, index)


def record(path: Path, step: int) -> None:
    """Enter a checkpoint file just written (its step and size) in its folder's index."""
    index = _load_index(path.parent)
    index[path.name] = {"step": int(step), "bytes": path.stat().st_size}
    _write_index(path.parent, index)


def forget(path: Path) -> None:
    """Drop a removed checkpoint file from its folder's index."""
    index = _load_index(path.parent)
    if index.pop(path.name, None) is not None:
        _write_index(path.parent, index)


@dataclass(frozen=True)
class ResumePoint:
    """Where a restarted run continues: a readable checkpoint, and a one-line note when it is not
    last.ckpt (which file could not be read and which steps are trained again)."""

    checkpoint: Checkpoint
    note: Optional[str] = None


def resume_point(run_dir: Path) -> Optional[ResumePoint]:
    """The newest readable checkpoint of a run folder (last.ckpt unless it is damaged); None when
    the folder has no checkpoint. CheckpointError when it has some and none reads."""
    folder = Path(run_dir) / "checkpoints"
    files = sorted(folder.glob("*.ckpt"), key=lambda p: p.name != "last.ckpt")
    if not files:
        return None
    readable, damaged = [], []
    for path in files:
        try:
            readable.append(peek(path))
        except CheckpointError as err:
            damaged.append((path, str(err)))
    if not readable:
        raise CheckpointError(f"{damaged[0][1]}, and no other checkpoint of {run_dir} can be read; move the "
                              "damaged files out of checkpoints/ to train this run again from step 0")
    newest = max(readable, key=lambda c: c.step)
    if not damaged:
        return ResumePoint(newest)
    path, reason = damaged[0]
    lost = recorded_step(path)
    redone = (f"steps {newest.step}..{lost} ({lost - newest.step}) are trained again" if lost is not None
              and lost > newest.step else "the steps after it are trained again")
    return ResumePoint(newest, f"{reason}; resuming from {newest.path.name} at step {newest.step}: {redone}")


def loadable(path: Path) -> tuple[Checkpoint, Optional[str]]:
    """For `sample` / `eval`: the checkpoint to load from a run folder (best.ckpt, else the newest
    readable one) or a .ckpt file, with a one-line note when a preferred file was skipped."""
    path = Path(path)
    if path.is_file():
        return peek(path), None
    folder = path / "checkpoints"
    if not path.is_dir() or not any(folder.glob("*.ckpt")):
        if path.is_dir():
            raise CheckpointError(f"run folder {path} has no checkpoints/*.ckpt; train it first "
                                  "(discdiff train run_dir=...)")
        raise CheckpointError(f"{path} is neither a run folder nor a checkpoint file")
    preferred = [folder / name for name in ("best.ckpt", "last.ckpt") if (folder / name).exists()]
    others = sorted(set(folder.glob("*.ckpt")) - set(preferred))
    skipped = []
    for candidate in [*preferred, *others]:
        try:
            found = peek(candidate)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        return found, (f"{skipped[0]}; using {candidate.name} (step {found.step})" if skipped else None)
    raise CheckpointError(f"{skipped[0]}, and no other checkpoint of {path} can be read")


def for_loading(path: Path, kind: str) -> Checkpoint:
    """The checkpoint to load from a run folder (best.ckpt, else the newest readable one) or a
    .ckpt file, refused in one line unless it holds a `kind` ("generator" | "classifier"); a
    skipped damaged file is reported as a warning."""
    found, note = loadable(Path(path))
    if note:
        log.warning(note)
    if found.kind != kind:
        hint = "train one with discdiff train-classifier" if kind == "classifier" else "train one with discdiff train"
        raise CheckpointError(f"{found.path} holds a {found.kind}, not a {kind}; {hint}")
    return found


def load_network(state: dict, attribute: str, network: torch.nn.Module, use_ema: bool = True) -> None:
    """Load into `network` the weights the training module kept as its `attribute` (`lm` for a
    generator, `classifier` for a classifier), then the EMA weights over them where the checkpoint
    has them and `use_ema`."""
    prefix = f"{attribute}."
    network.load_state_dict({k[len(prefix):]: v for k, v in state["state_dict"].items() if k.startswith(prefix)})
    ema = state["discdiff"].get("ema")
    if use_ema and ema is not None:
        average = EMA(network, ema["decay"])
        average.load_state_dict(ema)
        average.copy_to(network)


def rebuilt(path: Path, build: Callable[[], T]) -> T:
    """`build()` (a network from the checkpoint's configuration and weights), with a failure
    (weights of another shape, a configuration this version cannot read) reported in one line."""
    try:
        return build()
    except Exception as err:
        raise CheckpointError(f"{path} does not match the network its configuration describes "
                              f"(written by another discdiff version?): {first_line(err)}") from None
