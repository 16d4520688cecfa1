"""Lightning's checkpoint I/O for discdiff runs: crash-safe writes and safe reads.

Writes stream to a temporary file that is flushed and renamed over the old one
(`discdiff.files.atomic_path`), and enter the file in the folder's step index. Reads, including
the one that resumes a run, go through `discdiff.checkpoints.read`: tensors and plain containers
only, so a checkpoint cannot run code on the machine that resumes it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .. import checkpoints
from ..files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """See the module docstring."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
        checkpoints.record(path, checkpoint.get("global_step", 0))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """The checkpoint's contents, read as `checkpoints.read` does (whatever `weights_only` asks)."""
        return checkpoints.read(Path(path))

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        checkpoints.forget(Path(path))
