"""One line of an error, for the refusals every layer reports (`discdiff <command>: error: ...`)."""

from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first non-empty line of the error's message, or its type's name when it has none."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def described(err: BaseException) -> str:
    """'TypeName: first line' (what a library's error says, for a message that wraps it)."""
    return f"{type(err).__name__}: {first_line(err)}"
