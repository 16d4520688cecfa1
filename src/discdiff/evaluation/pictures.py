"""The pictures evaluations write: molecule grids and property histograms (QM9), image grids
(images). Pictures only; the numbers are `discdiff.metrics`."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from rdkit import Chem
from rdkit.Chem import Draw

from ..chem import PROPERTIES, mol_from_smiles
from ..files import atomic_path
from ..metrics.images import as_numpy, checked_images
from ..metrics.molecules import check_properties


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
        check_properties([legends])
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


def class_rows(classes, per_class: int) -> list[list[int]]:
    """Grid rows for save_grid: per class present in `classes` (ascending), the indices of its
    first `per_class` samples."""
    arr = as_numpy(classes)
    return [np.flatnonzero(arr == k)[:per_class].tolist() for k in np.unique(arr)]


def save_grid(images, path, rows: Sequence[Sequence[int]] | None = None, pad: int = 2) -> Path:
    """Write uint8 images (N, H, W, C), C = 1 (grey) or 3 (RGB), as one PNG grid, atomically.

    `rows` lists the image indices of each row (e.g. class_rows: one row per class); None lays
    all images out in ceil(sqrt(N)) columns. Images are separated and framed by `pad` white
    pixels: the PNG is cols * (W + pad) + pad wide and len(rows) * (H + pad) + pad high."""
    arr = checked_images(images)
    n, h, w, c = arr.shape
    if c not in (1, 3):
        raise ValueError(f"grids take grey (C=1) or RGB (C=3) images, got C={c}")
    if rows is None:
        cols = math.ceil(math.sqrt(n))
        rows = [list(range(start, min(start + cols, n))) for start in range(0, n, cols)]
    cols = max((len(r) for r in rows), default=0)
    if not cols:
        raise ValueError("the grid has no images")
    canvas = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, index in enumerate(row):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            canvas[top:top + h, left:left + w] = arr[index]
    picture = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return Path(path)
