"""Small builders shared by the API tests: example arch specs, checkpoints and dataset files."""

from __future__ import annotations

import io
import json

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from models.registry import build_model
from models.specs import parse_arch

MLP_ARCH = {"name": "mlp", "in_dim": 4, "hidden": [16], "out_dim": 3, "activation": "relu"}


def checkpoint_bytes(arch: dict = MLP_ARCH, seed: int = 1) -> bytes:
    model = build_model(parse_arch(arch), seed=seed)
    return safetensors_bytes({k: v.contiguous() for k, v in model.state_dict().items()})


def upload_model(client, arch: dict = MLP_ARCH, seed: int = 1, **form) -> dict:
    response = client.post(
        "/api/v1/models",
        files={"file": ("net.safetensors", checkpoint_bytes(arch, seed))},
        data={"arch": json.dumps(arch), **form},
    )
    assert response.status_code == 201, response.text
    return response.json()


def dataset_npz_bytes(n_train: int = 40, n_test: int = 20, in_dim: int = 4, n_classes: int = 3, seed: int = 0, **override) -> bytes:
    rng = np.random.default_rng(seed)
    arrays = {
        "X_train": rng.normal(size=(n_train, in_dim)).astype(np.float32),
        "y_train": rng.integers(0, n_classes, size=n_train),
        "X_test": rng.normal(size=(n_test, in_dim)).astype(np.float32),
        "y_test": rng.integers(0, n_classes, size=n_test),
    }
    arrays.update(override)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def upload_dataset(client, content: bytes | None = None, name: str = "toy") -> dict:
    response = client.post("/api/v1/datasets", files={"file": (f"{name}.npz", content or dataset_npz_bytes())}, data={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


def error_locs(response) -> list[list]:
    return [error["loc"] for error in response.json()["detail"]]


def state_dict_of(arch: dict, seed: int) -> dict[str, torch.Tensor]:
    return build_model(parse_arch(arch), seed=seed).state_dict()
