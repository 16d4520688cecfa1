"""Composition: the packaged configs, Hydra-style overrides, then the schema's checks.

`compose(overrides)` returns a resolved, struct-mode OmegaConf config whose every value passed
`schema.check`; every refused input raises `ConfigError` with one line naming what is wrong and
what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ..errors import first_line
from . import schema
from .schema import ConfigError

CONFIG_DIR = Path(__file__).parent.parent / "configs"
GROUPS = ("algo", "model", "data", "noise", "lr_scheduler", "logger", "guidance", "experiment")
#: keys of earlier versions -> the key that replaced them
RENAMED = {"study.eval_classifier": "eval.classifier"}


def group_options(group: str) -> list[str]:
    """The options of a config group, e.g. ['ar', 'mdlm', 'udlm'] for 'algo'."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _check_overrides(overrides: list[str]) -> None:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override '{item}' is not key=value (e.g. algo=mdlm model=tiny trainer.max_steps=100)")
        group = key.lstrip("+~")
        if group in RENAMED:
            raise ConfigError(f"{group} is now {RENAMED[group]} (one key for the evaluation classifier of eval and "
                              f"the study): {RENAMED[group]}={value}")
        optional = group in ("experiment", "guidance") and value == "null"
        if group in GROUPS and value not in group_options(group) and not optional:
            raise ConfigError(f"unknown {group} '{value}'; allowed: {', '.join(group_options(group))}")


def _one_line(err: Exception) -> str:
    text = first_line(err)
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
    overrides = list(overrides or [])
    _check_overrides(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except Exception as err:  # Hydra/OmegaConf raise many types; the user gets one line
        raise ConfigError(_one_line(err)) from None
    OmegaConf.resolve(cfg)
    composed = OmegaConf.to_container(cfg)
    cfg = OmegaConf.create(_in_order_of(composed, schema.check(composed)))
    OmegaConf.set_struct(cfg, True)
    return cfg


def _in_order_of(template: dict, values: dict) -> dict:
    """`values` with its keys in the order of `template` (the YAML files' order), keys only in
    `values` last."""
    ordered = {k: _in_order_of(template[k], values[k]) if isinstance(template.get(k), dict) and
               isinstance(values.get(k), dict) else values[k] for k in template if k in values}
    return {**ordered, **{k: v for k, v in values.items() if k not in ordered}}


def default_config() -> DictConfig:
    """The configuration with no overrides (not in struct mode, so stored configs merge onto it)."""
    cfg = compose([])
    OmegaConf.set_struct(cfg, False)
    return cfg


def restore(stored: dict | DictConfig) -> DictConfig:
    """The configuration a run stored (config.yaml, a checkpoint's), with keys added since it was
    written at their defaults (not in struct mode)."""
    return OmegaConf.merge(default_config(), stored)
