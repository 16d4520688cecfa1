"""Cost of a sampling step under each guidance method, relative to unguided sampling of the same
model (random weights and random classifiers: speed does not depend on them).

Diffusion (--algo mdlm|udlm): none, cfg, cbg (exact: L x V one-token candidates per sequence),
cbg first-order, nos. AR (--algo ar): none, cfg, fudge (top-k candidates), pplm.

    python bench/guidance_cost.py --algo udlm --model micro --batch 64 --steps 16
"""

from __future__ import annotations

import torch

from common import autocast, build, machine, parser, timed
from discdiff.guidance import CBG, CFG, FUDGE, NOS, PPLM
from discdiff.models import HiddenStateClassifier, SequenceClassifier, build_encoder


def strategies(lm, shape, args) -> dict:
    v, length = shape["vocab_size"], shape["length"]
    null = lm.num_classes
    if lm.family == "autoregressive":
        encoder = build_encoder(args.model, v, length, time_conditioning=False, causal=True, dropout=0.0)
        prefix = SequenceClassifier(encoder, 2)
        return {"none": None, "cfg": CFG(2.0, 1, null),
                "fudge": FUDGE(prefix.to(args.device).eval(), 2.0, 1, topk=args.topk),
                "pplm": PPLM(HiddenStateClassifier(lm, 2).to(args.device), 2.0, 1)}
    noisy = SequenceClassifier(build_encoder(args.model, v, length, dropout=0.0), 2).to(args.device).eval()
    return {"none": None, "cfg": CFG(2.0, 1, null), "cbg": CBG(noisy, 2.0, 1),
            "cbg_first_order": CBG(noisy, 2.0, 1, first_order=True),
            "nos": NOS(HiddenStateClassifier(lm, 2).to(args.device), 2.0, 1)}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--topk", type=int, default=50)
    p.set_defaults(iters=2, warmup=1, batch=64)
    args = p.parse_args()
    lm, shape = build(args, conditional=True)
    lm.eval()
    results = {}
    for name, guidance in strategies(lm, shape, args).items():
        def run():
            with torch.no_grad(), autocast(args.device):
                lm.sample(args.batch, args.steps, guidance=guidance, use_cache=True)
        results[name] = timed(run, args.iters, args.warmup, args.device)
    steps = shape["length"] - 1 if lm.family == "autoregressive" else args.steps
    base = results["none"]
    print(f"guidance cost, {args.algo} {args.model} {args.shape} batch={args.batch} [{machine(args.device)}]")
    for name, seconds in results.items():
        print(f"  {name:16s} {seconds / steps * 1e3:8.1f} ms/step  {seconds / base:6.2f}x unguided")


if __name__ == "__main__":
    main()
