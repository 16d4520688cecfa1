"""Progress as plain lines, for job logs and terminals alike (`trainer.progress_every`).

    step 1500/5500  loss 0.6521  11.8 steps/s  5m 39s left

The rate is measured since this (re)start; the time left is the remaining optimizer steps at that
rate (validation included, as it runs on the way).
"""

from __future__ import annotations

import time

import lightning as L


class ProgressLines(L.Callback):
    """A line on stdout every `every` optimizer steps (global rank 0 only)."""

    def __init__(self, every: int):
        self.every = every
        self._start = self._first = None
        self._last_printed = -1

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start, self._first = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # optimizer steps done (micro-batches of an accumulation count once)
        if not trainer.is_global_zero or step % self.every or step == self._last_printed or step == self._first:
            return
        self._last_printed = step
        rate = (step - self._first) / max(time.perf_counter() - self._start, 1e-9)
        loss = trainer.callback_metrics.get("train/loss")
        shown = "" if loss is None else f"  loss {float(loss):.4f}"
        left = (trainer.max_steps - step) / rate if rate > 0 else float("inf")
        print(f"step {step}/{trainer.max_steps}{shown}  {rate:.1f} steps/s  {_duration(left)} left", flush=True)


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
