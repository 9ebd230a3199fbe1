"""Baseline comparison: a regression needs a move the worse way beyond the tolerance AND intervals apart."""

from __future__ import annotations

import pytest

from priorprobe_client.baseline import ToleranceError, compare_metric, compare_runs, parse_tolerances, Tolerance
from priorprobe_client.schemas.gates import Verdict
from tests.client.test_gates import metric

NONE = Tolerance(0.0, relative=False)


@pytest.mark.parametrize(("better", "before", "after", "tolerance", "verdict"), [
    # lower is better: going up is worse
    ("lower", (10, (9, 11)), (15, (14, 16)), NONE, Verdict.regressed),
    ("lower", (10, (9, 11)), (15, (10.5, 19)), NONE, Verdict.unchanged),  # intervals overlap
    ("lower", (10, (9, 11)), (15, (14, 16)), Tolerance(5, False), Verdict.unchanged),  # exactly at the tolerance
    ("lower", (10, (9, 11)), (15, (14, 16)), Tolerance(4.9, False), Verdict.regressed),
    ("lower", (10, (9, 11)), (15, (14, 16)), Tolerance(60, True), Verdict.unchanged),  # 60% of 10 = 6
    ("lower", (10, (9, 11)), (5, (4, 6)), NONE, Verdict.improved),
    # higher is better: going down is worse
    ("higher", (10, (9, 11)), (5, (4, 6)), NONE, Verdict.regressed),
    ("higher", (10, (9, 11)), (15, (14, 16)), NONE, Verdict.improved),
    # one-sided interval reaching the other: overlap
    ("lower", (10, (9, 11)), (15, (None, 16)), NONE, Verdict.unchanged),
    # no intervals: points, apart unless equal
    ("lower", (10, None), (10.5, None), NONE, Verdict.regressed),
    ("lower", (10, None), (10, None), NONE, Verdict.unchanged),
    # no direction, or undefined: not judged
    ("none", (10, (9, 11)), (50, (49, 51)), NONE, Verdict.not_compared),
    ("lower", (None, None), (50, (49, 51)), NONE, Verdict.not_compared),
])  # fmt: skip
def test_verdicts(better, before, after, tolerance, verdict):
    baseline = metric("k", before[0], before[1], better=better)
    current = metric("k", after[0], after[1], better=better)
    result = compare_metric(baseline, current, tolerance)
    assert result.verdict == verdict
    if before[0] is not None:
        assert result.delta == pytest.approx(after[0] - before[0])


def test_compare_runs_takes_shared_keys_and_default_tolerance():
    baseline = [metric("a", 1.0, (0.9, 1.1)), metric("b", 1.0, (0.9, 1.1)), metric("gone", 1.0)]
    current = [metric("b", 2.0, (1.9, 2.1)), metric("a", 2.0, (1.9, 2.1)), metric("new", 1.0)]
    results = compare_runs(baseline, current, parse_tolerances(["*=1.5", "b=+0.5"]))
    assert [(r.key, r.tolerance, r.verdict) for r in results] == [("a", 1.5, Verdict.unchanged), ("b", 0.5, Verdict.regressed)]


def test_tolerance_syntax():
    assert parse_tolerances(["inductive_bias.bits=+2", "x=5%", "y=0.25"]) == {
        "inductive_bias.bits": Tolerance(2.0, False), "x": Tolerance(5.0, True), "y": Tolerance(0.25, False)}
    for bad in ["inductive_bias.bits", "x=-2", "=2", "x=two", "x=2%%"]:
        with pytest.raises(ToleranceError, match="KEY=AMOUNT"):
            parse_tolerances([bad])
