"""DNA (Species10, paper Sec. 5.2): against the real validation windows of each target species,
the 3-mer and 6-mer Jensen-Shannon distances, the real-vs-generated discriminator AUROC (the
paper's neural one, of `eval.discriminator`, and the fast k-mer one beside it), and the evaluation
classifier's accuracy, macro F1 over all its classes and MCC with the target species as truth
(`discdiff.metrics.dna.species_metrics`).

eval species writes species.csv / .json: one row per target species, then the `all` row. The
study plots the 6-mer distance against the evaluation classifier's macro F1: the paper's
trade-off of guidance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...data.dna import check_species, real_windows
from ...metrics.dna import DiscriminatorRecipe, species_metrics
from ..samples import Samples
from .base import Axis, Context, Domain, without


class DNA(Domain):
    name, command, table, samples_file = "dna", "species", "species", "species_samples.json"
    title = "Species guidance"
    x = Axis("js_6mer", "6-mer JS distance to real windows of the target species")
    y = Axis("oracle_f1_macro", "macro F1 of the evaluation classifier (target species as truth)")
    needs_tokens = needs_targets = True
    oracle_scores = "the species study scores the target species"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.real = real_windows(ctx.data)

    def targets(self) -> list[Optional[int]]:
        """study.conditions, else every species that has real validation windows."""
        return [int(c) for c in (self.ctx.cfg.study.conditions or sorted(self.real))]

    def check_targets(self, classes: list[int]) -> None:
        check_species(classes, self.real, self.ctx.data)

    def _rows(self, samples: Samples) -> list[dict]:
        generated, predicted = samples.by_class()
        encoder = self.ctx.cfg.eval.discriminator
        recipe = None if encoder == "none" else DiscriminatorRecipe(encoder=encoder)
        oracle = self.ctx.oracle
        return species_metrics(generated, self.real, predicted, num_classes=None if oracle is None else oracle.num_classes,
                               seed=self.ctx.cfg.seed, recipe=recipe, device=self.ctx.device)

    def evaluate(self, samples: Samples, out_dir: Path, provenance: dict) -> tuple[list[dict], list[Path]]:
        return self._rows(samples), []

    def score(self, samples: Samples) -> dict:
        return without(self._rows(samples)[-1], "class")

    @property
    def shown(self) -> tuple[str, ...]:
        return "js_3mer", "js_6mer", "auroc", "oracle_f1_macro", "oracle_mcc"
