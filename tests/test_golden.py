"""Golden results: what tiny seeded AR, MDLM and UDLM models draw (unguided, with D-CFG, with D-CBG
exact and first order) and the NELBO they give a fixed batch, recorded in tests/golden/models.json.

A refactor must leave every one of these unchanged: the token ids exactly, the NELBOs within
float rounding. After a deliberate change of behaviour, record them again with
`DISCDIFF_RECORD_GOLDEN=1 pytest tests/test_golden.py` and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from discdiff.config import compose
from discdiff.factory import build_language_model
from discdiff.guidance import CBG, CFG
from discdiff.models import SequenceClassifier, build_encoder

GOLDEN = Path(__file__).parent / "golden" / "models.json"
RECORD = bool(os.environ.get("DISCDIFF_RECORD_GOLDEN"))
VOCAB, MASK, BOS, LENGTH = 11, 10, 0, 10
TINY = ["model=micro", "model.n_blocks=1", "model.hidden_size=32", "model.n_heads=2", "model.cond_dim=16",
        f"data.length={LENGTH}", "data.label_col=qed", "model.dropout=0.0"]
FAMILIES = ("ar", "mdlm", "udlm")


def _randomise(module: torch.nn.Module, seed: int, std: float) -> torch.nn.Module:
    """Every parameter drawn from N(0, std^2), in the order of their names (the zero-initialised
    heads of a fresh model would make every draw uniform)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=generator) * std)
    return module.eval()


def _model(algo: str):
    cfg = compose([f"algo={algo}", *TINY])
    return _randomise(build_language_model(cfg, vocab_size=VOCAB, mask_id=MASK, bos_id=BOS), seed=1, std=0.15)


def _classifier():
    encoder = build_encoder("micro", VOCAB, LENGTH, time_conditioning=True, dropout=0.0)
    return _randomise(SequenceClassifier(encoder, 2), seed=2, std=0.5)


def _draw(lm, **options) -> list[list[int]]:
    out = lm.sample(6, 8, generator=torch.Generator().manual_seed(3), **options)
    return out.tokens.tolist()


def _results() -> dict:
    batch = torch.randint(0, MASK, (4, LENGTH), generator=torch.Generator().manual_seed(4))
    batch[:, 0] = BOS
    labels = torch.tensor([0, 1, 0, 1])
    classifier = _classifier()
    found = {}
    for algo in FAMILIES:
        lm = _model(algo)
        torch.manual_seed(5)
        found[f"{algo}/nelbo"] = lm.nelbo(batch, labels).tolist()
        found[f"{algo}/unguided"] = _draw(lm)
        found[f"{algo}/label"] = _draw(lm, cond=torch.ones(6, dtype=torch.long))
        found[f"{algo}/cfg"] = _draw(lm, guidance=CFG(2.0, 1, null_class=2))
        if algo != "ar":
            found[f"{algo}/cbg"] = _draw(lm, guidance=CBG(classifier, 2.0, 0))
            found[f"{algo}/cbg_first_order"] = _draw(lm, guidance=CBG(classifier, 2.0, 0, first_order=True))
    return found


@pytest.fixture(scope="module")
def results() -> dict:
    return _results()


@pytest.fixture(scope="module")
def golden(results) -> dict:
    if RECORD:
        GOLDEN.parent.mkdir(exist_ok=True)
        lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in results.items())
        GOLDEN.write_text("{\n" + lines + "\n}\n")
    return json.loads(GOLDEN.read_text())


def test_the_recorded_results_cover_every_family_and_method(golden):
    assert len(golden) == 3 * 4 + 2 * 2
    draws = [v for k, v in golden.items() if not k.endswith("nelbo")]
    assert all(len(rows) == 6 and all(len(r) == LENGTH for r in rows) for rows in draws)
    assert len({json.dumps(v) for v in draws}) == len(draws)  # every method draws something else


@pytest.mark.parametrize("key", [f"{a}/{m}" for a in FAMILIES for m in ("unguided", "label", "cfg")] +
                         [f"{a}/{m}" for a in ("mdlm", "udlm") for m in ("cbg", "cbg_first_order")])
def test_draws_are_unchanged(results, golden, key):
    assert results[key] == golden[key]


@pytest.mark.parametrize("algo", FAMILIES)
def test_nelbo_is_unchanged(results, golden, algo):
    assert results[f"{algo}/nelbo"] == pytest.approx(golden[f"{algo}/nelbo"], rel=1e-5)
