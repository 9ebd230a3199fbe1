"""Comparing a run's metrics with a baseline run's: what regressed, what improved.

A metric present in both runs *regresses* when it moved in its worse direction (the opposite of its
``better``) by more than its tolerance **and** the two 95% intervals do not overlap: a move the
measurement cannot tell from noise is never a regression, however large the point estimates' gap.
It *improved* when it moved in its better direction with the intervals apart. Metrics whose
``better`` is ``none``, or whose value is undefined in either run, are listed but not judged.

Tolerances (``--max-regression KEY=TOL``): ``TOL`` is a non-negative amount in the metric's unit
(``+2`` or ``2``) or a percentage of the baseline's magnitude (``5%``); ``*=TOL`` sets the default
for every key (otherwise 0).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from priorprobe_client.schemas.gates import MetricComparison, Verdict
from priorprobe_client.schemas.metrics import Metric

_TOLERANCE = re.compile(r"^\+?(?P<amount>\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?P<percent>%)?$")


class ToleranceError(ValueError):
    pass


@dataclass(frozen=True)
class Tolerance:
    amount: float
    relative: bool  # amount is a percentage of |baseline value|

    def absolute(self, baseline_value: float) -> float:
        return abs(baseline_value) * self.amount / 100 if self.relative else self.amount


def parse_tolerances(items: list[str]) -> dict[str, Tolerance]:
    """``["inductive_bias.bits=+2", "*=5%"]`` -> {key: Tolerance}; raises ``ToleranceError``."""
    tolerances = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        match = _TOLERANCE.match(raw)
        if not sep or not key or match is None:
            raise ToleranceError(
                f"--max-regression {item!r}: expected KEY=AMOUNT with a non-negative amount (e.g. inductive_bias.bits=+2, *=5%)"
            )
        number = raw.rstrip("%").lstrip("+")
        tolerances[key] = Tolerance(float(number), relative=match.group("percent") is not None)
    return tolerances


def _interval(metric: Metric) -> tuple[float, float]:
    """The metric's 95% interval, a point when it has none, unbounded where a side is null."""
    if metric.ci95 is None:
        return metric.value, metric.value  # type: ignore[return-value]
    low, high = metric.ci95
    return (-math.inf if low is None else low), (math.inf if high is None else high)


def intervals_overlap(a: Metric, b: Metric) -> bool:
    (a_low, a_high), (b_low, b_high) = _interval(a), _interval(b)
    return a_low <= b_high and b_low <= a_high


def compare_metric(baseline: Metric, current: Metric, tolerance: Tolerance) -> MetricComparison:
    judged = current.better != "none" and baseline.value is not None and current.value is not None
    delta = current.value - baseline.value if baseline.value is not None and current.value is not None else None
    allowed = tolerance.absolute(baseline.value) if baseline.value is not None else tolerance.amount
    verdict = Verdict.not_compared
    if judged:
        worse_by = delta if current.better == "lower" else -delta  # > 0: moved the worse way
        apart = not intervals_overlap(baseline, current)
        if worse_by > allowed and apart:
            verdict = Verdict.regressed
        elif worse_by < 0 and apart:
            verdict = Verdict.improved
        else:
            verdict = Verdict.unchanged
    return MetricComparison(key=current.key, unit=current.unit, better=current.better, baseline=baseline, current=current,
                            delta=delta, tolerance=allowed, verdict=verdict)  # fmt: skip


def compare_runs(baseline: list[Metric], current: list[Metric], tolerances: dict[str, Tolerance]) -> list[MetricComparison]:
    """Every metric present in both runs, in key order."""
    default = tolerances.get("*", Tolerance(0.0, relative=False))
    before = {metric.key: metric for metric in baseline}
    return [
        compare_metric(before[metric.key], metric, tolerances.get(metric.key, default))
        for metric in sorted(current, key=lambda m: m.key)
        if metric.key in before
    ]
