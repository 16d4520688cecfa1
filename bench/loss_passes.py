"""Loss + backward of each family's training objective over the network's logits alone (no
network): the part of a training step that scales with B x L x V.

    python bench/loss_passes.py --batch 8 --length 128 --vocab 30522 [--device cuda]

For the diffusion processes it times `process.training_terms` (what training runs) next to the
generic path through `predict_x0` + `nelbo_integrand` (`DiscreteProcess.training_terms`) where a
process overrides it, so the saving shows; for AR, `objectives.autoregressive_nll` on the given logits.
The head itself and the chunking over rows are `bench/loss_memory.py`'s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from discdiff import objectives  # noqa: E402
from discdiff.processes import AbsorbingProcess, UniformProcess  # noqa: E402
from discdiff.processes.base import DiscreteProcess  # noqa: E402


def timed(fn, device: torch.device, repeats: int) -> float:
    """The fastest of `repeats` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    device, (b, n, v) = torch.device(args.device), (args.batch, args.length, args.vocab)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(v - 1, (b, n), generator=g).to(device)
    alpha, dalpha = torch.rand(b, generator=g).to(device), -torch.ones(b, device=device)
    logits = torch.randn(b, n, v, generator=g).to(device).requires_grad_()

    def backward(loss):
        loss.backward()
        logits.grad = None

    runs = {}
    for process in (UniformProcess(v), AbsorbingProcess(v, v - 1)):
        xt = process.sample_xt(x0, alpha)
        paths = [("training_terms", process.training_terms)]
        if type(process).training_terms is not DiscreteProcess.training_terms:  # an override: time what it replaces
            paths.append(("generic predict_x0 path", lambda *a, p=process: DiscreteProcess.training_terms(p, *a)))
        for name, terms in paths:
            runs[f"{type(process).__name__}, {name}"] = \
                lambda terms=terms, xt=xt: backward(terms(logits, x0, xt, alpha, dalpha)[0].sum())
    given = objectives.logits_denoiser(lambda *_: logits)
    ones = torch.ones(b, n - 1, device=device)
    runs["autoregressive_nll"] = lambda: backward(objectives.autoregressive_nll(given, x0, weights=ones)[1])
    print(f"loss + backward over logits ({b}, {n}, {v}) on {device}, {torch.get_num_threads()} threads, "
          f"fastest of {args.repeats}:")
    for name, fn in runs.items():
        print(f"  {name}: {timed(fn, device, args.repeats) * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
