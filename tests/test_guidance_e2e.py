"""Every guidance method end to end on the QM9 fixture, through the command line: briefly trained
generators (a conditional UDLM, a conditional AR model) and classifiers of each kind, sampled
with guidance, and the `eval qm9-guidance` study table and plot. No thresholds on quality: that is
what the study measures; these check that the pieces fit and what they write."""

import csv
import json

import pytest
import torch

from discdiff.cli import main
from discdiff.models import HiddenStateClassifier
from discdiff.loading import load, load_classifier

CLF = ["data.label_col=qed", "optim.lr=1e-3", "lr_scheduler=constant_warmup", "lr_scheduler.warmup_steps=3",
       "trainer.limit_val_batches=2", "trainer.max_steps=10", "trainer.val_check_interval=10",
       "checkpointing.every_n_steps=10"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir, quick_overrides, trained_run):
    """{name: run folder}: the shared conditional UDLM, a conditional AR model, and classifiers."""
    root = tmp_path_factory.mktemp("guided")
    ar = root / "ar"
    assert main(["train", *quick_overrides, f"run_dir={ar}", "algo=ar", "data.label_col=qed",
                 "training.guidance.cond_dropout=0.2", "trainer.max_steps=20", "trainer.val_check_interval=10",
                 "checkpointing.every_n_steps=10", "optim.lr=1e-3"]) == 0
    classifiers = {"prefix": ["algo=ar", "classifier.kind=prefix"],
                   "pplm_head": ["algo=ar", "classifier.kind=head", f"classifier.generator={ar}"],
                   "nos_head": ["algo=udlm", "classifier.kind=head", f"classifier.generator={trained_run}"],
                   "clean": ["algo=udlm", "classifier.kind=clean"]}
    out = {"udlm": trained_run, "ar": ar}
    for name, options in classifiers.items():
        out[name] = root / name
        assert main(["train-classifier", *quick_overrides, *CLF, *options, f"run_dir={out[name]}"]) == 0
    return out


@pytest.mark.parametrize("model, method, classifier, options", [
    ("udlm", "cfg", None, ["guidance.gamma=2"]),
    ("udlm", "nos", "nos_head", ["guidance.num_nos_steps=2", "guidance.nos_step_size=0.5"]),
    ("ar", "cfg", None, ["guidance.gamma=2"]),
    ("ar", "fudge", "prefix", ["guidance.topk=5"]),
    ("ar", "pplm", "pplm_head", ["guidance.num_pplm_steps=2", "guidance.pplm_step_size=0.5"]),
])
def test_sample_with_each_method(runs, tmp_path, model, method, classifier, options):
    out_file = tmp_path / "samples.json"
    argv = ["sample", f"run_dir={runs[model]}", f"guidance={method}", "sampling.num_samples=4",
            "sampling.steps=4", f"sampling.output={out_file}", *options]
    if classifier:
        argv.append(f"guidance.classifier={runs[classifier]}")
    assert main(argv) == 0
    record = json.loads(out_file.read_text())
    assert record["guidance"]["name"] == method and len(record["samples"]) == 4
    tokens = torch.tensor(record["token_ids"])
    assert tokens.shape == (4, 32) and 0 <= tokens.min() and tokens.max() < load(runs[model]).tokenizer.vocab_size


def test_head_classifier_carries_its_frozen_generator(runs):
    head = load_classifier(runs["nos_head"], device="cpu")
    generator = load(runs["udlm"], device="cpu").lm
    assert isinstance(head, HiddenStateClassifier) and not head.causal
    assert all(torch.equal(a, b) for a, b in zip(head.generator.state_dict().values(),
                                                generator.state_dict().values()))
    x = torch.randint(0, head.vocab_size, (3, 32))
    assert head(x, torch.full((3,), 0.5)).exp().sum(-1).allclose(torch.ones(3))
    assert load_classifier(runs["pplm_head"], device="cpu").causal


def test_refusals_of_classifiers_for_the_wrong_method_or_model(runs, capsys):
    cases = {
        "cbg for AR": (["guidance=cbg", f"run_dir={runs['ar']}"], "guidance CBG does not apply to autoregressive"),
        "nos for AR": (["guidance=nos", f"run_dir={runs['ar']}"], "guidance NOS does not apply to autoregressive"),
        "fudge, clean classifier": (["guidance=fudge", f"run_dir={runs['ar']}", f"guidance.classifier={runs['clean']}"],
                                    "is a classifier.kind=clean classifier; this guidance needs kind=prefix"),
        "head of another generator": (["guidance=nos", f"run_dir={runs['udlm']}",
                                       f"guidance.classifier={runs['pplm_head']}"], "trained on another generator"),
    }
    with pytest.raises(ValueError, match="guidance=cbg has no option topk; allowed: use_approx"):
        load(runs["udlm"]).guidance("cbg", 1.0, 1, topk=3)
    for case, (argv, expected) in cases.items():
        assert main(["sample", "sampling.num_samples=1", *argv]) == 2, case
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, (case, err)


def test_qm9_guidance_study_table_and_plot(runs, tmp_path, capsys):
    study = tmp_path / "study"
    common = ["eval", "qm9-guidance", "sampling.num_samples=6", "sampling.steps=4", "study.gammas=[0,2]",
              f"study.output_dir={study}"]
    assert main([*common, f"run_dir={runs['udlm']}", "guidance=cfg", "study.seeds=[1,2]",
                 f"eval.classifier={runs['clean']}"]) == 0
    assert main([*common, f"run_dir={runs['ar']}", "guidance=fudge", f"guidance.classifier={runs['prefix']}"]) == 0
    assert main([*common, f"run_dir={runs['ar']}", "guidance=fudge", f"guidance.classifier={runs['prefix']}"]) == 0
    rows = list(csv.DictReader((study / "guidance.csv").open()))
    assert [(r["model"], r["method"]) for r in rows][0] == ("data", "data")
    settings = sorted((r["model"], r["method"], float(r["gamma"]), int(r["seed"])) for r in rows[1:])
    assert settings == sorted([("udlm", "cfg", g, s) for g in (0, 2) for s in (1, 2)]
                              + [("ar", "fudge", g, 1) for g in (0, 2)])  # a rerun replaced its rows
    for row in rows[1:]:
        assert int(row["num_samples"]) == 6 and 0 <= int(row["novel"]) <= int(row["unique"]) <= int(row["valid"]) <= 6
        assert json.loads(row["settings"]) == ({} if row["method"] == "cfg" else {"topk": 50})
        assert (0 <= float(row["target_accuracy"]) <= 1) if row["method"] == "cfg" else not row["target_accuracy"]
        assert (row["sampler"], row["steps"]) == ("ancestral", "4")
        name = f"{row['model']}_{row['method']}_ancestral_T4_g{float(row['gamma']):g}_s{row['seed']}.json"
        assert len(json.loads((study / "samples" / name).read_text())["samples"]) == 6
    assert float(rows[0]["qed_valid_mean"]) > 0 and (study / "guidance_pareto.png").stat().st_size > 10_000
    assert not (study / "guidance_steps.png").exists()  # no setting at several steps yet
    assert main([*common, f"run_dir={runs['udlm']}", "guidance=cfg", "study.gammas=[3]", "sampling.method=psi",
                 "study.steps=[2,4]", "sampling.top_p=0.9"]) == 0
    rows = list(csv.DictReader((study / "guidance.csv").open()))
    corrected = [(r["sampler"], int(r["steps"]), float(r["gamma"])) for r in rows if r["sampler"].startswith("psi")]
    assert corrected == [("psi-k0.95-t0.1-0.5-p0.9", 2, 3.0), ("psi-k0.95-t0.1-0.5-p0.9", 4, 3.0)]
    assert len(rows) == 1 + 6 + 2 and (study / "guidance_steps.png").stat().st_size > 10_000
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "gamma,seed,num_samples,valid,unique,novel,qed_novel_mean,target_accuracy"
    assert main(["eval", "guidance", f"run_dir={runs['udlm']}"]) == 2
    assert "add guidance=cfg|cbg|nos|fudge|pplm" in capsys.readouterr().err
