"""Sampling throughput: samples/s of the ancestral sampler and the cost of one sampling step
relative to one forward pass of the network (the rest is the posterior and the draw).

    python bench/sample_throughput.py --shape lm1b --model small --batch 256 --steps 128
"""

from __future__ import annotations

import torch

from common import autocast, build, machine, parser, timed


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=32)
    args = p.parse_args()
    lm, shape = build(args)
    lm.eval()
    device = args.device
    ids = torch.randint(0, shape["vocab_size"] - 1, (args.batch, shape["length"]), device=device)
    sigma = torch.ones(args.batch, device=device)

    @torch.no_grad()
    def forward():
        with autocast(device):
            lm.backbone(ids, sigma)

    @torch.no_grad()
    def sample():
        with autocast(device):
            return lm.sample(args.batch, args.steps, use_cache=False)

    t_forward = timed(forward, args.iters, args.warmup, device)
    t_sample = timed(sample, max(1, args.iters // 10), 1, device)
    per_step = t_sample / args.steps
    print(f"sample {args.algo} {args.model} {args.shape} batch={args.batch} steps={args.steps}: "
          f"{args.batch / t_sample:,.1f} samples/s, {per_step * 1e3:.1f} ms/step = "
          f"{per_step / t_forward:.2f} forward passes ({t_forward * 1e3:.1f} ms)  [{machine(device)}]")


if __name__ == "__main__":
    main()
