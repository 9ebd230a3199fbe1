"""Metrics: the few typed numbers of a probe's result that tables, CI gates, baselines and trends use.

A probe's ``Result`` is the whole measurement; its metrics are a flat list picked from it, each with a
stable dotted key. Keys never contain parameter values (no ``eps=0.1`` inside a key), so the same
quantity keeps the same key across runs and can be compared, gated on and plotted as a trend. A key
may contain a *name* the user chose or the probe enumerates (a compared space's label, a transform):
those segments are written ``<label>`` in the key's pattern and never contain a dot.

Each probe declares its patterns once (``Probe.metric_definitions`` on the server, served by ``GET /api/v1/probes``)
and builds its metrics from them, so a unit, a direction or a description is written in one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Better = Literal["lower", "higher", "none"]
# "trained": measured on the weights under study (the uploaded weights, or the seeded random member
# when none were uploaded) or on trained hypotheses; "init": over random members of the space.
Scope = Literal["trained", "init"]

_PLACEHOLDER = re.compile(r"<([a-z_]+)>")
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")


class Metric(BaseModel):
    """One number of a run, with its interval and how to read it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    key: str = Field(description="stable dotted key, e.g. 'inductive_bias.bits'")
    value: float | None = Field(description="None when undefined for this run (e.g. outputs that do not vary)")
    ci95: tuple[float | None, float | None] | None = Field(
        description="95% interval [low, high]; one side null for a one-sided bound; null when the value has none"
    )
    unit: str
    better: Better = Field(description="which direction is an improvement; 'none' when neither is")
    n: int | None = Field(description="sample size behind the value (hypotheses, inputs, members, probes)")
    scope: Scope
    description: str


class MetricDefinition(BaseModel):
    """A metric's key pattern and meaning, declared once per probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="dotted pattern; <name> segments are filled per run")
    unit: str
    better: Better
    scope: Scope | None = Field(description="null when it depends on the run (e.g. on the sampler)")
    description: str

    def placeholders(self) -> list[str]:
        return _PLACEHOLDER.findall(self.key)

    def matches(self, key: str) -> bool:
        """Whether a concrete key was built from this pattern (segment by segment)."""
        pattern, actual = self.key.split("."), key.split(".")
        return len(pattern) == len(actual) and all(
            want == got or (_PLACEHOLDER.fullmatch(want) is not None and _SEGMENT.match(got) is not None)
            for want, got in zip(pattern, actual)
        )

    def __call__(
        self,
        value: float | None,
        *,
        ci95: Iterable[float | None] | None = None,
        n: int | None = None,
        scope: Scope | None = None,
        **names: str,
    ) -> Metric:
        """The metric for one run: fills the ``<name>`` segments of the key from ``names``."""
        key = self.key
        for placeholder in self.placeholders():
            segment = str(names[placeholder])
            if not _SEGMENT.match(segment):
                raise ValueError(f"metric key segment {placeholder}={segment!r} must match {_SEGMENT.pattern}")
            key = key.replace(f"<{placeholder}>", segment)
        chosen_scope = scope or self.scope
        if chosen_scope is None:
            raise ValueError(f"metric {self.key} needs a scope for this run")
        return Metric(
            key=key, value=_finite_or_none(value), ci95=_interval(ci95), unit=self.unit, better=self.better,
            n=n, scope=chosen_scope, description=self.description,
        )


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _interval(ci95: Iterable[float | None] | None) -> tuple[float | None, float | None] | None:
    if ci95 is None:
        return None
    low, high = (_finite_or_none(v) for v in ci95)
    if low is None and high is None:
        return None
    return (low, high)


def definition_for(definitions: Iterable[MetricDefinition], key: str) -> MetricDefinition | None:
    """The declared pattern a concrete key was built from, or None."""
    return next((definition for definition in definitions if definition.matches(key)), None)
