"""Species10: genomic DNA windows labelled with their species (the paper's third domain).

Each sequence is ``[BOS] window [EOS]`` with a window of `data.length` - 2 nucleotides (32,766
for the default length of 32,768) over A, C, G, T and N, one character per token; the label
column `species` is the species' index. The markers make every model family read the same
sequences (an AR model starts from [BOS]). With `data.augment=reverse_complement` a random half
of each training batch is reverse-complemented (`discdiff.data.augment`), which keeps the species.

Sources:
* ``hub`` / ``auto``: HF dataset ``yairschiff/ten_species`` (ten species, 32,768-nucleotide
  chunks, label column ``species_label``), split 95/5 with ``split_seed``;
* ``offline``: the complete bacterial genomes of Debian's ``ragout-examples`` package
  (``usr/share/doc/ragout/examples/<species>/references/*.fasta.gz``: E. coli, H. pylori,
  S. aureus, V. cholerae, 2-5 strains each), fetched with ``apt-get download`` into the cache
  (or found installed), cut into non-overlapping windows; the split is by strain: for every
  species one strain (chosen with ``split_seed``) is validation, so no window of a validation
  genome is seen in training;
* ``path``: a folder of ``<species>/<strain>.fasta[.gz]`` files, read like the offline source
  (the tests give ``tests/fixtures/dna/``, short pieces of two of those genomes).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..files import cache_root
from .cache import debian_package, file_digest
from .datasets import load_tokens
from .registry import DataConfig, DatasetSpec, Splits, seeded_split
from .tokenizers import DNATokenizer

RAGOUT_PACKAGE = "ragout-examples"
RAGOUT_EXAMPLES = Path("usr/share/doc/ragout/examples")
VALID_FRACTION = 0.05
SEQUENCE_COLUMNS = ("sequence", "seq", "text")
NUCLEOTIDES = set("ACGTN")


def read_fasta(path: Path) -> str:
    """The concatenated records of a (gzipped) FASTA file, upper case; one-line ValueError when it
    is not FASTA or holds letters other than A, C, G, T, N (IUPAC ambiguity codes become N)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        lines = f.read().splitlines()
    if not lines or not lines[0].startswith(">"):
        raise ValueError(f"{path} is not a FASTA file (no '>' header on its first line)")
    sequence = "".join(line.strip() for line in lines if not line.startswith(">")).upper()
    sequence = sequence.translate(_AMBIGUOUS)
    other = set(sequence) - NUCLEOTIDES
    if other:
        raise ValueError(f"{path} holds letters other than A, C, G, T, N: {''.join(sorted(other))[:20]}")
    return sequence


_AMBIGUOUS = str.maketrans({c: "N" for c in "RYSWKMBDHV"})


def genome_folders(root: Path) -> dict[str, list[Path]]:
    """{species: its strains' FASTA files} of a folder laid out as <species>/[references/]<strain>.fasta[.gz]."""
    found = {}
    for species in sorted(p for p in root.iterdir() if p.is_dir()):
        where = species / "references" if (species / "references").is_dir() else species
        files = sorted(list(where.glob("*.fasta")) + list(where.glob("*.fasta.gz")) + list(where.glob("*.fa.gz")))
        if files:
            found[species.name] = files
    if len(found) < 2:
        raise ValueError(f"{root} holds FASTA files of {len(found)} species; a species dataset needs at least 2 "
                         "(<species>/<strain>.fasta[.gz])")
    return found


def ragout_examples(cache_dir: Path) -> Path:
    """The examples folder of Debian's ragout-examples: installed, else fetched into the cache."""
    return debian_package(RAGOUT_PACKAGE, RAGOUT_EXAMPLES, cache_dir / "ragout", "DNA")


def windows(sequence: str, length: int) -> list[str]:
    """Non-overlapping windows of `length` nucleotides (the remainder is dropped)."""
    return [sequence[i:i + length] for i in range(0, len(sequence) - length + 1, length)]


def _genome_splits(root: Path, length: int, seed: int) -> tuple[dict, list[str]]:
    """{split: (windows, labels)} with one strain per species held out for validation."""
    species = genome_folders(root)
    rng = np.random.default_rng(seed)
    parts = {"train": ([], []), "valid": ([], [])}
    for label, (name, files) in enumerate(species.items()):
        held_out = int(rng.integers(len(files))) if len(files) > 1 else -1
        for k, path in enumerate(files):
            split = "valid" if k == held_out else "train"
            cut = windows(read_fasta(path), length - 2)
            parts[split][0].extend(cut)
            parts[split][1].extend([label] * len(cut))
    for split, (texts, _) in parts.items():
        if not texts:
            raise ValueError(f"no {split} windows of {length} nucleotides in {root}: genomes too short for data.length")
    return parts, list(species)


def _hub_splits(hub_id: str, seed: int) -> dict:
    import datasets  # heavy: only for the hub source

    frame = datasets.load_dataset(hub_id, split="train").to_pandas()
    column = next((c for c in SEQUENCE_COLUMNS if c in frame.columns), None)
    if column is None or "species_label" not in frame.columns:
        raise ValueError(f"{hub_id} needs a sequence column ({', '.join(SEQUENCE_COLUMNS)}) and species_label; found "
                         f"{list(frame.columns)}")
    train_idx, valid_idx = seeded_split(len(frame), seed, VALID_FRACTION)
    texts, labels = frame[column].str.upper().to_numpy(), frame["species_label"].to_numpy()
    return {"train": (texts[train_idx].tolist(), labels[train_idx]), "valid": (texts[valid_idx].tolist(), labels[valid_idx])}


def _root(cfg: DataConfig, spec: DatasetSpec) -> Path:
    if cfg.path is not None:
        return Path(cfg.path).expanduser()
    return ragout_examples(cache_root(cfg.cache_dir))


def identity(cfg: DataConfig, spec: DatasetSpec) -> str:
    if cfg.source in ("auto", "hub") and cfg.path is None:
        source = f"hub:{spec.hub_id}"
    else:
        root = _root(cfg, spec)
        digests = [file_digest(p) for files in genome_folders(root).values() for p in files]
        source = f"genomes:{'|'.join(digests)}"
    return f"species:{source}:length={cfg.seq_len}:seed={cfg.split_seed}"


def tokenizer(cfg: DataConfig, spec: DatasetSpec) -> DNATokenizer:
    return DNATokenizer()


def load_splits(cfg: DataConfig, spec: DatasetSpec) -> Splits:
    if cfg.source in ("auto", "hub") and cfg.path is None:
        parts = _hub_splits(spec.hub_id, cfg.split_seed)
    else:
        parts, _ = _genome_splits(_root(cfg, spec), cfg.seq_len, cfg.split_seed)
    return Splits(train=parts["train"][0], valid=parts["valid"][0], tokenizer=tokenizer(cfg, spec),
                  labels={split: {"species": np.asarray(labels, dtype=np.int64)} for split, (_, labels) in parts.items()})


def species_names(cfg: DataConfig, spec: DatasetSpec) -> list[str]:
    """Class index -> species name for the genome sources (the hub's labels are 0..9)."""
    if cfg.source in ("auto", "hub") and cfg.path is None:
        return [f"species {k}" for k in range(spec.num_classes)]
    return list(genome_folders(_root(cfg, spec)))


def real_windows(data_cfg, split: str = "valid") -> dict[int, list[str]]:
    """{species: its real windows} of a split (the reference of the DNA metrics), read from the
    token cache the run was trained with."""
    tokens, tokenizer = load_tokens(data_cfg)
    stored = tokens[split]
    found: dict[int, list[str]] = {}
    for k, label in enumerate(stored.labels["species"].tolist()):
        found.setdefault(int(label), []).append(tokenizer.decode(stored.text_ids(k)))
    return found


def check_species(classes, real: dict[int, list[str]], data_cfg) -> None:
    """Refuse target species that have no real validation windows (`real`: `real_windows`), naming
    the species there are."""
    outside = [c for c in classes if c not in real]
    if outside:
        cfg = DataConfig.from_mapping(data_cfg)
        names = species_names(cfg, cfg.spec)
        allowed = ", ".join(f"{k} ({names[k]})" if k < len(names) else str(k) for k in sorted(real))
        raise ValueError(f"species {outside[0]} has no real validation windows to compare with; allowed: {allowed}")
