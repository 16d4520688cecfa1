"""DiMamba backbone: chunked selective scan vs a naive recurrence, stability, shapes,
(bi)directionality, state-cache decoding, conditioning, adaLN-zero init, linear cost."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from discdiff.models.dimamba import (
    DIMAMBA_SIZES,
    DiMamba,
    build_dimamba,
    chunked_selective_scan,
)
from discdiff.models.dit import MODEL_SIZES, build_backbone, count_parameters

V, L, B, HIDDEN = 12, 17, 3, 32


def small_mamba(**kw) -> DiMamba:
    args = dict(hidden_size=32, n_blocks=2, cond_dim=16, dropout=0.0, d_state=4, chunk_size=8)
    args.update(kw)
    return DiMamba(V, L, **args)


def randomized(model: DiMamba, seed: int = 0) -> DiMamba:
    """Perturb every parameter so the zero-initialised paths are active."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def tokens(seed=0, batch=B, length=L):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------- scan
def scan_inputs(seed=0, batch=2, inner=6, n=4, length=37, dt_scale=0.5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, inner, length, generator=g)
    dt = dt_scale * F.softplus(torch.randn(batch, inner, length, generator=g))
    A = -torch.exp(torch.randn(inner, n, generator=g))
    Bm = torch.randn(batch, n, length, generator=g)
    Cm = torch.randn(batch, n, length, generator=g)
    D = torch.randn(inner, generator=g)
    h0 = torch.randn(batch, inner, n, generator=g)
    return x, dt, A, Bm, Cm, D, h0


def naive_scan(x, dt, A, Bm, Cm, D, h0):
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t, y_t = C_t . h_t + D x_t, one position at a time."""
    h, ys = h0, []
    for t in range(x.shape[-1]):
        h = torch.exp(dt[..., t, None] * A) * h + (dt[..., t] * x[..., t])[..., None] * Bm[:, None, :, t]
        ys.append((h * Cm[:, None, :, t]).sum(-1) + D * x[..., t])
    return torch.stack(ys, dim=-1), h


@pytest.mark.parametrize("chunk", [1, 5, 8, 16, 37, 64])
def test_chunked_scan_matches_recurrence_and_gradients(chunk):
    inputs = [t.requires_grad_() for t in scan_inputs()]
    y, h = chunked_selective_scan(*inputs, chunk_size=chunk)
    y_ref, h_ref = naive_scan(*inputs)
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(h, h_ref, atol=1e-4, rtol=1e-4)
    g = torch.Generator().manual_seed(1)
    wy, wh = torch.randn(y.shape, generator=g), torch.randn(h.shape, generator=g)
    grads = torch.autograd.grad((y * wy).sum() + (h * wh).sum(), inputs)
    grads_ref = torch.autograd.grad((y_ref * wy).sum() + (h_ref * wh).sum(), inputs)
    for got, ref in zip(grads, grads_ref):
        torch.testing.assert_close(got, ref, atol=1e-3, rtol=1e-3)
    with torch.no_grad():  # the path without checkpointing
        y_plain, _ = chunked_selective_scan(*inputs, chunk_size=chunk)
    torch.testing.assert_close(y_plain, y_ref, atol=1e-4, rtol=1e-4)


def test_scan_zero_initial_state_default():
    x, dt, A, Bm, Cm, D, h0 = scan_inputs(length=20)
    y, _ = chunked_selective_scan(x, dt, A, Bm, Cm, D, chunk_size=6)
    torch.testing.assert_close(y, naive_scan(x, dt, A, Bm, Cm, D, torch.zeros_like(h0))[0], atol=1e-4, rtol=1e-4)


def test_long_scan_with_strong_decays_is_stable():
    x, dt, A, Bm, Cm, D, h0 = scan_inputs(batch=1, inner=4, n=4, length=4096, dt_scale=4.0)
    A = -torch.tensor([1.0, 4.0, 16.0, 64.0]).expand(4, 4).clone()  # log-decays dt A of -100s per step
    dt[:, 0] = 1e-4                                                  # one channel with near-zero decay
    A.requires_grad_()
    y, h = chunked_selective_scan(x, dt, A, Bm, Cm, D, h0, chunk_size=64)
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    y.square().mean().backward()
    assert torch.isfinite(A.grad).all()
    with torch.no_grad():
        y_ref, h_ref = naive_scan(x, dt, A, Bm, Cm, D, h0)
    torch.testing.assert_close(h.detach(), h_ref, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(y.detach(), y_ref, atol=1e-3, rtol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_kernel_matches_chunked_scan():
    pytest.importorskip("mamba_ssm")
    from discdiff.models.dimamba import selective_scan

    x, dt, A, Bm, Cm, D, _ = (t.cuda() for t in scan_inputs(length=300))
    y, h = selective_scan(x, dt, A, Bm, Cm, D)
    y_ref, h_ref = chunked_selective_scan(x, dt, A, Bm, Cm, D, chunk_size=64)
    torch.testing.assert_close(y, y_ref, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(h, h_ref, atol=1e-3, rtol=1e-3)


# ------------------------------------------------------------------ model
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("num_classes", [None, 3])
def test_forward_shapes_and_gradients(causal, num_classes):
    model = randomized(small_mamba(causal=causal, num_classes=num_classes))
    cond = None if num_classes is None else torch.tensor([0, 1, 3])
    logits, hidden = model(tokens(), torch.rand(B), cond, return_hidden=True)
    assert logits.shape == (B, L, V) and hidden.shape == (B, L, HIDDEN)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    model.train()
    F.cross_entropy(model(tokens(), torch.rand(B), cond).reshape(-1, V), tokens(1).reshape(-1)).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_onehot_inputs_embeds_and_head_match_token_path():
    model = randomized(small_mamba(num_classes=2))
    x, sigma, cond = tokens(), torch.rand(B), torch.tensor([0, 1, 2])
    ref, hidden = model(x, sigma, cond, return_hidden=True)
    onehot = F.one_hot(x, V).float().requires_grad_()
    torch.testing.assert_close(model(onehot, sigma, cond), ref)
    model(onehot, sigma, cond).sum().backward()
    assert onehot.grad is not None and onehot.grad.abs().sum() > 0
    torch.testing.assert_close(model(None, sigma, cond, inputs_embeds=model.embed(x)), ref)
    torch.testing.assert_close(model.head(hidden, sigma, cond), ref)
    delta = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(3))  # LN ignores constant shifts
    assert not torch.allclose(model.head(hidden + delta, sigma, cond), ref)
    with pytest.raises(ValueError):
        model(x, sigma, inputs_embeds=model.embed(x))
    with pytest.raises(ValueError):
        model.embed(torch.zeros(B, L, V + 1))


def test_causal_and_bidirectional_dependence():
    x = tokens(length=40)
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % V
    causal = randomized(small_mamba(causal=True))
    torch.testing.assert_close(causal(x2)[:, :-1], causal(x)[:, :-1])
    x3 = x.clone()
    x3[:, 20] = (x3[:, 20] + 1) % V
    torch.testing.assert_close(causal(x3)[:, :20], causal(x)[:, :20])
    assert not torch.allclose(causal(x3)[:, 20:], causal(x)[:, 20:])
    bidirectional = randomized(small_mamba())
    assert not torch.allclose(bidirectional(x2)[:, 0], bidirectional(x)[:, 0])


def test_state_cache_decoding_matches_full_forward():
    model = randomized(small_mamba(causal=True, num_classes=2))
    x, cond = tokens(length=20), torch.tensor([0, 2, 1])
    ref_logits, ref_hidden = model(x, None, cond, return_hidden=True)
    cache = model.new_kv_cache(B, max_length=20)
    start, pieces = 0, []
    with torch.no_grad():
        while start < 20:
            n = min(1 if len(pieces) % 2 == 0 else 3, 20 - start)
            pieces.append(model(x[:, start:start + n], None, cond, kv_cache=cache, return_hidden=True))
            start += n
    assert cache.length == 20
    torch.testing.assert_close(torch.cat([p[0] for p in pieces], 1), ref_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([p[1] for p in pieces], 1), ref_hidden, atol=1e-5, rtol=1e-4)
    cache.reset()
    with torch.no_grad():
        again = model(x[:, :5], None, cond, kv_cache=cache)
    torch.testing.assert_close(again, ref_logits[:, :5], atol=1e-5, rtol=1e-4)


def test_repeat_rows_and_cache_errors():
    model = randomized(small_mamba(causal=True))
    prefix, k = tokens(length=9, batch=2), 3
    nxt = tokens(seed=5, batch=2 * k, length=1)
    cache = model.new_kv_cache(2, max_length=12)
    with torch.no_grad():
        model(prefix, kv_cache=cache)
        assert cache.repeat_rows(k) is cache and cache.batch_size == 2 * k
        got = model(nxt, kv_cache=cache)
        full = model(torch.cat([prefix.repeat_interleave(k, 0), nxt], 1))[:, -1:]
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError):
        model(tokens(batch=2 * k, length=3), kv_cache=cache)  # 10 + 3 > 12
    with pytest.raises(ValueError):
        model(tokens(batch=2, length=1), kv_cache=cache)      # wrong batch
    bidirectional = small_mamba()
    with pytest.raises(ValueError):
        bidirectional.new_kv_cache(2)
    with pytest.raises(ValueError):
        bidirectional(prefix, kv_cache=cache)


def test_time_and_label_conditioning():
    x = tokens()
    timed = randomized(small_mamba(num_classes=3))
    assert not torch.allclose(timed(x, torch.zeros(B)), timed(x, torch.ones(B)))
    untimed = randomized(small_mamba(time_conditioning=False))
    torch.testing.assert_close(untimed(x, torch.zeros(B)), untimed(x, torch.ones(B)))
    torch.testing.assert_close(untimed(x, torch.rand(B)), untimed(x, None))
    assert timed.null_class == 3 and untimed.null_class is None
    sigma = torch.rand(B)
    torch.testing.assert_close(timed(x, sigma, torch.full((B,), 3)), timed(x, sigma, None))
    assert not torch.allclose(timed(x, sigma, torch.zeros(B, dtype=torch.long)), timed(x, sigma, None))
    with pytest.raises(ValueError):
        untimed(x, sigma, torch.zeros(B, dtype=torch.long))


def test_zero_init_head_and_identity_blocks():
    torch.manual_seed(0)
    model = small_mamba(num_classes=2)
    logits, hidden = model(tokens(), torch.rand(B), return_hidden=True)
    assert torch.count_nonzero(logits) == 0
    torch.testing.assert_close(hidden, model.embed(tokens()))  # adaLN-zero: every block is the identity
    assert torch.count_nonzero(randomized(model)(tokens(), torch.rand(B))) > 0


def test_mamba_initialisation():
    mixer = small_mamba().blocks[0].forward_mixer
    torch.testing.assert_close(-torch.exp(mixer.A_log), -torch.arange(1.0, 5.0).expand(64, 4))
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 1e-1 * (1 + 1e-4)


def test_flops_linear_in_length():
    model = randomized(small_mamba(chunk_size=16))

    def flops(length):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(tokens(length=length), torch.rand(B))
        return counter.get_total_flops()

    assert flops(256) <= 4.5 * flops(64)


def test_build_dimamba_sizes():
    model = build_dimamba("micro", V, L, causal=True, num_classes=2, dropout=0.0)
    assert (model.hidden_size, model.n_blocks, model.causal, model.num_classes) == (128, 4, True, 2)
    custom = build_dimamba(dict(n_blocks=1, hidden_size=16, d_state=2, chunk_size=4), V, L)
    assert custom.d_state == 2 and custom.chunk_size == 4
    with pytest.raises(ValueError, match="allowed: micro, tiny, small, medium"):
        build_dimamba("huge", V, L)
    with pytest.raises(ValueError):
        build_dimamba(dict(hidden_size=16, n_heads=2), V, L)
    assert set(DIMAMBA_SIZES) == set(MODEL_SIZES)
    for size in DIMAMBA_SIZES:  # comparable parameter counts, built on the meta device (no memory)
        with torch.device("meta"):
            ratio = count_parameters(build_dimamba(size, 1000, 128)) / count_parameters(build_backbone(size, 1000, 128))
        assert 0.9 < ratio < 1.1
