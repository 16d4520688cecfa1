"""A run sized to the machine: `trainer.max_minutes` plans the number of optimizer steps.

After `calibration` steps (no later than the end of the LR warm-up, which does not depend on the
run's length) the rate measured over their second half (the first steps of a run are slower:
threads, allocator and data loader warm up) fixes the plan:

    planned = min(trainer.max_steps, steps done + rate x minutes left x 0.97),

rounded down to a multiple of `trainer.val_check_interval` (so the last step is validated and
best.ckpt can hold the final model). The LR schedule is laid out over the planned steps from the
start, so a run that plans 3,300 steps decays exactly as one configured with max_steps=3300:
the result depends on the machine's speed, never on where a clock happened to stop it. The plan
travels in checkpoints; a resumed run keeps it. Under DDP every rank takes rank 0's plan.
"""

from __future__ import annotations

import time

import lightning as L

SAFETY = 0.97  # validations and checkpoint writes after the calibration take a little time too


class TimeBudget(L.Callback):
    clock = staticmethod(time.perf_counter)

    def __init__(self, minutes: float, calibration: int):
        self.seconds, self.calibration = 60.0 * minutes, max(2, calibration)  # a rate needs a second half
        self._start = self._first = self._mid = None

    def on_train_start(self, trainer: L.Trainer, module) -> None:
        if module.planned_steps is not None:  # resumed: the plan was made when the run started
            trainer.fit_loop.epoch_loop.max_steps = module.planned_steps
            return
        self._start, self._first, self._mid = self.clock(), trainer.global_step, None

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx) -> None:
        if module.planned_steps is not None:
            return
        step = trainer.global_step
        if self._mid is None and step >= self._first + self.calibration // 2:
            self._mid = (self.clock(), step)
        if step < self._first + self.calibration:
            return
        now = self.clock()
        rate = (step - self._mid[1]) / (now - self._mid[0])
        plan = plan_steps(step, rate, self.seconds - (now - self._start), trainer.max_steps,
                          module.cfg.trainer.val_check_interval)
        plan = trainer.strategy.broadcast(plan, src=0)  # one plan for all ranks, or the last step would hang
        module.planned_steps = plan
        trainer.fit_loop.epoch_loop.max_steps = plan
        if trainer.is_global_zero:
            print(f"time budget {self.seconds / 60:g} min: {rate:.1f} steps/s over steps {self._mid[1]}-{step} "
                  f"-> {plan} steps in all (the LR schedule spans them)", flush=True)


def plan_steps(done: int, rate: float, seconds_left: float, max_steps: int, every: int) -> int:
    """Optimizer steps that fit the budget (see the module docstring); at least `done` + 1."""
    fits = done + int(rate * max(seconds_left, 0.0) * SAFETY)
    plan = min(max_steps, fits)
    if plan >= every:
        plan -= plan % every
    return max(plan, done + 1)
