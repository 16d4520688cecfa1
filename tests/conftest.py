"""Shared fixtures: a tiny trained-in-seconds QM9 run on the committed fixture."""

import os
from pathlib import Path

import pytest
import torch

# Tests never reach the HuggingFace hub (offline, no retries) and read the committed BERT vocabulary.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DISCDIFF_BERT_VOCAB", os.path.join(os.path.dirname(__file__), "fixtures", "bert", "vocab.txt"))
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", min(2, os.cpu_count() or 1))))

# The committed samples of the real datasets (each folder's README says where they come from),
# given to discdiff as data.path.
FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = {"qm9": FIXTURES / "qm9" / "qm9_sample.csv", "lm1b": FIXTURES / "lm1b" / "lm1b_sample.jsonl",
           "text8": FIXTURES / "text8" / "text8_sample.txt", "imdb": FIXTURES / "imdb" / "imdb_sample.csv",
           "ten_species": FIXTURES / "dna", "fashion_mnist": FIXTURES / "fashion_mnist"}

# Small runs on the committed QM9 sample; every test that trains uses these on top of its own.
QUICK = ["model=micro", f"data.path={SAMPLES['qm9']}", "loader.global_batch_size=32", "trainer.progress_bar=false",
         "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "training.ema=0.9", "model.dropout=0.0"]


@pytest.fixture(scope="session")
def quick_overrides():
    return list(QUICK)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One processed-data cache for the whole session (QM9 fixture properties computed once)."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["DISCDIFF_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cache_dir):
    """A UDLM (label-conditional) trained for 40 steps on the QM9 fixture; returns its run folder."""
    from discdiff.config import compose
    from discdiff.training.run import train

    run_dir = tmp_path_factory.mktemp("runs") / "udlm"
    cfg = compose(QUICK + [f"run_dir={run_dir}", "algo=udlm", "trainer.max_steps=40",
                           "trainer.val_check_interval=20", "checkpointing.every_n_steps=20",
                           "data.label_col=qed", "training.guidance.cond_dropout=0.1", "optim.lr=1e-3"])
    train(cfg)
    return run_dir


# A tiny causal LM judge for generative perplexity, built offline (the hub is not reachable).
JUDGE_CORPUS = ["the cat sat on the mat", "a dog ran in the park", "we read a good book today",
                "this product works well", "i would not buy it again", "the weather was warm and sunny"]
JUDGE_CONTEXT = 16


@pytest.fixture(scope="session")
def tiny_judge_dir(tmp_path_factory):
    """A 2-layer GPT-2 with a word-level tokenizer (eos `<eos>`, no pad token), saved like a hub model."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(JUDGE_CORPUS, trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=raw.get_vocab_size(), n_positions=JUDGE_CONTEXT, n_embd=32, n_layer=2, n_head=2,
                        initializer_range=0.3, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    path = tmp_path_factory.mktemp("tiny_judge")
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
