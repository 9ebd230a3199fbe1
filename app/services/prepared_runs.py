"""A per-process cache of what computing a run's shards needs: the validated spec, the probes, the
dataset and the model with its checkpoint loaded.

Without it every shard message re-validated the spec, regenerated (or re-read) the dataset and
reloaded the checkpoint. Entries are keyed by ``(run id, attempt)``: a run's inputs never change
within an attempt (its spec is stored once and blobs are content-addressed), a new attempt after a
worker died prepares afresh, and no run can see another's entry. The cache holds at most
``max_entries`` runs (each holds a model, possibly on the GPU), evicting the least recently used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from workers.data.dataset import Dataset
from workers.probes.base import Probe, ProbeContext
from workers.runner import PreparedModel, probe_context
from workers.runspec import RunSpec

RunKey = tuple[str, int]  # (run id, attempt)
# Two: the run a worker is helping with now, and the one it helped with last (its shard messages
# may still be arriving). Each entry holds a model, so this is also a bound on memory.
DEFAULT_MAX_ENTRIES = 2


@dataclass(frozen=True)
class PreparedRun:
    spec: RunSpec
    probes: dict[str, Probe]
    model: PreparedModel
    dataset: Dataset | None

    def shard_inputs(self, probe_name: str) -> tuple[Probe, ProbeContext]:
        """The probe and a fresh context for one shard (probes leave the model as they found it)."""
        return self.probes[probe_name], probe_context(self.spec, self.model, self.dataset)


class PreparedRunCache:
    """Least-recently-used cache of ``PreparedRun``s, safe to share between threads."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._entries: OrderedDict[RunKey, PreparedRun] = OrderedDict()
        # Held while building, so two threads helping with one run prepare it once.
        self._lock = threading.Lock()
        self.builds = 0

    def get(self, key: RunKey, build: Callable[[], PreparedRun]) -> PreparedRun:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            prepared = build()
            self.builds += 1
            self._entries[key] = prepared
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            return prepared

    def keys(self) -> list[RunKey]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)
