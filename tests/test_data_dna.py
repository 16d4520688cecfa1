"""Tests of the species data (`discdiff.data.dna`), the DNA tokenizer and the batch augmentations."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SAMPLES
from discdiff.data import build_datasets, get_spec
from discdiff.data.augment import build_augment, hflip, reverse_complement
from discdiff.data.dna import genome_folders, read_fasta, windows
from discdiff.data.registry import DataConfig
from discdiff.data.tokenizers import DNATokenizer, load_tokenizer

FIXTURE = SAMPLES["ten_species"]
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def write_fasta(path: Path, sequence: str, width: int = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f">{path.stem} test record"] + [sequence[i:i + width] for i in range(0, len(sequence), width)]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_read_fasta_joins_records_and_maps_ambiguity_codes(tmp_path):
    path = write_fasta(tmp_path / "a.fasta.gz", "acgtRYNacgt")
    with gzip.open(path, "at") as f:
        f.write(">second record\nTTTT\n")
    assert read_fasta(path) == "ACGTNNNACGTTTTT"


@pytest.mark.parametrize("text, match", [
    ("ACGT\n", r"is not a FASTA file \(no '>' header on its first line\)$"),
    (">x\nACGTXZ\n", r"holds letters other than A, C, G, T, N: XZ$"),
])
def test_read_fasta_refuses_bad_files_in_one_line(tmp_path, text, match):
    path = tmp_path / "bad.fasta"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_fasta(path)


def test_windows_do_not_overlap_and_drop_the_remainder():
    assert windows("ABCDEFGHIJ", 3) == ["ABC", "DEF", "GHI"]


def test_dna_tokenizer_round_trip_and_complement():
    tok = DNATokenizer()
    assert tok.decode(tok.encode("ACGTN")) == "ACGTN"
    table = tok.complement_ids()
    ids = tok.encode("AACGTN")
    assert tok.decode([table[i] for i in ids]) == "TTGCAN"
    assert table[tok.bos_id] == tok.bos_id and table[tok.pad_id] == tok.pad_id


def test_dna_tokenizer_saves_and_loads(tmp_path):
    DNATokenizer().save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, DNATokenizer) and loaded.complement_ids() == DNATokenizer().complement_ids()


def test_fixture_split_holds_out_one_strain_per_species(tmp_path):
    cfg = {"name": "ten_species", "path": str(SAMPLES["ten_species"]), "length": 1002, "cache_dir": str(tmp_path), "label_col": "species"}
    train, valid, tok = build_datasets(cfg)
    genomes = {p.name: read_fasta(p) for files in genome_folders(FIXTURE).values() for p in files}
    source = {w: name for name, g in genomes.items() for w in windows(g, 1000)}

    def strains(dataset):
        found = {}
        for i in range(len(dataset)):
            item = dataset[i]
            ids = item["input_ids"]
            assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and len(ids) == 1002
            found.setdefault(int(item["label"]), set()).add(source[tok.decode(ids)])
        return found

    train_strains, valid_strains = strains(train), strains(valid)
    assert sorted(train_strains) == sorted(valid_strains) == [0, 1, 2]  # E. coli, H. pylori, S. aureus
    for label in range(3):
        assert len(valid_strains[label]) == 1 and not valid_strains[label] & train_strains[label]
    assert len(train) + len(valid) == sum(len(g) // 1000 for g in genomes.values())


def test_token_cache_is_reused_and_follows_the_genomes(tmp_path):
    genomes = tmp_path / "genomes"
    for species, seq in (("A", "ACGT" * 100), ("B", "GGCC" * 100)):
        for strain in ("s1", "s2"):
            write_fasta(genomes / species / f"{strain}.fasta", seq)
    cfg = {"name": "ten_species", "path": str(genomes), "length": 42, "cache_dir": str(tmp_path / "cache")}
    train, _, tok = build_datasets(cfg)
    assert isinstance(train.tokens.ids, np.memmap) and tok.decode(train[0]["input_ids"]) in ("ACGT" * 10, "GGCC" * 10)
    token_files = sorted((tmp_path / "cache").rglob("*.tokens"))
    stamps = [p.stat().st_mtime_ns for p in token_files]
    build_datasets(cfg)
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "cache").rglob("*.tokens"))] == stamps
    write_fasta(genomes / "B" / "s2.fasta", "TTAA" * 100)
    build_datasets(cfg)
    assert len(sorted((tmp_path / "cache").rglob("*.tokens"))) > len(token_files)


def test_genome_folder_with_one_species_is_refused(tmp_path):
    write_fasta(tmp_path / "only" / "x.fasta", "ACGT" * 10)
    with pytest.raises(ValueError, match=r"holds FASTA files of 1 species; a species dataset needs at least 2"):
        build_datasets({"name": "ten_species", "path": str(tmp_path), "length": 16})


def test_length_longer_than_the_genomes_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"genomes too short for data.length"):
        build_datasets({"name": "ten_species", "path": str(SAMPLES["ten_species"]), "length": 1_000_000, "cache_dir": str(tmp_path)})


@pytest.mark.parametrize("cfg, match", [
    ({"name": "qm9", "augment": "reverse_complement"},
     r"^data.augment=reverse_complement does not apply to qm9; allowed: null \(none for this dataset\)$"),
    ({"name": "ten_species", "augment": "hflip"}, r"^data.augment=hflip does not apply to ten_species; allowed: "
                                                  r"reverse_complement$"),
])
def test_augment_must_fit_the_dataset(cfg, match):
    with pytest.raises(ValueError, match=match):
        DataConfig.from_mapping(cfg)


def test_reverse_complement_matches_string_reverse_complement():
    tok = DNATokenizer()
    texts = ["ACGTTG", "GATTACA", "C", "NACG"]
    length = 10
    rows, masks = [], []
    for text in texts:
        ids = [tok.bos_id, *tok.encode(text), tok.eos_id]
        rows.append(ids + [tok.pad_id] * (length - len(ids)))
        masks.append([1] * len(ids) + [0] * (length - len(ids)))
    batch = {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(masks), "label": torch.arange(4)}
    torch.manual_seed(0)
    chosen = torch.rand(4) < 0.5
    torch.manual_seed(0)
    out = reverse_complement(tok.complement_ids())(batch)
    assert 0 < int(chosen.sum()) < 4
    for k, text in enumerate(texts):
        expected = text[::-1].translate(COMPLEMENT) if chosen[k] else text
        ids = out["input_ids"][k].tolist()
        assert ids[0] == tok.bos_id and tok.decode(ids) == expected and ids[len(text) + 1] == tok.eos_id
        assert ids[len(text) + 2:] == [tok.pad_id] * (length - len(text) - 2)
    assert torch.equal(out["label"], batch["label"]) and torch.equal(out["attention_mask"], batch["attention_mask"])


def test_hflip_mirrors_images_left_to_right():
    images = torch.arange(4 * 2 * 3 * 5).view(4, 2, 3, 5)
    torch.manual_seed(1)
    chosen = torch.rand(4) < 0.5
    torch.manual_seed(1)
    out = hflip((2, 3, 5))({"input_ids": images.reshape(4, -1)})["input_ids"].view(4, 2, 3, 5)
    for k in range(4):
        assert torch.equal(out[k], images[k].flip(-1) if chosen[k] else images[k])


def test_build_augment_names():
    assert build_augment({"name": "qm9", "augment": None}) is None
    assert build_augment({"name": "ten_species", "augment": "reverse_complement"}) is not None
    assert get_spec("ten_species").augmentations == ("reverse_complement",)
