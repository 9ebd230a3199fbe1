"""What the client raises: the server answered with an error, or could not be reached."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The server answered 4xx/5xx; ``detail`` is its JSON ``detail`` (a message or a list of errors)."""

    def __init__(self, method: str, path: str, status_code: int, detail: Any):
        self.method, self.path, self.status_code, self.detail = method, path, status_code, detail
        super().__init__(f"{method} {path}: {status_code} {self.message}")

    @property
    def message(self) -> str:
        if isinstance(self.detail, list):
            return "; ".join(
                f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg', item)}" if isinstance(item, dict) else str(item)
                for item in self.detail
            )
        return str(self.detail)


class ServerUnreachable(Exception):
    """No answer after every retry (connection refused, DNS, timeouts, or 503 throughout)."""
