"""Cost of a diffusion sampling step per sampler (sampling.method ancestral, remdm, psi; with and
without top_p = 0.9) and guidance method, in forward passes of the network: milliseconds per step
divided by the milliseconds of one forward pass of the batch, and the network calls per step. A
corrected step draws twice (to s, and the jump to x_0) from one network call, so the difference
to ancestral is the posterior, the forward noise and the draws (and for D-CBG the classifier's
second scoring, at the jump's noise level). The corrector acts on every step here (window [0, 1],
the plateau of remdm's loop over the whole grid except its ends) so that the figure is per
corrected step.

    python bench/sampler_cost.py --algo mdlm --model micro --batch 64 --steps 16
"""

from __future__ import annotations

import torch

from common import autocast, build, machine, parser, timed
from discdiff.sampling import Ancestral, Psi, ReMDM
from guidance_cost import strategies

SAMPLERS = {
    "ancestral": (Ancestral(), 1.0),
    "remdm": (ReMDM("loop", eta=0.02, t_on=0.999, t_off=0.001), 1.0),
    "remdm conf": (ReMDM("conf"), 1.0),
    "psi": (Psi(kappa=0.5, t_on=1.0, t_off=0.0), 1.0),
    "ancestral top_p 0.9": (Ancestral(), 0.9),
    "psi top_p 0.9": (Psi(kappa=0.5, t_on=1.0, t_off=0.0), 0.9),
}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--guidance", default="none,cfg,cbg,cbg_first_order,nos",
                   help="comma-separated: none, cfg, cbg, cbg_first_order, nos")
    p.set_defaults(iters=2, warmup=1, batch=64, algo="mdlm")
    args = p.parse_args()
    lm, shape = build(args, conditional=True)
    lm.eval()
    ids = torch.randint(0, shape["vocab_size"] - 1, (args.batch, shape["length"]), device=args.device)
    sigma = torch.ones(args.batch, device=args.device)

    @torch.no_grad()
    def forward():
        with autocast(args.device):
            lm.backbone(ids, sigma)

    t_forward = timed(forward, 5 * args.iters, args.warmup, args.device)
    guidance = strategies(lm, shape, args)
    print(f"sampler cost, {args.algo} {args.model} {args.shape} batch={args.batch} steps={args.steps}, "
          f"forward pass {t_forward * 1e3:.1f} ms [{machine(args.device)}]")
    print(f"  {'sampler':22s} {'guidance':16s} {'ms/step':>8s} {'forward passes':>15s} {'calls/step':>11s}")
    for name in args.guidance.split(","):
        for sampler, (corrector, top_p) in SAMPLERS.items():
            nfe = []

            def run():
                with torch.no_grad(), autocast(args.device):
                    nfe.append(lm.sample(args.batch, args.steps, guidance=guidance[name], corrector=corrector,
                                         top_p=top_p, use_cache=False).nfe)

            per_step = timed(run, args.iters, args.warmup, args.device) / args.steps
            print(f"  {sampler:22s} {name:16s} {per_step * 1e3:8.1f} {per_step / t_forward:15.2f} "
                  f"{nfe[-1] / args.steps:11.2f}", flush=True)


if __name__ == "__main__":
    main()
