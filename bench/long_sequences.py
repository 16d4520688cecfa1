"""Cost against sequence length: the DiMamba (chunked parallel scan, linear in L) against the DiT
(attention, quadratic in L) at the same width and depth, forward and backward of one batch.

    python bench/long_sequences.py --lengths 1024 4096 16384 --size micro --batch 1

Prints one line per backbone and length: milliseconds per forward + backward, microseconds per
token (flat when the cost is linear in L), and the peak resident memory growth of the process.
DiMamba options (--d-state, --expand, --chunk) set the state size that the plain-PyTorch scan
materialises as (B, L, channels, states) tensors; mamba-ssm's fused kernel (CUDA) avoids that.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from common import machine
from discdiff.models.dimamba import DIMAMBA_SIZES, build_dimamba
from discdiff.models.dit import MODEL_SIZES, build_backbone

VOCAB = 10  # nucleotides and special tokens


def backbones(args, length: int) -> dict:
    dimamba = dict(DIMAMBA_SIZES[args.size], d_state=args.d_state, expand=args.expand, chunk_size=args.chunk)
    return {"dimamba": build_dimamba(dimamba, VOCAB, length, dropout=0.0).to(args.device),
            "dit": build_backbone(args.size, VOCAB, length, dropout=0.0).to(args.device)}


def seconds_per_pass(net: torch.nn.Module, batch: int, length: int, iters: int, device: str) -> float:
    """Seconds of one forward + backward of (batch, length) random tokens at sigma = 0.5."""
    ids = torch.randint(0, VOCAB, (batch, length), device=device)
    sigma = torch.full((batch,), 0.5, device=device)

    def once():
        net(ids, sigma).float().logsumexp(-1).mean().backward()

    once()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        once()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--size", default="micro", choices=sorted(set(DIMAMBA_SIZES) & set(MODEL_SIZES)))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    print(f"# {machine(args.device)}; size {args.size}, batch {args.batch}, DiMamba d_state={args.d_state} "
          f"expand={args.expand} chunk={args.chunk}")
    print("| backbone | length | ms / forward+backward | us / token | peak RSS of the process so far (MB) |\n|---|---|---|---|---|")
    for length in args.lengths:
        for name, net in backbones(args, length).items():
            seconds = seconds_per_pass(net, args.batch, length, args.iters, args.device)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"| {name} | {length:,} | {seconds * 1e3:,.0f} | {seconds * 1e6 / (args.batch * length):,.1f} "
                  f"| {rss:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
