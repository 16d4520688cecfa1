"""DNA end to end on the genome fixture: a label-conditional UDLM on a DiMamba backbone with
reverse-complement augmentation and a clean DiMamba evaluation classifier train through the
command line, `eval species` scores samples per target species (with that classifier or a
HuggingFace sequence-classification model), `eval guidance` runs the species study toward each
species in turn, and unknown species are refused in one line."""

import csv
import json

import pytest
import torch

from conftest import SAMPLES
from discdiff.cli import main

DNA = ["data=ten_species", f"data.path={SAMPLES['ten_species']}", "data.length=130", "model=dimamba", "model.size=micro",
       "model.n_blocks=2", "model.hidden_size=32", "model.cond_dim=16", "model.d_state=4", "model.chunk_size=32",
       "model.dropout=0.0", "loader.global_batch_size=8", "trainer.progress_bar=false", "trainer.accelerator=cpu",
       "training.ema=0.9", "trainer.max_steps=6", "trainer.val_check_interval=6", "checkpointing.every_n_steps=6",
       "trainer.limit_val_batches=1"]
SAMPLE = ["sampling.num_samples=6", "sampling.batch_size=6", "sampling.steps=4"]


@pytest.fixture(scope="module")
def dna_runs(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("dna")
    assert main(["train", *DNA, f"run_dir={root / 'udlm'}", "algo=udlm", "data.augment=reverse_complement",
                 "training.guidance.cond_dropout=0.2"]) == 0
    assert main(["train-classifier", *DNA, f"run_dir={root / 'oracle'}", "classifier.kind=clean",
                 "classifier.model=dimamba_micro"]) == 0
    return root


def test_eval_species_per_class_rows_with_the_oracle(dna_runs, capsys):
    run = dna_runs / "udlm"
    assert main(["eval", "species", f"run_dir={run}", f"eval.classifier={dna_runs / 'oracle'}", *SAMPLE,
                 "study.conditions=[0,2]", "guidance=cfg", "guidance.gamma=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(",")[:4] == ["class", "num_generated", "invalid_fraction", "js_3mer"]
    rows = list(csv.DictReader(open(run / "eval" / "species.csv")))
    assert [r["class"] for r in rows] == ["0", "2", "all"] and rows[-1]["num_generated"] == "12"
    for row in rows:
        assert 0 <= float(row["js_6mer"]) <= 0.833 and 0 <= float(row["auroc_kmer"]) <= 1  # sqrt(ln 2) at most
    assert 0 <= float(rows[-1]["auroc"]) <= 1 and rows[0]["auroc"] == ""  # the paper's discriminator: all samples
    assert 0 <= float(rows[-1]["oracle_f1_macro"]) <= 1 and -1 <= float(rows[-1]["oracle_mcc"]) <= 1
    samples = json.loads((run / "eval" / "species_samples.json").read_text())
    assert samples["conditions"] == [0] * 6 + [2] * 6 and set("".join(samples["samples"])) <= set("ACGTN")


def test_eval_species_reads_a_samples_file_and_a_huggingface_oracle(dna_runs, tmp_path, capsys):
    run = dna_runs / "udlm"
    path = tmp_path / "s.json"
    assert main(["sample", f"run_dir={run}", *SAMPLE, "sampling.label=1", f"sampling.output={path}"]) == 0
    oracle = hf_dna_classifier(tmp_path / "hf-oracle", num_labels=3)
    assert main(["eval", "species", f"run_dir={run}", f"eval.samples={path}", f"eval.classifier={oracle}",
                 f"eval.output_dir={tmp_path / 'eval'}"]) == 0
    rows = json.loads((tmp_path / "eval" / "species.json").read_text())
    assert [r["class"] for r in rows] == [1, "all"] and rows[0]["num_generated"] == 6
    assert 0 <= rows[0]["oracle_hit_rate"] <= 1 and "oracle_accuracy" in rows[1]
    assert "evaluation classifier: " + str(oracle) in capsys.readouterr().err


def test_species_guidance_study_toward_each_species(dna_runs, tmp_path, capsys):
    study = tmp_path / "study"
    assert main(["eval", "guidance", f"run_dir={dna_runs / 'udlm'}", "guidance=cfg", "study.gammas=[0,2]",
                 "study.conditions=[0,1,2]", f"eval.classifier={dna_runs / 'oracle'}", *SAMPLE,
                 f"study.output_dir={study}"]) == 0
    rows = list(csv.DictReader(open(study / "guidance.csv")))
    assert [(r["gamma"], r["condition"]) for r in rows] == [("0.0", "0 1 2"), ("2.0", "0 1 2")]
    for row in rows:
        assert row["num_samples"] == "18" and 0 <= float(row["oracle_f1_macro"]) <= 1
        assert float(row["target_accuracy"]) == pytest.approx(float(row["oracle_accuracy"]))
    assert (study / "guidance_pareto.png").stat().st_size > 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "gamma,seed,num_samples,js_3mer,js_6mer,auroc,oracle_f1_macro,oracle_mcc,target_accuracy"


@pytest.mark.parametrize("args, expected", [
    (["eval", "species", "study.conditions=[3]"], "species 3 has no real validation windows to compare with; "
                                                  "allowed: 0 (E.Coli), 1 (H.Pylori), 2 (S.Aureus)"),
    (["eval", "guidance", "guidance=cfg", "study.conditions=[0,7]", "eval.classifier=ORACLE"],
     "species 7 has no real validation windows"),
    (["eval", "guidance", "guidance=cfg", "study.conditions=[0,12]"], "label 12 is not a class of this model; allowed: 0..9"),
    (["eval", "guidance", "guidance=cfg"], "the species study scores the target species with an evaluation "
                                           "classifier"),
])
def test_refusals_in_one_line(dna_runs, args, expected, capsys):
    args = [a.replace("ORACLE", str(dna_runs / "oracle")) for a in args]
    assert main([*args, f"run_dir={dna_runs / 'udlm'}", *SAMPLE]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and expected in err[0], err


def test_unconditional_samples_file_is_refused(dna_runs, tmp_path, capsys):
    path = tmp_path / "plain.json"
    assert main(["sample", f"run_dir={dna_runs / 'udlm'}", *SAMPLE, f"sampling.output={path}"]) == 0
    assert main(["eval", "species", f"run_dir={dna_runs / 'udlm'}", f"eval.samples={path}"]) == 2
    assert "records no target class for every sample" in capsys.readouterr().err


def hf_dna_classifier(folder, num_labels: int):
    """A tiny randomly initialised HuggingFace BERT sequence classifier over single nucleotides."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "A", "C", "G", "T", "N"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                            model_max_length=256).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=256, num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder
