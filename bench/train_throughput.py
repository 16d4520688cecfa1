"""Training throughput: tokens/s of a full optimizer step (forward, NELBO, backward, AdamW),
and on GPU the model FLOPs utilisation against the card's peak bf16 rate.

    python bench/train_throughput.py --shape lm1b --model small --batch 512 --compile --peak-tflops 989
"""

from __future__ import annotations

import torch

from common import autocast, build, machine, parser, timed
from discdiff.models import count_parameters, flops_per_token


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM: 989)")
    p.add_argument("--fused", choices=("auto", "on", "off"), default="auto",
                   help="fused AdamW (auto: on CUDA only, as training does)")
    args = p.parse_args()
    lm, shape = build(args)
    device = args.device
    fused = device.startswith("cuda") if args.fused == "auto" else args.fused == "on"
    optimizer = torch.optim.AdamW(lm.parameters(), lr=3e-4, fused=fused or None)
    ids = torch.randint(0, shape["vocab_size"] - 1, (args.batch, shape["length"]), device=device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def step():
        with autocast(device):
            loss = lm.loss(batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(step, args.iters, args.warmup, device)
    tokens_per_s = args.batch * shape["length"] / seconds
    flops = flops_per_token(lm.backbone, shape["length"])
    line = (f"train {args.algo} {args.model} {args.shape} batch={args.batch} compile={args.compile} fused={fused} "
            f"params={count_parameters(lm) / 1e6:.1f}M: {seconds * 1e3:.1f} ms/step, {tokens_per_s:,.0f} tokens/s")
    if device.startswith("cuda"):
        line += f", MFU {tokens_per_s * flops / (args.peak_tflops * 1e12):.1%}"
    print(f"{line}  [{machine(device)}]")


if __name__ == "__main__":
    main()
