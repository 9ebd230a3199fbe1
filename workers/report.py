"""The report of a run: one typed document that the API serves, the CLI writes and clients read.

Every consumer (REST, the dashboard, CI gates, baselines, trends) reads the same fields:

- ``run``: what was measured (the resolved spec, the weights, the dataset, probe versions);
- ``probes``: each probe's own typed ``Result``, keyed by probe name;
- ``metrics``: the flat list of headline numbers with stable keys (``workers.probes.metrics``);
- ``timing``: ``{probe: {"total_s": s, "phases": {phase: s}}}``;
- ``environment``, ``artifacts`` (arrays stored beside the report) and ``warnings`` (full text).

It lives in the engine layer (no database, no web framework) because the runner builds it; the API
uses it as the ``response_model`` of ``GET /runs/{id}/report``, so ``/openapi.json`` documents every
field of every probe.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_serializer

from workers.probes.metrics import Metric
from workers.probes.registry import PROBES
from workers.runspec import RunSpec

# 2: typed report (metrics, warnings, one timing shape, inductive_bias ``spaces``). 1: untyped dict.
REPORT_FORMAT_VERSION = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DatasetDescription(_Strict):
    name: str
    task_type: Literal["classification", "regression"]
    n_classes: int | None
    n_train: int
    n_test: int
    sample_shape: list[int]
    target_dim: int
    x_dtype: str
    params: dict[str, Any] = Field(description="the built-in generator's parameters; empty for files")


class RunInfo(_Strict):
    id: str | None = Field(default=None, description="the run id (absent for local CLI runs)")
    model_id: str | None = None
    model_name: str | None = None
    spec: RunSpec = Field(description="the spec as executed, with the uploaded model's architecture filled in")
    seed: int
    weights: Literal["uploaded", "random_init"]
    parameter_count: int
    dataset: DatasetDescription | None
    probe_versions: dict[str, str]


class ProbeTiming(_Strict):
    total_s: float = Field(description="wall time of the probe, seconds")
    phases: dict[str, float] = Field(default_factory=dict, description="named parts of total_s (e.g. sampling_s)")


class Environment(_Strict):
    priorprobe: str
    report_format: int
    python: str
    torch: str
    numpy: str
    platform: str
    device: str
    dtype: str
    cuda: str | None = None
    gpu: str | None = None


class Artifact(_Strict):
    """An array too large for the JSON report, stored beside it as a NumPy ``.npy`` file."""

    shape: list[int]
    dtype: str
    stored: bool = Field(description="false when the caller kept no copy")
    sha256: str | None = Field(default=None, description="blob digest (API)")
    url: str | None = Field(default=None, description="where the API serves it")
    path: str | None = Field(default=None, description="file beside the report (CLI), relative to it")


class ReportWarning(_Strict):
    probe: str
    message: str = Field(description="what makes a number less trustworthy, in full")


def _probe_results_model() -> type[BaseModel]:
    """``{probe name: that probe's Result}``: one optional field per registered probe.

    A model rather than a dict of a union, so that the schema pairs each name with its own result
    type; probes that did not run are left out of the JSON.
    """
    fields: dict[str, Any] = {
        name: (probe.Result | None, Field(default=None, description=probe.summary)) for name, probe in PROBES.items()
    }

    def drop_absent(self, handler):
        return {key: value for key, value in handler(self).items() if value is not None}

    return create_model(
        "ProbeResults",
        __config__=ConfigDict(extra="forbid"),
        __validators__={"_drop_absent": model_serializer(mode="wrap")(drop_absent)},
        **fields,
    )


ProbeResults = _probe_results_model()


class Report(_Strict):
    run: RunInfo
    probes: ProbeResults  # type: ignore[valid-type]
    metrics: list[Metric] = Field(description="every probe's headline numbers with stable keys")
    timing: dict[str, ProbeTiming]
    environment: Environment
    artifacts: dict[str, Artifact] = Field(default_factory=dict, description="keyed '<probe>.<name>'")
    warnings: list[ReportWarning] = Field(default_factory=list)

    def result(self, probe: str) -> BaseModel | None:
        """The typed result of one probe, or None if it did not run."""
        return getattr(self.probes, probe)


def probe_metrics(probe: str, result: BaseModel) -> list[Metric]:
    """One probe's metrics, from its registered class."""
    return PROBES[probe].metrics(result)


def probe_warnings(probe: str, result: BaseModel) -> list[ReportWarning]:
    return [ReportWarning(probe=probe, message=message) for message in PROBES[probe].warnings(result)]
