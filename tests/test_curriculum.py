"""DUO's Gaussian curriculum for uniform noise: the relaxed latent, the loss's expectation, the
backbones' soft input, and the configuration's refusals."""

import pytest
import torch
import torch.nn.functional as F

import discdiff.duality as dual
from discdiff import objectives
from discdiff.config import ConfigError, compose
from discdiff.duality import DualitySchedule, Relaxation, discrete_alpha, relaxed_latent
from discdiff.factory import build_language_model
from discdiff.models import build_backbone
from discdiff.models.dimamba import build_dimamba
from discdiff.models.unet import build_unet
from discdiff.processes import AbsorbingProcess, UniformProcess


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """The duality's tables in a folder of this module's own, each vocabulary size computed once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISCDIFF_CACHE", str(tmp_path_factory.mktemp("duality-cache")))
        dual.duality.cache_clear()
        yield
    dual.duality.cache_clear()


def test_the_relaxed_latent_is_uniform_noise_at_the_dual_alpha():
    """z = argmax(w) keeps x0 with probability T(a) + (1 - T(a)) / K and is uniform otherwise; the
    relaxation's argmax is z and it tends to onehot(z) as tau -> 0."""
    k, n, g = 6, 60_000, -1.0
    x0 = torch.randint(k, (n, 1), generator=torch.Generator().manual_seed(0))
    z, soft = relaxed_latent(x0, torch.full((n,), g), k, 1e-4, torch.Generator().manual_seed(1))
    alpha = float(discrete_alpha(torch.tensor(torch.sigmoid(torch.tensor(-g)).sqrt().item()), k))
    keep = alpha + (1 - alpha) / k
    kept = (z == x0).double().mean().item()
    assert abs(kept - keep) < 4 * (keep * (1 - keep) / n) ** 0.5
    moved = torch.remainder(z[z != x0] - x0[z != x0], k)  # the other K - 1 tokens, equally often
    counts = torch.bincount(moved, minlength=k)[1:].double()
    expected = counts.sum() / (k - 1)
    assert float(((counts - expected) ** 2 / expected).sum()) < 20.5  # chi-square, 4 dof, p = 0.0004
    assert torch.equal(soft.argmax(-1), z) and soft.max(-1).values.mean() > 0.99


def test_the_curriculum_loss_has_the_expectation_of_the_udlm_nelbo():
    """With the tempered softmax near one-hot, the Rao-Blackwellised loss (integrand at z = argmax(w),
    network on the relaxation) and the UDLM NELBO of the window's schedule (x_t ~ q(x_t | x0),
    network on x_t) have the same expectation: a tiny DiT, 4,096 sequences, t and noise drawn anew."""
    k, length, n = 7, 6, 4096
    cfg = compose(["algo=udlm", "model=micro", f"data.length={length}", "model.dropout=0.0"])
    lm = build_language_model(cfg, vocab_size=k, mask_id=k, bos_id=0).eval()
    torch.manual_seed(4)
    with torch.no_grad():  # a network whose output depends on its input (the output layer starts at 0)
        for parameter in lm.parameters():
            parameter.normal_(0, 0.3)
    window = DualitySchedule(k, -3.0, 1.0)
    relaxation = Relaxation(window, 1e-5)
    x0 = torch.randint(k, (n, length), generator=torch.Generator().manual_seed(2))
    t = torch.rand(n, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        relaxed = objectives.continuous_nelbo_terms(lm.process, window, lm.denoiser, x0, t,
                                                    latent=relaxation.latent)["diffusion"]
        plain = objectives.continuous_nelbo_terms(lm.process, window, lm.denoiser, x0, t)["diffusion"]
    error = ((relaxed.var() + plain.var()) / n) ** 0.5
    assert abs(float(relaxed.mean() - plain.mean())) < 4 * error
    assert float(relaxed.mean()) > 0 and error < 0.05 * float(plain.mean())  # (g off by 0.3 moves it 8 errors)


@pytest.mark.parametrize("build", ["dit", "dimamba", "unet"])
def test_backbones_read_a_distribution_over_tokens(build):
    """A one-hot distribution gives the ids' output; a soft one changes it and carries a gradient."""
    torch.manual_seed(0)
    k = 9
    if build == "dit":
        net = build_backbone("micro", k, 16, dropout=0.0)
    elif build == "dimamba":
        net = build_dimamba({"n_blocks": 1, "hidden_size": 32}, k, 16, dropout=0.0)
    else:
        net = build_unet("micro", k, 16, (1, 4, 4), dropout=0.0)
    with torch.no_grad():  # the zero-initialised output layers would make every output 0
        for parameter in net.parameters():
            parameter.normal_(0, 0.2)
    ids = torch.randint(k, (2, 16))
    sigma = torch.ones(2)
    onehot = F.one_hot(ids, k).float()
    torch.testing.assert_close(net(onehot, sigma), net(ids, sigma), rtol=1e-4, atol=1e-5)
    soft = (onehot * 5).softmax(-1).requires_grad_()
    out = net(soft, sigma)
    out.sum().backward()
    assert not torch.allclose(out, net(ids, sigma)) and soft.grad.abs().sum() > 0


def test_the_curriculum_is_refused_outside_continuous_uniform_noise():
    for overrides in (["algo=mdlm"], ["algo=ar"], ["algo=udlm", "T=10"]):
        with pytest.raises(ConfigError, match="algo=udlm") as err:
            compose(overrides + ["training.curriculum.steps=10"])
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="log_snr_min"):
        compose(["training.curriculum.log_snr_min=0", "training.curriculum.log_snr_max=-1"])
    with pytest.raises(ValueError, match="tau"):
        Relaxation(DualitySchedule(5, -1.0, 1.0), 0.0)
    lm = build_language_model(compose(["algo=udlm", "model=micro", "training.curriculum.steps=3"]),
                              vocab_size=9, mask_id=8, bos_id=0)
    assert isinstance(lm.process, UniformProcess) and lm.relaxation is not None
    with pytest.raises(ValueError, match="uniform noise only"):
        type(lm)(lm.backbone, AbsorbingProcess(9, 8), lm.schedule, lm.length, relaxation=lm.relaxation)
