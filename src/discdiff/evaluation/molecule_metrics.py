"""Molecule metrics (QM9): validity, uniqueness, novelty and property statistics, pictures.

Definitions (all counts are over the ``num_samples`` generated strings and
every ``*_frac`` is that count divided by ``num_samples``; NaN if there are
no samples):

* ``valid``: samples that RDKit parses into a non-empty molecule
  (:func:`discdiff.chem.mol_from_smiles`); duplicates are counted each time;
* ``unique``: distinct canonical SMILES among the valid samples;
* ``novel``: distinct canonical SMILES among the valid samples that are not
  in the training set (``train_smiles`` must hold canonical SMILES). As in
  Schiff et al. (2024), novel molecules are therefore also unique.

Property statistics (``{prop}_{group}_{stat}`` with ``stat`` one of ``mean``,
``median``, ``q25``, ``q75``; percentiles use linear interpolation) are NaN
for an empty group:

* ``valid`` group: every valid sample, duplicates included (the sampled
  distribution);
* ``novel`` group: one molecule per novel canonical SMILES;
* a dataset's reference row (:func:`property_row`) uses the ``valid`` group over the
  dataset's molecules.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from rdkit import Chem
from rdkit.Chem import Draw

from ..chem import PROPERTIES, mol_from_smiles
from ..files import atomic_path

STATS = ("mean", "median", "q25", "q75")
DEFAULT_PROPERTIES = ("qed", "ring_count")


def _frac(count: int, total: int) -> float:
    return count / total if total else math.nan


def _stats(values: list[float]) -> dict[str, float]:
    """Mean, median and 25th/75th percentiles of ``values`` (NaN when empty)."""
    if not values:
        return dict.fromkeys(STATS, math.nan)
    arr = np.asarray(values, dtype=float)
    q25, median, q75 = np.percentile(arr, [25, 50, 75])
    return {"mean": float(arr.mean()), "median": float(median),
            "q25": float(q25), "q75": float(q75)}


def property_values(mols: Iterable[Chem.Mol], properties: Iterable[str]) -> dict[str, list[float]]:
    """{property: its value for each molecule}."""
    mols = list(mols)
    return {prop: [PROPERTIES[prop](m) for m in mols] for prop in properties}


def _group_stats(values: dict[str, list[float]], group: str) -> dict[str, float]:
    """``{prop}_{group}_{stat}`` statistics for each property's values."""
    return {f"{prop}_{group}_{k}": v
            for prop, vals in values.items() for k, v in _stats(vals).items()}


def _check_properties(properties: Iterable[str]) -> tuple[str, ...]:
    properties = tuple(properties)
    unknown = [p for p in properties if p not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; known: {sorted(PROPERTIES)}")
    return properties


def split_samples(samples: list[str], train_smiles: set[str]
                  ) -> tuple[list[Chem.Mol], dict[str, Chem.Mol], dict[str, Chem.Mol]]:
    """Valid Mols (one per valid sample), and unique / novel Mols keyed by canonical SMILES."""
    valid, unique = [], {}
    for smiles in samples:
        mol = mol_from_smiles(smiles)
        if mol is not None:
            valid.append(mol)
            unique.setdefault(Chem.MolToSmiles(mol), mol)
    novel = {s: m for s, m in unique.items() if s not in train_smiles}
    return valid, unique, novel


def _samples_row(num_samples: int, valid: list[Chem.Mol], unique: dict, novel: dict,
                 properties: tuple[str, ...]) -> dict:
    n = num_samples
    row = {"num_samples": n, "valid": len(valid), "unique": len(unique), "novel": len(novel),
           "valid_frac": _frac(len(valid), n), "unique_frac": _frac(len(unique), n),
           "novel_frac": _frac(len(novel), n)}
    row.update(_group_stats(property_values(valid, properties), "valid"))
    row.update(_group_stats(property_values(novel.values(), properties), "novel"))
    return row


def qm9_metrics(samples: list[str], train_smiles: set[str],
                properties: Iterable[str] = DEFAULT_PROPERTIES) -> dict:
    """Validity, uniqueness, novelty and property statistics of ``samples``.

    See the module docstring for the exact definitions. Keys: ``num_samples``,
    ``valid``, ``unique``, ``novel``, their ``*_frac`` and
    ``{prop}_{valid|novel}_{mean|median|q25|q75}`` for each property.
    """
    properties = _check_properties(properties)
    return _samples_row(len(samples), *split_samples(samples, train_smiles), properties)


def property_row(num_smiles: int, num_valid: int, values: dict[str, list[float]]) -> dict:
    """A reference row: counts and ``{prop}_valid_{stat}`` statistics of given property values."""
    return {"num_samples": num_smiles, "valid": num_valid, **_group_stats(values, "valid")}


def _legend(prop: str, mol: Chem.Mol) -> str:
    value = PROPERTIES[prop](mol)
    return f"{prop} {value:.3f}" if isinstance(value, float) else f"{prop} {value}"


def draw_molecule_grid(smiles: list[str], path: str | os.PathLike, n: int = 24,
                       per_row: int = 6, legends: str | None = "qed",
                       sub_img_size: tuple[int, int] = (200, 200)) -> Path:
    """Draw the first ``n`` valid molecules of ``smiles`` as a PNG grid.

    ``legends`` names a property from :data:`discdiff.chem.PROPERTIES` shown
    under each molecule (``None`` for no legends). The image is
    ``per_row * width`` wide and ``ceil(k / per_row) * height`` tall for the
    ``k <= n`` molecules drawn. Raises ``ValueError`` if none is valid.
    """
    mols = [m for m in map(mol_from_smiles, smiles) if m is not None][:n]
    if not mols:
        raise ValueError("draw_molecule_grid: no valid molecules to draw")
    labels = None
    if legends is not None:
        _check_properties([legends])
        labels = [_legend(legends, m) for m in mols]
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=sub_img_size,
                                 legends=labels)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def _bins(values: np.ndarray, count: int = 30) -> np.ndarray:
    """Unit-width bins centred on integers for integer data, else ``count`` equal bins
    over the data range (widened by 0.5 each side when all values are equal)."""
    if np.all(values == np.round(values)):
        return np.arange(values.min() - 0.5, values.max() + 1.5)
    lo, hi = values.min(), values.max()
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, count + 1)


def plot_property_histogram(samples_props: list[float], data_props: list[float],
                            path: str | os.PathLike, prop: str = "qed") -> Path:
    """PNG histogram (densities on shared bins) of ``prop`` for novel samples vs the dataset."""
    from matplotlib.figure import Figure  # heavy, only for a picture; object API: no pyplot state, Agg rendering

    samples_arr = np.asarray(samples_props, dtype=float)
    data_arr = np.asarray(data_props, dtype=float)
    both = np.concatenate([samples_arr, data_arr])
    if both.size == 0:
        raise ValueError("plot_property_histogram: no values to plot")
    bins = _bins(both)
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.hist(data_arr, bins=bins, density=bool(data_arr.size), alpha=0.5,
            label=f"data (n={data_arr.size})")
    ax.hist(samples_arr, bins=bins, density=bool(samples_arr.size), alpha=0.5,
            label=f"novel samples (n={samples_arr.size})")
    ax.set_xlabel(prop)
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
