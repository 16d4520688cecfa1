"""Tests for discdiff.chem: SMILES validity, canonicalisation and properties."""

import pytest

from discdiff import chem


@pytest.mark.parametrize("smiles", ["", None, "C1CC", "xyz", "C(C", "c1cccc1"])
def test_invalid_smiles_give_none(smiles):
    assert chem.mol_from_smiles(smiles) is None
    assert chem.canonical_smiles(smiles) is None
    assert chem.properties(smiles) is None


@pytest.mark.parametrize("smiles", ["CCO", "c1ccccc1", "[Na+].[Cl-]", "N#N"])
def test_valid_smiles_parse(smiles):
    mol = chem.mol_from_smiles(smiles)
    assert mol is not None and mol.GetNumAtoms() > 0


def test_canonical_smiles_is_order_independent():
    assert chem.canonical_smiles("OCC") == chem.canonical_smiles("CCO") == "CCO"
    assert chem.canonical_smiles("C1=CC=CC=C1") == "c1ccccc1"


def test_known_property_values():
    benzene = chem.mol_from_smiles("c1ccccc1")
    ethanol = chem.mol_from_smiles("CCO")
    naphthalene = chem.mol_from_smiles("c1ccc2ccccc2c1")
    assert chem.qed(benzene) == pytest.approx(0.4426, abs=1e-3)
    assert chem.qed(ethanol) == pytest.approx(0.4068, abs=1e-3)
    assert chem.ring_count(benzene) == 1
    assert chem.ring_count(ethanol) == 0
    assert chem.ring_count(naphthalene) == 2
    assert isinstance(chem.qed(benzene), float)


def test_properties_row():
    row = chem.properties("C1=CC=CC=C1")
    assert set(row) == {"canonical", "qed", "ring_count"}
    assert row["canonical"] == "c1ccccc1"
    assert row["ring_count"] == 1
    assert row["qed"] == pytest.approx(0.4426, abs=1e-3)


def test_property_registry():
    assert set(chem.PROPERTIES) == {"qed", "ring_count"}
    mol = chem.mol_from_smiles("c1ccccc1")
    assert chem.PROPERTIES["ring_count"](mol) == 1
    assert chem.PROPERTIES["qed"](mol) == chem.qed(mol)
