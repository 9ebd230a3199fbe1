"""Plain-text summary of reports for the terminal (``priorprobe run`` and ``priorprobe demo``)."""

from __future__ import annotations

import math
from typing import Any

from workers.probes.registry import PROBES


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"[{_format_value(value[0])}, {_format_value(value[1])}]"
    return str(value)


HEADER = ("model", "probe", "metric", "value", "95% interval")


def summary_rows(label: str, report: dict) -> list[tuple[str, str, str, str, str]]:
    """(label, probe, metric, value, interval) rows from each probe's ``headline``."""
    rows = []
    for name, result in report.get("probes", {}).items():
        probe = PROBES.get(name)
        headline = probe.headline(result) if probe is not None else {}
        for metric, (value, interval) in headline.items():
            rows.append((label, name, metric, _format_value(value), _format_value(interval) if interval else ""))
    return rows


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...] = HEADER) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)) for line in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
