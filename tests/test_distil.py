"""Discrete consistency distillation (`discdiff distil`): the Gaussian trajectory, the divergence,
and the command end to end on the QM9 fixture (rounds, teacher refresh, delta doubling,
resumption mid-round, the student as an ordinary run), with its one-line refusals."""

import pytest
import torch
import torch.nn.functional as F

from discdiff import objectives
from discdiff.config import ConfigError, compose
from discdiff.duality import discrete_alpha, gaussian_trajectory
from discdiff.lm import DiffusionLM
from discdiff.loading import load
from discdiff.processes import UniformProcess
from discdiff.schedules import LogLinear
from discdiff.training.run import distil

try:
    from .test_training import read_metric
    from .conftest import QUICK
except ImportError:
    from test_training import read_metric
    from conftest import QUICK


def test_the_trajectory_shares_its_noise_and_each_end_is_uniform_noise(cache_dir):
    k, n = 8, 40_000
    x0 = torch.randint(k, (n, 1), generator=torch.Generator().manual_seed(0))
    g_t, g_s = torch.full((n,), 0.5), torch.full((n,), -1.5)
    z_t, z_s = gaussian_trajectory(x0, g_t, g_s, k, torch.Generator().manual_seed(1))
    for z, g in ((z_t, 0.5), (z_s, -1.5)):
        alpha = float(discrete_alpha(torch.sigmoid(torch.tensor(-g)).sqrt(), k))
        keep = alpha + (1 - alpha) / k
        assert abs((z == x0).double().mean().item() - keep) < 4 * (keep * (1 - keep) / n) ** 0.5
    same, _ = gaussian_trajectory(x0, g_t, g_t, k, torch.Generator().manual_seed(1))
    assert torch.equal(same, z_t)  # one eps: equal levels give the same token
    p_t, p_s = (float((z == x0).double().mean()) for z in (z_t, z_s))
    independent = p_t * p_s + (1 - p_t) * (1 - p_s) / (k - 1)  # P(z_t = z_s) for independent noise
    assert float((z_t == z_s).double().mean()) > independent + 0.1  # coupled through the one eps


def test_the_divergences_are_the_kl_of_the_two_predictions():
    process, g = UniformProcess(6), torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 3, 6, generator=g), torch.randn(2, 3, 6, generator=g)
    z = torch.randint(6, (2, 3), generator=g)
    student = torch.nn.Parameter(a.clone())
    kl_bwd = F.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    kl_fwd = F.kl_div(a.log_softmax(-1), b.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    sigmas = (torch.ones(2), torch.ones(2))
    for divergence, expected in (("kl-bwd", kl_bwd), ("kl-fwd", kl_fwd)):
        loss, per_position = objectives.consistency_distillation_terms(
            process, lambda x, s, c: student, lambda x, s, c: b.log_softmax(-1), (z, z), sigmas, divergence=divergence)
        torch.testing.assert_close(per_position, expected)
        loss.backward()
        assert student.grad is not None and student.grad.abs().sum() > 0
        student.grad = None
    zero, _ = objectives.consistency_distillation_terms(process, lambda x, s, c: a, lambda x, s, c: a.log_softmax(-1),
                                                        (z, z), sigmas)
    assert abs(float(zero)) < 1e-6
    with pytest.raises(ValueError, match="kl-bwd, kl-fwd"):
        objectives.consistency_distillation_terms(process, lambda x, s, c: a, lambda x, s, c: b, (z, z), sigmas,
                                                  divergence="mse")


class _LabelledLogits(torch.nn.Module):
    """A stand-in backbone: fixed logits (classes + 1, L, V) chosen by the label (the last is null)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x, sigma, cond):
        return self.logits[cond]


def test_the_guided_target_is_the_teachers_d_cfg_prediction_of_x0():
    g = torch.Generator().manual_seed(0)
    lm = DiffusionLM(_LabelledLogits(torch.zeros(3, 4, 7)), UniformProcess(7), LogLinear(), 4, num_classes=2)
    teacher = _LabelledLogits(torch.randn(3, 4, 7, generator=g))
    xt, sigma, cond = torch.randint(7, (3, 4), generator=g), torch.ones(3), torch.tensor([0, 1, 2])
    log_p = teacher.logits.log_softmax(-1)
    for gamma in (0.0, 1.0, 3.0):
        guided = lm.teacher_prediction(teacher, xt, sigma, cond, gamma)
        for row, label in enumerate(cond.tolist()):
            mixed = gamma * log_p[label] + (1 - gamma) * log_p[2]  # brute force, per label
            torch.testing.assert_close(guided[row], mixed.log_softmax(-1))
    torch.testing.assert_close(lm.teacher_prediction(teacher, xt, sigma, cond, 3.0)[2], log_p[2])  # null: unguided
    torch.testing.assert_close(lm.teacher_prediction(teacher, xt, sigma, cond), log_p[cond])  # no gamma: as it is


def _overrides(run_dir, teacher, extra=()):
    return QUICK + [f"run_dir={run_dir}", "algo=udlm", "data.label_col=qed", "training.guidance.cond_dropout=0.1",
                    f"distil.teacher={teacher}", "distil.rounds=2", "distil.steps_per_round=3", "distil.delta=0.1",
                    "distil.log_snr_min=-5", "distil.log_snr_max=3", "checkpointing.every_n_steps=2",
                    "trainer.val_check_interval=1000", "optim.lr=1e-3", "lr_scheduler=constant_warmup",
                    "lr_scheduler.warmup_steps=2", *extra]


def test_distil_runs_rounds_refreshes_the_teacher_and_resumes_exactly(tmp_path, cache_dir, trained_run):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    distil(compose(_overrides(whole, trained_run)))
    assert read_metric(whole, "train/delta") == pytest.approx({s: 0.1 if s < 3 else 0.2 for s in range(6)})  # doubles
    assert not (whole / "checkpoints" / "best.ckpt").exists()  # every command loads the last student
    final = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["discdiff"]["teacher_round"] == 1
    teacher = {k[len("teacher."):]: v for k, v in final["state_dict"].items() if k.startswith("teacher.")}
    student = {k[len("lm.backbone."):]: v for k, v in final["state_dict"].items() if k.startswith("lm.backbone.")}
    assert teacher.keys() == student.keys() and any(not torch.equal(teacher[k], student[k]) for k in teacher)

    # preempted at step 4 (mid-round 1), restarted with the same command: the same teacher and the same steps
    distil(compose(_overrides(broken, trained_run, ["trainer.max_steps=4"])))
    distil(compose(_overrides(broken, trained_run, ["trainer.max_steps=100"])))
    a, b = read_metric(whole, "train/loss"), read_metric(broken, "train/loss")
    assert sorted(b) == sorted(a) == list(range(6))
    for step in range(4, 6):
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-7), step
    resumed = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.allclose(final["state_dict"][k], resumed[k], atol=1e-6) for k in resumed)

    pipe = load(whole)  # an ordinary generator run: sampled few-step with a greedy last step
    out = pipe.lm.sample(8, 4, cond=torch.ones(8, dtype=torch.long), greedy_last=True)
    assert out.tokens.shape == (8, pipe.lm.length) and out.nfe == 4


def test_cfg_gamma_guides_the_first_rounds_target_only(tmp_path, cache_dir, trained_run):
    plain, guided = tmp_path / "plain", tmp_path / "guided"
    distil(compose(_overrides(plain, trained_run, ["trainer.max_steps=1"])))
    distil(compose(_overrides(guided, trained_run, ["trainer.max_steps=4", "distil.cfg_gamma=3"])))
    a, b = read_metric(plain, "train/loss")[0], read_metric(guided, "train/loss")[0]
    assert a != pytest.approx(b, rel=1e-3)  # same batch, noise and weights: only the teacher's target differs
    # round 1's teacher is the guided student: tempering it again would compound gamma
    assert read_metric(guided, "train/cfg_gamma") == {0: 3.0, 1: 3.0, 2: 3.0, 3: 1.0}


def test_distil_is_refused_in_one_line(tmp_path, cache_dir, trained_run):
    cases = [(["distil.teacher=null"], "distil.teacher=RUN_DIR"), (["model.n_blocks=1"], "model differs"),
             (["data.length=16"], "data.length differs"), (["algo=mdlm"], "algo=udlm"),
             (["distil.cfg_gamma=3", "data.label_col=null", "training.guidance.cond_dropout=0"],
              "distil.cfg_gamma=3.0 guides by a label")]
    for extra, words in cases:
        with pytest.raises(ConfigError, match=words) as err:
            distil(compose(_overrides(tmp_path / "refused", trained_run, extra)))
        assert "\n" not in str(err.value)
        assert not (tmp_path / "refused").exists()  # nothing written
