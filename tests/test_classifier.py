"""Noisy classifiers: the model, `discdiff train-classifier` (metrics, resumption), loading, and
`discdiff sample guidance=cbg` with a trained classifier; refused inputs give one line, exit 2."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from discdiff.cli import main
from discdiff.models import SequenceClassifier, build_backbone, build_encoder
from discdiff.models.dimamba import build_dimamba
from discdiff.loading import load, load_classifier
from test_training import read_metric

TINY = dict(n_blocks=2, hidden_size=32, n_heads=4, cond_dim=16)
MAMBA = dict(n_blocks=2, hidden_size=32, cond_dim=16, d_state=4, chunk_size=4)


def encoder(kind, v, length, **options):
    """A small unlabelled DiT or DiMamba encoder without dropout."""
    if kind == "dimamba":
        return build_dimamba(MAMBA, v, length, dropout=0.0, **options)
    return build_backbone(TINY, v, length, dropout=0.0, **options)
CLF = ["data.label_col=qed", "optim.lr=1e-3", "lr_scheduler=constant_warmup", "lr_scheduler.warmup_steps=3",
       "trainer.limit_val_batches=2"]


def randomized(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("kind, pooling", [("dit", "mean"), ("dit", "max"), ("dimamba", "mean")])
def test_classifier_shapes_and_one_hot_path(kind, pooling):
    v, length, b = 11, 7, 3
    model = randomized(SequenceClassifier(encoder(kind, v, length), 3, pooling=pooling))
    x = torch.randint(0, v, (b, length), generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.1, 1.0, 5.0])
    log_p = model(x, sigma)
    assert log_p.shape == (b, 3) and log_p.dtype == torch.float32
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(b), atol=1e-5)
    onehot = F.one_hot(x, v).float().requires_grad_(True)
    from_onehot = model(onehot, sigma)
    assert torch.allclose(from_onehot, log_p, atol=1e-5)
    (grad,) = torch.autograd.grad(from_onehot[:, 1].sum(), onehot)  # what first-order D-CBG needs
    assert grad.shape == (b, length, v) and grad.abs().sum() > 0
    assert not torch.allclose(model(x, sigma * 0), log_p)  # time-conditioned
    clean = randomized(SequenceClassifier(encoder(kind, v, length, time_conditioning=False), 3))
    assert torch.equal(clean(x, sigma), clean(x, None))


def test_classifier_refuses_bad_options():
    with pytest.raises(ValueError, match="unknown pooling 'cls'; allowed: mean, max"):
        SequenceClassifier(encoder("dit", 5, 4), 2, pooling="cls")
    with pytest.raises(ValueError, match="one-hot input has 4 columns"):
        SequenceClassifier(encoder("dit", 5, 4), 2)(torch.zeros(1, 4, 4), None)
    with pytest.raises(ValueError, match="unknown classifier encoder 'dimamba_huge'; allowed: micro, tiny, small, "
                                         "medium, dimamba_micro"):
        build_encoder("dimamba_huge", 5, 4)


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, cache_dir, quick_overrides):
    """A noisy UDLM classifier of QED labels, 30 steps on the QM9 fixture, through the command line."""
    run_dir = tmp_path_factory.mktemp("runs") / "clf"
    assert main(["train-classifier", *quick_overrides, *CLF, f"run_dir={run_dir}", "algo=udlm",
                 "trainer.max_steps=30", "trainer.val_check_interval=15", "checkpointing.every_n_steps=15"]) == 0
    return run_dir


def test_train_classifier_lowers_the_cross_entropy(classifier_run):
    ce = read_metric(classifier_run, "train/ce")
    assert sorted(ce) == list(range(30))
    last = sum(ce[s] for s in range(20, 30)) / 10
    assert last < 0.8 * ce[0], (ce[0], last)  # from about log 2 at initialisation
    val_ce = read_metric(classifier_run, "val/ce")
    assert val_ce[29] < 0.9 * math.log(2), val_ce
    acc = read_metric(classifier_run, "val/acc")
    assert sorted(acc) == [14, 29] and all(0 <= a <= 1 for a in acc.values())
    for name in ("val/precision_0", "val/precision_1", "val/recall_0", "val/recall_1"):
        assert len(read_metric(classifier_run, name)) == 2, name
    for path in ("config.yaml", "tokenizer", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (classifier_run / path).exists(), path


def test_load_classifier(classifier_run, trained_run):
    clf = load_classifier(classifier_run, device="cpu")
    assert not clf.training and clf.checkpoint.name == "best.ckpt" and clf.cfg.diffusion == "uniform"
    vocab = load(trained_run, device="cpu").tokenizer.vocab_size
    assert clf.vocab_size == vocab
    x = torch.randint(0, vocab, (4, 32))
    log_p = clf(x, torch.full((4,), 0.5))
    assert log_p.shape == (4, 2) and torch.allclose(log_p.exp().sum(-1), torch.ones(4), atol=1e-5)
    raw = load_classifier(classifier_run / "checkpoints" / "last.ckpt", device="cpu", disable_ema=True)
    assert not torch.allclose(raw(x, 0.5), clf(x, 0.5))  # the EMA weights differ from the live ones
    with pytest.raises(ValueError, match="holds a generator, not a classifier"):
        load_classifier(trained_run, device="cpu")


def test_classifier_resumes_exactly(tmp_path, cache_dir, quick_overrides):
    """4 steps, then the same command to 8: steps 4..7 match an unbroken 8-step run."""
    common = [*quick_overrides, *CLF, "algo=mdlm", "checkpointing.every_n_steps=4",
              "trainer.val_check_interval=1000", "classifier.dropout=0.1"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert main(["train-classifier", *common, f"run_dir={whole}", "trainer.max_steps=8"]) == 0
    assert main(["train-classifier", *common, f"run_dir={broken}", "trainer.max_steps=4"]) == 0
    assert main(["train-classifier", *common, f"run_dir={broken}", "trainer.max_steps=8"]) == 0
    a, b = read_metric(whole, "train/ce"), read_metric(broken, "train/ce")
    assert sorted(a) == sorted(b) == list(range(8))
    for step in range(4, 8):
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step
    assert len(list((broken / "logs").glob("version_*"))) == 2


@pytest.mark.parametrize("first_order", [False, True])
def test_sample_with_classifier_guidance(trained_run, classifier_run, first_order):
    out_file = trained_run / f"cbg_{first_order}.json"
    assert main(["sample", f"run_dir={trained_run}", "guidance=cbg", f"guidance.classifier={classifier_run}",
                 "guidance.gamma=2", "guidance.condition=1", f"guidance.use_approx={first_order}",
                 "sampling.num_samples=2", "sampling.steps=2", f"sampling.output={out_file}"]) == 0
    record = json.loads(out_file.read_text())
    assert record["guidance"] == {"name": "cbg", "gamma": 2.0, "condition": 1, "classifier": str(classifier_run),
                                  "use_approx": first_order}
    vocab = load(trained_run, device="cpu").tokenizer.vocab_size
    tokens = torch.tensor(record["token_ids"])
    assert tokens.shape == (2, 32) and record["nfe"] == 2
    assert tokens.min() >= 0 and tokens.max() < vocab and len(record["samples"]) == 2


def _forged(classifier_run, tmp_path, name, edit):
    """A copy of the classifier's checkpoint with its stored configuration / vocabulary edited."""
    state = torch.load(classifier_run / "checkpoints" / "best.ckpt", weights_only=False)
    edit(state)
    path = tmp_path / name / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


def _grow_vocab(state):
    state["hyper_parameters"]["vocab"]["vocab_size"] += 3
    key = "classifier.encoder.token_embedding.weight"
    state["state_dict"][key] = torch.cat([state["state_dict"][key], torch.zeros(3, state["state_dict"][key].shape[1])])
    state["discdiff"]["ema"] = None


def _set(key, value):
    return lambda state: state["hyper_parameters"]["config"][key].update(value)


def test_guidance_refusals(trained_run, classifier_run, tmp_path, capsys):
    sample = ["sample", f"run_dir={trained_run}", "guidance=cbg", "sampling.num_samples=1", "sampling.steps=1"]
    cases = {
        "no classifier": (sample, "guidance=cbg needs a classifier: guidance.classifier=RUN_DIR"),
        "missing path": (sample + [f"guidance.classifier={tmp_path / 'nope'}"], "nope': no such file or folder"),
        "a generator": (sample + [f"guidance.classifier={trained_run}"], "holds a generator, not a classifier"),
        "vocabulary": (sample + [f"guidance.classifier={_forged(classifier_run, tmp_path, 'v', _grow_vocab)}"],
                       "has a vocabulary of"),
        "process": (sample + [f"guidance.classifier={_forged(classifier_run, tmp_path, 'p', lambda s: s['hyper_parameters']['config'].update(diffusion='absorbing_state'))}"],
                    "was trained on the absorbing_state process, this model uses uniform"),
        "clean": (sample + [f"guidance.classifier={_forged(classifier_run, tmp_path, 'c', _set('classifier', {'kind': 'clean'}))}"],
                  "is a classifier.kind=clean classifier; this guidance needs kind=noisy"),
        "nos with a noisy classifier": (["sample", f"run_dir={trained_run}", "guidance=nos", "sampling.num_samples=1",
                                         f"guidance.classifier={classifier_run}"], "needs kind=head"),
        "fudge for diffusion": (["sample", f"run_dir={trained_run}", "guidance=fudge", "sampling.num_samples=1",
                                 f"guidance.classifier={classifier_run}"],
                                "guidance FUDGE does not apply to diffusion models; it applies to: autoregressive"),
        "unknown kind": (["train-classifier", "data.label_col=qed", "classifier.kind=big", f"run_dir={tmp_path / 'k'}"],
                         "allowed: noisy, clean, prefix, head"),
        "head without generator": (["train-classifier", "data.label_col=qed", "classifier.kind=head",
                                    f"run_dir={tmp_path / 'h'}"], "classifier.generator=RUN_DIR goes with"),
        "head, missing generator": (["train-classifier", "data.label_col=qed", "classifier.kind=head",
                                     f"classifier.generator={tmp_path / 'nope'}", f"run_dir={tmp_path / 'hg'}"],
                                    "nope': no such file or folder"),
        "class": (sample + [f"guidance.classifier={classifier_run}", "guidance.condition=2"], "allowed: 0..1"),
        "ar": (["train-classifier", "algo=ar", "data.label_col=qed", f"run_dir={tmp_path / 'ar'}"],
               "noisy classifiers are for diffusion models"),
        "no labels": (["train-classifier", "algo=udlm", f"run_dir={tmp_path / 'nolabel'}"], "set data.label_col"),
        "bad pooling": (["train-classifier", "classifier.pooling=cls"], "allowed: mean, max"),
        "generator folder": (["train-classifier", "data.label_col=qed", f"run_dir={trained_run}"],
                             "holds a generator run, not a classifier run"),
    }
    for case, (argv, expected) in cases.items():
        assert main(argv) == 2, case
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, (case, err)
        assert err.startswith(f"discdiff {argv[0]}: error:") and expected in err, (case, err)
    assert not any((tmp_path / name).exists() for name in ("ar", "nolabel", "k", "h", "hg"))


def test_help_and_config(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train-classifier", "--help"])
    assert done.value.code == 0 and "noisy classifier" in capsys.readouterr().out
    assert main(["config", "guidance=cbg", "classifier.pooling=max"]) == 0
    out = capsys.readouterr().out
    assert "pooling: max" in out and "use_approx: false" in out and "kind: noisy" in out
