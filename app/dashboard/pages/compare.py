"""Compare 2-6 runs: every shared metric with intervals, differences marked only where the
intervals do not overlap, and overlaid plots of the probes they share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from app.dashboard import charts
from app.dashboard.charts import Chart
from app.dashboard.web import render
from app.deps import SessionDep
from app.services import catalog

router = APIRouter()
MIN_RUNS, MAX_RUNS = 2, 6


@dataclass(frozen=True)
class Cell:
    value: float | None
    ci95: Any
    differs: bool  # the interval lies entirely above or below the first run's


def disjoint(a: Any, b: Any) -> bool:
    """Whether two closed intervals are both fully known and do not overlap."""
    if not a or not b or None in a or None in b:
        return False
    return a[1] < b[0] or b[1] < a[0]


def shared_metrics(reports: list[Mapping[str, Any]]) -> list[tuple[str, str, list[Cell]]]:
    """``(key, unit, one cell per run)`` for each key every report has, in key order."""
    by_run = [{m["key"]: m for m in report.get("metrics") or []} for report in reports]
    keys = sorted(set.intersection(*(set(metrics) for metrics in by_run))) if by_run else []
    rows = []
    for key in keys:
        first = by_run[0][key].get("ci95")
        cells = [Cell(m[key].get("value"), m[key].get("ci95"), i > 0 and disjoint(first, m[key].get("ci95"))) for i, m in enumerate(by_run)]
        rows.append((key, by_run[0][key].get("unit", ""), cells))
    return rows


def overlaid_charts(labels: list[str], reports: list[Mapping[str, Any]]) -> list[Chart]:
    found = []
    probes = [report.get("probes") or {} for report in reports]
    spaces = {label: (p.get("inductive_bias") or {}).get("spaces", {}).get("target") for label, p in zip(labels, probes)}
    spaces = {label: space for label, space in spaces.items() if space}
    loss = next(((p.get("inductive_bias") or {}).get("loss") for p in probes if p.get("inductive_bias")), "loss")
    candidates = [
        ("compare.losses", charts.overlaid_histograms(spaces, loss)),
        ("compare.alpha", charts.overlaid_points(
            [{**row, "low": None, "high": None} for label, p in zip(labels, probes)
             for row in charts.layer_metric_rows(p.get("weight_spectrum") or {}, "alpha", label)], "layer", "alpha per layer")),
        ("compare.stable_rank", charts.overlaid_points(
            [{**row, "low": None, "high": None} for label, p in zip(labels, probes)
             for row in charts.layer_metric_rows(p.get("weight_spectrum") or {}, "stable_rank", label)], "layer", "stable rank per layer")),
        ("compare.invariance", charts.overlaid_points(
            [{**row, "run": row["weights"]} for label, p in zip(labels, probes)
             for row in charts.invariance_ratios(p.get("invariance") or {}, label=label)], "transform", "invariance ratio per transform, ci95")),
    ]  # fmt: skip
    for chart_id, spec in candidates:
        if spec is not None:
            found.append(Chart(id=chart_id, title=spec["title"], spec=spec))
    return found


@router.get("/compare")
def compare_page(request: Request, session: SessionDep, run: Annotated[list[str], Query()] = []) -> Response:  # noqa: B006
    run_ids = list(dict.fromkeys(r for r in run if r))
    if not MIN_RUNS <= len(run_ids) <= MAX_RUNS:
        return render(request, "compare.html", {"rows": None, "message": f"Choose {MIN_RUNS} to {MAX_RUNS} runs on the Runs page (you chose {len(run_ids)})."},
                      status_code=200 if not run_ids else 422)  # fmt: skip
    found = catalog.runs_by_ids(session, run_ids)
    reports = [catalog.get_report_body(session, row.run.id) for row in found]
    missing = [row.run.id for row, report in zip(found, reports) if report is None]
    if missing:
        raise HTTPException(409, detail=f"runs without a report cannot be compared: {', '.join(missing)}")
    labels = [" ".join(filter(None, [row.model_name or "random init", row.model_version])) + f" · {row.run.id[:6]}" for row in found]
    context = {"runs": found, "labels": labels, "rows": shared_metrics(reports), "charts": overlaid_charts(labels, reports), "message": None}
    return render(request, "compare.html", context)
