"""DiT backbone: shapes, conditioning, adaLN-zero init, causality, KV cache."""

import pytest
import torch

from discdiff.models import MODEL_SIZES, DiT, build_backbone, flops_per_token

V, L, B = 40, 16, 3


def small_dit(**kw) -> DiT:
    args = dict(hidden_size=32, n_blocks=2, n_heads=4, cond_dim=16, dropout=0.0)
    args.update(kw)
    return DiT(V, L, **args)


def randomized(model: DiT, seed: int = 0) -> DiT:
    """Perturb every parameter so the zero-initialised paths are active."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def tokens(seed=0, batch=B, length=L):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("num_classes", [None, 3])
def test_forward_shapes(causal, num_classes):
    model = randomized(small_dit(causal=causal, num_classes=num_classes))
    cond = None if num_classes is None else torch.tensor([0, 1, 3])
    logits, hidden = model(tokens(), torch.rand(B), cond, return_hidden=True)
    assert logits.shape == (B, L, V) and hidden.shape == (B, L, 32)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_inputs_embeds_and_onehot_match_token_path():
    model = randomized(small_dit(num_classes=2))
    x, sigma, cond = tokens(), torch.rand(B), torch.tensor([0, 1, 2])
    ref = model(x, sigma, cond)
    torch.testing.assert_close(model(None, sigma, cond, inputs_embeds=model.embed(x)), ref)
    onehot = torch.nn.functional.one_hot(x, V).float()
    embeds = onehot @ model.token_embedding.weight
    torch.testing.assert_close(model(sigma=sigma, cond=cond, inputs_embeds=embeds), ref)
    with pytest.raises(ValueError):
        model(x, sigma, inputs_embeds=embeds)


def test_head_recomputes_logits_from_hidden():
    model = randomized(small_dit(num_classes=2))
    x, sigma, cond = tokens(), torch.rand(B), torch.tensor([0, 1, 2])
    logits, hidden = model(x, sigma, cond, return_hidden=True)
    torch.testing.assert_close(model.head(hidden, sigma, cond), logits)
    delta = torch.zeros_like(hidden, requires_grad=True)
    perturbed = model.head(hidden.detach() + delta, sigma, cond)
    perturbed.logsumexp(-1).sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    assert not torch.allclose(model.head(hidden + 1.0, sigma, cond), logits)


def test_adaln_zero_init_then_one_step_breaks_symmetry():
    torch.manual_seed(0)
    model = small_dit(num_classes=2)
    x1, x2 = tokens(1), tokens(2)
    out = model(x1, torch.rand(B))
    assert torch.count_nonzero(out) == 0
    assert torch.equal(model(x2, torch.rand(B)), out)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, V), x1.reshape(-1))
    loss.backward()
    opt.step()
    assert not torch.allclose(model(x1, torch.zeros(B)), model(x2, torch.zeros(B)))


def test_causal_masking():
    model = randomized(small_dit(causal=True))
    x = tokens()
    y = x.clone()
    y[:, 10] = (y[:, 10] + 1) % V
    a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    bidir = randomized(small_dit(causal=False))
    assert not torch.allclose(bidir(x)[:, :10], bidir(y)[:, :10])


def test_time_conditioning_on_and_off():
    x = tokens()
    on = randomized(small_dit(time_conditioning=True))
    assert not torch.allclose(on(x, torch.zeros(B)), on(x, torch.full((B,), 3.0)))
    torch.testing.assert_close(on(x, 3.0), on(x, torch.full((B,), 3.0)))  # scalar broadcast
    torch.testing.assert_close(on(x, None), on(x, torch.zeros(B)))
    off = randomized(small_dit(time_conditioning=False))
    ref = off(x, None)
    torch.testing.assert_close(off(x, torch.full((B,), 3.0)), ref, rtol=0, atol=0)
    torch.testing.assert_close(off(x, torch.rand(B)), ref, rtol=0, atol=0)


def test_null_class():
    model = randomized(small_dit(num_classes=3))
    assert model.null_class == 3 and model.label_embedding.num_embeddings == 4
    x, sigma = tokens(), torch.rand(B)
    null = model(x, sigma, torch.full((B,), 3))
    torch.testing.assert_close(model(x, sigma, None), null)
    assert not torch.allclose(model(x, sigma, torch.zeros(B, dtype=torch.long)), null)
    with pytest.raises(ValueError):
        small_dit()(x, sigma, torch.zeros(B, dtype=torch.long))


def test_unknown_size_refused_in_one_line():
    with pytest.raises(ValueError) as err:
        build_backbone("huge", V, L, causal=False)
    msg = str(err.value)
    assert "\n" not in msg and all(name in msg for name in MODEL_SIZES)


def test_build_backbone_sizes_and_flops():
    model = build_backbone("micro", V, L, causal=True, num_classes=2, dropout=0.0)
    assert (model.n_blocks, model.hidden_size, model.causal) == (4, 128, True)
    per_block = 4 * 128 * 128 + 2 * 128 * 512  # qkv + out, MLP up + down
    assert flops_per_token(model, L) == 6 * (4 * per_block + 128 * V) + 12 * 4 * 128 * L
    assert flops_per_token(model, L, training=False) == flops_per_token(model, L) // 3
    custom = build_backbone(dict(n_blocks=1, hidden_size=16, n_heads=2), V, L)
    assert len(custom.blocks) == 1 and custom.cond_dim == 128


@pytest.mark.parametrize("causal", [False, True])
def test_flop_formula_matches_pytorchs_flop_counter(causal):
    """The MFU formula counts the matrix products a training step really does (forward and
    backward), up to the per-sequence conditioning it leaves out."""
    from torch.utils.flop_counter import FlopCounterMode

    model = randomized(build_backbone("micro", V, L, causal=causal, num_classes=2, dropout=0.0)).train()
    x = tokens(batch=8)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.rand(8), torch.zeros(8, dtype=torch.long)).float().square().mean().backward()
    counted, formula = counter.get_total_flops(), flops_per_token(model, L) * x.numel()
    assert abs(counted / formula - 1) < 0.05, (counted, formula)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("num_classes", [None, 2])
def test_kv_cache_matches_full_forward(num_classes, static):
    """Chunked decoding equals one full causal pass, with the dynamic cache and with the static one
    (fixed shapes for CUDA graphs: all keys read through a mask), which also rewinds."""
    torch.manual_seed(0)
    model = randomized(small_dit(causal=True, num_classes=num_classes))
    x = tokens()
    cond = None if num_classes is None else torch.tensor([0, 1, 2])
    full = model(x, None, cond)
    cache = model.new_kv_cache(B, L + 3 * static, static=static)  # static: spare positions stay masked
    chunks = [model(x[:, :5], None, cond, kv_cache=cache)]  # a multi-token prefix
    if static:  # a step taken and taken back (what capturing a CUDA graph does) leaves no trace
        model(x[:, 7:9], None, cond, kv_cache=cache)
        cache.rewind(5)
    chunks += [model(x[:, i:i + 1], None, cond, kv_cache=cache) for i in range(5, 9)]
    chunks.append(model(x[:, 9:], None, cond, kv_cache=cache))  # and a multi-token chunk
    assert cache.length == L and int(cache.position) == (L if static else 0)
    if static:
        model(x[:, :3], None, cond, kv_cache=cache)  # fills the spare positions
    torch.testing.assert_close(torch.cat(chunks, 1), full, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        model(x[:, :1], kv_cache=cache)  # overflow
    with pytest.raises(ValueError):
        small_dit(causal=False).new_kv_cache(B, L)


def test_bf16_residual_stream_under_autocast():
    """Under bf16 autocast the residual stream, norms and hidden states are bf16; the logits stay
    close to the fp32 ones."""
    model = randomized(small_dit(num_classes=2))
    x, sigma = tokens(), torch.rand(B)
    seen = []
    model.blocks[1].register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, out.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, hidden = model(x, sigma, return_hidden=True)
    assert logits.dtype == torch.bfloat16 and hidden.dtype == torch.bfloat16
    assert seen == [(torch.bfloat16, torch.bfloat16)]
    torch.testing.assert_close(logits.float(), model(x, sigma), rtol=0.1, atol=0.1)
    assert model(x, sigma, return_hidden=True)[1].dtype == torch.float32  # no autocast: the module's dtype


@pytest.mark.parametrize("kind", ["uniform", "absorbing"])
def test_bf16_nelbo_within_1e3_of_fp32(kind):
    """The NELBO of a batch under bf16 autocast (bf16 residual stream) is the fp32 one within 1e-3
    relative: the GPU suite's bar, here on the CPU's bf16 kernels, same times and noise."""
    from discdiff.lm import DiffusionLM
    from discdiff.processes import AbsorbingProcess, UniformProcess
    from discdiff.schedules import get_schedule

    net = small_dit(hidden_size=64, n_blocks=4)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    process = UniformProcess(V) if kind == "uniform" else AbsorbingProcess(V, V - 1)
    lm = DiffusionLM(net.eval(), process, get_schedule("loglinear", eps=1e-3), L)
    ids = tokens(batch=32, length=L) % (V - 1)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    losses = []
    for bf16 in (False, True):
        torch.manual_seed(0)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses.append(float(lm.loss(batch).loss))
    fp32, bf16 = losses
    assert abs(bf16 - fp32) / fp32 < 1e-3, (fp32, bf16)
    assert bf16 != fp32  # the bf16 path really ran
