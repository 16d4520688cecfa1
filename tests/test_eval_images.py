"""Image evaluation: token/image layout, FID / IS math, classifier FID, class scores, grids and the
Inception path (offline: a stand-in TorchScript network in the real weights' place)."""

import itertools
import math
import urllib.error

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from torch import nn

from discdiff.evaluation.pictures import class_rows, save_grid
from discdiff.metrics import images as ev
from discdiff.metrics.classes import classification_scores, hit_rates
from discdiff.evaluation.domains.images import ImageReference, InceptionScorer


def to_tokens(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, C) -> token ids (N, C*H*W) in channel-height-width order (the inverse
    of ev.tokens_to_images, written independently)."""
    return np.stack([[img[h, w, c] for c in range(img.shape[2]) for h in range(img.shape[0])
                      for w in range(img.shape[1])] for img in images]).astype(np.int64)


def fid(a, b) -> float:
    return ev.fid(ev.feature_statistics(a), ev.feature_statistics(b))


def stats(mu, sigma, n=100) -> "ev.FeatureStatistics":
    return ev.FeatureStatistics(np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float), n)


def direct_frechet(mu1, s1, mu2, s2) -> float:
    """The Frechet distance written out: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)), scipy's sqrtm."""
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root))

# --- tokens <-> images ---------------------------------------------------------------------------

def test_tokens_to_images_channel_height_width_order():
    tokens = np.arange(12)[None]  # C, H, W = 3, 2, 2: token c*4 + h*2 + w
    img = ev.tokens_to_images(tokens, (3, 2, 2))
    assert img.shape == (1, 2, 2, 3) and img.dtype == np.uint8
    assert img[0, :, :, 0].tolist() == [[0, 1], [2, 3]]    # channel 0
    assert img[0, 1, 0].tolist() == [2, 6, 10]              # pixel (1, 0): h*2 + w = 2, + c*4
    assert img[0, 0, 1].tolist() == [1, 5, 9]
    assert to_tokens(img).tolist() == tokens.tolist()


def test_tokens_images_round_trip_non_square_and_torch():
    rng = np.random.default_rng(0)
    tokens = torch.from_numpy(rng.integers(0, 256, size=(4, 2 * 3 * 5)))
    img = ev.tokens_to_images(tokens, (2, 3, 5))
    assert img.shape == (4, 3, 5, 2)
    c, h, w = 1, 2, 4
    assert img[2, h, w, c] == tokens[2, c * 15 + h * 5 + w]
    assert np.array_equal(to_tokens(img), tokens.numpy())


@pytest.mark.parametrize("tokens, shape, match", [
    (np.zeros((2, 11), np.int64), (3, 2, 2), "shape"),
    (np.full((1, 12), 256), (3, 2, 2), "0..255"),
    (np.full((1, 12), -1), (3, 2, 2), "0..255"),
    (np.zeros((1, 12)), (3, 2, 2), "integers"),
    (np.zeros((1, 12), np.int64), (3, 4), "image_shape"),
])
def test_tokens_to_images_rejects_bad_input(tokens, shape, match):
    with pytest.raises(ValueError, match=match) as info:
        ev.tokens_to_images(tokens, shape)
    assert "\n" not in str(info.value)


def test_bad_images_are_refused(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        save_grid(np.zeros((2, 2, 3), np.uint8), tmp_path / "a.png")
    with pytest.raises(ValueError, match="0..255"):
        ev.features(np.full((1, 2, 2, 3), 300), lambda x: x.float().flatten(1))


# --- Frechet distance and FID ----------------------------------------------------------------------

def _random_statistics(rng, d=5):
    a = rng.normal(size=(d, d))
    return rng.normal(size=d), a @ a.T + 0.1 * np.eye(d)


def test_fid_identical_statistics_is_zero():
    mu, sigma = _random_statistics(np.random.default_rng(1))
    assert ev.fid(stats(mu, sigma), stats(mu, sigma)) == pytest.approx(0.0, abs=1e-8)


def test_fid_of_a_mean_shift_is_its_squared_length():
    mu, sigma = _random_statistics(np.random.default_rng(5))
    d = np.array([0.5, -1.0, 2.0, 0.0, 3.0])
    assert ev.fid(stats(mu, sigma), stats(mu + d, sigma)) == pytest.approx(float(d @ d), rel=1e-8)


def test_fid_matches_the_direct_formula_and_is_symmetric():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert ev.fid(stats(mu1, np.diag(v1)), stats(mu2, np.diag(v2))) == pytest.approx(expected, rel=1e-10)
    rng = np.random.default_rng(2)
    for _ in range(5):
        s1, s2 = _random_statistics(rng), _random_statistics(rng)
        assert ev.fid(stats(*s1), stats(*s2)) == pytest.approx(direct_frechet(*s1, *s2), rel=1e-8)
        assert ev.fid(stats(*s1), stats(*s2)) == pytest.approx(ev.fid(stats(*s2), stats(*s1)), rel=1e-8)


def test_fid_singular_covariances():
    mu, sigma = np.zeros(3), np.diag([1.0, 0.0, 2.0])
    assert ev.fid(stats(mu, sigma), stats(mu, sigma)) == pytest.approx(0.0, abs=1e-4)
    assert ev.fid(stats(mu, sigma), stats(mu + 1, 4 * sigma)) == pytest.approx(3 + 3.0, abs=1e-4)


def test_fid_refusals_and_too_few_features():
    with pytest.raises(ValueError, match="different sizes"):
        ev.fid(stats(np.zeros(2), np.eye(2)), stats(np.zeros(3), np.eye(3)))
    assert math.isnan(ev.fid(stats(np.zeros(2), np.eye(2), n=1), stats(np.zeros(2), np.eye(2))))


def test_feature_statistics():
    feats = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    got = ev.feature_statistics(feats)
    assert np.allclose(got.mu, [2.0, 2.0]) and np.allclose(got.sigma, np.cov(feats.T)) and got.n == 3
    with pytest.raises(ValueError, match="N >= 2"):
        ev.feature_statistics(np.zeros((1, 3)))


def test_fid_decreases_as_gaussians_get_closer():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(2000, 4))
    fids = [fid(a, rng.normal(loc=shift, scale=1 + shift, size=(2000, 4))) for shift in (2.0, 1.0, 0.5, 0.0)]
    assert all(x > y for x, y in itertools.pairwise(fids))
    assert fids[-1] < 0.05


# --- Inception score --------------------------------------------------------------------------------

def test_inception_score_constant_predictions_is_one():
    p = np.tile([0.2, 0.5, 0.3], (40, 1))
    mean, std = ev.inception_score(p, splits=4)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_confident_uniform_is_num_classes():
    k = 5
    p = np.tile(np.eye(k), (10, 1))  # one-hot rows, every class equally often: IS = K
    mean, std = ev.inception_score(p, splits=1)
    assert mean == pytest.approx(k) and std == 0.0
    uniform = np.full((50, k), 1 / k)  # uniform rows: IS = 1 on every split
    assert ev.inception_score(uniform, splits=5) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-12))


def test_inception_score_hand_case_and_validation():
    p = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # p(y) = (3/4, 1/4)
    expected = math.exp(0.75 * math.log(4 / 3) + 0.25 * math.log(4))
    assert ev.inception_score(p, splits=1) == (pytest.approx(expected), 0.0)
    with pytest.raises(ValueError, match="sum"):
        ev.inception_score(np.full((4, 2), 0.7), splits=1)
    with pytest.raises(ValueError, match="splits"):
        ev.inception_score(p, splits=10)


# --- feature extractors and classifier FID -----------------------------------------------------------

class TinyImageNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)

    def forward(self, x):
        return self.conv(x.float() / 255).mean(dim=(2, 3))


def test_features_batches_uint8_nchw():
    torch.manual_seed(0)
    net = TinyImageNet().eval()
    imgs = np.random.default_rng(5).integers(0, 256, size=(7, 8, 8, 3)).astype(np.uint8)
    seen = []

    def extractor(x):
        seen.append((x.dtype, tuple(x.shape)))
        return net(x)

    feats = ev.features(imgs, extractor, batch_size=3)
    assert feats.shape == (7, 6) and feats.dtype == np.float64
    assert seen == [(torch.uint8, (3, 3, 8, 8))] * 2 + [(torch.uint8, (1, 3, 8, 8))]
    with torch.no_grad():
        expected = net(torch.from_numpy(imgs).permute(0, 3, 1, 2)).double().numpy()
    assert np.allclose(feats, expected, atol=1e-6)


class TinyClassifier(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.embed = nn.Embedding(256, 8)
        self.hidden = nn.Linear(8, 5)
        self.head = nn.Linear(5, classes)

    def forward(self, tokens):
        h = torch.tanh(self.hidden(self.embed(tokens).mean(dim=1)))
        return h, self.head(h)


def test_classifier_feature_fid_with_tiny_network():
    torch.manual_seed(0)
    clf = TinyClassifier().eval()
    rng = np.random.default_rng(6)
    ref = rng.integers(0, 256, size=(300, 12))

    def fid_clf(generated, batch_size=256):
        return fid(*(ev.classifier_outputs(x, clf, batch_size)[0] for x in (generated, ref)))

    assert fid_clf(ref.copy(), batch_size=64) == pytest.approx(0.0, abs=1e-6)
    dark = rng.integers(0, 8, size=(300, 12))  # only the darkest values: another distribution
    assert fid_clf(dark) > 10 * fid_clf(rng.integers(0, 256, size=(300, 12)))
    feats, logits = ev.classifier_outputs(torch.from_numpy(ref), clf, batch_size=100)
    assert feats.shape == (300, 5) and logits.shape == (300, 3)
    with pytest.raises(ValueError, match=r"\(features, logits\)"):
        ev.classifier_outputs(ref, lambda x: clf(x)[0])


# --- class scores ---------------------------------------------------------------------------------------

def test_class_scores_hand_example():
    targets = [0, 0, 1, 1, 2, 2]
    predicted = [0, 1, 1, 1, 0, 2]
    scores = classification_scores(targets, predicted, num_classes=4)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    # F1 = 2tp / (2tp + fp + fn): class 0 2/4, class 1 4/5, class 2 2/3, class 3 (absent) 0
    assert scores["f1_macro"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3 + 0) / 4)
    rates = hit_rates(targets, predicted, num_classes=4)
    assert rates[:3] == [0.5, 1.0, 0.5] and math.isnan(rates[3])
    with pytest.raises(ValueError, match="0..3"):
        classification_scores([0], [4], num_classes=4)


# --- sample grids -------------------------------------------------------------------------------------------

def test_save_grid_one_row_per_class(tmp_path):
    h, w, pad = 4, 5, 2
    imgs = np.stack([np.full((h, w, 3), 10 * i, np.uint8) for i in range(8)])
    classes = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    rows = class_rows(classes, per_class=3)
    assert rows == [[1, 3, 5], [0, 2, 4]]
    path = save_grid(imgs, tmp_path / "grid.png", rows=rows, pad=pad)
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        assert picture.size == (3 * (w + pad) + pad, 2 * (h + pad) + pad)
        pixels = np.asarray(picture)
    assert pixels[pad, pad].tolist() == [10, 10, 10]                        # row 0: class 0, image 1
    assert pixels[2 * pad + h, pad + 2 * (w + pad)].tolist() == [40, 40, 40]  # row 1, third: image 4
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]             # no temporary left


def test_save_grid_plain_grey(tmp_path):
    imgs = np.zeros((5, 3, 3, 1), np.uint8)
    path = save_grid(imgs, tmp_path / "sub" / "plain.png", pad=1)
    with Image.open(path) as picture:
        assert picture.mode == "L" and picture.size == (3 * 4 + 1, 2 * 4 + 1)
    with pytest.raises(ValueError, match="C=2"):
        save_grid(np.zeros((1, 2, 2, 2), np.uint8), tmp_path / "bad.png")


# --- the Inception path -----------------------------------------------------------------------------

def test_inception_without_weights_is_one_line_value_error(tmp_path):
    with pytest.raises(ValueError) as info:
        ev.inception_extractors(tmp_path, download=False)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / ev.INCEPTION_FILE) in message and ev.INCEPTION_URL in message


def test_inception_failed_download_is_one_line_value_error(tmp_path, monkeypatch):
    helper = pytest.importorskip("cleanfid.downloads_helper")

    def offline(fpath):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(helper, "check_download_inception", offline)
    with pytest.raises(ValueError, match="download failed") as info:
        InceptionScorer(tmp_path / "w")
    message = str(info.value)
    assert "\n" not in message and "URLError" in message
    assert str(tmp_path / "w" / ev.INCEPTION_FILE) in message and ev.INCEPTION_URL in message
    assert list((tmp_path / "w").iterdir()) == []  # no partial file left


class StandInInception(nn.Module):
    """The interface of the TorchScript Inception: 2048 pool features, or 1008 probabilities."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Linear(3, 4)
        self.head = nn.Linear(4, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        assert img.dtype == torch.uint8 and img.shape[1] == 3
        pooled = self.layers(img.to(torch.float32).mean(dim=(2, 3)) / 255)
        if return_features:
            return torch.cat([pooled, torch.zeros(img.shape[0], 2044)], dim=1)
        return torch.softmax(self.head(pooled), dim=1)


def test_inception_scores_through_clean_fid_with_stand_in_network(tmp_path, monkeypatch):
    pytest.importorskip("cleanfid.inception_torchscript")
    torch.manual_seed(0)
    net = StandInInception().eval()
    torch.jit.script(net).save(str(tmp_path / ev.INCEPTION_FILE))
    # the FID of 2048-d features costs seconds on one core: measure the plumbing with the mean term only
    monkeypatch.setattr(ev, "fid", lambda a, b: float(np.sum((a.mu - b.mu) ** 2)))
    rng = np.random.default_rng(7)
    samples = rng.integers(0, 256, size=(20, 8, 8, 3)).astype(np.uint8)
    grey_reference = rng.integers(0, 128, size=(30, 8, 8, 1)).astype(np.uint8)
    scorer = InceptionScorer(tmp_path)

    def reference(images):
        return ImageReference(to_tokens(images), np.zeros(len(images), np.int64), (1, 8, 8), "toy-test", tmp_path)

    first = scorer.score(samples, reference(grey_reference))
    again = scorer.score(samples, reference(np.zeros_like(grey_reference)))  # the same key: read from the cache
    assert first == again
    with torch.no_grad():
        nchw = torch.from_numpy(samples).permute(0, 3, 1, 2)
        ref = torch.from_numpy(grey_reference).permute(0, 3, 1, 2).expand(-1, 3, -1, -1)
        mu_s, mu_r = net(nchw, return_features=True).double().mean(0), net(ref, return_features=True).double().mean(0)
        probs = net(nchw, no_output_bias=True).numpy()
    assert first["fid"] == pytest.approx(float(((mu_s - mu_r) ** 2).sum()), rel=1e-5)
    assert (first["is_mean"], first["is_std"]) == pytest.approx(ev.inception_score(probs, splits=10), rel=1e-5)
    assert len(list(tmp_path.glob("*.npz"))) == 1


def test_cached_statistics_recomputes_unreadable_cache(tmp_path):
    feats = np.random.default_rng(8).normal(size=(10, 3))
    first = ev.cached_statistics(tmp_path, "ref/a b", lambda: feats)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not an npz")
    again = ev.cached_statistics(tmp_path, "ref/a b", lambda: feats)
    assert np.allclose(first.mu, again.mu) and again.n == 10
    other = ev.cached_statistics(tmp_path, "ref/a_b", lambda: feats[:5])  # same slug, other key
    assert other.n == 5 and len(list(tmp_path.glob("*.npz"))) == 2
