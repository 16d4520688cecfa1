"""Training end to end on the QM9 fixture: the loss falls, resumption is exact, DDP runs."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from discdiff.config import compose
from discdiff.training.run import train


def read_metric(run_dir: Path, name: str) -> dict[int, float]:
    """{step: value} of one logged metric from the CSV logs of every (re)start of a run."""
    values = {}
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        with open(path) as f:
            values.update({int(r["step"]): float(r[name]) for r in csv.DictReader(f) if r.get(name)})
    return values


@pytest.mark.parametrize("algo", ["udlm", "mdlm", "ar"])
def test_training_lowers_the_loss(tmp_path, cache_dir, quick_overrides, algo):
    cfg = compose(quick_overrides + [f"run_dir={tmp_path}", f"algo={algo}", "trainer.max_steps=60",
                                     "trainer.val_check_interval=60", "optim.lr=2e-3",
                                     "lr_scheduler=constant_warmup", "lr_scheduler.warmup_steps=5"])
    train(cfg)
    loss = read_metric(tmp_path, "train/loss")
    first = sum(loss[s] for s in sorted(loss)[:5]) / 5
    last = sum(loss[s] for s in sorted(loss)[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert (tmp_path / "checkpoints" / "best.ckpt").exists()


def test_resumed_run_continues_exactly(tmp_path, cache_dir, quick_overrides):
    """Stop after 10 steps, restart the same command: steps 10..19 match an unbroken run.
    (A constant LR keeps the schedule independent of where the run stops; the loss runs the head in
    chunks of a few dozen positions, so the chunking is part of what must repeat exactly.) DUO's
    curriculum lasts 15 steps, so the resumed part crosses the switch to plain training."""
    curriculum = 15
    common = quick_overrides + ["algo=udlm", "lr_scheduler=constant_warmup", "lr_scheduler.warmup_steps=3",
                                "checkpointing.every_n_steps=10", "trainer.val_check_interval=1000",
                                "model.dropout=0.1", "training.head_chunk_mib=0.01",
                                f"training.curriculum.steps={curriculum}"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    train(compose(common + [f"run_dir={whole}", "trainer.max_steps=20"]))
    train(compose(common + [f"run_dir={broken}", "trainer.max_steps=10"]))
    train(compose(common + [f"run_dir={broken}", "trainer.max_steps=20"]))
    a, b = read_metric(whole, "train/loss"), read_metric(broken, "train/loss")
    assert sorted(b) == sorted(a) == list(range(20))
    for step in range(10, 20):
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step
    assert read_metric(broken, "train/curriculum") == {step: float(step < 15) for step in range(20)}
    assert sorted(read_metric(broken, "train/nelbo")) == list(range(15, 20))  # the model's NELBO: plain steps
    wa = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    wb = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_two_process_ddp_on_cpu(tmp_path, cache_dir):
    """Lightning DDP with the gloo backend, two CPU processes, through the command line, sized by
    a time budget (the demo's set-up): the ranks agree on the plan and stop together."""
    from conftest import QUICK

    env = {**os.environ, "DISCDIFF_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "discdiff.cli", "train", *QUICK, f"run_dir={tmp_path}", "algo=mdlm",
           "trainer.strategy=ddp", "trainer.devices=2", "trainer.max_steps=12", "trainer.max_minutes=10",
           "lr_scheduler.warmup_steps=10", "trainer.val_check_interval=6", "checkpointing.every_n_steps=6"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "world_size: 2" in result.stderr or "MEMBER: 2/2" in result.stderr
    assert result.stdout.count("steps in all") == 1 and "-> 12 steps in all" in result.stdout
    assert result.stdout.count("run folder:") == 1
    assert "sync_dist=True" not in result.stderr  # validation sums over ranks itself
    loss = read_metric(tmp_path, "train/loss")
    assert sorted(loss) == list(range(12))
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_time_budget_plans_the_steps_and_lays_the_schedule_over_them(tmp_path, cache_dir, quick_overrides,
                                                                       monkeypatch, capsys):
    """With trainer.max_minutes the run measures its speed during the warm-up (its second half) and trains the steps
    that fit; it is then the same run as one configured with that many steps (same LR schedule,
    same losses), and a resumed run keeps the plan."""
    from discdiff.training import budget

    assert budget.plan_steps(10, rate=5.0, seconds_left=4.0, max_steps=100, every=10) == 20
    assert budget.plan_steps(10, rate=5.0, seconds_left=1e6, max_steps=100, every=10) == 100
    assert budget.plan_steps(10, rate=0.1, seconds_left=1.0, max_steps=100, every=10) == 11
    # the warm-up's 10 steps: the first 5 take 1.5 s (start-up), the next 5 take 1 s: 5 steps/s
    clock = iter([0.0, 1.5, 2.5])
    monkeypatch.setattr(budget.TimeBudget, "clock", staticmethod(lambda: next(clock)))
    common = quick_overrides + ["algo=udlm", "lr_scheduler.warmup_steps=10", "lr_scheduler.min_lr=1e-5",
                                "trainer.val_check_interval=10", "checkpointing.every_n_steps=10"]
    train(compose(common + [f"run_dir={tmp_path / 'budget'}", "trainer.max_steps=100", "trainer.max_minutes=0.1"]))
    assert "5.0 steps/s over steps 5-10 -> 20 steps in all" in capsys.readouterr().out
    monkeypatch.undo()
    train(compose(common + [f"run_dir={tmp_path / 'fixed'}", "trainer.max_steps=20"]))
    planned, fixed = read_metric(tmp_path / "budget", "train/loss"), read_metric(tmp_path / "fixed", "train/loss")
    assert sorted(planned) == sorted(fixed) == list(range(20))
    assert all(planned[s] == pytest.approx(fixed[s], rel=1e-6) for s in range(20))
    assert read_metric(tmp_path / "budget", "train/lr") == pytest.approx(read_metric(tmp_path / "fixed", "train/lr"))
    state = torch.load(tmp_path / "budget" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["discdiff"]["planned_steps"] == 20 and state["global_step"] == 20


def test_time_budget_takes_rank_zeros_plan(monkeypatch):
    """Under DDP each rank measures its own rate; all of them must stop at rank 0's plan (a rank
    that planned one validation interval more would wait forever for the others)."""
    from types import SimpleNamespace

    from discdiff.training import budget

    class Strategy:
        def broadcast(self, obj, src=0):
            assert src == 0
            return 40  # what rank 0 planned

    clock = iter([0.0, 1.0, 2.0])
    monkeypatch.setattr(budget.TimeBudget, "clock", staticmethod(lambda: next(clock)))
    epoch_loop = SimpleNamespace(max_steps=1000)
    trainer = SimpleNamespace(global_step=0, max_steps=1000, strategy=Strategy(), is_global_zero=False,
                              fit_loop=SimpleNamespace(epoch_loop=epoch_loop))
    module = SimpleNamespace(planned_steps=None, cfg=SimpleNamespace(trainer=SimpleNamespace(val_check_interval=10)))
    callback = budget.TimeBudget(minutes=1.0, calibration=10)
    callback.on_train_start(trainer, module)
    for step in range(1, 11):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, module, None, None, step)
    assert module.planned_steps == epoch_loop.max_steps == 40  # this rank alone would plan 290


def test_fused_adamw_under_bf16_autocast_trains_and_clips(tmp_path, cache_dir, quick_overrides, monkeypatch):
    """The GPU default (fused AdamW, bf16-mixed, gradient clipping) on the CPU, where both exist:
    Lightning's mixed-precision plugin refuses to clip for a fused optimizer, so the module clips
    by hand; the clipped norm is what AdamW then sees."""
    from discdiff.training.module import ResumableModule

    monkeypatch.setattr(ResumableModule, "use_fused_adamw", lambda self: True)
    norms = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def clip_and_record(params, max_norm, *args, **kwargs):
        params = list(params)
        before = real_clip(params, max_norm, *args, **kwargs)
        norms.append((float(before), float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None])))))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_and_record)
    cfg = compose(quick_overrides + [f"run_dir={tmp_path}", "algo=mdlm", "trainer.max_steps=4",
                                     "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=0.01",
                                     "trainer.val_check_interval=1000", "checkpointing.every_n_steps=1000"])
    train(cfg)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"][0]
    assert state["param_groups"][0]["fused"]
    assert len(norms) == 4
    assert all(before > 0.01 and after == pytest.approx(0.01, rel=1e-3) for before, after in norms), norms
