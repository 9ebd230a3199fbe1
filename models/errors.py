"""Errors that mean "the user's input is wrong", carrying the location of the bad field.

It lives in ``models/``, the lowest layer, so that every layer (models, workers, app) can raise it.

The API turns ``InputError`` into a 422 whose body has the same shape as FastAPI's own validation
errors (``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``); the CLI prints it. Anything
else raised while running a probe is a failure of the run, recorded with its message.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


class InputError(ValueError):
    """One or more problems with user input, each located by a path of field names."""

    def __init__(self, errors: Sequence[dict]):
        self.errors = [
            {"loc": list(e["loc"]), "msg": str(e["msg"]), "type": e.get("type", "value_error")} for e in errors
        ]
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in self.errors))

    def __reduce__(self):
        # Picklable with its locations, so it survives crossing process boundaries intact.
        return (type(self), (self.errors,))

    @classmethod
    def at(cls, loc: Sequence[str | int], msg: str, type_: str = "value_error") -> "InputError":
        return cls([{"loc": loc, "msg": msg, "type": type_}])

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: Sequence[str | int] = ()) -> "InputError":
        return cls(
            [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors(include_url=False)]
        )
