"""Gates: a small grammar over a run's metrics, parsed (never ``eval``ed).

::

    gate       := comparison ( "and" comparison )*
    comparison := operand OP operand            OP: <  <=  >  >=  ==  !=
    operand    := NUMBER | REFERENCE
    REFERENCE  := METRIC_KEY [ ".value" | ".ci95.low" | ".ci95.high" ]

A metric key is as in ``GET /api/v1/runs/{id}/metrics`` (e.g. ``inductive_bias.bits``); a bare key
means its ``value``. Examples: ``invariance.circular_shift.invariance_ratio < 0.05``,
``inductive_bias.bits.ci95.high <= 40 and inductive_bias.bits.ci95.low > 10``.

A comparison with an undefined number (a metric whose value or interval side is null) fails, saying
so. A reference to a key the run does not have is an error (``UnknownMetric``), not a failed gate: it
is usually a typo.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from priorprobe_client.schemas.gates import GateOutcome
from priorprobe_client.schemas.metrics import Metric

FIELDS = ("ci95.low", "ci95.high", "value")  # longest first: "x.ci95.low" is never key "x.ci95" + "low"
OPERATORS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt}
_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<op><=|>=|==|!=|<|>)"
    r"|(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![A-Za-z_])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)"
)


class GateSyntaxError(ValueError):
    """A gate that does not parse; ``position`` is the 0-based column of the problem."""

    def __init__(self, text: str, position: int, message: str):
        self.text, self.position, self.message = text, position, message
        super().__init__(f"{message} at column {position + 1}\n  {text}\n  {' ' * position}^")


class UnknownMetric(LookupError):
    pass


@dataclass(frozen=True)
class Reference:
    text: str  # as written: resolved against the run's keys when evaluated
    position: int

    def resolve(self, metrics: dict[str, Metric]) -> tuple[Metric, str]:
        """The metric and field this names: the whole text as a key first, then key + field suffix."""
        if self.text in metrics:
            return metrics[self.text], "value"
        for field in FIELDS:
            key = self.text.removesuffix("." + field)
            if key != self.text and key in metrics:
                return metrics[key], field
        raise UnknownMetric(self.text)


@dataclass(frozen=True)
class Comparison:
    left: Reference | float
    op: str
    right: Reference | float


@dataclass(frozen=True)
class Gate:
    text: str
    comparisons: tuple[Comparison, ...]

    def references(self) -> list[Reference]:
        return [side for c in self.comparisons for side in (c.left, c.right) if isinstance(side, Reference)]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise GateSyntaxError(text, position, f"unexpected character {text[position]!r}")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group(), position))
        position = match.end()
    return tokens


def parse_gate(text: str) -> Gate:
    """Parse one gate; raises ``GateSyntaxError`` naming the column of the first problem."""
    tokens = _tokens(text)
    end = len(text)
    index = 0

    def take(expected: str):
        nonlocal index
        if index >= len(tokens):
            raise GateSyntaxError(text, end, f"expected {expected}, found the end of the gate")
        token = tokens[index]
        index += 1
        return token

    def operand():
        kind, value, position = take("a metric key or a number")
        if kind == "number":
            return float(value)
        if kind == "word" and value != "and":
            if value.endswith(".") or ".." in value:
                raise GateSyntaxError(text, position, f"{value!r} is not a metric key")
            return Reference(value, position)
        raise GateSyntaxError(text, position, f"expected a metric key or a number, found {value!r}")

    comparisons = []
    while True:
        left = operand()
        kind, value, position = take("a comparison (< <= > >= == !=)")
        if kind != "op":
            raise GateSyntaxError(text, position, f"expected a comparison (< <= > >= == !=), found {value!r}")
        right = operand()
        if not isinstance(left, Reference) and not isinstance(right, Reference):
            raise GateSyntaxError(text, tokens[index - 3][2], "a comparison needs a metric key on one side")
        comparisons.append(Comparison(left, value, right))
        if index == len(tokens):
            return Gate(text, tuple(comparisons))
        kind, value, position = take("'and'")
        if (kind, value) != ("word", "and"):
            raise GateSyntaxError(text, position, f"expected 'and' or the end of the gate, found {value!r}")
        if index == len(tokens):
            raise GateSyntaxError(text, end, "expected a comparison after 'and', found the end of the gate")


def _number(side: Reference | float, metrics: dict[str, Metric]) -> tuple[float | None, str]:
    if not isinstance(side, Reference):
        return side, f"{side:g}"
    metric, field = side.resolve(metrics)
    if field == "value":
        number = metric.value
    else:
        number = None if metric.ci95 is None else metric.ci95[0 if field == "ci95.low" else 1]
    label = f"{metric.key}" + ("" if field == "value" else f".{field}")
    return number, f"{label} = {'undefined' if number is None else f'{number:.6g}'}"


def evaluate(gate: Gate, metrics: dict[str, Metric]) -> GateOutcome:
    """Whether every comparison of the gate holds; raises ``UnknownMetric`` for a key the run lacks."""
    passed, parts = True, []
    for comparison in gate.comparisons:
        left, left_text = _number(comparison.left, metrics)
        right, right_text = _number(comparison.right, metrics)
        holds = left is not None and right is not None and OPERATORS[comparison.op](left, right)
        passed &= holds
        parts.append(f"{left_text} {comparison.op} {right_text}: {'ok' if holds else 'FAILED'}")
    return GateOutcome(gate=gate.text, passed=passed, detail="; ".join(parts))
