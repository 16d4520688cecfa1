"""Judge time of one text study row: `evaluate_text_samples` (one judging pass over the samples
for gen_ppl, gen_ppl_full and MAUVE's features) against the same figures from three separate
passes (`generative_perplexity` cut, `generative_perplexity` whole, `mauve_score`), as the
study computed them before. Prints the faster of two runs of each (after a warm-up call) and the
relative difference of the figures.

    python bench/judge_passes.py SAMPLES.json REFERENCES.json --judge smollm2 --max-length 32

SAMPLES / REFERENCES: sample files of a text study (`samples/*.json`, their "samples" texts),
e.g. two cells of runs/distil-text/study; the references stand in for the validation texts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common import machine  # noqa: E402
from discdiff.metrics.text import (  # noqa: E402
    evaluate_text_samples,
    generative_perplexity,
    judge_path,
    load_judge,
    mauve_score,
)


def texts(path: Path) -> list[str]:
    return json.loads(path.read_text())["samples"]


def timed(fn, repeats: int = 2):
    """(the fastest of `repeats` calls in seconds, the last call's result)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path)
    parser.add_argument("references", type=Path)
    parser.add_argument("--judge", default="smollm2")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    judge = load_judge(judge_path(args.judge), device="cpu")
    samples, references = texts(args.samples), texts(args.references)
    kwargs = {"batch_size": args.batch_size, "progress": False}

    def one():
        return evaluate_text_samples(samples, judge, max_length=args.max_length, references=references, **kwargs)

    def three():
        return {"gen_ppl": generative_perplexity(samples, judge, max_length=args.max_length, **kwargs)["gen_ppl"],
                "gen_ppl_full": generative_perplexity(samples, judge, **kwargs)["gen_ppl"],
                "mauve": mauve_score(samples, references, judge, args.max_length, args.batch_size)}

    generative_perplexity(samples[:4], judge, **kwargs)  # warm-up
    (one_pass, joint), (three_passes, separate) = timed(one), timed(three)

    print(f"{machine('cpu')}; judge {args.judge}; "
          f"{len(samples)} samples, {len(references)} references, max_length {args.max_length}")
    print(f"one pass: {one_pass:.1f} s   three passes: {three_passes:.1f} s   ({three_passes / one_pass:.2f}x)")
    for key, value in separate.items():
        print(f"{key}: {joint[key]:.6g} (one pass)  {value:.6g} (three passes)  rel. diff {abs(joint[key] / value - 1):.1e}")


if __name__ == "__main__":
    main()
