"""The command line: help, refused inputs (one line, exit 2), and the train/sample/eval flow."""

import json

import pytest

from discdiff.cli import main

REFUSED = {
    "unknown group option": (["config", "algo=sedd"], "unknown algo 'sedd'; allowed: ar, mdlm, udlm"),
    "unknown key": (["config", "trainer.maxsteps=3"], "unknown config key 'trainer.maxsteps'"),
    "unknown key in a group": (["config", "model.width=3"], "allowed under 'model'"),
    "uniform with subs": (["config", "algo=udlm", "parameterization=subs"], "parameterization=subs needs diffusion=absorbing_state"),
    "T>0 with ar": (["config", "algo=ar", "T=10"], "T=10 does not apply to parameterization=ar"),
    "d3pm absorbing in continuous time": (["config", "algo=mdlm", "parameterization=d3pm"], "needs discrete time (T>0)"),
    "not key=value": (["config", "max_steps"], "is not key=value"),
    "bad strategy": (["config", "trainer.strategy=deepspeed"], "allowed: auto, ddp, fsdp"),
    "cond dropout without labels": (["config", "training.guidance.cond_dropout=0.1"], "set data.label_col"),
    "unknown dataset": (["config", "data.name=mnist"], "data.name='mnist' is not allowed; allowed: qm9, lm1b"),
    "unknown noise": (["config", "noise=sqrt"], "unknown noise 'sqrt'; allowed: cosine"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_inputs_give_one_line(case, capsys):
    argv, expected = REFUSED[case]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"discdiff {argv[0]}: error:") and expected in err, err


def test_sample_from_missing_run_folder(tmp_path, capsys):
    assert main(["sample", f"run_dir={tmp_path / 'nothing'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "neither a run folder nor a checkpoint" in err


def test_eval_qm9_bad_samples_file(trained_run, tmp_path, capsys):
    bad = tmp_path / "samples.json"
    bad.write_text("{not json")
    assert main(["eval", "qm9", f"run_dir={trained_run}", f"eval.samples={bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err


def test_label_on_unknown_class_refused(trained_run, capsys):
    assert main(["sample", f"run_dir={trained_run}", "sampling.label=5", "sampling.num_samples=2"]) == 2
    assert "allowed: 0..1" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["sample", "--help"], ["eval", "ppl", "--help"],
                                  ["eval", "qm9", "--help"], ["config", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    assert "usage: discdiff" in capsys.readouterr().out


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "experiment=qm9", "algo=mdlm"]) == 0
    out = capsys.readouterr().out
    assert "global_batch_size: 2048" in out and "parameterization: subs" in out and "label_col: qed" in out


def test_sample_then_eval_qm9(trained_run, capsys):
    out_file = trained_run / "cli_samples.json"
    assert main(["sample", f"run_dir={trained_run}", "sampling.num_samples=24", "sampling.batch_size=12",
                 "sampling.steps=8", f"sampling.output={out_file}", "sampling.label=1"]) == 0
    record = json.loads(out_file.read_text())
    assert len(record["samples"]) == 24 and all(isinstance(s, str) for s in record["samples"])
    assert record["nfe"] == 8 and len(record["token_ids"][0]) == 32
    capsys.readouterr()
    assert main(["eval", "qm9", f"run_dir={trained_run}", f"eval.samples={out_file}",
                 f"eval.output_dir={trained_run / 'eval'}"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_samples"] == 24 and 0 <= metrics["valid"] <= 24
    for name in ("qm9_metrics.csv", "qm9_metrics.json", "qed_hist.png"):
        assert (trained_run / "eval" / name).exists()


def test_eval_ppl_counts_real_tokens_unless_asked(trained_run, capsys):
    """QM9 trains on padding; the reported likelihood leaves it out (the validation split: QM9
    has no test split), unless eval.include_padding=true."""
    from discdiff.data import build_split
    from discdiff.loading import load

    common = ["eval", "ppl", f"run_dir={trained_run}", "eval.max_batches=2", "loader.eval_batch_size=16"]
    assert main(common) == 0
    result = json.loads(capsys.readouterr().out)
    dataset, _, _ = build_split(load(trained_run).cfg.data, "valid")
    real = sum(int(dataset[i]["attention_mask"].sum()) for i in range(32))
    assert result["tokens"] == real < 2 * 16 * 32 and result["split"] == "valid"
    assert result["counted"].startswith("real tokens") and result["conditional"]
    assert result["ppl"] == pytest.approx(2.718281828 ** result["nll"], rel=1e-6)
    assert 1 < result["ppl"] < 36  # better than uniform over the 35-token vocabulary + mask
    assert main([*common, "eval.include_padding=true"]) == 0
    padded = json.loads(capsys.readouterr().out)
    assert padded["tokens"] == 2 * 16 * 32 and padded["counted"].startswith("every position")


def test_sampling_with_classifier_free_guidance(trained_run, capsys):
    out_file = trained_run / "cfg_samples.json"
    assert main(["sample", f"run_dir={trained_run}", "guidance=cfg", "guidance.gamma=3", "sampling.num_samples=8",
                 "sampling.steps=6", f"sampling.output={out_file}"]) == 0
    record = json.loads(out_file.read_text())
    assert record["guidance"] == {"name": "cfg", "gamma": 3.0, "condition": 1}
    assert len(record["samples"]) == 8 and record["nfe"] == 6  # one batched pass per step


def test_guidance_refusals(trained_run, tmp_path, capsys):
    assert main(["sample", f"run_dir={trained_run}", "guidance=cfg", "guidance.condition=7"]) == 2
    assert "allowed: 0..1" in capsys.readouterr().err
    assert main(["config", "guidance=banana"]) == 2
    assert "allowed: cbg, cfg, fudge, nos, pplm" in capsys.readouterr().err
