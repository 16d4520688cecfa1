"""The loss fused with the output head over chunks of rows (`models.fused_head`) is the unchunked
computation: per-position terms and the gradient of every parameter, for each family and
parameterisation, with and without labels; MDLM's masked rows alone give the same loss."""

from __future__ import annotations

import pytest
import torch

from discdiff.lm import AutoregressiveLM, DiffusionLM
from discdiff.models.dit import DiT
from discdiff.models.fused_head import RowTerms
from discdiff.processes import AbsorbingProcess, UniformProcess
from discdiff.schedules import get_schedule

V, L, B = 29, 12, 5
TINY_CHUNK = 4 * V * 3 / 2**20  # MiB of three fp32 rows of logits: many chunks, the last one short


def _random_rows(seed=0, rows=None):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, L, 16, generator=g, dtype=torch.float64, requires_grad=True)
    linear = torch.nn.Linear(16, V).double()
    with torch.no_grad():
        linear.weight.normal_(0, 0.5, generator=g)
        linear.bias.normal_(0, 0.5, generator=g)
    x0 = torch.randint(V, (B, L), generator=g)
    process = UniformProcess(V)
    alpha = torch.rand(B, 1, generator=g, dtype=torch.float64).expand(B, L)
    xt = process.sample_xt(x0, alpha, g)
    weights = torch.rand(B, L, 2, generator=g, dtype=torch.float64)
    terms = RowTerms(process.training_terms, (x0, xt, alpha, -torch.ones_like(alpha)), weights, rows)
    return features, linear, terms


@pytest.mark.parametrize("select", [False, True], ids=["all rows", "selected rows"])
def test_chunked_rows_equal_the_whole_logits(select):
    """RowTerms.of_features in chunks of 3 rows = the terms of the full logits, and the same
    gradients for the features, the weight and the bias (float64: equal to rounding)."""
    rows = torch.rand(B, L, generator=torch.Generator().manual_seed(1)) < 0.5 if select else None
    features, linear, terms = _random_rows(rows=rows)
    params = [features, linear.weight, linear.bias]
    loss_ref, values_ref = terms.of_logits(linear(features))
    loss, values = terms.with_chunk_mib(TINY_CHUNK).of_features(features, linear)
    assert terms.with_chunk_mib(TINY_CHUNK).rows_per_chunk(V, features.device) == 3
    torch.testing.assert_close(values, values_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-12)
    assert not values.requires_grad
    for got, want in zip(torch.autograd.grad(loss, params), torch.autograd.grad(loss_ref, params)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if select:
        assert torch.all(values[~rows] == 0)


def test_chunked_rows_without_weights_build_no_graph():
    features, linear, terms = _random_rows()
    plain = RowTerms(terms.fn, terms.inputs, None, None, TINY_CHUNK)
    loss, values = plain.of_features(features, linear)
    assert float(loss) == 0 and not loss.requires_grad and not values.requires_grad
    torch.testing.assert_close(values, terms.of_logits(linear(features))[1])


def _dit(num_classes, causal=False, seed=0):
    torch.manual_seed(seed)
    net = DiT(V, L, hidden_size=32, n_blocks=2, n_heads=2, cond_dim=16, dropout=0.0, causal=causal,
              num_classes=num_classes)
    with torch.no_grad():  # away from the zero initialisation, so every parameter gets a gradient
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


FAMILIES = {
    "udlm": lambda net: DiffusionLM(net, UniformProcess(V), get_schedule("loglinear", eps=1e-3), L),
    "mdlm": lambda net: DiffusionLM(net, AbsorbingProcess(V, V - 1), get_schedule("loglinear", eps=1e-3), L),
    "mdlm importance": lambda net: DiffusionLM(net, AbsorbingProcess(V, V - 1), get_schedule("cosine", eps=1e-3), L,
                                               change_of_variables=True),
    "udlm simple ce": lambda net: DiffusionLM(net, UniformProcess(V), get_schedule("loglinear", eps=1e-3), L,
                                              use_simple_ce_loss=True),
    "udlm linear, recon": lambda net: DiffusionLM(net, UniformProcess(V), get_schedule("linear", sigma_min=0.2,
                                                                                      sigma_max=5.0), L),
    "mdlm linear, recon": lambda net: DiffusionLM(net, AbsorbingProcess(V, V - 1),
                                                  get_schedule("linear", sigma_min=0.2, sigma_max=20.0), L),
    "d3pm uniform T=8": lambda net: DiffusionLM(net, UniformProcess(V), get_schedule("cosine", eps=1e-3), L, T=8,
                                                zero_recon_loss=False),
    "d3pm absorb T=8": lambda net: DiffusionLM(net, AbsorbingProcess(V, V - 1, carry_over=False),
                                               get_schedule("cosine", eps=1e-3), L, T=8),
    "ar": lambda net: AutoregressiveLM(net, L, bos_id=0),
}


def _loss_and_grads(family, num_classes, chunk_mib, padded):
    net = _dit(num_classes, causal=family == "ar")
    lm = FAMILIES[family](net)
    lm.head_chunk_mib, lm.loss_on_pad = chunk_mib, not padded
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(V - 1, (B, L), generator=g)
    mask = torch.ones_like(ids)
    if padded:
        mask[:, L - 3:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    cond = None if num_classes is None else torch.randint(num_classes + 1, (B,), generator=g)
    torch.manual_seed(11)
    out = lm.loss(batch, cond)
    grads = torch.autograd.grad(out.loss, list(lm.parameters()))
    return out, dict(zip([n for n, _ in lm.named_parameters()], grads))


@pytest.mark.parametrize("num_classes", [None, 3], ids=["unconditional", "labels"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_language_model_loss_chunked_equals_unchunked(family, num_classes):
    """The training loss, its logged terms and the gradient of every parameter with the head in
    chunks of three rows (MDLM: masked rows only) equal the unchunked computation (fp32)."""
    padded = family in ("mdlm", "ar")
    ref, ref_grads = _loss_and_grads(family, num_classes, 0, padded)
    out, grads = _loss_and_grads(family, num_classes, TINY_CHUNK, padded)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.nll_sum, ref.nll_sum, rtol=1e-5, atol=1e-5)
    for k in ref.terms:
        torch.testing.assert_close(out.terms[k], ref.terms[k], rtol=1e-5, atol=1e-6)
    assert set(grads) == set(ref_grads)
    for name, want in ref_grads.items():
        assert want.abs().sum() > 0 or name.startswith("label_embedding"), f"{name} has no gradient"
        torch.testing.assert_close(grads[name], want, rtol=1e-4, atol=1e-6, msg=name)


def test_chunked_loss_is_deterministic():
    """Two runs of the chunked loss from the same seed: bitwise the same loss and gradients (what
    bitwise resumption needs)."""
    a, ga = _loss_and_grads("udlm", 3, TINY_CHUNK, False)
    b, gb = _loss_and_grads("udlm", 3, TINY_CHUNK, False)
    assert torch.equal(a.loss, b.loss)
    assert all(torch.equal(ga[k], gb[k]) for k in ga)


def test_mdlm_reads_the_masked_rows_only():
    """The head of an MDLM (SUBS) loss sees only the masked positions: unmasked ones contribute 0."""
    net = _dit(None)
    lm = DiffusionLM(net, AbsorbingProcess(V, V - 1), get_schedule("loglinear", eps=1e-3), L)
    seen = []
    net.final.linear.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    ids = torch.randint(V - 1, (B, L), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    lm.loss({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    torch.manual_seed(5)
    t, _ = lm.draw_times(B, ids.device)
    masked = int((lm.process.sample_xt(ids, lm.schedule.alpha(t)) == V - 1).sum())
    assert sum(seen) == masked < B * L


def test_mdlm_masked_rows_equal_all_rows():
    """Leaving the unmasked rows out of the head changes neither the MDLM loss nor any gradient."""
    results = []
    for select in (True, False):
        lm = DiffusionLM(_dit(3), AbsorbingProcess(V, V - 1), get_schedule("loglinear", eps=1e-3), L)
        if not select:
            lm.process.rows_reading_logits = lambda xt: None
        ids = torch.randint(V - 1, (B, L), generator=torch.Generator().manual_seed(0))
        torch.manual_seed(5)
        out = lm.loss({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.tensor([0, 1, 2, 3, 0]))
        results.append((out, torch.autograd.grad(out.loss, list(lm.parameters()))))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(a.terms, b.terms, rtol=1e-6, atol=1e-7)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)
