"""The configuration keys, generated from the schema: every key with what it allows, its default
and its meaning, as text (`discdiff config --help`) or as the Markdown table of docs/configuration.md.

    python -m discdiff.config.reference --write docs/configuration.md   # refresh the table (make docs)

Defaults come from the packaged YAML files: the composed default configuration, and for groups
whose options take different keys (noise, logger, guidance) each option's own file.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from omegaconf import OmegaConf

from ..validation import _model_of, describe
from .compose import CONFIG_DIR, GROUPS, default_config, group_options
from .schema import RunConfig

BEGIN = "<!-- BEGIN config-reference -->"
END = "<!-- END config-reference -->"


@dataclass(frozen=True)
class Key:
    key: str
    allowed: str
    default: str
    meaning: str
    options: str = ""  # for keys of one group option: "noise=linear, geometric"


def keys() -> list[Key]:
    """Every configuration key in schema order."""
    return _walk(RunConfig, "", OmegaConf.to_container(default_config()))


def _walk(model, prefix: str, defaults: dict) -> list[Key]:
    rows = []
    for name, info in model.__pydantic_fields__.items():
        key = f"{prefix}{name}"
        inner = _model_of(info.annotation)
        if isinstance(inner, tuple):  # a group whose options take different keys
            rows += _group_rows(name, inner, ((defaults or {}).get(name) or {}).get("name"))
        elif inner is not None:
            rows += _walk(inner, f"{key}.", (defaults or {}).get(name) or {})
        else:
            rows.append(Key(key, describe(info.annotation, tuple(info.metadata)), _text((defaults or {}).get(name)),
                            info.description or ""))
    return rows


def _group_rows(group: str, members: tuple, chosen) -> list[Key]:
    """A row per option of the group (`noise=linear`, its meaning), then one per key of the
    options; a key that several options share with the same default and meaning is one row
    naming them all. `chosen`: the default configuration's option (None: the group is unset)."""
    merged: dict[tuple, list[str]] = {}
    options = []
    for member in members:
        name = member.__pydantic_fields__["name"]
        option = get_args(name.annotation)[0]
        options.append(Key(f"{group}={option}", "group option", "(default)" if option == chosen else "",
                           name.description or ""))
        defaults = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml"))
        for row in _walk(member, f"{group}.", defaults):
            if row.key != f"{group}.name":
                merged.setdefault((row.key, row.allowed, row.default, row.meaning), []).append(option)
    return options + [Key(*fields, options=f"{group}={', '.join(names)}") for fields, names in merged.items()]


def _text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _groups_line() -> str:
    return "; ".join(f"{g}={'|'.join(group_options(g))}" for g in GROUPS)


def as_text(width: int = 100) -> str:
    """The reference for a terminal: one entry per key, its meaning indented below."""
    lines = ["Config groups (group=option): " + _groups_line(), "",
             "Keys (key = default  [allowed]; group options in parentheses):"]
    for k in keys():
        where = f" ({k.options})" if k.options else ""
        lines.append(f"  {k.key} {k.default}" if k.allowed == "group option" else
                     f"  {k.key} = {k.default}  [{k.allowed}]{where}")
        if k.meaning:
            lines += textwrap.wrap(k.meaning, width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def as_markdown() -> str:
    """The Markdown table (what docs/configuration.md holds between the BEGIN / END markers)."""
    rows = ["_Generated from `src/discdiff/config/schema.py` by `make docs`._", "",
            "Config groups: " + ", ".join(f"`{g}={'|'.join(group_options(g))}`" for g in GROUPS) + ".", "",
            "| key | allowed | default | meaning |", "|---|---|---|---|"]
    for k in keys():
        where = f" (`{k.options}`)" if k.options else ""
        default = f"`{k.default}`" if k.default else ""
        rows.append(f"| `{k.key}`{where} | {_cell(k.allowed)} | {default} | {_cell(k.meaning)} |")
    return "\n".join([BEGIN, *rows, END])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def generated_block(text: str) -> str:
    """The generated block currently in a Markdown text ('' when it has none)."""
    if BEGIN not in text or END not in text:
        return ""
    return text[text.index(BEGIN):text.index(END) + len(END)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="print the configuration reference, or refresh a Markdown file's table")
    parser.add_argument("--markdown", action="store_true", help="Markdown instead of text")
    parser.add_argument("--write", metavar="FILE", help="replace the generated block of this Markdown file")
    args = parser.parse_args(argv)
    if args.write is None:
        print(as_markdown() if args.markdown else as_text())
        return 0
    path = Path(args.write)
    text = path.read_text()
    old = generated_block(text)
    if not old:
        print(f"{path} has no block between {BEGIN!r} and {END!r}", file=sys.stderr)
        return 2
    path.write_text(text.replace(old, as_markdown()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
