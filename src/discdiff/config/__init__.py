"""The run configuration: composition of the packaged YAML configs with overrides (`compose`),
the schema every value is checked against (`schema`), and the generated key reference
(`reference`)."""

from .compose import CONFIG_DIR, GROUPS, compose, default_config, group_options, restore
from .schema import ConfigError, batch_plan, world_size

__all__ = ["CONFIG_DIR", "GROUPS", "ConfigError", "batch_plan", "compose", "default_config", "group_options",
           "restore", "world_size"]
