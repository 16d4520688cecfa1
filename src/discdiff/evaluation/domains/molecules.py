"""Molecules (QM9, paper Sec. 5.1): validity, uniqueness, novelty and the property statistics of
`discdiff.metrics.molecules`, against the model's training molecules, as the paper's defines
them, with the canonical counts and, when the samples' token ids are known (sampled now, or a
file with `token_ids` and the model), the strict decoding's columns beside them.

eval qm9 writes qm9_metrics.csv / .json (rows `samples` and `data`, the training set's own
statistics), qed_hist.png (QED of the novel molecules against the training set) and
molecules.png (the first valid ones). The study plots novel valid molecules (fraction of
samples) against the mean property (`study.property`: qed or ring_count) of the novel ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...config import ConfigError
from ...data.qm9 import qm9_train_table
from ...metrics.molecules import (
    DEFAULT_PROPERTIES,
    molecule_metrics,
    novel_molecules,
    property_values,
    reference_row,
    strict_smiles,
)
from ..pictures import draw_molecule_grid, plot_property_histogram
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

    def steps_axes(self) -> tuple[Axis, ...]:
        """Valid molecules and the property of the novel ones."""
        return (Axis("valid_frac", "valid molecules (fraction of samples)"), self.y)

    def _data_row(self) -> dict:
        return reference_row(self.train_properties)

    def _strict(self, samples: Samples) -> Optional[list[Optional[str]]]:
        """The strict decoding of each sample (None where it is invalid); None without token ids."""
        if samples.tokens is None or self.ctx.pipe is None:
            return None
        tok = self.ctx.pipe.tokenizer
        special = {tok.vocab[i] for i in tok.special_ids}
        ends = {tok.vocab[tok.eos_id], tok.vocab[tok.pad_id]}
        return [strict_smiles([tok.vocab[i] for i in row], special, ends, tok.vocab[tok.bos_id])
                for row in samples.tokens.tolist()]

    def evaluate(self, samples: Samples, out_dir: Path, provenance: dict) -> tuple[list[dict], list[Path]]:
        rows = [{"row": "samples", **self.score(samples)}, {"row": "data", **self._data_row()}]
        novel = novel_molecules(samples.texts, self.train_smiles)
        pictures = [plot_property_histogram(property_values(novel, ["qed"])["qed"],
                                            self.train_properties["qed"], out_dir / "qed_hist.png")]
        if rows[0]["valid"]:
            pictures.append(draw_molecule_grid(samples.texts, out_dir / "molecules.png"))
        return rows, pictures

    def score(self, samples: Samples) -> dict:
        return molecule_metrics(samples.texts, self.train_smiles, strict=self._strict(samples))

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
