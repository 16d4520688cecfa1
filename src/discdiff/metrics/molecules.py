"""Molecule metrics (QM9, paper Sec. 5.1, Fig. 3 and Table 8): validity, uniqueness, novelty and
property statistics, defined as the paper's `guidance_eval/qm9_eval.py` computes them.

The paper's definitions (the default columns), for N generated strings:

* a sample is **valid** when RDKit parses it into a non-empty molecule
  (`discdiff.chem.mol_from_smiles`); duplicates count each time. The string is the decoded
  sample with every special token dropped wherever it stands (the paper removes ``<bos>``,
  ``<eos>`` and ``<pad>`` from the decoded text);
* **unique**: the distinct valid *strings* (not canonicalised);
* **novel**: the distinct valid strings that are not, as written, among the training set's
  canonical SMILES (a non-canonical spelling of a training molecule counts as novel);
* fractions: ``valid_frac`` = valid / N (the paper's "Valid"), ``unique_frac`` / ``novel_frac``
  = count / N (the counts of the paper's Fig. 3, per sample), ``unique_of_valid`` /
  ``novel_of_valid`` = count / valid (the paper's CSV columns "Unique", "Novel"); NaN when the
  denominator is 0;
* property statistics ``{prop}_{group}_{stat}`` (stat: mean, median, q25, q75; numpy's linear
  percentiles; NaN for an empty group): group ``valid`` is every valid sample, duplicates
  included; group ``novel`` is one molecule per novel string.

Beside them, under their own names:

* ``unique_canonical`` / ``novel_canonical`` (and ``_frac``): the same counts over canonical
  SMILES, so two spellings of one molecule count once and a training molecule never counts as
  novel;
* the **strict decoding** (`strict_smiles`): a sample is cut at its first end or padding token
  and is invalid when a special token stands among its atoms; ``valid_strict``,
  ``unique_strict``, ``novel_strict``, their fractions and ``{prop}_{valid|novel}_strict_{stat}``
  apply the paper's definitions to those strings. MDLM samples often carry padding between atoms,
  which the paper's decoding silently joins into a molecule.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from typing import Optional

import numpy as np
from rdkit import Chem

from ..chem import PROPERTIES, mol_from_smiles

STATS = ("mean", "median", "q25", "q75")
DEFAULT_PROPERTIES = ("qed", "ring_count")


def fraction(count: int, total: int) -> float:
    """count / total, NaN for total 0."""
    return count / total if total else math.nan


def statistics(values: Sequence[float]) -> dict[str, float]:
    """Mean, median and 25th / 75th percentiles (numpy's linear interpolation); NaN when empty."""
    if not len(values):
        return dict.fromkeys(STATS, math.nan)
    arr = np.asarray(values, dtype=float)
    q25, median, q75 = np.percentile(arr, [25, 50, 75])
    return {"mean": float(arr.mean()), "median": float(median), "q25": float(q25), "q75": float(q75)}


def check_properties(properties: Iterable[str]) -> tuple[str, ...]:
    """The property names, refused in one line when one is not in `discdiff.chem.PROPERTIES`."""
    properties = tuple(properties)
    unknown = [p for p in properties if p not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; known: {sorted(PROPERTIES)}")
    return properties


def property_values(mols: Iterable[Chem.Mol], properties: Iterable[str]) -> dict[str, list[float]]:
    """{property: its value for each molecule}."""
    mols = list(mols)
    return {prop: [PROPERTIES[prop](m) for m in mols] for prop in properties}


def strict_smiles(tokens: Sequence[str], special: Collection[str], ends: Collection[str],
                  bos: Optional[str] = None) -> Optional[str]:
    """The strict decoding of one sample given as its token strings (L,): a leading `bos` is
    skipped, the sample is cut before its first token of `ends` (end of sequence, padding), and the
    tokens before the cut are joined; None (invalid) when one of them is in `special`."""
    body = list(tokens[1:] if bos is not None and len(tokens) and tokens[0] == bos else tokens)
    cut = next((i for i, tok in enumerate(body) if tok in ends), len(body))
    kept = body[:cut]
    return None if any(tok in special for tok in kept) else "".join(kept)


def valid_molecules(samples: Sequence[Optional[str]]) -> list[tuple[str, Chem.Mol]]:
    """(string, molecule) of every valid sample, in order, duplicates kept (None: invalid)."""
    parsed = ((s, mol_from_smiles(s)) for s in samples)
    return [(s, mol) for s, mol in parsed if mol is not None]


def _group(values: dict[str, list[float]], group: str) -> dict[str, float]:
    return {f"{prop}_{group}_{k}": v for prop, vals in values.items() for k, v in statistics(vals).items()}


def _paper_columns(samples: Sequence[Optional[str]], train_canonical: Collection[str],
                   properties: tuple[str, ...], suffix: str = "") -> dict:
    """valid / unique / novel, their fractions and property statistics (module docstring), each
    count's name followed by `suffix` (valid_strict, valid_strict_frac, qed_novel_strict_mean)."""
    n, valid = len(samples), valid_molecules(samples)
    unique = {s: mol for s, mol in valid}
    novel = {s: mol for s, mol in unique.items() if s not in train_canonical}
    row = {}
    for name, count in (("valid", len(valid)), ("unique", len(unique)), ("novel", len(novel))):
        row[f"{name}{suffix}"], row[f"{name}{suffix}_frac"] = count, fraction(count, n)
    row[f"unique{suffix}_of_valid"] = fraction(len(unique), len(valid))
    row[f"novel{suffix}_of_valid"] = fraction(len(novel), len(valid))
    row.update(_group(property_values((m for _, m in valid), properties), f"valid{suffix}"))
    row.update(_group(property_values(novel.values(), properties), f"novel{suffix}"))
    return row


def canonical_counts(samples: Sequence[Optional[str]], train_canonical: Collection[str]) -> dict:
    """unique_canonical / novel_canonical: distinct canonical SMILES of the valid samples, and those
    not in the training set, with their fractions of all samples."""
    n = len(samples)
    unique = {Chem.MolToSmiles(mol) for _, mol in valid_molecules(samples)}
    novel = unique - set(train_canonical)
    return {"unique_canonical": len(unique), "novel_canonical": len(novel),
            "unique_canonical_frac": fraction(len(unique), n), "novel_canonical_frac": fraction(len(novel), n)}


def molecule_metrics(samples: Sequence[str], train_canonical: Collection[str],
                     properties: Iterable[str] = DEFAULT_PROPERTIES,
                     strict: Optional[Sequence[Optional[str]]] = None) -> dict:
    """The paper's QM9 columns for the decoded `samples` against the training set's canonical
    SMILES, with the canonical alternatives beside them and, given `strict` (one strict decoding per
    sample, `strict_smiles`, None where invalid), the ``*_strict`` columns (module docstring)."""
    properties = check_properties(properties)
    if strict is not None and len(strict) != len(samples):
        raise ValueError(f"{len(strict)} strict decodings for {len(samples)} samples")
    train = train_canonical if isinstance(train_canonical, (set, frozenset)) else set(train_canonical)
    row = {"num_samples": len(samples), **_paper_columns(samples, train, properties),
           **canonical_counts(samples, train)}
    if strict is not None:
        row.update(_paper_columns(strict, train, properties, "_strict"))
    return row


def novel_molecules(samples: Sequence[Optional[str]], train_canonical: Collection[str]) -> list[Chem.Mol]:
    """One molecule per novel string (the paper's novel group)."""
    unique = dict(valid_molecules(samples))
    return [mol for s, mol in unique.items() if s not in train_canonical]


def reference_row(values: dict[str, list[float]]) -> dict:
    """A dataset's own row: its size and ``{prop}_valid_{stat}`` of its molecules' property values
    (every molecule valid, unique and novel, as the paper's data row)."""
    n = len(next(iter(values.values()), []))
    return {"num_samples": n, "valid": n, **_group(values, "valid")}
