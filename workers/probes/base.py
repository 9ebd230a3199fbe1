"""What every probe is: fixed configuration (``Params``) at construction, per-run data at call.

A probe never imports Celery, FastAPI or the database: the CLI, the workers and the tests call it
the same way. Its ``run`` returns a pydantic ``Result`` whose JSON becomes
``report["probes"][probe.name]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from models.specs import ArchSpec, DataInput
    from workers.probes.metrics import Metric, MetricDefinition
    from workers.data.dataset import Dataset
    from workers.runspec import TaskSpec

ProgressFn = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    return None


class ShardExecutor(Protocol):
    """Runs a probe's independent shards and returns their results in order.

    The local executor runs them one after another in this process; the distributed one
    (``app/services/sharding.py``) spreads them over every Celery worker. Either way the probe sees
    the same results, so sharded and unsharded runs agree exactly.
    """

    def map(self, probe: "Probe", shards: list[dict], context: "ProbeContext") -> list[dict]: ...


class LocalShardExecutor:
    def map(self, probe: "Probe", shards: list[dict], context: "ProbeContext") -> list[dict]:
        results = []
        for shard in shards:
            results.append(probe.run_shard(context, shard))
            context.progress(len(results) / len(shards), f"{len(results)}/{len(shards)} shards done")
        return results


@dataclass
class ProbeContext:
    """Everything a probe may look at for one run.

    ``model`` holds the uploaded weights (or, when none were uploaded, the seeded random member
    ``make_member(seed)``; ``has_uploaded_weights`` says which). ``make_member(seed)`` builds a fresh
    random member of the same hypothesis space (architecture + init), on ``device``. ``progress``
    takes a fraction in [0, 1] of *this probe's* work.
    """

    arch: "ArchSpec"
    model: torch.nn.Module
    has_uploaded_weights: bool
    make_member: Callable[[int], torch.nn.Module]
    seed: int
    device: torch.device
    dtype: torch.dtype = torch.float32
    dataset: "Dataset | None" = None
    task: "TaskSpec | None" = None
    progress: ProgressFn = field(default=_no_progress)
    shards: ShardExecutor = field(default_factory=LocalShardExecutor)
    # Named sub-timings a probe records (e.g. sampling_s, estimation_s); the report shows them.
    timing: dict[str, float] = field(default_factory=dict)
    # Arrays too large for the JSON report (e.g. every sampled loss), stored beside it as .npy.
    artifacts: dict[str, "np.ndarray"] = field(default_factory=dict)
    # How the data's samples are shaped (task.input, or inferred from the dataset); None: as the
    # architecture takes them. The dataset itself is always in the architecture's shape.
    data_input: "DataInput | None" = None


class ProbeParams(BaseModel):
    """Base for every probe's ``Params``: unknown keys are errors (they are nearly always typos)."""

    # No inf or NaN anywhere in a request: JSON parsers accept Infinity/NaN, and a non-finite bound
    # or epsilon would pass "gt" checks and fail (or mislead) only once the run is executing.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Probe(ABC):
    """One measurement of a hypothesis space or of one member of it.

    Subclasses set the class attributes, a nested ``Params`` (defaults and bounds; served as JSON
    schema by ``GET /api/v1/probes``), ``Result`` and ``metric_definitions``, and implement ``run``
    and ``metrics``.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    requires_task: ClassVar[bool] = False
    # Runs with a GPU-hungry probe go to the 'gpu' queue when the deployment has GPU workers.
    benefits_from_gpu: ClassVar[bool] = False
    # Input kinds (models.specs.input_signature) the probe can measure.
    supported_input_kinds: ClassVar[frozenset[str]] = frozenset({"tabular", "image", "tokens", "sequence"})
    Params: ClassVar[type[ProbeParams]] = ProbeParams
    Result: ClassVar[type[BaseModel]]
    # The key patterns, units, directions and meanings of what ``metrics`` returns.
    metric_definitions: ClassVar[tuple["MetricDefinition", ...]] = ()

    def __init__(self, params: ProbeParams | None = None):
        self.params = params if params is not None else self.Params()

    def check_inputs(self, arch: "ArchSpec", task: "TaskSpec | None") -> None:
        """Raise ``models.errors.InputError`` if these params cannot work with this arch/task.

        Runs before the run is queued, so problems surface as a 422 rather than a failed run.
        """
        from models.errors import InputError

        if self.requires_task and task is None:
            raise InputError.at(["task"], f"probe '{self.name}' needs a task (dataset, loss, target_error)")
        kind, _ = task_signature(arch, task)
        if kind not in self.supported_input_kinds:
            raise InputError.at(
                ["probes", self.name],
                f"does not take {kind} inputs (architecture '{arch.name}'); it takes {sorted(self.supported_input_kinds)}",
            )

    def check_dataset(self, description: dict) -> None:
        """Raise ``InputError`` if these params cannot work with this dataset (``Dataset.describe()``).

        Called before a run is queued, once the dataset's shapes are known.
        """
        return None

    @classmethod
    @abstractmethod
    def metrics(cls, result: BaseModel) -> list["Metric"]:
        """The result's headline numbers as metrics with stable keys (``workers.probes.metrics``).

        Every metric is built from one of ``metric_definitions``; a contract test checks this.
        """

    @classmethod
    def warnings(cls, result: BaseModel) -> list[str]:
        """What makes this result less trustworthy, in full sentences (the report lists them)."""
        return []

    @abstractmethod
    def run(self, context: ProbeContext) -> BaseModel:
        """Compute the probe's result. Must leave ``context.model`` as it found it."""

    def run_shard(self, context: ProbeContext, shard: dict) -> dict:
        """Compute one independent piece of ``run`` (JSON in, JSON out) for ``context.shards``.

        Only probes that split their work override this; the shard dict is whatever their
        ``run`` passed to ``context.shards.map``.
        """
        raise NotImplementedError(f"probe '{self.name}' does not run in shards")


def task_signature(arch: "ArchSpec", task: "TaskSpec | None") -> tuple[str, tuple[int, ...]]:
    """``models.specs.data_signature`` for the task's declared ``input``; ``InputError`` at ``task.input``."""
    from models.errors import InputError
    from models.specs import data_signature

    try:
        return data_signature(arch, None if task is None else task.input)
    except ValueError as exc:
        raise InputError.at(["task", "input"], str(exc)) from None
