"""``priorprobe demo``: the whole product on example models, with nothing installed but Python.

Trains two small classifiers on scikit-learn's bundled digits, keeps a third architecture at its
random init, then (by default) drives the embedded service over its REST API: upload models and
datasets, queue one run per model with every registered probe, follow progress, fetch reports.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import click
from tqdm import tqdm

from app.report_table import format_summary
from models.loading import save_safetensors
from models.registry import build_model
from models.specs import parse_arch
from workers.data.builtin import load_builtin
from workers.data.files import save_dataset_npz
from workers.probes.registry import PROBES
from workers.report import Report
from workers.runner import execute_run, load_task_dataset
from workers.runspec import RunSpec, TrainSpec
from workers.training import train_model

SEED = 0
TRAIN = TrainSpec(optimizer="adam", lr=3e-3, epochs=15, batch_size=64)


@dataclass(frozen=True)
class Example:
    label: str
    arch: dict
    dataset: str  # "digits-flat" or "digits-image"
    trained: bool


EXAMPLES = (
    Example("mlp-trained", {"name": "mlp", "in_dim": 64, "hidden": [64, 64], "out_dim": 10, "activation": "relu"}, "digits-flat", True),
    Example(
        "cnn-trained",
        {"name": "cnn", "in_channels": 1, "image_size": 8, "channels": [16, 32], "kernel_size": 3,
         "padding": "circular", "pool": "global_avg", "out_dim": 10},
        "digits-image",
        True,
    ),
    Example(
        "vit-init",
        {"name": "vit", "in_channels": 1, "image_size": 8, "patch_size": 2, "dim": 32, "depth": 2, "heads": 2, "out_dim": 10},
        "digits-image",
        False,
    ),
)
DATASET_PARAMS = {"digits-flat": {"flatten": True}, "digits-image": {"flatten": False}}


# Defaults except for sample sizes, kept small so the demo runs in a few minutes on a laptop CPU.
PROBE_OVERRIDES = {
    "inductive_bias": {"n_hypotheses": 120},
    "invariance": {"n_inputs": 64, "n_init_samples": 4},
    "simplicity": {"grid_size": 32, "n_planes": 2, "n_init_samples": 4},
    "sharpness": {"max_train_samples": 256, "top_k": 3, "n_lanczos_iter": 12, "hutchinson_probes": 16},
}
# mse against one-hot targets, as in Boopathy et al.; the examples train on the same loss so the
# uploaded weights' own test loss is comparable with the sampled hypotheses'.
TASK_LOSS = "mse"


def _probe_requests() -> dict[str, dict]:
    return {name: PROBE_OVERRIDES.get(name, {}) for name in PROBES}


def _task(dataset_ref: dict) -> dict:
    # epsilon below the ~0.1 mse of a constant guess on 10 classes
    return {"dataset": dataset_ref, "loss": TASK_LOSS, "target_error": 0.08, "train": TRAIN.model_dump()}


def prepare_examples(work_dir: Path) -> dict[str, Path]:
    """Write the datasets (.npz) and train/save the example checkpoints; returns name -> file."""
    work_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    datasets = {}
    for name, params in DATASET_PARAMS.items():
        datasets[name] = load_builtin("digits", params, seed=SEED)
        files[name] = work_dir / f"{name}.npz"
        save_dataset_npz(datasets[name], files[name])
    for example in EXAMPLES:
        if not example.trained:
            continue
        model = build_model(parse_arch(example.arch), seed=SEED)
        with tqdm(total=TRAIN.epochs, desc=f"train {example.label}", unit="epoch", leave=False) as bar:
            train_model(model, datasets[example.dataset], TRAIN, TASK_LOSS, seed=SEED,
                        progress=lambda fraction, message: bar.update(1))
        files[example.label] = work_dir / f"{example.label}.safetensors"
        save_safetensors(model, files[example.label])
    return files


def _run_locally(files: dict[str, Path]) -> dict[str, Report]:
    reports = {}
    for example in EXAMPLES:
        spec = RunSpec.model_validate(
            {"model": {"arch": example.arch, "weights": str(files[example.label]) if example.trained else None},
             "task": _task({"path": str(files[example.dataset])}), "probes": _probe_requests(), "seed": SEED}
        )
        with tqdm(total=100, desc=f"probe {example.label}", unit="%", leave=False) as bar:
            reports[example.label] = execute_run(
                spec,
                weights_path=files[example.label] if example.trained else None,
                dataset=load_task_dataset(spec),
                progress=lambda fraction, message: bar.update(round(100 * fraction) - bar.n),
            )
    return reports


def _check(response, expected: int) -> dict:
    if response.status_code != expected:
        raise click.ClickException(f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text}")
    return response.json()


def _run_through_service(files: dict[str, Path], data_dir: Path) -> dict[str, Report]:
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app

    settings = Settings(data_dir=data_dir, database_url=None, broker_url=None)
    reports = {}
    with TestClient(create_app(settings)) as client:
        click.echo(f"embedded service: database {settings.resolved_database_url}, blobs in {settings.resolved_storage_dir}")
        dataset_ids = {}
        for name in DATASET_PARAMS:
            with open(files[name], "rb") as handle:
                body = _check(client.post("/api/v1/datasets", files={"file": (files[name].name, handle)}, data={"name": name}), 201)
            dataset_ids[name] = body["id"]
        run_ids = {}
        for example in EXAMPLES:
            model_block: dict = {"arch": example.arch}
            if example.trained:
                with open(files[example.label], "rb") as handle:
                    body = _check(client.post(
                        "/api/v1/models",
                        files={"file": (files[example.label].name, handle)},
                        data={"arch": json.dumps(example.arch), "name": example.label, "tags": "demo"},
                    ), 201)
                model_block = {"weights": body["id"]}
            spec = {"model": model_block, "task": _task({"id": dataset_ids[example.dataset]}),
                    "probes": _probe_requests(), "seed": SEED}
            run_ids[example.label] = _check(client.post("/api/v1/runs", json=spec), 202)["id"]
        for label, run_id in run_ids.items():
            with tqdm(total=100, desc=f"run {label}", unit="%", leave=False) as bar:
                while True:
                    run = _check(client.get(f"/api/v1/runs/{run_id}"), 200)
                    bar.update(round(100 * run["progress"]) - bar.n)
                    if run["status"] in ("succeeded", "failed"):
                        break
                    time.sleep(0.1)
            if run["status"] == "failed":
                raise click.ClickException(f"run {run_id} ({label}) failed: {run['error']}")
            reports[label] = Report.model_validate(_check(client.get(f"/api/v1/runs/{run_id}/report"), 200))
    return reports


def run_demo(data_dir: Path, through_service: bool = True) -> dict[str, Report]:
    started = time.perf_counter()
    files = prepare_examples(data_dir / "inputs")
    reports = _run_through_service(files, data_dir) if through_service else _run_locally(files)
    click.echo(format_summary(reports))
    reports_path = data_dir / "reports.json"
    reports_path.write_text(json.dumps({label: report.model_dump(mode="json") for label, report in reports.items()}, indent=2))
    click.echo(f"\n{len(reports)} reports ({', '.join(PROBES)}) in {time.perf_counter() - started:.1f} s; full JSON: {reports_path}")
    return reports
