"""Text end to end on the IMDB fixture (the offline stand-in for Amazon Polarity): a
label-conditional UDLM and a clean evaluation classifier train through the command line,
`eval gen-ppl` judges samples with a causal LM, and `eval guidance` runs the sentiment study with
the text metrics; bad judges and samples files are refused in one line."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from conftest import SAMPLES
from discdiff.cli import main
from discdiff.data.datasets import load_tokens, reference_texts
from discdiff.loading import stored_config

TEXT = ["data=imdb", f"data.path={SAMPLES['imdb']}", "data.length=32", "model=micro", "model.dropout=0.0",
        "loader.global_batch_size=16", "trainer.progress_bar=false", "trainer.accelerator=cpu", "training.ema=0.9",
        "trainer.max_steps=12", "trainer.val_check_interval=12", "checkpointing.every_n_steps=12",
        "trainer.limit_val_batches=1"]


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("text")
    assert main(["train", *TEXT, f"run_dir={root / 'udlm'}", "algo=udlm", "training.guidance.cond_dropout=0.2"]) == 0
    assert main(["train-classifier", *TEXT, f"run_dir={root / 'clean'}", "classifier.kind=clean"]) == 0
    return root


def test_eval_gen_ppl_writes_summary_and_per_sample_values(text_runs, tiny_judge_dir, capsys):
    run = text_runs / "udlm"
    assert main(["eval", "gen-ppl", f"run_dir={run}", f"eval.judge={tiny_judge_dir}", "sampling.num_samples=4",
                 "sampling.batch_size=4", "sampling.steps=4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_samples"] == 4 and result["gen_ppl"] > 1 and 0 <= result["diversity"] <= 1
    assert result["entropy"] >= 0 and result["judge"] == str(tiny_judge_dir)
    assert result["gen_ppl_full"] > 1 and 0 <= result["diversity_judge"] <= 1 and result["max_length"] == 32
    assert 0 <= result["mauve"] <= 1 and result["mauve_samples"] == 4 and result["mauve_references"] == "of any class"
    per_sample = json.loads((run / "eval" / "gen_ppl_per_sample.json").read_text())
    assert len(per_sample) == 4 and {"text", "nll", "tokens", "ppl", "ppl_full", "entropy"} <= set(per_sample[0])


def test_eval_gen_ppl_refusals(text_runs, tiny_judge_dir, trained_run, tmp_path, capsys):
    run = text_runs / "udlm"
    assert main(["sample", f"run_dir={trained_run}", "sampling.num_samples=2", "sampling.steps=2",
                 f"sampling.output={tmp_path / 'qm9.json'}"]) == 0
    (tmp_path / "empty.json").write_text(json.dumps({"samples": []}))
    cases = {
        "unloadable judge": ([f"eval.judge={tmp_path / 'no-judge'}"], "cannot load judge"),
        "empty samples": ([f"eval.judge={tiny_judge_dir}", f"eval.samples={tmp_path / 'empty.json'}"],
                          "non-empty 'samples' list"),
        "another tokenizer's ids": ([f"eval.judge={tiny_judge_dir}", f"eval.samples={tmp_path / 'qm9.json'}"],
                                    "its token ids are not this model's"),
    }
    capsys.readouterr()
    for case, (extra, expected) in cases.items():
        assert main(["eval", "gen-ppl", f"run_dir={run}", "sampling.num_samples=2", "sampling.steps=2", *extra]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(err) == 1 and expected in err[0], (case, err)


def test_sentiment_guidance_study(text_runs, tiny_judge_dir, tmp_path, capsys):
    study = tmp_path / "study"
    common = ["eval", "guidance", f"run_dir={text_runs / 'udlm'}", "guidance=cfg", "study.gammas=[0,2]",
              "sampling.num_samples=4", "sampling.batch_size=4", "sampling.steps=4", f"study.output_dir={study}",
              f"eval.judge={tiny_judge_dir}"]
    assert main([*common, f"eval.classifier={text_runs / 'clean'}"]) == 0
    rows = list(csv.DictReader((study / "guidance.csv").open()))
    assert [float(r["gamma"]) for r in rows] == [0.0, 2.0]  # no reference row for text
    for row in rows:
        assert 0 <= float(row["target_accuracy"]) <= 1 and float(row["gen_ppl"]) > 1
        assert float(row["entropy"]) >= 0 and 0 <= float(row["diversity"]) <= 1
    assert (study / "guidance_pareto.png").stat().st_size > 5_000
    assert capsys.readouterr().out.splitlines()[0] == "gamma,seed,num_samples,gen_ppl,entropy,diversity,mauve,target_accuracy"
    assert main(common) == 2
    assert "set eval.classifier=RUN_DIR" in capsys.readouterr().err


def test_study_sampled_without_judge_is_judged_later(text_runs, tiny_judge_dir, tmp_path):
    """`eval.judge=none` leaves the fluency columns out (sample where the GPU is);
    bench/rescore_text_study.py fills them from the kept samples (judge where the judge is)."""
    study = tmp_path / "study"
    assert main(["eval", "guidance", f"run_dir={text_runs / 'udlm'}", "guidance=cfg", "study.gammas=[0,2]",
                 "sampling.num_samples=4", "sampling.batch_size=4", "sampling.steps=4", f"study.output_dir={study}",
                 "eval.judge=none", f"eval.classifier={text_runs / 'clean'}"]) == 0
    rows = json.loads((study / "guidance.json").read_text())
    assert all("gen_ppl" not in r and 0 <= r["target_accuracy"] <= 1 for r in rows)
    path = Path(__file__).resolve().parents[1] / "bench" / "rescore_text_study.py"
    spec = importlib.util.spec_from_file_location("rescore_text_study", path)
    rescore = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rescore)
    assert rescore.main([str(study), "--judge", str(tiny_judge_dir), "--run-dir", str(text_runs / "udlm")]) == 0
    judged = json.loads((study / "guidance.json").read_text())
    assert [r["target_accuracy"] for r in judged] == [r["target_accuracy"] for r in rows]
    assert all(r["gen_ppl"] > 1 and r["entropy"] >= 0 and r["judge"] == str(tiny_judge_dir) for r in judged)
    assert (study / "guidance_pareto.png").stat().st_size > 5_000


def test_mauve_references_are_real_texts_of_the_target_classes(text_runs):
    """MAUVE's references: one validation review per sample, of its target class, seeded; a class
    with too few reviews is refused in one line."""
    data = stored_config(text_runs / "udlm").data
    references = reference_texts(data, [1, 1, 0], length=8, seed=0)
    assert len(references) == 3 and all(references) and references == reference_texts(data, [1, 1, 0], 8, seed=0)
    tokens, tokenizer = load_tokens(data)
    valid = tokens["valid"]
    by_class = {k: {tokenizer.decode(valid.ids[valid.offsets[i]:valid.offsets[i + 1]][:8])
                    for i in range(len(valid)) if valid.labels["label"][i] == k} for k in (0, 1)}
    assert references[0] in by_class[1] and references[1] in by_class[1] and references[2] in by_class[0]
    with pytest.raises(ValueError, match="fewer than the 100000 references asked for") as err:
        reference_texts(data, [1] * 100000, 8)
    assert "\n" not in str(err.value)
