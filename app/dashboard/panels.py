"""The run page's panels: for each probe in a report, the charts and tables that show its result.

A probe with a custom builder here gets its own pictures; any other probe (a new one, or one whose
result a builder cannot read) gets the generic panel from its metrics and result fields, so a new
probe never breaks the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.dashboard import charts
from app.dashboard.charts import Chart
from workers.probes.registry import PROBES

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class Panel:
    probe: str
    title: str
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Options the reader picks on the page (e.g. which layer's ESD): {name: (choices, chosen)}.
    choices: dict[str, tuple[list[str], str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PanelView:
    """What a panel may read besides the report: stored arrays, and the reader's choices."""

    artifacts: Mapping[str, Any] = field(default_factory=dict)
    load_array: Callable[[str], "np.ndarray | None"] | None = None
    layer: str | None = None


def fmt(value: Any, digits: int = 4) -> str:
    """A number as people read it: 4 significant digits, '—' for undefined."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def fmt_interval(ci: Any) -> str:
    if not ci or all(v is None for v in ci):
        return "—"
    low, high = ci
    return f"[{fmt(low)}, {fmt(high)}]"


def _add(panel: Panel, chart_id: str, spec: dict | None) -> None:
    if spec is not None:
        panel.charts.append(Chart(id=chart_id, title=spec.get("title", chart_id), spec=spec))


def _inductive_bias(panel: Panel, result: Mapping[str, Any], view: PanelView) -> None:
    for label, space in (result.get("spaces") or {}).items():
        _add(panel, f"inductive_bias.losses.{label}", charts.loss_histogram(space, result.get("loss", "loss"), f"sampled test losses: {label}"))
        panel.tables.append(Table(f"space '{label}' ({space.get('sampler')})", ["quantity", "value", "ci95"], [
            # A Clopper-Pearson lower bound is the headline when no sample reached epsilon: say so.
            ["bits (headline)", ("≥ " if space.get("bits_is_lower_bound") else "") + fmt(space.get("bits")),
             fmt_interval(space.get("ci95"))],
            ["method", str(space.get("method") or "fitted_tail"), ""],
            ["deepest observed / validated depth", f"{fmt(space.get('deepest_observed_bits'))} / "
                                                   f"{fmt(space.get('validated_depth_bits'))} bits", ""],
            ["empirical bits", fmt(space.get("empirical_bits")), fmt_interval(space.get("empirical_bits_ci95"))],
            ["samples below ε", f"{space.get('n_below')} of {space.get('n_hypotheses')}", fmt_interval(space.get("empirical_ci95"))],
            ["target error ε", fmt(space.get("target_error")), ""],
            ["model's own loss", fmt(space.get("model_loss")), ""],
            ["model bits", fmt(space.get("model_bits")), ""],
            ["fit", f"df={fmt((space.get('fit') or {}).get('df'))}, nc={fmt((space.get('fit') or {}).get('noncentrality'))}, "
                    f"KS p={fmt((space.get('fit') or {}).get('ks_pvalue'))}", "adequate" if (space.get("fit") or {}).get("adequate") else "not adequate"],
            ["extrapolated", fmt(space.get("extrapolated")), ""],
        ]))  # fmt: skip
    relative = result.get("relative") or {}
    _add(panel, "inductive_bias.relative", charts.relative_bits(relative))
    rows = [[a, b, fmt(r.get("bits_difference")), fmt_interval(r.get("ci95"))] for a, pairs in relative.items() for b, r in pairs.items()]
    if rows:
        panel.tables.append(Table("relative bias", ["space a", "space b", "bits(a) − bits(b)", "ci95"], rows))


def _invariance(panel: Panel, result: Mapping[str, Any], view: PanelView) -> None:
    _add(panel, "invariance.ratios", charts.invariance_chart(charts.invariance_ratios(result), "invariance ratio per transform, ci95 (lower = more invariant)"))
    _add(panel, "invariance.lie", charts.lie_derivatives(result))
    ranking = (result.get("summary") or {}).get("ranking") or []
    panel.tables.append(Table("ranking (most invariant first)", ["transform", "ratio", "ci95", "random init", "versus init"], [
        [r["name"], fmt(r.get("invariance_ratio")), fmt_interval(r.get("ci95")),
         f"{fmt(r.get('init_mean'))} {fmt_interval(r.get('init_interval'))}", r.get("versus_init") or "—"] for r in ranking
    ]))  # fmt: skip
    notes = {t.get("equivariance_note") for t in (result.get("transforms") or {}).values() if t.get("equivariance_note")}
    panel.notes.extend(sorted(notes))


def _simplicity(panel: Panel, result: Mapping[str, Any], view: PanelView) -> None:
    rows = []
    for measure in charts.SIMPLICITY_MEASURES:
        _add(panel, f"simplicity.{measure}", charts.simplicity_chart(result, measure))
        spread = ((result.get("init") or {}).get(measure)) or {}
        rows.append([measure, fmt((result.get("model") or {}).get(measure)), fmt(spread.get("model_percentile")),
                     f"{fmt(spread.get('mean'))} [{fmt(spread.get('low'))}, {fmt(spread.get('high'))}]"])  # fmt: skip
    panel.tables.append(Table("the model against random members", ["measure", "model", "percentile", "random members (interval)"], rows))
    calibration = result.get("calibration") or []
    if calibration:
        panel.tables.append(Table("calibration references", ["signal", "mean_frequency", "poly_order", "lz_complexity"], [
            [c.get("description") or c.get("signal"), fmt(c.get("mean_frequency")), fmt(c.get("poly_order")), fmt(c.get("lz_complexity"))]
            for c in calibration
        ]))  # fmt: skip


def _weight_spectrum(panel: Panel, result: Mapping[str, Any], view: PanelView) -> None:
    with_alpha = any(layer.get("alpha") is not None for layer in result.get("layers") or [])
    # alpha needs enough eigenvalues for a power-law fit; small layers have none, and then the
    # stable rank (always defined) is the per-layer picture.
    for measure in ("alpha",) if with_alpha else ("stable_rank",):
        _add(panel, f"weight_spectrum.{measure}", charts.per_layer_chart(result, measure))
    _add(panel, "weight_spectrum.log_spectral_norm", charts.per_layer_chart(result, "log_spectral_norm"))
    panel.tables.append(Table("layers", ["layer", "shape", "alpha ± se", "xmin", "stable rank", "note"], [
        [layer["name"], "×".join(map(str, layer.get("shape") or [])), f"{fmt(layer.get('alpha'))} ± {fmt(layer.get('alpha_se'))}",
         fmt(layer.get("xmin")), fmt(layer.get("stable_rank")), layer.get("skipped_reason") or ""]
        for layer in result.get("layers") or []
    ]))  # fmt: skip
    _esd(panel, result, view)


def _esd(panel: Panel, result: Mapping[str, Any], view: PanelView) -> None:
    """The chosen layer's ESD, from the ``weight_spectrum.eigenvalues.<layer>`` artifact."""
    layers = {layer["name"]: layer for layer in result.get("layers") or []}
    stored = [name for name in layers if view.load_array is not None and f"weight_spectrum.eigenvalues.{name}" in view.artifacts]
    if not stored:
        panel.notes.append("This report has no stored eigenvalues (runs before they were kept, or a CLI run), so no ESD plot.")
        return
    # Default: the largest layer with a power-law fit (the most informative tail), else the largest.
    fitted = [name for name in stored if layers[name].get("alpha") is not None]
    chosen = view.layer if view.layer in stored else max(fitted or stored, key=lambda name: layers[name].get("n_eigs") or 0)
    panel.choices = {"layer": (stored, chosen)}
    values = view.load_array(f"weight_spectrum.eigenvalues.{chosen}")
    if values is not None:
        _add(panel, "weight_spectrum.esd", charts.esd_chart(values.tolist(), layers[chosen]))


def _sharpness(panel: Panel, result: Mapping[str, Any], view: PanelView) -> None:
    _add(panel, "sharpness.eigenvalues", charts.top_eigenvalues(result))
    _add(panel, "sharpness.trace", charts.hessian_trace(result))
    trace, loss = result.get("trace") or {}, result.get("loss") or {}
    panel.tables.append(Table("Hessian", ["quantity", "value"], [
        ["top eigenvalues", ", ".join(fmt(v) for v in result.get("top_eigenvalues") or [])],
        ["trace", f"{fmt(trace.get('mean'))} {fmt_interval(trace.get('ci95'))}"],
        ["loss", f"{loss.get('name')} = {fmt(loss.get('value'))}"],
        ["samples / parameters", f"{result.get('n_samples')} / {result.get('n_parameters')}"],
    ]))  # fmt: skip
    if loss.get("note"):
        panel.notes.append(loss["note"])


CUSTOM_PANELS: dict[str, Callable[[Panel, Mapping[str, Any], PanelView], None]] = {
    "inductive_bias": _inductive_bias,
    "invariance": _invariance,
    "simplicity": _simplicity,
    "weight_spectrum": _weight_spectrum,
    "sharpness": _sharpness,
}


def generic_panel(panel: Panel, result: Mapping[str, Any], metrics: list[Mapping[str, Any]]) -> None:
    """Any probe: its metrics as a chart and a table, and its scalar result fields as a table."""
    _add(panel, f"{panel.probe}.metrics", charts.metrics_chart(metrics, f"{panel.probe}: metrics, ci95"))
    described = _result_descriptions(panel.probe)
    scalars = [[key, fmt(value), described.get(key, "")] for key, value in result.items()
               if isinstance(value, (int, float, str, bool)) or value is None]  # fmt: skip
    if scalars:
        panel.tables.append(Table("result fields", ["field", "value", "meaning"], scalars))


def _result_descriptions(probe: str) -> dict[str, str]:
    """Each field's description from the probe's registered ``Result`` schema (empty if unknown)."""
    cls = PROBES.get(probe)
    if cls is None:
        return {}
    properties = cls.Result.model_json_schema().get("properties") or {}
    return {name: prop.get("description", "") for name, prop in properties.items()}


def metrics_table(metrics: list[Mapping[str, Any]]) -> Table:
    return Table("metrics", ["key", "value", "ci95", "unit", "better", "n"], [
        [m["key"], fmt(m.get("value")), fmt_interval(m.get("ci95")), m.get("unit"), m.get("better"), fmt(m.get("n"))] for m in metrics
    ])  # fmt: skip


def build_panels(report: Mapping[str, Any], view: PanelView | None = None) -> list[Panel]:
    """One panel per probe of the report, in the order the probes ran."""
    view = view or PanelView(artifacts=report.get("artifacts") or {})
    metrics = report.get("metrics") or []
    panels = []
    for probe, result in (report.get("probes") or {}).items():
        own = [m for m in metrics if m["key"].split(".", 1)[0] == probe]
        panel = Panel(probe=probe, title=probe.replace("_", " "))
        builder = CUSTOM_PANELS.get(probe)
        try:
            if builder is None:
                raise LookupError("no custom panel")
            builder(panel, result, view)
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            # A result in a shape the custom panel does not know (an older or newer probe version)
            # falls back to the generic panel instead of failing the page.
            if builder is not None:
                log.warning("custom panel for %s failed (%s); showing the generic one", probe, exc)
            panel = Panel(probe=probe, title=probe.replace("_", " "))
            generic_panel(panel, result, own)
        if own:
            panel.tables.append(metrics_table(own))
        # The report's warnings list holds every probe's warnings in full (e.g. each space's).
        panel.warnings.extend(w["message"] for w in report.get("warnings") or [] if w.get("probe") == probe)
        panels.append(panel)
    return panels
