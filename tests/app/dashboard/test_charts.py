"""Chart specs and panels built from report JSON: the pictures hold what the report says."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from app.dashboard import charts
from app.dashboard.panels import build_panels

SPACE = {
    "sampler": "init", "target_error": 0.3, "model_loss": 0.25, "bits": 1.2, "ci95": [1.0, 1.4], "n_hypotheses": 100, "n_below": 30,
    "empirical_bits": 1.7, "empirical_bits_ci95": [1.3, 2.2], "empirical_ci95": [0.2, 0.4], "extrapolated": False,
    "fit": {"df": 4.0, "noncentrality": 1.5, "scale": 0.1, "ks_pvalue": 0.5, "adequate": True},
    "histogram": {"edges": [0.1, 0.3, 0.5, 0.7], "counts": [30, 50, 20]},
}  # fmt: skip


def _layer_values(spec, mark_type):
    return [layer for layer in spec["layer"] if (layer["mark"] if isinstance(layer["mark"], str) else layer["mark"]["type"]) == mark_type]


def test_loss_histogram_has_bars_density_and_markers():
    spec = charts.loss_histogram(SPACE, "mse", "losses")
    bars = _layer_values(spec, "rect")[0]["data"]["values"]
    assert [(b["low"], b["high"], b["count"]) for b in bars] == [(0.1, 0.3, 30), (0.3, 0.5, 50), (0.5, 0.7, 20)]
    rules = _layer_values(spec, "rule")[0]["data"]["values"]
    assert {r["what"]: r["loss"] for r in rules} == {"target error ε": 0.3, "model's own loss": 0.25}
    assert spec["layer"][0]["encoding"]["x"]["scale"] == {"zero": False}  # range 7x: linear axis
    json.dumps(spec, allow_nan=False)  # the page embeds it as strict JSON


def test_fitted_density_matches_scipy_in_expected_counts():
    density = charts.fitted_density(SPACE, SPACE["histogram"]["edges"], total=100)
    x = np.array([p["loss"] for p in density])
    expected = stats.ncx2.pdf(x / 0.1, 4.0, 1.5) / 0.1 * 100 * 0.2
    np.testing.assert_allclose([p["expected"] for p in density], expected, rtol=1e-12)


def test_loss_histogram_uses_log_axis_over_decades():
    space = {**SPACE, "histogram": {"edges": [1e-3, 1e-2, 1e-1, 1.0], "counts": [1, 2, 3]}}
    assert charts.loss_histogram(space, "mse", "t")["layer"][0]["encoding"]["x"]["scale"] == {"type": "log"}


def test_missing_values_are_dropped_not_drawn():
    assert charts.loss_histogram({"histogram": None}, "mse", "t") is None
    result = {"weights": "random_init", "transforms": {
        "a": {"invariance_ratio": {"value": None, "ci95": None}, "init": None},
        "b": {"invariance_ratio": {"value": 0.5, "ci95": [0.4, 0.6]}, "init": {"invariance_ratio": {"mean": 1.0, "low": 0.5, "high": 2.0}}},
    }}  # fmt: skip
    rows = charts.invariance_ratios(result)
    assert [(r["transform"], r["weights"], r["value"]) for r in rows] == [("b", "seeded member", 0.5), ("b", "random init", 1.0)]


def test_trend_chart_keeps_order_and_intervals():
    points = [{"label": "v1", "value": 1.0, "low": 0.5, "high": 1.5}, {"label": "v2", "value": 2.0, "low": None, "high": None}]
    spec = charts.trend_chart(points, "inductive_bias.bits", "bits")
    assert [r["label"] for r in spec["data"]["values"]] == ["v1", "v2"]
    assert spec["layer"][0]["encoding"]["x"]["sort"] == ["v1", "v2"]


REPORT = {
    "probes": {
        "inductive_bias": {"loss": "mse", "spaces": {"target": SPACE}, "relative": {}},
        "sharpness": {"top_eigenvalues": [3.0, 1.0], "eigenvalue_residuals": [1e-9, 1e-9], "trace": {"mean": 5.0, "se": 1.0, "ci95": [3.0, 7.0], "n_probes": 8},
                      "loss": {"name": "mse", "value": 0.2}, "n_samples": 10, "n_parameters": 20},
        "future_probe": {"score": 0.7, "label": "x"},
    },
    "metrics": [
        {"key": "future_probe.score", "value": 0.7, "ci95": [0.6, 0.8], "unit": "1", "better": "higher", "n": 5, "scope": "trained", "description": ""},
        {"key": "inductive_bias.bits", "value": 1.2, "ci95": [1.0, 1.4], "unit": "bits", "better": "lower", "n": 100, "scope": "init", "description": ""},
    ],
    "warnings": [{"probe": "inductive_bias", "message": "few samples below epsilon"}],
}  # fmt: skip


def test_every_probe_gets_a_panel_and_unknown_probes_the_generic_one():
    panels = {panel.probe: panel for panel in build_panels(REPORT)}
    assert list(panels) == ["inductive_bias", "sharpness", "future_probe"]
    assert [c.id for c in panels["inductive_bias"].charts] == ["inductive_bias.losses.target"]
    assert panels["inductive_bias"].warnings == ["few samples below epsilon"]
    assert [c.id for c in panels["sharpness"].charts] == ["sharpness.eigenvalues", "sharpness.trace"]
    generic = panels["future_probe"]
    assert [c.id for c in generic.charts] == ["future_probe.metrics"]
    assert generic.charts[0].spec["data"]["values"] == [{"key": "future_probe.score", "value": 0.7, "low": 0.6, "high": 0.8}]


def test_a_result_the_custom_panel_cannot_read_falls_back_to_generic():
    broken = {"probes": {"sharpness": {"top_eigenvalues": "not a list", "trace": 3}}, "metrics": [], "warnings": []}
    (panel,) = build_panels(broken)
    assert panel.probe == "sharpness" and all(c.id == "sharpness.metrics" for c in panel.charts)


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_server_side_export_renders_the_same_spec(fmt):
    from app.dashboard import chart_export

    if not chart_export.available():
        pytest.skip("vl-convert-python is not installed (pip install 'priorprobe[charts]')")
    data = chart_export.render(charts.loss_histogram(SPACE, "mse", "losses"), fmt)
    assert data.startswith(b"<svg") if fmt == "svg" else data[:8] == b"\x89PNG\r\n\x1a\n"


def test_esd_is_a_density_and_the_power_law_starts_at_xmin():
    rng = np.random.default_rng(0)
    values = (rng.pareto(2.0, size=400) + 1.0).tolist()
    layer = {"name": "fc", "alpha": 3.0, "xmin": 2.0, "n_tail": 100}
    spec = charts.esd_chart(values, layer)
    bars = spec["layer"][0]["data"]["values"]
    assert sum(b["density"] * (b["high"] - b["low"]) for b in bars) == pytest.approx(1.0, rel=1e-9)
    assert spec["layer"][0]["encoding"]["x"]["scale"] == {"type": "log"} and spec["layer"][0]["encoding"]["y"]["scale"] == {"type": "log"}
    fit = spec["layer"][1]["data"]["values"]
    assert fit[0]["x"] == 2.0 and fit[0]["density"] == pytest.approx(100 / 400 * (3.0 - 1) / 2.0)
    assert spec["layer"][2]["data"]["values"] == [{"xmin": 2.0}]
    assert charts.esd_chart([0.0, 0.0], layer) is None  # nothing positive to draw


def test_two_hundred_transforms_stay_one_readable_chart():
    transforms = {f"t{i}": {"invariance_ratio": {"value": 1.0 + i, "ci95": [0.5 + i, 1.5 + i]},
                            "init": {"invariance_ratio": {"mean": 2.0, "low": 1.0, "high": 3.0}}} for i in range(200)}  # fmt: skip
    result = {"weights": "uploaded", "transforms": transforms, "summary": {"ranking": []}}
    (panel,) = build_panels({"probes": {"invariance": result}, "metrics": [], "warnings": []})
    (chart,) = [c for c in panel.charts if c.id == "invariance.ratios"]
    assert len(chart.spec["data"]["values"]) == 400 and chart.spec["height"] == 200 * 16


def test_generic_panel_explains_fields_from_the_result_schema():
    """A registered probe whose result the custom panel cannot read: fields come with their schema descriptions."""
    (panel,) = build_panels({"probes": {"sharpness": {"n_hvp": 12, "top_eigenvalues": 5}}, "metrics": [], "warnings": []})
    (fields,) = [t for t in panel.tables if t.title == "result fields"]
    meaning = {row[0]: row[2] for row in fields.rows}
    assert meaning["n_hvp"] == "Hessian-vector products computed"


def test_simplicity_chart_marks_the_model_and_its_percentile():
    result = {"model": {"poly_order": 1.7}, "init": {"poly_order": {"values": [1.0, 1.2], "low": 0.5, "high": 1.7, "model_percentile": 100.0}}}
    spec = charts.simplicity_chart(result, "poly_order")
    assert "percentile 100" in spec["title"]
    assert [layer["data"]["values"] for layer in spec["layer"]][1:] == [[{"value": 1.0}, {"value": 1.2}], [{"value": 1.7, "percentile": 100.0}]]
