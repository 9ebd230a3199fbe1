"""ONNX uploads through the API: accepted without an arch, checked against onnxruntime (recorded),
refused with a 422 naming the reason, and measured by a run like any other model."""

from __future__ import annotations

import json

import torch

from tests.app.api.helpers import MLP_ARCH, upload_dataset
from tests.conftest import wait_for_run
from tests.models.graph.exports import ResNetStyle, export


def _onnx_bytes(tmp_path, model=None, shape=(4,)) -> bytes:
    if model is None:
        from models.registry import build_model
        from models.specs import parse_arch

        model = build_model(parse_arch(MLP_ARCH), seed=1)
    return export(model, shape, tmp_path / "m.onnx").read_bytes()


def test_upload_without_arch_records_the_onnxruntime_check(embedded_client, tmp_path):
    response = embedded_client.post("/api/v1/models", files={"file": ("net.onnx", _onnx_bytes(tmp_path))}, data={"name": "net"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["family"], body["format"]) == ("onnx", "onnx")
    assert body["arch"]["name"] == "onnx" and body["arch"]["graph"] == body["sha256"]
    assert body["arch"]["input"] == {"kind": "tabular", "shape": [4], "vocab_size": None}
    assert body["arch"]["output_shape"] == [3]
    assert body["parameter_count"] == 4 * 16 + 16 + 16 * 3 + 3
    conversion = body["conversion"]
    assert conversion["inputs"] == "synthetic" and conversion["n_inputs"] == 8
    assert 0 <= conversion["max_rel_error"] <= conversion["rtol"] == 1e-5


def test_upload_with_a_dataset_checks_on_its_inputs(embedded_client, tmp_path):
    dataset = upload_dataset(embedded_client)
    response = embedded_client.post(
        "/api/v1/models", files={"file": ("net.onnx", _onnx_bytes(tmp_path))}, data={"dataset": dataset["id"]}
    )
    assert response.status_code == 201, response.text
    assert response.json()["conversion"]["inputs"] == "dataset_test_set"
    assert response.json()["conversion"]["n_inputs"] == 16


def test_refusals_are_422_with_the_reason(embedded_client, tmp_path):
    response = embedded_client.post("/api/v1/models", files={"file": ("net.onnx", b"\x0a\xff\xff garbage")})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "onnx_malformed"
    response = embedded_client.post(
        "/api/v1/models", files={"file": ("net.onnx", _onnx_bytes(tmp_path))}, data={"arch": json.dumps(MLP_ARCH)}
    )
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "arch"]
    response = embedded_client.post("/api/v1/models", files={"file": ("n.safetensors", b"x")})
    assert response.status_code == 422 and "architecture spec is required" in response.text


def test_run_on_an_uploaded_resnet_with_random_init_comparison(embedded_client, tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ResNetStyle().eval()
    content = _onnx_bytes(tmp_path, model, (1, 8, 8))
    uploaded = embedded_client.post("/api/v1/models", files={"file": ("resnet.onnx", content)}).json()
    spec = {"model": {"weights": uploaded["id"]}, "probes": {"weight_spectrum": {"n_init_samples": 2}}, "seed": 1}
    run = embedded_client.post("/api/v1/runs", json=spec)
    assert run.status_code == 202, run.text
    finished = wait_for_run(embedded_client, run.json()["id"])
    assert finished["status"] == "succeeded", finished["error"]
    report = embedded_client.get(f"/api/v1/runs/{run.json()['id']}/report").json()
    assert report["run"]["weights"] == "uploaded" and report["run"]["spec"]["model"]["arch"]["name"] == "onnx"
    layers = report["probes"]["weight_spectrum"]["layers"]
    assert [layer["name"] for layer in layers] == ["stem", "conv1", "conv2", "head"]
    assert report["probes"]["weight_spectrum"]["init"]["n_members"] == 2
