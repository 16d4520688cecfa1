"""Configuration: Hydra composition of the packaged configs, overrides and validation.

`compose(overrides)` returns a resolved, struct-mode OmegaConf config; every refused input raises
`ConfigError` with one line naming what is wrong and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).parent / "configs"
GROUPS = ("algo", "model", "data", "noise", "lr_scheduler", "logger", "guidance", "experiment")


class ConfigError(ValueError):
    """A configuration the user asked for cannot be built; the message is one line."""


def group_options(group: str) -> list[str]:
    """The options of a config group, e.g. ['ar', 'mdlm', 'udlm'] for 'algo'."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _check_overrides(overrides: list[str]) -> None:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override '{item}' is not key=value (e.g. algo=mdlm model=tiny trainer.max_steps=100)")
        group = key.lstrip("+~")
        optional = group in ("experiment", "guidance") and value == "null"
        if group in GROUPS and value not in group_options(group) and not optional:
            raise ConfigError(f"unknown {group} '{value}'; allowed: {', '.join(group_options(group))}")


def _one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    match = re.search(r"Key '([^']+)' is not in struct", str(err))
    if match or "Could not override" in text:
        key = re.search(r"Could not override '([^']+)'", str(err))
        name = key.group(1) if key else (match.group(1) if match else "?")
        return f"unknown config key '{name}'; {_allowed_keys_hint(name)}"
    return text


_BASE = None


def _allowed_keys_hint(dotted: str) -> str:
    global _BASE
    if _BASE is None:
        _BASE = OmegaConf.load(CONFIG_DIR / "config.yaml")
    parent, _, _ = dotted.rpartition(".")
    if parent in GROUPS and parent not in ("experiment", "guidance"):  # a group's keys live in its option files
        node = OmegaConf.load(CONFIG_DIR / parent / f"{group_options(parent)[0]}.yaml")
    else:
        node = OmegaConf.select(_BASE, parent) if parent else _BASE
    if isinstance(node, DictConfig):
        keys = [k for k in node.keys() if k != "defaults"] + ([] if parent else list(GROUPS))
        where = f"under '{parent}'" if parent else "at the top level"
        return f"allowed {where}: {', '.join(sorted(keys))}"
    return "see `discdiff config` for the allowed keys"


def compose(overrides: list[str] | None = None) -> DictConfig:
    """Compose config.yaml with command-line style overrides and validate the result."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides or [])
    _check_overrides(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except Exception as err:  # Hydra/OmegaConf raise many types; the user gets one line
        raise ConfigError(_one_line(err)) from None
    OmegaConf.resolve(cfg)
    OmegaConf.set_struct(cfg, True)
    validate(cfg)
    return cfg


def default_config() -> DictConfig:
    """The configuration with no overrides (not in struct mode, so stored configs merge onto it)."""
    cfg = compose([])
    OmegaConf.set_struct(cfg, False)
    return cfg


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: DictConfig) -> None:
    """Refuse invalid combinations of the model-family knobs and out-of-range options."""
    _require(cfg.diffusion in ("absorbing_state", "uniform"),
             f"diffusion='{cfg.diffusion}' is not allowed; allowed: absorbing_state, uniform")
    _require(cfg.parameterization in ("ar", "subs", "d3pm"),
             f"parameterization='{cfg.parameterization}' is not allowed; allowed: ar, subs, d3pm")
    _require(isinstance(cfg.T, int) and cfg.T >= 0, f"T must be an integer >= 0 (0 = continuous time), got {cfg.T}")
    if cfg.parameterization == "ar":
        _require(cfg.T == 0, f"T={cfg.T} does not apply to parameterization=ar; use T=0")
        _require(not cfg.time_conditioning, "time_conditioning=true does not apply to parameterization=ar")
    if cfg.parameterization == "subs":
        _require(cfg.diffusion == "absorbing_state",
                 f"parameterization=subs needs diffusion=absorbing_state, got diffusion={cfg.diffusion}; "
                 "use parameterization=d3pm for uniform")
    if cfg.parameterization == "d3pm" and cfg.diffusion == "absorbing_state":
        _require(cfg.T > 0, "parameterization=d3pm with diffusion=absorbing_state needs discrete time (T>0); "
                            "use parameterization=subs for continuous time")
    from .data.registry import get_spec

    get_spec(cfg.data.name)  # unknown datasets are refused before anything runs
    dropout = cfg.training.guidance.cond_dropout
    _require(0 <= dropout < 1, f"training.guidance.cond_dropout must be in [0, 1), got {dropout}")
    _require(dropout == 0 or cfg.data.label_col is not None,
             "training.guidance.cond_dropout > 0 needs a conditional model: set data.label_col")
    _require(cfg.trainer.strategy in ("auto", "ddp", "fsdp"),
             f"trainer.strategy='{cfg.trainer.strategy}' is not allowed; allowed: auto, ddp, fsdp")
    _require(str(cfg.trainer.precision) in ("auto", "32", "bf16-mixed", "16-mixed", "bf16-true"),
             f"trainer.precision='{cfg.trainer.precision}' is not allowed; allowed: auto, 32, bf16-mixed, 16-mixed, bf16-true")
    _require(not (cfg.trainer.strategy == "fsdp" and cfg.training.ema > 0),
             "strategy=fsdp shards the weights, which the EMA does not follow yet; set training.ema=0 or use strategy=ddp")
    _require(cfg.trainer.max_steps > 0, f"trainer.max_steps must be > 0, got {cfg.trainer.max_steps}")
    _require(cfg.loader.global_batch_size > 0, f"loader.global_batch_size must be > 0, got {cfg.loader.global_batch_size}")
    _require(0 <= cfg.training.ema < 1, f"training.ema must be in [0, 1) (0 disables it), got {cfg.training.ema}")
    _require(cfg.sampling.steps >= 1, f"sampling.steps must be >= 1, got {cfg.sampling.steps}")
    _require(cfg.optim.lr > 0, f"optim.lr must be > 0, got {cfg.optim.lr}")
    from .models import MODEL_SIZES
    from .models.classifier import POOLINGS

    c = cfg.classifier
    _require(c.model in MODEL_SIZES, f"classifier.model='{c.model}' is not allowed; allowed: {', '.join(MODEL_SIZES)}")
    _require(c.pooling in POOLINGS, f"classifier.pooling='{c.pooling}' is not allowed; allowed: {', '.join(POOLINGS)}")
    _require(0 <= c.dropout < 1, f"classifier.dropout must be in [0, 1), got {c.dropout}")


def world_size(cfg: DictConfig) -> int:
    """Number of training processes (devices x nodes); 'auto' devices count as 1."""
    devices = cfg.trainer.devices
    per_node = devices if isinstance(devices, int) else len(devices) if not isinstance(devices, str) else 1
    return max(per_node, 1) * cfg.trainer.num_nodes


def batch_plan(cfg: DictConfig) -> tuple[int, int]:
    """(per-device micro-batch, gradient accumulation steps) that reach loader.global_batch_size."""
    world = world_size(cfg)
    global_batch = cfg.loader.global_batch_size
    micro = cfg.loader.batch_size or global_batch // world
    if micro < 1 or global_batch % (micro * world):
        raise ConfigError(f"loader.global_batch_size={global_batch} is not a multiple of "
                          f"loader.batch_size={micro} x {world} device(s)")
    return micro, global_batch // (micro * world)
