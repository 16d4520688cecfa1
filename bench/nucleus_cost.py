"""Cost of nucleus (top-p) filtering over a word-piece vocabulary: `processes.base.nucleus` (a
top-k of the first 512 tokens, then buckets of log-probability for the rows it does not settle)
against sorting every row whole, in milliseconds per call, for rows of log-probabilities from
Gaussian logits of a few scales (scale 1 is near flat, as a weak model's predictions are; scale 6
is peaked). The two give the same set (tests/test_correctors.py); this measures only speed.

    python bench/nucleus_cost.py --rows 4096 --vocab 30522 --top-p 0.9
"""

from __future__ import annotations

import argparse

import torch

from common import machine, timed
from discdiff.processes.base import nucleus


def sorted_nucleus(log_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The definition, by a full sort of every row (the reference for speed)."""
    ordered, order = log_probs.sort(dim=-1, descending=True)
    before = ordered.exp().cumsum(dim=-1) - ordered.exp()
    keep = torch.zeros_like(log_probs, dtype=torch.bool).scatter_(-1, order, before < top_p)
    return log_probs.masked_fill(~keep, float("-inf")).log_softmax(dim=-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=4096, help="positions filtered at once (batch x length)")
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--scales", default="1,2,4,6")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    g = torch.Generator(device=args.device).manual_seed(0)
    print(f"nucleus top_p={args.top_p}, {args.rows} rows x {args.vocab} tokens [{machine(args.device)}]")
    print(f"  {'logit scale':>11s} {'rows past top-512':>18s} {'ms full sort':>13s} {'ms nucleus':>11s} {'speed-up':>9s}")
    for scale in (float(s) for s in args.scales.split(",")):
        logits = torch.randn(args.rows, args.vocab, generator=g, device=args.device) * scale
        log_probs = logits.log_softmax(dim=-1)
        wide = float((log_probs.topk(512, dim=-1).values.exp().sum(-1) < args.top_p).float().mean())
        t_sort = timed(lambda: sorted_nucleus(log_probs, args.top_p), args.iters, 1, args.device)
        t_ours = timed(lambda: nucleus(log_probs, args.top_p), args.iters, 1, args.device)
        print(f"  {scale:11g} {wide:18.0%} {t_sort * 1e3:13.0f} {t_ours * 1e3:11.0f} {t_sort / t_ours:8.1f}x")


if __name__ == "__main__":
    main()
