"""Small RDKit helpers for SMILES parsing and molecular properties.

Definitions used throughout ``discdiff``:

* a SMILES string is *valid* when RDKit parses (and sanitizes) it into a
  molecule with at least one atom; empty strings and ``None`` are invalid;
* the *canonical* form is RDKit's canonical isomeric SMILES of that molecule;
* ``qed`` is RDKit's quantitative estimate of drug-likeness
  (:func:`rdkit.Chem.QED.qed`), in ``[0, 1]``;
* ``ring_count`` is the size of RDKit's smallest set of smallest rings
  (``len(Chem.GetSymmSSSR(mol))``).
"""

from __future__ import annotations

from typing import Callable

from rdkit import Chem, RDLogger
from rdkit.Chem import QED

RDLogger.DisableLog("rdApp.*")


def mol_from_smiles(smiles: str | None) -> Chem.Mol | None:
    """Parse ``smiles`` into a sanitized Mol, or ``None`` if it is not valid."""
    if not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def canonical_smiles(smiles: str | None) -> str | None:
    """RDKit canonical SMILES of ``smiles``, or ``None`` if it is not valid."""
    mol = mol_from_smiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def qed(mol: Chem.Mol) -> float:
    """Quantitative estimate of drug-likeness of ``mol``."""
    return float(QED.qed(mol))


def ring_count(mol: Chem.Mol) -> int:
    """Number of rings in the smallest set of smallest rings of ``mol``."""
    return len(Chem.GetSymmSSSR(mol))


PROPERTIES: dict[str, Callable[[Chem.Mol], float]] = {
    "qed": qed,
    "ring_count": ring_count,
}


def properties(smiles: str | None) -> dict | None:
    """Canonical SMILES and all :data:`PROPERTIES` of ``smiles``, or ``None`` if invalid."""
    mol = mol_from_smiles(smiles)
    if mol is None:
        return None
    row: dict = {"canonical": Chem.MolToSmiles(mol)}
    row.update({name: fn(mol) for name, fn in PROPERTIES.items()})
    return row
