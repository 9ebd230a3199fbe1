"""``submit``'s outcome as text, Markdown (also for ``$GITHUB_STEP_SUMMARY``) or JSON."""

from __future__ import annotations

from priorprobe_client.schemas.gates import SubmitSummary, Verdict
from priorprobe_client.schemas.metrics import Metric

FORMATS = ("text", "markdown", "json")


def number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4g}"


def interval(metric: Metric) -> str:
    if metric.ci95 is None:
        return ""
    low, high = metric.ci95
    return f"[{'-inf' if low is None else f'{low:.4g}'}, {'inf' if high is None else f'{high:.4g}'}]"


def signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.4g}"


def _headline(summary: SubmitSummary) -> str:
    if summary.passed:
        return "PASSED"
    failed = sum(not gate.passed for gate in summary.gates)
    regressed = sum(c.verdict == Verdict.regressed for c in summary.comparisons)
    return f"FAILED ({failed} gate(s) failed, {regressed} metric(s) regressed)"


def _sections(summary: SubmitSummary) -> list[tuple[str, list[str], list[list[str]]]]:
    metrics = ("Metrics", ["metric", "value", "95% interval", "unit", "better"],
               [[m.key, number(m.value), interval(m), m.unit, m.better] for m in summary.metrics])  # fmt: skip
    sections = [metrics]
    if summary.gates:
        sections.append(("Gates", ["gate", "result", "numbers"],
                         [[g.gate, "pass" if g.passed else "FAIL", g.detail] for g in summary.gates]))  # fmt: skip
    if summary.baseline_run_id:
        rows = [[c.key, f"{number(c.baseline.value)} {interval(c.baseline)}".strip(),
                 f"{number(c.current.value)} {interval(c.current)}".strip(), signed(c.delta),
                 f"{c.tolerance:.4g}", c.verdict.value] for c in summary.comparisons]  # fmt: skip
        sections.append((f"Against baseline run {summary.baseline_run_id}",
                         ["metric", "baseline", "current", "delta", "tolerance", "verdict"], rows))  # fmt: skip
    return sections


def as_text(summary: SubmitSummary) -> str:
    lines = [f"run {summary.run.id} ({summary.run_url}), model {summary.model.name} {summary.model.version or ''}".rstrip()]
    for title, header, rows in _sections(summary):
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
        lines += ["", title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if summary.baseline_note:
        lines += ["", summary.baseline_note]
    lines += ["", _headline(summary)]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def as_markdown(summary: SubmitSummary) -> str:
    model = summary.model
    provenance = ", ".join(f"{label} `{value}`" for label, value in
                           (("version", model.version), ("commit", model.commit), ("branch", model.branch)) if value)  # fmt: skip
    lines = [f"### PriorProbe: {'✅' if summary.passed else '❌'} {_headline(summary)}", "",
             f"Run [`{summary.run.id}`]({summary.run_url}) of model **{model.name}**"
             + (f" ({provenance})" if provenance else "") + f" on {summary.server}."]  # fmt: skip
    for title, header, rows in _sections(summary):
        lines += ["", f"#### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    if summary.baseline_note:
        lines += ["", f"_{summary.baseline_note}_"]
    return "\n".join(lines) + "\n"


def render(summary: SubmitSummary, fmt: str) -> str:
    if fmt == "json":
        return summary.model_dump_json(indent=2)
    return as_markdown(summary) if fmt == "markdown" else as_text(summary)
