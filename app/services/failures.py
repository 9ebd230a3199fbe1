"""How a failed run or shard is described in its row's ``error`` column."""

from __future__ import annotations

from models.errors import InputError


def describe_failure(exc: BaseException) -> str:
    """A user's input problem says so; anything else names the exception type."""
    if isinstance(exc, InputError):
        return f"invalid input: {exc}"
    return f"{type(exc).__name__}: {exc}"
