import numpy as np

from tests.app.api.helpers import dataset_npz_bytes, error_locs, upload_dataset


def test_upload_describes_the_dataset(embedded_client):
    body = upload_dataset(embedded_client, dataset_npz_bytes(n_train=40, n_test=20, in_dim=4, n_classes=3))
    description = body["description"]
    assert description["n_train"] == 40 and description["n_test"] == 20
    assert description["sample_shape"] == [4] and description["task_type"] == "classification"
    assert embedded_client.get(f"/api/v1/datasets/{body['id']}").json()["sha256"] == body["sha256"]
    assert embedded_client.get("/api/v1/datasets").json()["count"] == 1


def test_non_finite_values_are_422_naming_the_array(embedded_client):
    X_test = np.ones((20, 4), dtype=np.float32)
    X_test[3, 1] = np.nan
    response = embedded_client.post("/api/v1/datasets", files={"file": ("d.npz", dataset_npz_bytes(X_test=X_test))})
    assert response.status_code == 422
    assert ["body", "file", "X_test"] in error_locs(response)
    assert embedded_client.get("/api/v1/datasets").json()["count"] == 0


def test_missing_array_and_wrong_extension(embedded_client):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, X_train=np.zeros((2, 2)))
    response = embedded_client.post("/api/v1/datasets", files={"file": ("d.npz", buffer.getvalue())})
    assert response.status_code == 422 and "y_train" in response.text
    response = embedded_client.post("/api/v1/datasets", files={"file": ("d.csv", b"1,2")})
    assert response.status_code == 422 and ".npz" in response.text
