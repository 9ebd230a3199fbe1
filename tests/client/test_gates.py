"""The gate grammar: what parses, where a bad gate is reported, and how gates evaluate."""

from __future__ import annotations

import pytest

from priorprobe_client.gates import GateSyntaxError, UnknownMetric, evaluate, parse_gate
from priorprobe_client.schemas.metrics import Metric


def metric(key: str, value: float | None, ci95=None, better="lower") -> Metric:
    return Metric(key=key, value=value, ci95=ci95, unit="u", better=better, n=10, scope="trained", description="d")


METRICS = {m.key: m for m in [
    metric("inductive_bias.bits", 30.0, (25.0, 35.0)),
    metric("invariance.circular_shift.invariance_ratio", 0.02, (0.01, None)),
    metric("simplicity.undefined", None),
    metric("weird.value", 7.0),  # a key whose last segment is literally "value"
]}  # fmt: skip


@pytest.mark.parametrize(("gate", "passed"), [
    ("inductive_bias.bits < 40", True),
    ("inductive_bias.bits.value < 30", False),
    ("inductive_bias.bits.value <= 30", True),
    ("inductive_bias.bits.ci95.high <= 35 and inductive_bias.bits.ci95.low > 24.5", True),
    ("inductive_bias.bits.ci95.high < 35", False),
    ("invariance.circular_shift.invariance_ratio < 0.05", True),
    ("invariance.circular_shift.invariance_ratio.ci95.high < 0.05", False),  # open upper side: undefined
    ("simplicity.undefined >= 0", False),
    ("20 < inductive_bias.bits", True),
    ("inductive_bias.bits.ci95.low < inductive_bias.bits.ci95.high", True),
    ("inductive_bias.bits == 30 and inductive_bias.bits != 31", True),
    ("inductive_bias.bits > -1e3", True),
    ("weird.value == 7", True),
    ("weird.value.value == 7", True),
])  # fmt: skip
def test_gates_evaluate(gate, passed):
    outcome = evaluate(parse_gate(gate), METRICS)
    assert outcome.passed is passed, outcome.detail
    assert outcome.gate == gate


def test_outcome_shows_the_numbers_used():
    outcome = evaluate(parse_gate("inductive_bias.bits.ci95.high <= 40 and simplicity.undefined > 1"), METRICS)
    assert outcome.detail == "inductive_bias.bits.ci95.high = 35 <= 40: ok; simplicity.undefined = undefined > 1: FAILED"


@pytest.mark.parametrize(("gate", "column", "message"), [
    ("inductive_bias.bits <", 22, "expected a metric key or a number, found the end"),
    ("inductive_bias.bits < 3 or x > 2", 25, "expected 'and' or the end of the gate, found 'or'"),
    ("inductive_bias.bits 3", 21, "expected a comparison"),
    ("3 < 4", 1, "needs a metric key on one side"),
    ("inductive_bias.bits < 3 and", 28, "expected a comparison after 'and'"),
    ("__import__('os') < 1", 11, "unexpected character '('"),
    ("a.b = 1", 5, "unexpected character '='"),
    ("a. < 1", 1, "is not a metric key"),
    ("", 1, "found the end of the gate"),
])  # fmt: skip
def test_bad_gates_name_the_column(gate, column, message):
    with pytest.raises(GateSyntaxError) as raised:
        parse_gate(gate)
    assert raised.value.position + 1 == column and message in raised.value.message
    assert str(raised.value).endswith(f"  {gate}\n  {' ' * (column - 1)}^")


def test_unknown_key_is_an_error_not_a_failed_gate():
    with pytest.raises(UnknownMetric, match="inductive_bias.bitz"):
        evaluate(parse_gate("inductive_bias.bitz < 3"), METRICS)
