"""Reports stored in format 1 (before the typed report) read as the current ``Report``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from workers.report import REPORT_FORMAT_VERSION, Report
from workers.report_upgrade import upgrade_report

# A real format-1 report of every probe, written by the code before the typed report (commit ad1308f).
LEGACY = json.loads((Path(__file__).parent / "fixtures" / "report_v1.json").read_text())


def test_a_format_1_report_becomes_the_typed_report():
    report = upgrade_report(LEGACY)
    assert report.environment.report_format == REPORT_FORMAT_VERSION
    old = LEGACY["probes"]["inductive_bias"]
    spaces = report.probes.inductive_bias.spaces
    assert list(spaces) == ["target", "gp"]
    assert spaces["target"].bits == old["bits"] and spaces["gp"].bits == old["compared"][0]["bits"]
    pair = report.probes.inductive_bias.relative["target"]["gp"]
    assert pair.bits_difference == old["relative_bias"][0]["bits_difference"]
    assert set(report.artifacts) == {"inductive_bias.losses.target", "inductive_bias.losses.gp"}
    assert report.artifacts["inductive_bias.losses.target"].url.endswith("/inductive_bias.losses.target")
    assert report.timing["inductive_bias"].phases == {k: v for k, v in LEGACY["timing"]["inductive_bias"].items() if k != "total_s"}
    assert report.timing["invariance"].total_s == LEGACY["timing"]["invariance"] and report.timing["invariance"].phases == {}
    keys = {metric.key for metric in report.metrics}
    assert {"inductive_bias.bits", "inductive_bias.spaces.gp.bits", "inductive_bias.relative.target.gp.bits",
            "sharpness.trace", "weight_spectrum.alpha_mean", "simplicity.mean_frequency"} <= keys
    assert any(key.startswith("invariance.") for key in keys)
    assert [w.message for w in report.warnings] == [f"space '{label}': {m}" for label, m in
                                                   [("target", m) for m in old["warnings"]] + [("gp", m) for m in old["compared"][0]["warnings"]]]
    # Every other probe's result is unchanged, except that invariance records each transform's padding
    # (added later): zeros for the warps, the only padding format 1 had, and none for the others.
    dumped = report.model_dump(mode="json")
    paddings = {name: entry.pop("padding") for name, entry in dumped["probes"]["invariance"]["transforms"].items()}
    assert paddings == {name: "zeros" if name in ("translate", "rotate", "scale") else None
                        for name in LEGACY["probes"]["invariance"]["transforms"]}
    for name in ("invariance", "simplicity", "weight_spectrum", "sharpness"):
        assert dumped["probes"][name] == LEGACY["probes"][name]
    # The fixture has tabular transforms only: a warp entry (same fields) comes out with zeros.
    with_warp = copy.deepcopy(LEGACY)
    transforms = with_warp["probes"]["invariance"]["transforms"]
    transforms["translate"] = copy.deepcopy(transforms["sign_flip"])
    assert upgrade_report(with_warp).probes.invariance.transforms["translate"].padding == "zeros"


def test_the_current_format_reads_as_itself():
    report = upgrade_report(LEGACY)
    again = upgrade_report(report.model_dump(mode="json"))
    assert again == report
    assert Report.model_validate_json(report.model_dump_json()) == report
