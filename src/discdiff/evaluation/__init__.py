"""Evaluation of generated samples."""

from discdiff.evaluation.qm9 import (
    data_reference_row,
    draw_molecule_grid,
    evaluate_qm9_samples,
    load_samples,
    plot_property_histogram,
    qm9_metrics,
    split_samples,
    write_metrics,
)

__all__ = [
    "data_reference_row",
    "draw_molecule_grid",
    "evaluate_qm9_samples",
    "load_samples",
    "plot_property_histogram",
    "qm9_metrics",
    "split_samples",
    "write_metrics",
]
