"""Typed, range-checked configuration values, and violations reported in one line.

The configuration schema (`discdiff.config.schema`) and the data options
(`discdiff.data.registry.DataConfig`) declare every value with the aliases below; pydantic checks
them. `describe(annotation)` says in words what a declared type allows ("an integer >= 1",
"one of auto, cpu, gpu"), for error messages and the generated key reference alike, and
`first_problem(err, model)` turns a pydantic report into one line naming the key, the value and
what is allowed.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import annotated_types as at
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from .hub.format import is_hub_id


class MustExist:
    """Marks a path that must exist when the configuration is checked: `what` is "path", "file"
    or "folder"."""

    def __init__(self, what: str):
        self.what = what

    def __call__(self, path: str) -> str:
        found = Path(path).expanduser()
        if not found.exists():
            raise ValueError(f"no such {'file or folder' if self.what == 'path' else self.what}")
        if self.what == "file" and not found.is_file():
            raise ValueError("is a folder, not a file")
        if self.what == "folder" and not found.is_dir():
            raise ValueError("is a file, not a folder")
        return path


def _existing(what: str):
    check = MustExist(what)
    return Annotated[str, AfterValidator(check), check]


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, lt=1)]  # dropout rates, EMA decays: 1 would freeze or drop everything
OpenUnitFloat = Annotated[float, Field(gt=0, lt=1)]  # epsilons of time grids and schedules
ExistingPath = _existing("path")  # a run folder or a checkpoint file


class HubOrPath:
    """Marks a value that is an existing path or a HuggingFace hub id (org/name)."""

    def __call__(self, value: str) -> str:
        if not Path(value).expanduser().exists() and not is_hub_id(value):
            raise ValueError("no such file or folder, nor a HuggingFace hub id (org/name)")
        return value


HubSource = Annotated[str, AfterValidator(HubOrPath()), HubOrPath()]
ExistingFile = _existing("file")
ExistingFolder = _existing("folder")

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def describe(annotation: Any, metadata: tuple = ()) -> str:
    """What a declared type allows, in words: `Annotated[int, Field(ge=1)]` -> 'an integer >= 1'."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return describe(args[0], (*metadata, *args[1:]))
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in sorted(args, key=lambda a: a is type(None)))
    if origin is Literal:
        return ", ".join(str(a) for a in args)
    if origin is list:
        items = describe(args[0]) if args else "values"
        return f"a list of {_plural(items)}" + (" (at least one)" if _bounds(metadata).get("min_length") else "")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a section"
    bounds = _bounds(metadata)
    text = f"an existing {bounds['exists']}" if bounds.get("exists") else "an existing path or a hub id" \
        if bounds.get("hub") else _NAMES.get(annotation, getattr(annotation, "__name__", "?"))
    return text + _range(bounds)


def _bounds(metadata) -> dict:
    found = {}
    for item in metadata:
        inner = item.metadata if isinstance(item, FieldInfo) else [item]
        for m in inner:
            for name in ("ge", "gt", "le", "lt", "min_length"):
                if isinstance(m, (at.Ge, at.Gt, at.Le, at.Lt, at.MinLen)) and hasattr(m, name):
                    found[name] = getattr(m, name)
        if isinstance(item, MustExist):
            found["exists"] = item.what
        if isinstance(item, HubOrPath):
            found["hub"] = True
    return found


def _range(b: dict) -> str:
    low = ("[", b["ge"]) if "ge" in b else ("(", b["gt"]) if "gt" in b else None
    high = (b["le"], "]") if "le" in b else (b["lt"], ")") if "lt" in b else None
    if low and high:
        return f" in {low[0]}{low[1]:g}, {high[0]:g}{high[1]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {low[1]:g}"
    if high:
        return f" {'<=' if high[1] == ']' else '<'} {high[0]:g}"
    return ""


def _plural(text: str) -> str:
    for single, many in (("an integer", "integers"), ("a number", "numbers"), ("a string", "strings")):
        if text.startswith(single):
            return many + text[len(single):]
    return text


def field_at(model: type[BaseModel], loc: tuple) -> tuple[str, Optional[FieldInfo]]:
    """(dotted key, FieldInfo) of a pydantic error location; the tags pydantic inserts for
    members of unions ('geometric', 'constrained-int') are skipped."""
    names, info, current = [], None, model
    for part in loc:
        fields = getattr(current, "__pydantic_fields__", None)
        if isinstance(part, int):
            names[-1] += f"[{part}]"
            continue
        if fields is None or part not in fields:
            current = _member_with_tag(current, part)
            continue
        names.append(str(part))
        info = fields[part]
        current = _model_of(info.annotation)
    return ".".join(names), info


def _model_of(annotation) -> Any:
    """The pydantic model (or union of models) inside an annotation, if any."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _model_of(args[0])
    if origin in (Union, types.UnionType):
        members = [a for a in (_model_of(a) for a in args) if a is not None]
        return members[0] if len(members) == 1 else tuple(members) or None
    return annotation if hasattr(annotation, "__pydantic_fields__") else None


def _member_with_tag(current, tag):
    """For a union of models discriminated by `name`, the member whose name is `tag`."""
    for member in current if isinstance(current, tuple) else ():
        name = member.__pydantic_fields__.get("name")
        if name is not None and tag in get_args(name.annotation):
            return member
    return current


def _fields_under(model, loc: tuple) -> list[str]:
    current = model
    for part in loc:
        fields = getattr(current, "__pydantic_fields__", None)
        current = _model_of(fields[part].annotation) if fields and part in fields else _member_with_tag(current, part)
    return sorted(getattr(current, "__pydantic_fields__", {}))


def first_problem(err: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """One line for the first violation in `err`, raised validating `model`: the key, the value
    and what the key allows (or the message of a failed check across keys)."""
    problem = err.errors(include_url=False)[0]
    key, info = field_at(model, problem["loc"])
    key = ".".join(p for p in (prefix, key) if p)
    value = problem.get("input")
    kind = problem["type"]
    if kind == "value_error":
        reason = str(problem["ctx"]["error"])
        return f"{key}={value!r}: {reason}" if key and info is not None and not isinstance(value, dict) else reason
    if kind == "missing":
        return f"config key '{key}' is missing"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        parent, _ = field_at(model, problem["loc"][:-1])
        known = _fields_under(model, problem["loc"][:-1])
        name = ".".join(p for p in (prefix, parent, str(problem["loc"][-1])) if p)
        return f"unknown config key '{name}'; allowed: {', '.join(known)}"
    if kind == "union_tag_invalid":
        return f"{key}.name={problem['ctx']['tag']} is not allowed; allowed: {problem['ctx']['expected_tags']}"
    allowed = describe(info.annotation, tuple(info.metadata)) if info is not None else problem["msg"]
    return f"{key}={value!r} is not allowed; allowed: {allowed}"
