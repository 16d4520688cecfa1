"""The run configuration: composition of the packaged YAML configs with overrides (`compose`),
the schema every value is checked against (`schema`), and the generated key reference
(`reference`)."""

from .compose import CONFIG_DIR, GROUPS, batch_plan, compose, default_config, group_options, world_size
from .schema import ConfigError

__all__ = ["CONFIG_DIR", "GROUPS", "ConfigError", "batch_plan", "compose", "default_config", "group_options",
           "world_size"]
