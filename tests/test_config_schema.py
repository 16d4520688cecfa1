"""The configuration schema: every class of bad value is refused in one line naming the key, the
value and what is allowed (exit code 2); every packaged option composes; the schema matches the
code it configures; the README's key table is the generated one."""

import inspect
import typing
from pathlib import Path

import pytest

from discdiff.cli import main
from discdiff.config import ConfigError, compose, group_options
from discdiff.config import reference, schema
from discdiff.loading import GUIDANCE
from discdiff.schedules import SCHEDULES

ROOT = Path(__file__).resolve().parents[1]

BAD_VALUES = {
    "integer from text": ("trainer.max_steps=abc", "trainer.max_steps='abc' is not allowed; allowed: an integer >= 1"),
    "integer with a fraction": ("sampling.steps=2.5", "sampling.steps=2.5 is not allowed; allowed: an integer >= 1"),
    "negative size": ("model.hidden_size=-5", "model.hidden_size=-5 is not allowed; allowed: an integer >= 1 or null"),
    "zero steps": ("trainer.max_steps=0", "allowed: an integer >= 1"),
    "learning rate zero": ("optim.lr=0", "optim.lr=0 is not allowed; allowed: a number > 0"),
    "learning rate infinite": ("optim.lr=inf", "optim.lr=inf is not allowed; allowed: a number > 0"),
    "probability of one": ("training.guidance.cond_dropout=1.0", "allowed: a number in [0, 1)"),
    "beta of one": ("optim.beta2=1", "optim.beta2=1 is not allowed; allowed: a number in [0, 1)"),
    "epsilon outside (0, 1)": ("sampling.eps=0", "allowed: a number in (0, 1)"),
    "heads do not divide": ("model.hidden_size=100", "model.hidden_size=100 must split into model.n_heads=12"),
    "odd head size": ("model.hidden_size=36", "heads of an even size"),
    "unknown choice": ("trainer.precision=fp8", "trainer.precision='fp8' is not allowed; allowed: auto, 32, 32-true"),
    "boolean from text": ("training.loss_on_pad=maybe", "allowed: true or false"),
    "missing path": ("checkpoint=/no/such/file.ckpt", "checkpoint='/no/such/file.ckpt': no such file or folder"),
    "count or fraction": ("trainer.limit_val_batches=0", "allowed: an integer >= 1 or a number in (0, 1]"),
    "fraction above one": ("trainer.limit_val_batches=1.5", "allowed: an integer >= 1 or a number in (0, 1]"),
    "empty list": ("study.gammas=[]", "study.gammas=[] is not allowed; allowed: a list of numbers (at least one)"),
    "list item": ("study.seeds=[1,x]", "study.seeds[1]='x' is not allowed; allowed: a list of integers >= 0"),
    "negative seed": ("seed=-1", "seed=-1 is not allowed; allowed: an integer >= 0"),
    "data length": ("data.length=2", "data.length=2 is not allowed; allowed: an integer >= 3 or null"),
    "percentile": ("data.label_percentile=100", "allowed: a number in (0, 100)"),
    "label of another dataset": ("data.label_col=logp", "data.label_col=logp is not a label of qm9; allowed: qed"),
    "min_lr above lr": ("lr_scheduler.min_lr=1", "lr_scheduler.min_lr=1.0 is above optim.lr=0.0003"),
    "batch plan": ("loader.batch_size=100", "loader.global_batch_size=512 is not a multiple of loader.batch_size=100"),
    "sampler method": ("sampling.method=ddim", "sampling.method='ddim' is not allowed; allowed: ancestral, remdm, psi"),
    "nucleus of zero": ("sampling.top_p=0", "sampling.top_p=0 is not allowed; allowed: a number in (0, 1]"),
    "devices": ("trainer.devices=0", "allowed: an integer >= 1 or a list of integers >= 0 (at least one) or auto"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_are_refused_in_one_line(case, capsys):
    override, expected = BAD_VALUES[case]
    assert main(["config", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("discdiff config: error: ") and expected in err, err


GROUP_OPTION_VALUES = {
    "noise option": (["noise=geometric", "noise.sigma_min=30"], "noise.sigma_min=30.0 must be below noise.sigma_max=20.0"),
    "noise type": (["noise=linear", "noise.sigma_max=big"], "noise.sigma_max='big' is not allowed; allowed: a number > 0"),
    "guidance option": (["guidance=cfg", "guidance.gamma=nan"], "guidance.gamma=nan is not allowed; allowed: a number"),
    "guidance count": (["guidance=fudge", "guidance.classifier=.", "guidance.topk=0"], "guidance.topk=0 is not allowed"),
    "logger option": (["logger=wandb", "logger.offline=sometimes"], "logger.offline='sometimes' is not allowed"),
    "head without generator": (["classifier.kind=head"], "classifier.generator=RUN_DIR goes with classifier.kind=head"),
    "file, not folder": (["eval.samples=."], "eval.samples='.': is a folder, not a file"),
    "folder, not file": ([f"data.tokenizer_dir={__file__}"], "is a file, not a folder"),
    "corrector window": (["sampling.method=psi", "sampling.t_off=0.7"], "sampling.t_off=0.7 must be below sampling.t_on=0.5"),
}


@pytest.mark.parametrize("case", GROUP_OPTION_VALUES)
def test_keys_of_group_options_and_paths_are_checked(case):
    overrides, expected = GROUP_OPTION_VALUES[case]
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_checked_values_take_their_declared_types():
    cfg = compose(["trainer.precision=32", "trainer.limit_val_batches=8", "study.gammas=[0,2]"])
    assert cfg.trainer.precision == "32" and cfg.trainer.limit_val_batches == 8
    assert list(cfg.study.gammas) == [0.0, 2.0] and all(isinstance(g, float) for g in cfg.study.gammas)


@pytest.mark.parametrize("group", ["algo", "model", "data", "noise", "lr_scheduler", "logger", "guidance", "experiment"])
def test_every_packaged_option_passes_the_schema(group):
    context = {"unet": ["data.name=cifar10", "data.length=3072"]}  # a UNet needs an image dataset
    for option in group_options(group):
        compose([f"{group}={option}", *context.get(option, [])])


def test_noise_options_are_the_schedules_arguments():
    members = typing.get_args(typing.get_args(schema.Noise)[0])
    for member in members:
        name = typing.get_args(member.model_fields["name"].annotation)[0]
        parameters = set(inspect.signature(SCHEDULES[name]).parameters)
        assert set(member.model_fields) - {"name"} == parameters, name
    assert {typing.get_args(m.model_fields["name"].annotation)[0] for m in members} == set(SCHEDULES)


def test_guidance_options_are_the_strategies_options():
    members = typing.get_args(typing.get_args(schema.GuidanceOptions)[0])
    for member in members:
        name = typing.get_args(member.model_fields["name"].annotation)[0]
        _, kind, options = GUIDANCE[name]
        assert set(member.model_fields) - {"name", "gamma", "condition", "classifier"} == set(options), name
        assert ("classifier" in member.model_fields) == (kind is not None)
    assert {typing.get_args(m.model_fields["name"].annotation)[0] for m in members} == set(GUIDANCE)


def test_docs_list_the_generated_key_table():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert reference.generated_block(page) == reference.as_markdown(), \
        "docs/configuration.md's table is stale: run `make docs`"


def test_config_help_lists_every_key_with_default_and_meaning(capsys):
    import pytest as _pytest

    with _pytest.raises(SystemExit):
        main(["config", "--help"])
    out = capsys.readouterr().out
    for key in reference.keys():
        assert key.key in out, key.key
    assert "trainer.max_steps = 1000  [an integer >= 1]" in out and "optimizer steps of the run" in out
    assert "noise.sigma_min = 0.0001  [a number > 0] (noise=linear, geometric)" in out
