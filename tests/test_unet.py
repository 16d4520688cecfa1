"""UNet backbone over pixel tokens: shapes, token order, DiT-compatible hooks, init, refusals."""

import pytest
import torch

from discdiff.models import count_parameters
from discdiff.models.unet import UNET_SIZES, UNet, build_unet

V, B = 257, 2
TINY = dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
            hidden_size=8, cond_dim=16, embedding_dim=8, dropout=0.0)


def tiny_unet(image_shape=(1, 8, 8), **kw) -> UNet:
    args = dict(TINY)
    args.update(kw)
    C, H, W = image_shape
    return UNet(V, C * H * W, image_shape, **args)


def randomized(model: UNet, seed: int = 0) -> UNet:
    """Perturb every parameter so the zero-initialised paths are active."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def tokens(model: UNet, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (B, model.length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("image_shape, mults", [((1, 8, 8), (1, 2)), ((3, 8, 8), (1, 2)),
                                                ((1, 28, 28), (1, 2)), ((1, 28, 28), (1, 1, 2, 2)),
                                                ((2, 5, 6), (1, 2, 2))])
@pytest.mark.parametrize("num_classes", [None, 3])
def test_shapes(image_shape, mults, num_classes):
    """28 -> 14 -> 7 -> 4 and odd / non-square sizes come back to the image size."""
    model = randomized(tiny_unet(image_shape, channel_mults=mults, num_classes=num_classes))
    cond = None if num_classes is None else torch.tensor([0, 3])
    logits, hidden = model(tokens(model), torch.rand(B), cond, return_hidden=True)
    assert logits.shape == (B, model.length, V) and hidden.shape == (B, model.length, model.hidden_size)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_micro_preset_runs_on_8x8_and_28x28():
    for shape in [(1, 8, 8), (1, 28, 28)]:
        model = build_unet("micro", 256, shape[1] * shape[2], shape, num_classes=None,
                           time_conditioning=True, dropout=0.0)
        assert model(tokens(model) % 256, torch.rand(B)).shape == (B, model.length, 256)
    assert count_parameters(model) < 1_000_000
    assert 2e6 < count_parameters(build_unet("small", V, 784, (1, 28, 28), num_classes=10)) < 5e6


def test_token_order_is_channel_height_width():
    """The conv stem reads token c*H*W + h*W + w at channels c*E..(c+1)*E of pixel (h, w), and the
    hidden state of that token is channels c*D..(c+1)*D of the last feature map at (h, w)."""
    C, H, W = 2, 4, 6
    model = randomized(tiny_unet((C, H, W)))
    seen = {}
    model.input_conv.register_forward_hook(lambda m, inp, out: seen.update(image=inp[0]))
    model.out.register_forward_hook(lambda m, inp, out: seen.update(features=out))
    x = tokens(model)
    _, hidden = model(x, torch.rand(B), return_hidden=True)
    E, D = model.embedding_dim, model.hidden_size
    table = model.token_embedding.weight
    for c in range(C):
        for h in range(H):
            for w in range(W):
                t = c * H * W + h * W + w
                assert torch.equal(seen["image"][:, c * E:(c + 1) * E, h, w], table[x[:, t]])
                assert torch.equal(hidden[:, t], seen["features"][:, c * D:(c + 1) * D, h, w])


def test_token_locality():
    """At initialisation (residual branches zero, so the network is nearly local) a small change to
    the embedding of the token of pixel (0, W-1) moves that token's hidden state far more than those
    of the other corners, its transpose (W-1, 0) included: rows and columns are not swapped."""
    torch.manual_seed(0)
    model = tiny_unet((1, 8, 8)).eval()
    e, sigma = model.embed(tokens(model)), torch.rand(B)
    t, corners = 7, [0, 56, 63]  # (0, 7); (0, 0), (7, 0), (7, 7)
    bumped = e.clone()
    bumped[:, t] += 0.02  # about one standard deviation of the initial embeddings
    delta = (model(inputs_embeds=bumped, sigma=sigma, return_hidden=True)[1]
             - model(inputs_embeds=e, sigma=sigma, return_hidden=True)[1]).norm(dim=-1)
    assert (delta[:, t, None] > 5 * delta[:, corners]).all()


def test_onehot_inputs_embeds_and_head_match_ids_path():
    model = randomized(tiny_unet((3, 8, 8), num_classes=2))
    x, sigma, cond = tokens(model), torch.rand(B), torch.tensor([0, 1])
    ref, hidden = model(x, sigma, cond, return_hidden=True)
    onehot = torch.nn.functional.one_hot(x, V).float()
    torch.testing.assert_close(model(onehot, sigma, cond), ref)
    torch.testing.assert_close(model(inputs_embeds=model.embed(x), sigma=sigma, cond=cond), ref)
    assert model.embed(x).shape == (B, model.length, model.embedding_dim)
    torch.testing.assert_close(model.head(hidden, sigma, cond), ref)
    assert not torch.allclose(model.head(hidden + 0.5, sigma, cond), ref)


def test_zero_init_head_and_conditioning():
    model = tiny_unet(num_classes=3)
    x, sigma = tokens(model), torch.rand(B)
    assert torch.equal(model(x, sigma), torch.zeros(B, model.length, V))
    randomized(model)
    base = model(x, sigma, torch.tensor([0, 1]))
    assert not torch.allclose(model(x, sigma + 1.0, torch.tensor([0, 1])), base)
    assert not torch.allclose(model(x, sigma, torch.tensor([2, 2])), base)
    torch.testing.assert_close(model(x, sigma, torch.full((B,), model.null_class)), model(x, sigma))
    assert model.null_class == 3


def test_time_conditioning_off_ignores_sigma():
    model = randomized(tiny_unet(time_conditioning=False))
    x = tokens(model)
    torch.testing.assert_close(model(x, torch.rand(B)), model(x, None))


def test_gradients_reach_onehot_input():
    model = randomized(tiny_unet())
    onehot = torch.nn.functional.one_hot(tokens(model), V).float().requires_grad_(True)
    model(onehot, torch.rand(B)).logsumexp(-1).sum().backward()
    assert onehot.grad is not None and torch.isfinite(onehot.grad).all() and onehot.grad.abs().sum() > 0


def test_attributes():
    model = tiny_unet((3, 8, 8), num_classes=4)
    assert (model.vocab_size, model.length, model.image_shape) == (V, 192, (3, 8, 8))
    assert (model.hidden_size, model.cond_dim, model.num_classes) == (8, 16, 4)
    assert model.causal is False and model.time_conditioning is True
    assert model.n_blocks == 1 + 1 + 2 + 2 + 2  # down 1 + 1, middle 2, up 2 + 2
    assert model.token_embedding.num_embeddings == V


def _one_line_error(fn, match):
    with pytest.raises(ValueError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


def test_refusals():
    model = tiny_unet()
    x = tokens(model)
    _one_line_error(lambda: tiny_unet(causal=True), "no causal form")
    _one_line_error(lambda: UNet(V, 63, (1, 8, 8)), "must equal C \\* H \\* W")
    _one_line_error(lambda: model(x, None, kv_cache=object()), "no KV cache")
    _one_line_error(lambda: model(x, None, torch.tensor([0, 1])), "without num_classes")
    _one_line_error(lambda: build_unet("huge", V, 64, (1, 8, 8)), "allowed: micro, small, cifar10")
    _one_line_error(lambda: build_unet({"width": 3}, V, 64, (1, 8, 8)), "unknown keys")
    _one_line_error(lambda: model(torch.zeros(B, model.length, V - 1)), "columns")
    _one_line_error(lambda: model(x[:, :-1]), "tokens")


def test_cifar10_preset_size():
    assert set(UNET_SIZES) == {"micro", "small", "cifar10"}
    model = build_unet("cifar10", 257, 3072, (3, 32, 32), num_classes=10, time_conditioning=True, dropout=0.1)
    assert 20e6 < count_parameters(model) < 60e6
