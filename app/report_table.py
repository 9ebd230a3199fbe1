"""Plain-text summary of reports for the terminal (``priorprobe run`` and ``priorprobe demo``).

Rows come from the report's ``metrics`` (stable keys, values, intervals), so the terminal shows the
same numbers a CI gate or a trend reads; warnings are printed in full below the table.
"""

from __future__ import annotations

import math
from typing import Any

from workers.report import Report


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _format_interval(ci95: tuple[float | None, float | None] | None) -> str:
    if ci95 is None:
        return ""
    low, high = ci95
    return f"[{'-inf' if low is None else _format_value(low)}, {'inf' if high is None else _format_value(high)}]"


HEADER = ("model", "metric", "value", "95% interval", "n", "unit")


def summary_rows(label: str, report: Report) -> list[tuple[str, ...]]:
    """(label, key, value, interval, n, unit) for every metric of the report."""
    return [
        (label, metric.key, _format_value(metric.value), _format_interval(metric.ci95),
         "" if metric.n is None else str(metric.n), metric.unit)
        for metric in report.metrics
    ]


def warning_lines(label: str, report: Report) -> list[str]:
    """One line per warning, in full: a count alone does not say what to distrust."""
    return [f"{label}: {warning.probe}: {warning.message}" for warning in report.warnings]


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...] = HEADER) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_summary(reports: dict[str, Report]) -> str:
    """The metrics table of several reports, then every warning in full."""
    rows = [row for label, report in reports.items() for row in summary_rows(label, report)]
    text = format_table(rows)
    warnings = [line for label, report in reports.items() for line in warning_lines(label, report)]
    if warnings:
        text += "\n\nWarnings:\n" + "\n".join(f"- {line}" for line in warnings)
    return text
