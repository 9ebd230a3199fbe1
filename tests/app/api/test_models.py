import hashlib
import json

from models.registry import build_model, count_parameters
from models.specs import parse_arch
from tests.app.api.helpers import MLP_ARCH, checkpoint_bytes, error_locs, upload_model


def test_upload_returns_id_sha_and_parameter_count(embedded_client):
    body = upload_model(embedded_client, name="tiny", tags="a, b")
    assert body["sha256"] == hashlib.sha256(checkpoint_bytes()).hexdigest()
    assert body["parameter_count"] == count_parameters(build_model(parse_arch(MLP_ARCH), seed=0)) == 4 * 16 + 16 + 16 * 3 + 3
    assert (body["name"], body["tags"], body["family"], body["format"]) == ("tiny", ["a", "b"], "mlp", "safetensors")
    assert body["already_stored"] is False
    fetched = embedded_client.get(f"/api/v1/models/{body['id']}").json()
    assert fetched["sha256"] == body["sha256"] and fetched["arch"]["hidden"] == [16]


def test_same_file_twice_is_stored_once(embedded_client, embedded_settings):
    first = upload_model(embedded_client, name="one")
    second = upload_model(embedded_client, name="two", tags='["x"]')
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert second["already_stored"] is True
    blobs = [p for p in embedded_settings.resolved_storage_dir.rglob("*") if p.is_file()]
    assert len(blobs) == 1
    listing = embedded_client.get("/api/v1/models").json()
    assert listing["count"] == 2
    assert embedded_client.get("/api/v1/models", params={"tag": "x"}).json()["count"] == 1


def test_bad_arch_is_422_naming_the_field(embedded_client):
    bad = {**MLP_ARCH, "hidden": [16, 0]}
    response = embedded_client.post("/api/v1/models", files={"file": ("n.safetensors", checkpoint_bytes())}, data={"arch": json.dumps(bad)})
    assert response.status_code == 422
    assert ["body", "arch", "mlp", "hidden", 1] in error_locs(response)


def test_unknown_family_and_invalid_json(embedded_client):
    response = embedded_client.post("/api/v1/models", files={"file": ("n.safetensors", b"x")}, data={"arch": '{"name": "rnn"}'})
    assert response.status_code == 422 and error_locs(response)[0][:2] == ["body", "arch"]
    response = embedded_client.post("/api/v1/models", files={"file": ("n.safetensors", b"x")}, data={"arch": "{not json"})
    assert response.status_code == 422 and error_locs(response)[0][:2] == ["body", "arch"]


def test_checkpoint_that_does_not_fit_lists_the_problems(embedded_client, embedded_settings):
    other = {**MLP_ARCH, "hidden": [8]}
    response = embedded_client.post(
        "/api/v1/models", files={"file": ("n.safetensors", checkpoint_bytes(other))}, data={"arch": json.dumps(MLP_ARCH)}
    )
    assert response.status_code == 422
    message = response.json()["detail"][0]["msg"]
    assert "layers.0.weight" in message  # the mis-shaped tensor is named
    assert response.json()["detail"][0]["loc"] == ["body", "weights"]
    # nothing half-stored
    assert [p for p in embedded_settings.resolved_storage_dir.rglob("*") if p.is_file()] == []
    assert embedded_client.get("/api/v1/models").json()["count"] == 0


def test_unsupported_extension_and_garbage_file(embedded_client):
    response = embedded_client.post("/api/v1/models", files={"file": ("n.pkl", b"x")}, data={"arch": json.dumps(MLP_ARCH)})
    assert response.status_code == 422 and ".safetensors" in response.json()["detail"][0]["msg"]
    response = embedded_client.post("/api/v1/models", files={"file": ("n.safetensors", b"not a safetensors file")}, data={"arch": json.dumps(MLP_ARCH)})
    assert response.status_code == 422


def test_upload_over_the_size_limit_is_413(embedded_client, embedded_settings):
    payload = b"\0" * (embedded_settings.max_upload_bytes + 2 * 2**20)
    response = embedded_client.post("/api/v1/models", files={"file": ("big.safetensors", payload)}, data={"arch": json.dumps(MLP_ARCH)})
    assert response.status_code == 413
    assert embedded_client.get("/api/v1/models").json()["count"] == 0


def test_missing_model_is_404(embedded_client):
    response = embedded_client.get("/api/v1/models/doesnotexist")
    assert response.status_code == 404 and "doesnotexist" in response.json()["detail"]


def test_file_just_over_the_limit_is_413_from_the_store(embedded_client, embedded_settings):
    # Small enough to pass the request-body limit (which allows for multipart overhead) but over
    # the file limit: the streaming store refuses it and nothing is left behind.
    payload = b"\0" * (embedded_settings.max_upload_bytes + 10)
    response = embedded_client.post("/api/v1/models", files={"file": ("big.safetensors", payload)}, data={"arch": json.dumps(MLP_ARCH)})
    assert response.status_code == 413 and response.json()["detail"][0]["loc"] == ["body", "file"]
    assert [p for p in embedded_settings.resolved_storage_dir.rglob("*") if p.is_file()] == []


def test_a_huge_arch_is_checked_without_building_it(embedded_client):
    """A 17 GB architecture with a tiny file: refused (the checkpoint does not match) without
    allocating the model; its parameter count comes from shapes on the meta device."""
    import resource

    huge = {"name": "mlp", "in_dim": 65536, "hidden": [65536, 65536], "out_dim": 10}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    response = embedded_client.post("/api/v1/models", files={"file": ("net.safetensors", checkpoint_bytes())},
                                    data={"arch": json.dumps(huge)})
    assert response.status_code == 422, response.text
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2**20  # grew by under 1 GiB
