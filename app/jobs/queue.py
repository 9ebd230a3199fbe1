"""What the API and the jobs themselves enqueue work through: ``enqueue(kind, args, queue)``."""

from __future__ import annotations

from typing import Any, Protocol


class DispatchError(RuntimeError):
    """The job could not be handed to a worker (broker unreachable)."""


class JobQueue(Protocol):
    # True when other workers may take enqueued jobs while the enqueuing job still runs; a run
    # then spreads its shards over them. The embedded worker is one thread, so fanning work out
    # would only queue it behind the job that fanned it out.
    parallel: bool

    def enqueue(self, kind: str, args: dict[str, Any], queue: str, delay_s: float = 0.0) -> None:
        """Deliver job ``kind`` (a key of ``app.jobs.registry.JOBS``) with JSON ``args`` to a worker
        consuming ``queue``, not before ``delay_s`` seconds from now (retries with backoff); raises
        ``DispatchError`` if it cannot be delivered."""

    def waiting(self, kind: str) -> list[dict[str, Any]]:
        """The args of every ``kind`` job the broker still holds: waiting for a worker, or taken by
        one and not yet acknowledged. The reconciler enqueues again what is missing from it."""

    def ping(self) -> None:
        """Raise if the delivery mechanism (the broker) is unreachable."""

    def close(self) -> None: ...
