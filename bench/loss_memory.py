"""Peak memory and time of the output head + loss + backward over given hidden states, per family:
the head fused with the loss in chunks of rows (`training.head_chunk_mib`, the default; MDLM's
masked rows only) against the plain path (`head_chunk_mib=0` over every row: the reference of
tests/test_fused_head.py, and what training computed before).

    python bench/loss_memory.py --batch 8 --length 128 --hidden 768 --vocab 30522 [--device cuda]

The network is the DiT's output layer alone (adaLN norm, Linear(D -> V)) over hidden states
(B, L, D) that require a gradient, inside the real language-model classes, so that what runs is
`lm.loss` exactly as training runs it. Each (family, path) runs in fresh processes. On the CPU the
peak is the rise of the process's peak resident memory (`ru_maxrss`) over its resident memory
before the first step (parameters and hidden states allocated, the kernels' code loaded by a
step on two positions), measured with glibc's
malloc told to map every block of 64 KiB or more on its own (MALLOC_MMAP_THRESHOLD_), so that a
freed tensor leaves the resident set at once and the figure is the live memory, not the
allocator's retained heap; the time comes from a second process with the ordinary allocator. On a
GPU both come from one process, the peak as `torch.cuda.max_memory_allocated` over the memory
allocated before. The time is the fastest of --repeats steps after a first one. One JSON object per family and line: family,
peak_mib_plain, peak_mib_chunked, ms_plain, ms_chunked, grad_mib (the head's parameter gradients,
(V, D) + (V,) in fp32, which both paths must hold at the end of the step: the floor of either
peak), and the shape.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from discdiff.lm import AutoregressiveLM, DiffusionLM  # noqa: E402
from loss_passes import timed  # noqa: E402  (bench/ is the script's folder)
from discdiff.models.layers import ConditionedBackbone, FinalLayer  # noqa: E402
from discdiff.processes import AbsorbingProcess, UniformProcess  # noqa: E402
from discdiff.schedules import get_schedule  # noqa: E402

FAMILIES = ("udlm", "mdlm", "ar")


class HeadOnly(ConditionedBackbone):
    """A backbone whose last hidden states are given (B, L, D): what is left is the output head."""

    def __init__(self, hidden: torch.Tensor, vocab_size: int):
        super().__init__(vocab_size, hidden.shape[1], hidden.shape[2], cond_dim=128)
        self.hidden = hidden
        self.final = FinalLayer(hidden.shape[2], vocab_size, 128)
        self._init_embeddings()
        with torch.no_grad():  # trained-like weights rather than the zero initialisation
            for p in self.final.parameters():
                p.normal_(0, 0.02)

    def forward(self, x=None, sigma=None, cond=None, *, return_hidden=False, terms=None):
        c = self.conditioning(sigma, cond, x.shape[0], x.device)
        return self.outputs(self.hidden[: x.shape[0], : x.shape[1]], c, return_hidden, terms)


def language_model(family: str, backbone, vocab: int, length: int):
    schedule = get_schedule("loglinear", eps=1e-3)
    if family == "ar":
        return AutoregressiveLM(backbone, length, bos_id=0)
    process = UniformProcess(vocab) if family == "udlm" else AbsorbingProcess(vocab, vocab - 1)
    return DiffusionLM(backbone, process, schedule, length)


def allocated(device: torch.device) -> int:
    """Bytes in use now: the GPU allocator's, or the process's resident set on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(args) -> dict:
    """One (family, path) in this process: peak MiB of the first step, fastest ms of the rest."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    hidden = torch.randn(args.batch, args.length, args.hidden, device=device, requires_grad=True)
    backbone = HeadOnly(hidden, args.vocab).to(device)
    lm = language_model(args.family, backbone, args.vocab, args.length)
    lm.head_chunk_mib = 0.0 if args.path == "plain" else args.chunk_mib
    if args.path == "plain" and args.family == "mdlm":  # as before the fused head: the unmasked rows too
        lm.process.rows_reading_logits = lambda xt: None
    ids = torch.randint(args.vocab - 1, (args.batch, args.length), device=device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = lm.loss(batch).loss
        loss.backward()

    warm = {k: v[:1, :2] for k, v in batch.items()}  # loads the kernels' code, allocates next to nothing
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        lm.loss(warm).loss.backward()
    lm.zero_grad(set_to_none=True)
    hidden.grad = None
    before = allocated(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()
    peak_mib = (peak(device) - before) / 2**20
    if args.what == "peak":
        return {"peak_mib": round(peak_mib, 1), "ms": None}

    def again():
        lm.zero_grad(set_to_none=True)
        hidden.grad = None
        step()

    return {"peak_mib": round(peak_mib, 1), "ms": round(timed(again, device, args.repeats) * 1e3, 1)}

def run(child: list[str], **env) -> dict:
    """The JSON result of a measuring child process."""
    out = subprocess.run(child, capture_output=True, text=True, check=True, env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--chunk-mib", type=float, default=None,
                   help="training.head_chunk_mib of the chunked path (default: the device's default)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps (0: peak memory only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--family", help=argparse.SUPPRESS)  # a child process: measure this one
    p.add_argument("--path", choices=["plain", "chunked"], help=argparse.SUPPRESS)
    p.add_argument("--what", choices=["peak", "time", "both"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.family:
        print(json.dumps(measure(args)))
        return 0
    grad_mib = round(4 * args.vocab * (args.hidden + 1) / 2**20, 1)
    shape = {"grad_mib": grad_mib, "batch": args.batch, "length": args.length, "hidden": args.hidden, "vocab": args.vocab,
             "chunk_mib": args.chunk_mib, "device": args.device, "threads": torch.get_num_threads()}
    for family in args.families.split(","):
        row = {"family": family}
        for path in ("plain", "chunked"):
            child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                     "--family", family, "--path", path]
            if args.device == "cpu":
                row[f"peak_mib_{path}"] = run(child + ["--what", "peak"], MALLOC_MMAP_THRESHOLD_="65536")["peak_mib"]
                row[f"ms_{path}"] = run(child + ["--what", "time"])["ms"] if args.repeats else None
            else:
                result = run(child + ["--what", "both"])
                row[f"peak_mib_{path}"], row[f"ms_{path}"] = result["peak_mib"], result["ms"]
        print(json.dumps({**row, **shape}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
