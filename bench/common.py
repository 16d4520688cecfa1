"""Shared set-up for the benchmarks: a model family on synthetic token ids of a given shape.

Throughput does not depend on the token values, so random ids of the dataset's vocabulary size
stand in for real batches (the benchmarks measure speed, never quality).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from discdiff.config import compose
from discdiff.factory import build_language_model

SHAPES = {"qm9": {"vocab_size": 40, "length": 32}, "lm1b": {"vocab_size": 30522, "length": 128}}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--shape", choices=SHAPES, default="qm9")
    p.add_argument("--algo", choices=["ar", "mdlm", "udlm"], default="udlm")
    p.add_argument("--model", default="micro", help="micro | tiny | small | medium")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def build(args, conditional: bool = False):
    """The language model of --algo / --model for --shape (label-conditional with two classes and
    a null class when `conditional`), on --device."""
    shape = SHAPES[args.shape]
    overrides = [f"algo={args.algo}", f"model={args.model}", f"data.length={shape['length']}", "model.dropout=0.0"]
    cfg = compose(overrides + (["data.label_col=qed"] if conditional else []))
    v = shape["vocab_size"]
    lm = build_language_model(cfg, vocab_size=v, mask_id=v - 1, bos_id=1).to(args.device)
    if args.compile:
        lm.backbone.compile()
    return lm, shape


def autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, iters: int, warmup: int, device: str) -> float:
    """Seconds per call of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / iters


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads (torch {torch.__version__})"
