"""Preparation time of the token cache and the resident memory of training on it, on an
LM1B-shaped synthetic corpus (the real LM1B needs the hub).

    python bench/token_cache.py --sentences 4000000 --work /tmp/lm1b-synthetic

1. writes N sentences of words drawn from the bert-base-uncased vocabulary with a Zipf-like
   frequency and LM1B's length profile (about 27 words, gamma-distributed) to a text file;
2. times `discdiff prepare data=lm1b data.path=...` (tokenized once, in worker processes);
3. reads --batches shuffled batches of 64 through a DataLoader with --workers worker processes,
   as training does, and polls the resident memory (VmRSS) of the process and its workers: the ids
   are memory-mapped, so it stays far below the corpus size;
4. trains a micro UDLM on it for --steps steps (batch --batch) and polls the same; at
   V = 30,522 the (B, L, V) tensors of the NELBO, not the data, dominate what it holds.

Reports sizes, seconds and peak resident memory (anonymous: held by the processes; file-backed:
pages of the mapped cache and libraries, shared and droppable) as one JSON line (Linux /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DISCDIFF = [sys.executable, "-m", "discdiff.cli"]


def write_corpus(path: Path, sentences: int, vocab_file: Path, seed: int = 0) -> None:
    words = [w for w in vocab_file.read_text(encoding="utf-8").split("\n") if w.isalpha() and w.islower()]
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(words) + 1)  # Zipf-like: common words dominate, as in news text
    weights /= weights.sum()
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, sentences, 100_000):
            n = min(100_000, sentences - start)
            lengths = np.clip(rng.gamma(4.0, 27 / 4.0, n).astype(int), 1, 120)
            picks = rng.choice(len(words), size=int(lengths.sum()), p=weights)
            cut = np.concatenate([[0], np.cumsum(lengths)])
            f.writelines(" ".join(words[j] for j in picks[cut[i]:cut[i + 1]]) + " .\n" for i in range(n))


def rss_of_tree(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of a process and its children (Linux /proc).
    Anonymous memory is what the processes hold privately; file-backed pages of the mapped token
    cache are shared page cache the kernel may drop at any time."""
    anon = filed = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/status").read_text().splitlines() if ":" in line)
            anon += int(fields["RssAnon"].split()[0]) * 1024
            filed += int(fields["RssFile"].split()[0]) * 1024
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, KeyError):
            continue
    return anon, filed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sentences", type=int, default=4_000_000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", default="/tmp/lm1b-synthetic")
    p.add_argument("--vocab", default=str(ROOT / "tests" / "fixtures" / "bert" / "vocab.txt"))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DISCDIFF_CACHE": str(work / "cache"), "DISCDIFF_BERT_VOCAB": args.vocab}
    corpus = work / f"corpus-{args.sentences}.txt"
    start = time.perf_counter()
    if not corpus.exists():
        write_corpus(corpus, args.sentences, Path(args.vocab))
    written = time.perf_counter() - start
    data = ["data=lm1b", f"data.path={corpus}"]

    start = time.perf_counter()
    prepared = subprocess.run([*DISCDIFF, "prepare", *data], env=env, capture_output=True, text=True, check=True)
    prepare_s = time.perf_counter() - start
    report = json.loads(prepared.stdout)
    cache_bytes = sum(f.stat().st_size for f in (work / "cache" / "tokens").rglob("*.tokens"))

    reader = (f"import sys; from torch.utils.data import DataLoader; from discdiff.data import build_datasets\n"
              f"train, _, _ = build_datasets({{'name': 'lm1b', 'path': {str(corpus)!r}}})\n"
              f"loader = DataLoader(train, batch_size=64, shuffle=True, num_workers={args.workers})\n"
              f"for i, batch in enumerate(loader):\n    if i == {args.batches}: break\n")
    read_peak, read_s = poll(subprocess.Popen([sys.executable, "-c", reader], env=env))

    train = subprocess.Popen([*DISCDIFF, "train", *data, "model=micro", "algo=udlm", f"run_dir={work / 'run'}",
                              f"loader.global_batch_size={args.batch}", f"loader.num_workers={args.workers}",
                              f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}",
                              "trainer.limit_val_batches=2", f"checkpointing.every_n_steps={args.steps}",
                              "trainer.progress_bar=false", "checkpointing.resume=false"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    train_peak, train_s = poll(train)
    print(json.dumps({"sentences": args.sentences, "corpus_mb": round(corpus.stat().st_size / 2**20),
                      "write_corpus_s": round(written, 1), "prepare_s": round(prepare_s, 1),
                      "train_texts": report["train"]["texts"], "train_tokens": report["train"]["tokens"],
                      "cache_mb": round(cache_bytes / 2**20), "loader_workers": args.workers,
                      "read_batches": args.batches, "read_s": round(read_s, 1),
                      "read_peak_anon_mb": round(read_peak[0] / 2**20), "read_peak_file_mb": round(read_peak[1] / 2**20),
                      "train_steps": args.steps, "train_batch": args.batch, "train_wall_s": round(train_s, 1),
                      "train_peak_anon_mb": round(train_peak[0] / 2**20),
                      "train_peak_file_mb": round(train_peak[1] / 2**20)}))


def poll(process: subprocess.Popen) -> tuple[tuple[int, int], float]:
    """(peak (anonymous, file-backed) resident bytes of the process and its children, seconds)."""
    peak, start = (0, 0), time.perf_counter()
    while process.poll() is None:
        now = rss_of_tree(process.pid)
        peak = (max(peak[0], now[0]), max(peak[1], now[1]))
        time.sleep(0.2)
    if process.returncode:
        raise SystemExit(f"{process.args[:3]} exited with {process.returncode}")
    return peak, time.perf_counter() - start


if __name__ == "__main__":
    main()
