"""``priorprobe run`` refuses what ``POST /api/v1/runs`` refuses, at the same field locations.

Both call ``workers.preflight.preflight``; this feeds the same bad specs to the embedded API and to
the CLI and compares the locations of the errors (the API's without its ``body`` prefix).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli import main

MLP = {"name": "mlp", "in_dim": 64, "hidden": [8], "out_dim": 10}
DIGITS = {"builtin": "digits"}
TEST_ONLY = {"builtin": "gaussian_clusters", "in_dim": 64, "n_classes": 3, "n_train": 0, "n_test": 8}
TEACHER = {"builtin": "teacher", "in_dim": 64, "out_dim": 10, "n_train": 8, "n_test": 8}


def _spec(arch=MLP, dataset=DIGITS, probes=None, loss="cross_entropy", **model) -> dict:
    return {"model": {"arch": arch, **model}, "task": {"dataset": dataset, "loss": loss, "target_error": 0.1},
            "probes": probes or {"weight_spectrum": {}}}


BAD_SPECS = {
    "input size": _spec({**MLP, "in_dim": 32}),
    "too few outputs": _spec({**MLP, "out_dim": 3}),
    "input size and outputs": _spec({**MLP, "in_dim": 32, "out_dim": 3}),
    "classification loss on regression targets": _spec(dataset=TEACHER),
    "probes that need a training split": _spec(
        {**MLP, "out_dim": 3}, TEST_ONLY, {"sharpness": {}, "inductive_bias": {"sampler": "trained"}}
    ),
    "probe params": _spec(probes={"weight_spectrum": {"min_tail": 1}}),
    "probe params and input size": _spec({**MLP, "in_dim": 32}, probes={"weight_spectrum": {"min_tail": 1}}),
    "padding of a transform that has none": _spec(
        {**MLP, "in_dim": 32}, probes={"invariance": {"transforms": [{"name": "sign_flip", "padding": "reflection"}]}}
    ),
    "arch field": _spec({**MLP, "activation": "swish"}),
    "unknown weights": _spec(weights="missing.safetensors"),
}


def _cli_locs(tmp_path, spec: dict) -> tuple[int, set[str], str]:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = CliRunner().invoke(main, ["run", str(path)])
    # Error lines are "  <dotted.loc>: <message>" under the heading.
    locs = {line.strip().split(": ", 1)[0] for line in result.output.splitlines() if line.startswith("  ") and ": " in line}
    return result.exit_code, locs, result.output


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_cli_refuses_what_the_api_refuses_at_the_same_fields(case, embedded_client, tmp_path):
    spec = BAD_SPECS[case]
    response = embedded_client.post("/api/v1/runs", json=spec)
    assert response.status_code == 422, response.text
    api_locs = {".".join(map(str, error["loc"][1:])) for error in response.json()["detail"]}
    assert all(error["loc"][0] == "body" for error in response.json()["detail"])
    exit_code, cli_locs, output = _cli_locs(tmp_path, spec)
    assert exit_code == 2, output
    assert "Traceback" not in output
    assert cli_locs == api_locs, output
    assert embedded_client.get("/api/v1/runs").json()["count"] == 0


def test_every_dataset_problem_is_named_at_once(tmp_path):
    exit_code, locs, output = _cli_locs(tmp_path, BAD_SPECS["probes that need a training split"])
    assert exit_code == 2
    assert locs == {"task.dataset", "probes.inductive_bias.sampler"}
    assert "training split" in output
    exit_code, locs, output = _cli_locs(tmp_path, BAD_SPECS["input size and outputs"])
    assert "[64]" in output and "[32]" in output and "out_dim >= 10" in output
