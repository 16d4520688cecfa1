"""Molecules (QM9, paper Sec. 5.1): validity, uniqueness, novelty and the property statistics of
`molecule_metrics.qm9_metrics`, against the model's training molecules.

eval qm9 writes qm9_metrics.csv / .json (rows `samples` and `data`, the training set's own
statistics), qed_hist.png (QED of the novel molecules against the training set) and
molecules.png (the first valid ones). The study plots novel valid molecules (fraction of
samples) against the mean property (`study.property`: qed or ring_count) of the novel ones.
"""

from __future__ import annotations

from pathlib import Path

from ...config import ConfigError
from ...data.qm9 import qm9_train_table
from ..molecule_metrics import (
    DEFAULT_PROPERTIES,
    draw_molecule_grid,
    plot_property_histogram,
    property_row,
    property_values,
    qm9_metrics,
    split_samples,
)
from ..samples import Samples
from .base import Axis, Context, Domain, fmt, without


class Molecules(Domain):
    name, command, table = "molecules", "qm9", "qm9_metrics"
    title = "QM9 guidance"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        prop = ctx.cfg.study.property
        if prop not in DEFAULT_PROPERTIES:
            raise ConfigError(f"study.property={prop} is not a QM9 property; allowed: {', '.join(DEFAULT_PROPERTIES)}")
        self.prop = prop
        self.x = Axis("novel_frac", "novel valid molecules (fraction of samples)")
        self.y = Axis(f"{prop}_novel_mean", f"mean {prop} of novel molecules")
        train = qm9_train_table(ctx.data)
        self.train_smiles = set(train["canonical"])
        self.train_properties = {p: train[p].tolist() for p in DEFAULT_PROPERTIES}

    def _data_row(self) -> dict:
        n = len(self.train_properties[DEFAULT_PROPERTIES[0]])
        return property_row(n, n, self.train_properties)

    def evaluate(self, samples: Samples, out_dir: Path, provenance: dict) -> tuple[list[dict], list[Path]]:
        rows = [{"row": "samples", **self.score(samples)}, {"row": "data", **self._data_row()}]
        novel = split_samples(samples.texts, self.train_smiles)[2]
        pictures = [plot_property_histogram(property_values(novel.values(), ["qed"])["qed"],
                                            self.train_properties["qed"], out_dir / "qed_hist.png")]
        if rows[0]["valid"]:
            pictures.append(draw_molecule_grid(samples.texts, out_dir / "molecules.png"))
        return rows, pictures

    def score(self, samples: Samples) -> dict:
        return qm9_metrics(samples.texts, self.train_smiles)

    def printed(self, rows: list[dict]) -> dict:
        return without(rows[0], "row")

    def reference(self) -> dict:
        return {"model": "data", "method": "data", **self._data_row()}

    def summary(self, row: dict) -> str:
        return (f"{row['valid']} valid, {row['novel']} novel of {row['num_samples']}, mean {self.prop} of novel "
                f"{fmt(row[self.y.column])}")

    @property
    def shown(self) -> tuple[str, ...]:
        return "valid", "unique", "novel", self.y.column
