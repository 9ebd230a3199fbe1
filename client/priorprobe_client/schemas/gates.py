"""What ``submit`` decides: each gate's outcome, each metric compared with a baseline, the verdict.

These are also the ``--format json`` output, so a pipeline can read them back with this package.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from priorprobe_client.schemas.metrics import Better, Metric
from priorprobe_client.schemas.models import ModelRead
from priorprobe_client.schemas.runs import RunRead


class GateOutcome(BaseModel):
    gate: str = Field(description="the expression as given")
    passed: bool
    detail: str = Field(description="each comparison with the numbers it used")


class Verdict(StrEnum):
    regressed = "regressed"  # moved in its worse direction by more than the tolerance, intervals apart
    improved = "improved"  # moved in its better direction, intervals apart
    unchanged = "unchanged"  # intervals overlap, or the move is within the tolerance
    not_compared = "n/a"  # no direction (better = none) or a value is undefined


class MetricComparison(BaseModel):
    key: str
    unit: str
    better: Better
    baseline: Metric
    current: Metric
    delta: float | None = Field(description="current - baseline")
    tolerance: float = Field(description="how far it may move in its worse direction before it regresses")
    verdict: Verdict


class SubmitSummary(BaseModel):
    """The outcome of one ``submit``: exit code 0 passed, 1 a gate or regression failed."""

    server: str
    run: RunRead
    run_url: str
    model: ModelRead
    metrics: list[Metric]
    gates: list[GateOutcome]
    baseline_run_id: str | None
    baseline_note: str | None = Field(default=None, description="why no baseline was compared, if none was")
    comparisons: list[MetricComparison]
    passed: bool
    exit_code: int
