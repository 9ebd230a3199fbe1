"""Vega-Lite specs built from report JSON: one pure function per picture, no I/O.

The browser draws them with the vendored vega-embed; ``app.dashboard.chart_export`` renders the same
spec to SVG/PNG on the server. Specs carry their data inline (``data.values``) and no ``$schema`` URL,
so a page never names another host. Missing numbers are JSON ``null`` in reports and are dropped
before they reach a chart, so a partly undefined result still draws what it has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scipy import stats

WIDTH = "container"  # charts follow their panel's width, from 390 px phones to wide screens
HEIGHT = 220
# A loss histogram switches to a log x axis when its range spans more than this factor: sampled
# losses of badly initialised spaces cover decades and a linear axis squeezes them into one bar.
LOG_AXIS_RANGE = 100.0


@dataclass(frozen=True)
class Chart:
    """One picture of a page: a stable id (used in download URLs), a title and its spec."""

    id: str
    title: str
    spec: dict[str, Any]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _base(title: str, layers: list[dict], values: list[dict] | None = None, height: int = HEIGHT) -> dict[str, Any]:
    spec: dict[str, Any] = {"title": title, "width": WIDTH, "height": height, "layer": layers}
    if values is not None:
        spec["data"] = {"values": values}
    return spec


def _interval_layers(y: str, y_title: str, color: str | None = None, x_log: bool = False) -> list[dict]:
    """A point per row at ``value`` and a rule from ``low`` to ``high`` (rows without bounds: point only)."""
    x_scale = {"type": "log"} if x_log else {"zero": False}
    color_enc = {"color": {"field": color, "type": "nominal", "title": None}} if color else {}
    offset = {"yOffset": {"field": color}} if color else {}
    return [
        {"mark": {"type": "rule", "strokeWidth": 2},
         "transform": [{"filter": "isValid(datum.low) && isValid(datum.high)"}],
         "encoding": {"y": {"field": y, "type": "nominal", "title": y_title}, "x": {"field": "low", "type": "quantitative", "scale": x_scale},
                      "x2": {"field": "high"}, **color_enc, **offset}},
        {"mark": {"type": "point", "filled": True, "size": 60},
         "encoding": {"y": {"field": y, "type": "nominal", "title": y_title},
                      "x": {"field": "value", "type": "quantitative", "title": "value", "scale": x_scale},
                      "tooltip": [{"field": y}, {"field": "value", "format": ".4g"}, {"field": "low", "format": ".4g"},
                                  {"field": "high", "format": ".4g"}, *([{"field": color}] if color else [])],
                      **color_enc, **offset}},
    ]  # fmt: skip


# --- inductive_bias ------------------------------------------------------------------------------


def loss_histogram(space: Mapping[str, Any], loss_name: str, title: str) -> dict[str, Any] | None:
    """Sampled test losses as bars, the fitted scaled non-central chi-squared density scaled to counts,
    a rule at the target error (epsilon) and one at the model's own loss."""
    histogram = space.get("histogram") or {}
    edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
    if len(edges) < 2 or len(counts) != len(edges) - 1:
        return None
    bars = [{"low": lo, "high": hi, "count": c} for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    positive = [e for e in edges if _finite(e) and e > 0]
    log_x = len(positive) == len(edges) and positive[-1] / positive[0] > LOG_AXIS_RANGE
    x_scale = {"type": "log"} if log_x else {"zero": False}
    layers: list[dict] = [{
        "data": {"values": bars}, "mark": {"type": "rect", "opacity": 0.75, "color": "#4c78a8"},
        "encoding": {"x": {"field": "low", "type": "quantitative", "title": f"test loss ({loss_name})", "scale": x_scale},
                     "x2": {"field": "high"}, "y": {"field": "count", "type": "quantitative", "title": "hypotheses"},
                     "y2": {"datum": 0},
                     "tooltip": [{"field": "low", "format": ".4g"}, {"field": "high", "format": ".4g"}, {"field": "count"}]},
    }]  # fmt: skip
    density = fitted_density(space, edges, sum(counts))
    if density:
        layers.append({"data": {"values": density}, "mark": {"type": "line", "color": "#e45756", "strokeWidth": 2},
                       "encoding": {"x": {"field": "loss", "type": "quantitative"}, "y": {"field": "expected", "type": "quantitative"}}})
    markers = [{"what": "target error ε", "loss": space.get("target_error")}, {"what": "model's own loss", "loss": space.get("model_loss")}]
    markers = [m for m in markers if _finite(m["loss"]) and (not log_x or m["loss"] > 0)]
    if markers:
        layers.append({"data": {"values": markers}, "mark": {"type": "rule", "strokeWidth": 2, "strokeDash": [6, 3]},
                       "encoding": {"x": {"field": "loss", "type": "quantitative"},
                                    "color": {"field": "what", "type": "nominal", "title": None,
                                              "scale": {"domain": ["target error ε", "model's own loss"], "range": ["#222222", "#f58518"]}},
                                    "tooltip": [{"field": "what"}, {"field": "loss", "format": ".4g"}]}})  # fmt: skip
    return {"title": title, "width": WIDTH, "height": HEIGHT, "layer": layers}


def fitted_density(space: Mapping[str, Any], edges: list[float], total: int, points: int = 80) -> list[dict]:
    """The fitted ``scale * ncx2(df, nc)`` density over the histogram's range, in expected counts per bin."""
    fit = space.get("fit") or {}
    df, nc, scale = fit.get("df"), fit.get("noncentrality"), fit.get("scale")
    if not (_finite(df) and _finite(nc) and _finite(scale)) or df <= 0 or scale <= 0 or total <= 0:
        return []
    low, high = edges[0], edges[-1]
    bin_width = (high - low) / (len(edges) - 1)
    xs = [low + (high - low) * i / (points - 1) for i in range(points)]
    xs = [x for x in xs if x > 0]
    pdf = stats.ncx2.pdf([x / scale for x in xs], df, nc) / scale if nc > 0 else stats.chi2.pdf([x / scale for x in xs], df) / scale
    return [{"loss": x, "expected": float(p) * total * bin_width} for x, p in zip(xs, pdf) if math.isfinite(p)]


def relative_bits(relative: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    rows = [{"pair": f"{a} − {b}", "value": r.get("bits_difference"), "low": (r.get("ci95") or [None, None])[0],
             "high": (r.get("ci95") or [None, None])[1]}
            for a, pairs in relative.items() for b, r in pairs.items() if _finite(r.get("bits_difference"))]  # fmt: skip
    if not rows:
        return None
    return _base("relative bias: bits(a) − bits(b), ci95", _interval_layers("pair", "spaces"), rows, height=max(60, 30 * len(rows)))


# --- invariance ------------------------------------------------------------------------------------


def invariance_ratios(result: Mapping[str, Any], label: str | None = None) -> list[dict]:
    """Rows ``{transform, weights, value, low, high}``: the weights' ratio (bootstrap ci95) and the
    random members' mean with the interval for one member."""
    rows = []
    for name, transform in (result.get("transforms") or {}).items():
        estimate = transform.get("invariance_ratio") or {}
        ci = estimate.get("ci95") or [None, None]
        trained = "uploaded weights" if result.get("weights") == "uploaded" else "seeded member"
        rows.append({"transform": name, "weights": label or trained, "value": estimate.get("value"), "low": ci[0], "high": ci[1]})
        spread = ((transform.get("init") or {}).get("invariance_ratio")) or {}
        if label is None and _finite(spread.get("mean")):
            rows.append({"transform": name, "weights": "random init", "value": spread.get("mean"), "low": spread.get("low"), "high": spread.get("high")})
    return [row for row in rows if _finite(row["value"])]


def _all_positive(rows: Iterable[Mapping[str, Any]], *fields: str) -> bool:
    values = [row[f] for row in rows for f in fields if row.get(f) is not None]
    return bool(values) and all(_finite(v) and v > 0 for v in values)


def invariance_chart(rows: list[dict], title: str) -> dict[str, Any] | None:
    if not rows:
        return None
    transforms = len({row["transform"] for row in rows})
    log_x = _all_positive(rows, "value", "low", "high")
    return _base(title, _interval_layers("transform", "transform", color="weights", x_log=log_x), rows, height=row_height(transforms))


def row_height(rows: int) -> int:
    """Height of a chart with one band per row: roomy for a few, compact (still readable) for hundreds."""
    return max(80, rows * (36 if rows <= 40 else 16))


def lie_derivatives(result: Mapping[str, Any]) -> dict[str, Any] | None:
    rows = [{"transform": name, "generator": generator, "value": value}
            for name, transform in (result.get("transforms") or {}).items()
            for generator, value in ((transform.get("lie_derivative") or {}).get("per_generator") or {}).items() if _finite(value)]  # fmt: skip
    if not rows:
        return None
    return _base("Lie derivative per generator", [{
        "mark": "bar",
        "encoding": {"y": {"field": "generator", "type": "nominal"}, "x": {"field": "value", "type": "quantitative", "title": "Lie derivative"},
                     "color": {"field": "transform", "type": "nominal"}, "tooltip": [{"field": "transform"}, {"field": "generator"}, {"field": "value", "format": ".4g"}]},
    }], rows, height=max(60, 24 * len(rows)))  # fmt: skip


# --- simplicity ------------------------------------------------------------------------------------

SIMPLICITY_MEASURES = ("mean_frequency", "poly_order", "lz_complexity")


def simplicity_chart(result: Mapping[str, Any], measure: str) -> dict[str, Any] | None:
    """The random members' values of one measure as ticks, their interval as a band, the model's value as a rule."""
    model_value = (result.get("model") or {}).get(measure)
    spread = ((result.get("init") or {}).get(measure)) or {}
    members = [{"value": v} for v in spread.get("values") or [] if _finite(v)]
    if not members and not _finite(model_value):
        return None
    layers: list[dict] = []
    if _finite(spread.get("low")) and _finite(spread.get("high")):
        layers.append({"data": {"values": [{"low": spread["low"], "high": spread["high"]}]}, "mark": {"type": "rect", "opacity": 0.15, "color": "#4c78a8"},
                       "encoding": {"x": {"field": "low", "type": "quantitative", "title": measure}, "x2": {"field": "high"}}})
    if members:
        layers.append({"data": {"values": members}, "mark": {"type": "tick", "thickness": 2, "color": "#4c78a8"},
                       "encoding": {"x": {"field": "value", "type": "quantitative", "title": measure, "scale": {"zero": False}},
                                    "tooltip": [{"field": "value", "format": ".4g"}]}})
    if _finite(model_value):
        percentile = spread.get("model_percentile")
        layers.append({"data": {"values": [{"value": model_value, "percentile": percentile}]}, "mark": {"type": "rule", "color": "#e45756", "strokeWidth": 3},
                       "encoding": {"x": {"field": "value", "type": "quantitative"}, "tooltip": [{"field": "value", "format": ".4g"}, {"field": "percentile"}]}})
    percentile = spread.get("model_percentile")
    where = f", at percentile {percentile:.0f}" if _finite(percentile) else ""
    return {"title": f"{measure}: random members (ticks, interval) vs the model (red{where})", "width": WIDTH, "height": 60, "layer": layers}


# --- weight_spectrum -------------------------------------------------------------------------------


def layer_metric_rows(result: Mapping[str, Any], measure: str, label: str = "weights") -> list[dict]:
    return [{"layer": layer["name"], "run": label, "value": layer.get(measure)}
            for layer in result.get("layers") or [] if _finite(layer.get(measure))]  # fmt: skip


def per_layer_chart(result: Mapping[str, Any], measure: str) -> dict[str, Any] | None:
    """One point per layer, with the random members' interval of the whole-model summary as a band."""
    rows = layer_metric_rows(result, measure)
    if not rows:
        return None
    order = [layer["name"] for layer in result.get("layers") or []]
    layers: list[dict] = []
    spread = (((result.get("init") or {}).get("metrics") or {}).get(measure)) or {}
    if _finite(spread.get("low")) and _finite(spread.get("high")):
        layers.append({"data": {"values": [{"low": spread["low"], "high": spread["high"], "mean": spread.get("mean")}]},
                       "mark": {"type": "rect", "opacity": 0.15, "color": "#54a24b"},
                       "encoding": {"y": {"field": "low", "type": "quantitative"}, "y2": {"field": "high"},
                                    "tooltip": [{"field": "mean", "title": "random init mean", "format": ".4g"}]}})
    layers.append({"mark": {"type": "line", "point": True},
                   "encoding": {"x": {"field": "layer", "type": "ordinal", "sort": order, "title": "layer"},
                                "y": {"field": "value", "type": "quantitative", "title": measure, "scale": {"zero": False}},
                                "tooltip": [{"field": "layer"}, {"field": "value", "format": ".4g"}]}})
    return _base(f"{measure} per layer (band: random init, whole model)", layers, rows)  # fmt: skip


# --- sharpness -------------------------------------------------------------------------------------


def top_eigenvalues(result: Mapping[str, Any]) -> dict[str, Any] | None:
    rows = [{"rank": i + 1, "value": v, "residual": r}
            for i, (v, r) in enumerate(zip(result.get("top_eigenvalues") or [], result.get("eigenvalue_residuals") or [])) if _finite(v)]  # fmt: skip
    if not rows:
        return None
    return _base("top Hessian eigenvalues", [{
        "mark": "bar",
        "encoding": {"x": {"field": "rank", "type": "ordinal"}, "y": {"field": "value", "type": "quantitative", "title": "eigenvalue"},
                     "tooltip": [{"field": "rank"}, {"field": "value", "format": ".5g"}, {"field": "residual", "format": ".2g"}]},
    }], rows)  # fmt: skip


def hessian_trace(result: Mapping[str, Any]) -> dict[str, Any] | None:
    trace = result.get("trace") or {}
    ci = trace.get("ci95") or [None, None]
    if not _finite(trace.get("mean")):
        return None
    rows = [{"quantity": "tr(H)", "value": trace["mean"], "low": ci[0], "high": ci[1]}]
    return _base(f"Hessian trace, ci95 ({trace.get('n_probes')} probes)", _interval_layers("quantity", ""), rows, height=60)


# --- any probe -------------------------------------------------------------------------------------


def metrics_chart(metrics: list[Mapping[str, Any]], title: str, color: str | None = None) -> dict[str, Any] | None:
    """The generic panel: every metric with a value as a point with its ci95, one row per key."""
    rows = [{"key": m["key"], "value": m["value"], "low": (m.get("ci95") or [None, None])[0],
             "high": (m.get("ci95") or [None, None])[1], **({color: m[color]} if color else {})}
            for m in metrics if _finite(m.get("value"))]  # fmt: skip
    if not rows:
        return None
    keys = len({row["key"] for row in rows})
    # Keys of one probe may have different units on this shared axis: the chart is for a glance at
    # values and intervals, the table beside it gives each unit.
    return _base(title, _interval_layers("key", "metric", color=color), rows, height=max(60, 30 * keys))


def trend_chart(points: list[Mapping[str, Any]], key: str, unit: str | None) -> dict[str, Any] | None:
    """One metric across a lineage's runs (oldest first), with each value's ci95 as a band."""
    rows = [{"order": i + 1, "label": p["label"], "value": p["value"], "low": p.get("low"), "high": p.get("high")}
            for i, p in enumerate(points) if _finite(p.get("value"))]  # fmt: skip
    if not rows:
        return None
    x = {"field": "label", "type": "ordinal", "sort": [r["label"] for r in rows], "title": "model version / run"}
    return _base(f"{key} ({unit})" if unit else key, [
        {"mark": {"type": "errorbar", "ticks": True}, "transform": [{"filter": "isValid(datum.low) && isValid(datum.high)"}],
         "encoding": {"x": x, "y": {"field": "low", "type": "quantitative", "title": key, "scale": {"zero": False}}, "y2": {"field": "high"}}},
        {"mark": {"type": "line", "point": True},
         "encoding": {"x": x, "y": {"field": "value", "type": "quantitative"},
                      "tooltip": [{"field": "label"}, {"field": "value", "format": ".4g"}, {"field": "low", "format": ".4g"}, {"field": "high", "format": ".4g"}]}},
    ], rows)  # fmt: skip


def overlaid_histograms(spaces: Mapping[str, Mapping[str, Any]], loss_name: str) -> dict[str, Any] | None:
    """Loss histograms of several runs as step lines of density (runs have different sample sizes)."""
    rows = []
    for label, space in spaces.items():
        histogram = space.get("histogram") or {}
        edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
        total = sum(counts)
        if len(edges) < 2 or total == 0:
            continue
        for lo, hi, c in zip(edges[:-1], edges[1:], counts):
            rows.append({"run": label, "loss": (lo + hi) / 2, "density": c / total / (hi - lo) if hi > lo else 0.0})
    if not rows:
        return None
    return _base(f"sampled test losses ({loss_name}), density", [{
        "mark": {"type": "line", "interpolate": "step"},
        "encoding": {"x": {"field": "loss", "type": "quantitative", "scale": {"zero": False}}, "y": {"field": "density", "type": "quantitative"},
                     "color": {"field": "run", "type": "nominal"}},
    }], rows)  # fmt: skip


def overlaid_points(rows: list[dict], y: str, title: str) -> dict[str, Any] | None:
    """Several runs' values of the same items (layers, transforms) with intervals, one colour per run."""
    if not rows:
        return None
    items = len({row[y] for row in rows})
    log_x = _all_positive(rows, "value", "low", "high")
    return _base(title, _interval_layers(y, y, color="run", x_log=log_x), rows, height=max(80, 40 * items))


ESD_BINS = 30


def esd_chart(eigenvalues: Iterable[float], layer: Mapping[str, Any]) -> dict[str, Any] | None:
    """A layer's empirical spectral density on log-log axes (log-spaced bins), with the fitted power
    law ``p(x) = (n_tail / n) (alpha - 1) / xmin (x / xmin)^-alpha`` over the tail and a rule at xmin."""
    values = sorted(v for v in eigenvalues if _finite(v) and v > 0)
    if len(values) < 2 or values[0] == values[-1]:
        return None
    n, low, high = len(values), values[0], values[-1]
    ratio = (high / low) ** (1 / ESD_BINS)
    edges = [low * ratio**i for i in range(ESD_BINS + 1)]
    edges[-1] = high * (1 + 1e-12)  # the largest eigenvalue falls inside the last bin
    counts = [0] * ESD_BINS
    position = 0
    for v in values:
        while v >= edges[position + 1]:
            position += 1
        counts[position] += 1
    bars = [{"low": lo, "high": hi, "density": c / n / (hi - lo)} for lo, hi, c in zip(edges[:-1], edges[1:], counts) if c > 0]
    layers: list[dict] = [{
        "data": {"values": bars}, "mark": {"type": "rect", "opacity": 0.7, "color": "#4c78a8"},
        "encoding": {"x": {"field": "low", "type": "quantitative", "scale": {"type": "log"}, "title": "eigenvalue λ"},
                     "x2": {"field": "high"}, "y": {"field": "density", "type": "quantitative", "scale": {"type": "log"}, "title": "density"},
                     "tooltip": [{"field": "low", "format": ".3g"}, {"field": "high", "format": ".3g"}, {"field": "density", "format": ".3g"}]},
    }]  # fmt: skip
    alpha, xmin, n_tail = layer.get("alpha"), layer.get("xmin"), layer.get("n_tail")
    if _finite(alpha) and _finite(xmin) and xmin > 0 and alpha > 1 and n_tail:
        xs = [xmin * (high / xmin) ** (i / 40) for i in range(41)] if high > xmin else [xmin]
        fit = [{"x": x, "density": n_tail / n * (alpha - 1) / xmin * (x / xmin) ** -alpha} for x in xs]
        layers.append({"data": {"values": fit}, "mark": {"type": "line", "color": "#e45756", "strokeWidth": 2},
                       "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "density", "type": "quantitative"}}})
        layers.append({"data": {"values": [{"xmin": xmin}]}, "mark": {"type": "rule", "strokeDash": [6, 3], "color": "#222222"},
                       "encoding": {"x": {"field": "xmin", "type": "quantitative"}, "tooltip": [{"field": "xmin", "format": ".4g"}]}})
    fitted = f", power law α = {alpha:.3g} from xmin = {xmin:.3g}" if _finite(alpha) and _finite(xmin) else ", no power-law fit"
    return {"title": f"ESD of {layer.get('name')} (log-log){fitted}", "width": WIDTH, "height": HEIGHT, "layer": layers}
