"""Learning-rate schedules as multipliers of the base rate (for torch LambdaLR); `lr_scheduler.name`
names one of `LR_SCHEDULES`."""

from __future__ import annotations

import math


def constant_warmup(step: int, *, warmup_steps: int, **_) -> float:
    """Linear warmup over warmup_steps, then 1."""
    return min(1.0, (step + 1) / max(warmup_steps, 1))


def cosine_decay_warmup(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warmup, then cosine decay from 1 to min_ratio at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


LR_SCHEDULES = {"constant_warmup": constant_warmup, "cosine_decay_warmup": cosine_decay_warmup}


def lr_lambda(name: str, *, warmup_steps: int, total_steps, base_lr: float, min_lr: float):
    """The multiplier function for LambdaLR; unknown names are refused with the allowed ones.
    `total_steps` is a count, or a function giving it (read at every step: a run sized by its
    time budget learns its length during the warm-up)."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_scheduler '{name}'; allowed: {', '.join(LR_SCHEDULES)}")
    schedule = LR_SCHEDULES[name]
    total = total_steps if callable(total_steps) else (lambda: total_steps)
    return lambda step: schedule(step, warmup_steps=warmup_steps, total_steps=total(), min_ratio=min_lr / base_lr)
