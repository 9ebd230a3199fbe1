"""Bring a stored report of an older format up to the current typed ``Report``.

Format 1 (before the typed report) differs in three places: ``timing[probe]`` was seconds or
``{phase: s, "total_s": s}``; the inductive_bias result kept the run's own space at the top level
(labelled ``model``), compared spaces in a ``compared`` list and pairs in ``relative_bias``; and
there were no ``metrics`` or ``warnings``. Its invariance transforms also predate the ``padding``
option: every warp then read zeros beyond the border, which the upgrade records. The migration that adds the ``run_metrics`` table calls
``upgrade_report`` on every stored report, so the API only ever serves the current format.
"""

from __future__ import annotations

from typing import Any

from workers.report import REPORT_FORMAT_VERSION, Report, probe_metrics, probe_warnings
from workers.transforms import TRANSFORMS

_LEGACY_MAIN_SPACE = "model"
_TARGET = "target"
_ARTIFACT_FIELDS = ("shape", "dtype", "stored", "sha256", "url", "path")


def _timing(entry: Any) -> dict:
    if isinstance(entry, dict):
        phases = {key: value for key, value in entry.items() if key != "total_s"}
        return {"total_s": entry.get("total_s", sum(phases.values())), "phases": phases}
    return {"total_s": float(entry), "phases": {}}


def _relabel(label: str) -> str:
    return _TARGET if label == _LEGACY_MAIN_SPACE else label


def _inductive_bias(result: dict) -> dict:
    if "spaces" in result:
        return result
    main = {key: value for key, value in result.items()
            if key not in ("label", "loss", "seed", "compared", "relative_bias")}  # fmt: skip
    spaces = {_TARGET: main}
    for space in result.get("compared", []):
        spaces[space["label"]] = {key: value for key, value in space.items() if key != "label"}
    relative: dict[str, dict] = {}
    for pair in result.get("relative_bias", []):
        relative.setdefault(_relabel(pair["a"]), {})[_relabel(pair["b"])] = {
            "bits_difference": pair["bits_difference"], "ci95": pair["ci95"],
        }
    return {"loss": result["loss"], "seed": result["seed"], "target_error": result["target_error"],
            "spaces": spaces, "relative": relative}  # fmt: skip


def _invariance(result: dict) -> dict:
    def padding(name: str) -> str | None:
        # A format-1 warp used its default padding, the only one there was (zeros).
        cls = TRANSFORMS.get(name)
        return cls.paddings[0] if cls is not None and cls.paddings else None

    transforms = {name: {"padding": padding(name), **entry} for name, entry in result.get("transforms", {}).items()}
    return {**result, "transforms": transforms}


def _artifact_key(key: str) -> str:
    return "inductive_bias.losses.target" if key == "inductive_bias.losses.model" else key


def upgrade_report(body: dict) -> Report:
    """The current ``Report`` for a stored report body of any known format.

    Raises ``ValueError`` (``pydantic.ValidationError`` is one) when the body cannot be read as one.
    """
    if not isinstance(body, dict) or not {"run", "probes", "environment"} <= set(body):
        raise ValueError("not a report: it needs 'run', 'probes' and 'environment'")
    if body.get("environment", {}).get("report_format") == REPORT_FORMAT_VERSION:
        return Report.model_validate(body)
    probes = dict(body.get("probes", {}))
    if "inductive_bias" in probes:
        probes["inductive_bias"] = _inductive_bias(probes["inductive_bias"])
    if "invariance" in probes:
        probes["invariance"] = _invariance(probes["invariance"])
    artifacts = {
        _artifact_key(key): {field: value for field, value in descriptor.items() if field in _ARTIFACT_FIELDS}
        for key, descriptor in (body.get("artifacts") or {}).items()
    }
    if (body.get("run") or {}).get("id"):
        # Old descriptors carry the old artifact name in their URL too.
        for descriptor in artifacts.values():
            if descriptor.get("url"):
                descriptor["url"] = descriptor["url"].replace("inductive_bias.losses.model", "inductive_bias.losses.target")
    partial = Report.model_validate({
        "run": body["run"],
        "probes": probes,
        "metrics": [],
        "timing": {name: _timing(entry) for name, entry in (body.get("timing") or {}).items()},
        "environment": {**body["environment"], "report_format": REPORT_FORMAT_VERSION},
        "artifacts": artifacts,
        "warnings": [],
    })  # fmt: skip
    metrics, warnings = [], []
    for name in probes:
        result = partial.result(name)
        metrics.extend(probe_metrics(name, result))
        warnings.extend(probe_warnings(name, result))
    return partial.model_copy(update={"metrics": metrics, "warnings": warnings})
