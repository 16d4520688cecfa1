"""The shape of an evaluation domain (`Domain`) and what it is built from (`Context`); the plug-ins
and their registry are in `discdiff.evaluation.domains`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from ...loading import Pipeline
from ..oracle import Oracle
from ..samples import Samples, configured_target


@dataclass(frozen=True)
class Axis:
    column: str
    label: str


@dataclass
class Context:
    """What a domain is built from: the model's `data` section, the command's configuration, the
    device to score on, the evaluation classifier (None: none), the model (None when a file of
    samples is scored without it) and the samples' length (sampling.length where set, for
    semi-autoregressive samples, else the generator's data.length; None: unknown)."""

    data: DictConfig
    cfg: DictConfig
    device: str
    oracle: Optional[Oracle] = None
    pipe: Optional[Pipeline] = None
    length: Optional[int] = None


class Domain(ABC):
    """One kind of data's evaluation (module docstring). Class attributes: `command` (eval
    <command>), `table` (eval writes out_dir/<table>.csv and .json), `samples_file` (the samples
    eval draws, in out_dir), `title` and the study plot's axes `x` / `y`; `needs_tokens` and
    `needs_targets`: whether a samples file must carry token ids / a target class per sample."""

    name: str
    command: str
    table: str
    samples_file: str = "samples.json"
    title: str
    x: Axis
    y: Axis
    needs_tokens = False
    needs_targets = False
    #: what the guidance study scores with its evaluation classifier (None: it needs none)
    oracle_scores: Optional[str] = None

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def steps_axes(self) -> tuple[Axis, ...]:
        """The scores the study plots against sampling steps (study.steps): by default x and y."""
        return (self.x, self.y)

    def targets(self) -> list[Optional[int]]:
        """The classes `eval <command>` steers toward when it samples now, each in turn (None: no
        target): by default the one of the guidance and sampling options."""
        return [configured_target(self.ctx.cfg)]

    def check_targets(self, classes: list[int]) -> None:
        """Refuse target classes this domain cannot score (before anything is sampled)."""

    def prepare(self) -> None:
        """Load what scoring needs and may refuse (a judge, Inception weights), once the cheap
        checks have passed and before anything is sampled."""

    @abstractmethod
    def evaluate(self, samples: Samples, out_dir: Path, provenance: dict) -> tuple[list[dict], list[Path]]:
        """eval <command>: the rows of its table, and the other files written to `out_dir`
        (pictures, per-sample scores). `provenance`: where the samples came from."""

    @abstractmethod
    def score(self, samples: Samples) -> dict:
        """The columns of one guidance-study setting's row."""

    def printed(self, rows: list[dict]) -> dict | list[dict]:
        """What eval <command> prints: a table of rows, or one row as JSON."""
        return rows

    def reference(self) -> Optional[dict]:
        """The study table's reference row (the data's own statistics), if the domain has one."""
        return None

    @property
    def shown(self) -> tuple[str, ...]:
        """The columns printed after a study sweep (besides gamma, seed, num_samples)."""
        return self.x.column, self.y.column

    def summary(self, row: dict) -> str:
        """The progress line of one study setting."""
        return f"{self.x.column} {fmt(row.get(self.x.column))}, {self.y.column} {fmt(row.get(self.y.column))}"


def fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def without(row: dict, *keys: str) -> dict:
    """`row` less `keys` (a table row's labels, for a study row)."""
    return {k: v for k, v in row.items() if k not in keys}
