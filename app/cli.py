"""``priorprobe``: serve the API, run a worker, run a spec locally, migrate, or run the demo."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from pydantic import ValidationError

from models.errors import InputError


def _fail_on_input_error(exc: InputError) -> None:
    click.secho("The run spec has problems:", fg="red", err=True)
    for error in exc.errors:
        click.echo(f"  {'.'.join(map(str, error['loc'])) or '(spec)'}: {error['msg']}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """PriorProbe: measure the inductive bias of neural networks."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
def serve(host: str, port: int, reload: bool) -> None:
    """Serve the REST API (OpenAPI docs at /docs).

    Without PRIORPROBE_DATABASE_URL and PRIORPROBE_BROKER_URL this is the embedded default: a SQLite
    file and an in-process worker under PRIORPROBE_DATA_DIR (./priorprobe-data).
    """
    import uvicorn

    from app.config import get_settings

    settings = get_settings()
    mode = "embedded (SQLite + in-process worker)" if settings.embedded else "distributed (database + Celery)"
    if settings.auth_required:
        auth = "API keys required" + (" (reads public)" if settings.public_read else "")
    else:
        auth = "off: no API keys, every caller is the one local user (PRIORPROBE_AUTH=required to change)"
    click.echo(f"PriorProbe API on http://{host}:{port}/docs, mode: {mode}, auth: {auth}")
    _configure_logging(settings.log_format, "INFO")
    # On SIGTERM/Ctrl-C uvicorn runs the app's shutdown: the embedded worker's running job stops
    # at its next progress point and its run is re-queued (resumed at the next start).
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, reload=reload,
                log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
                timeout_graceful_shutdown=10)


def _configure_logging(log_format: str, level: str) -> None:
    import logging

    from app.observability.log_context import configure_json_logging

    if log_format == "json":
        configure_json_logging(level)
    else:
        logging.basicConfig(level=level)


@main.command()
@click.option("--queues", default="cpu,gpu", show_default=True, help="Comma-separated queues to consume.")
@click.option("--concurrency", default=1, show_default=True, type=int, help="Jobs executed at once.")
@click.option("--pool", default="prefork", show_default=True, type=click.Choice(["prefork", "solo", "threads"]))
@click.option("--hostname", default=None, help="Node name, e.g. gpu0@%h (default: celery@%h); must differ per worker on a host.")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queues: str, concurrency: int, pool: str, hostname: str | None, loglevel: str) -> None:
    """Run a Celery worker that executes every kind of job (needs PRIORPROBE_BROKER_URL)."""
    from app.config import get_settings

    settings = get_settings()
    if settings.embedded:
        raise click.UsageError("set PRIORPROBE_BROKER_URL (e.g. redis://127.0.0.1:6379/0) and PRIORPROBE_DATABASE_URL")
    import os
    import tempfile

    if settings.worker_metrics_port:
        # Pool children are processes: prometheus-client's multiprocess mode sums their samples.
        # It must be set before prometheus_client is imported (it picks its value class then).
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="priorprobe-metrics-"))
    # torch.optim imports torch._dynamo on the first optimizer it builds: 2-5 s here. Importing it
    # in the parent once means every pool child (recycled every max_tasks_per_child jobs) inherits it.
    import torch._dynamo  # noqa: F401
    from celery import signals

    from app.jobs.celery_app import create_celery
    from app.observability.worker_metrics import serve_worker_metrics

    if settings.worker_metrics_port:
        serve_worker_metrics(settings.worker_metrics_port)

    def setup_logging(loglevel=None, **_) -> None:  # connected: Celery then leaves logging to us
        _configure_logging(settings.log_format, loglevel or "INFO")

    signals.setup_logging.connect(setup_logging, weak=False)
    argv = ["worker", f"--queues={queues}", f"--concurrency={concurrency}", f"--pool={pool}", f"--loglevel={loglevel}"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    create_celery(settings).worker_main(argv)


@main.command()
def scheduler() -> None:
    """Run the recovery jobs every PRIORPROBE_RECOVER_EVERY_S in a distributed deployment: the
    reaper (runs and shards whose worker died go back to the queue, or fail after
    PRIORPROBE_MAX_RUN_ATTEMPTS) and the reconciler (queued runs with no broker message, e.g. after
    a broker restart, are enqueued again). Safe to run more than one; stops on SIGTERM/Ctrl-C."""
    import signal
    import threading

    from app.config import get_settings
    from app.jobs.celery_app import create_celery
    from app.jobs.celery_queue import CeleryJobQueue
    from app.jobs.periodic import PeriodicJobs
    from app.runtime import Runtime

    settings = get_settings()
    if settings.embedded:
        raise click.UsageError("the embedded server runs its own scheduler; this is for PRIORPROBE_BROKER_URL deployments")
    _configure_logging(settings.log_format, "INFO")
    runtime = Runtime(settings)
    periodic = PeriodicJobs(runtime, CeleryJobQueue(create_celery(settings)))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"scheduler: reaper and reconciler every {settings.recover_every_s} s", err=True)
    while not stop.wait(settings.recover_every_s):
        periodic.run_once()
    runtime.dispose()


def _npy_file_sink(out_path: Path):
    """Writes each artifact as ``<report stem>.artifacts/<probe>.<name>.npy`` beside the report."""
    import numpy as np

    folder = out_path.with_name(out_path.stem + ".artifacts")

    def sink(key: str, array) -> dict:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{key}.npy"
        np.save(path, array, allow_pickle=False)
        return {"stored": True, "path": str(path.relative_to(out_path.parent))}

    return sink


def _onnx_arch(path: Path, spec, dataset):
    """The OnnxSpec of an .onnx file given as weights, bound to the task's data when there is one."""
    from app.services.uploads import data_input_of
    from models.graph.describe import describe_graph

    data = spec.task.input if spec.task is not None and getattr(spec.task, "input", None) else None
    if data is None and dataset is not None:
        data = data_input_of(dataset.sample_shape, str(dataset.X_test.dtype))
    return describe_graph(path, data=data)[0]


@main.group()
def models() -> None:
    """Zoo architectures: make checkpoints the service accepts."""


@models.command("template")
@click.argument("arch_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the safetensors file (default: ARCH_PATH with .safetensors).")
@click.option("--seed", default=0, show_default=True, type=int)
def models_template(arch_path: Path, out_path: Path | None, seed: int) -> None:
    """Write an initialised checkpoint for the zoo architecture in ARCH_PATH and list its parameters.

    Train it in your own script (``build_model`` gives the same module), save
    ``model.state_dict()`` with the same names, and upload it with this arch.
    """
    from models.loading import save_safetensors
    from models.registry import build_model
    from models.specs import OnnxSpec, parse_arch

    try:
        arch = parse_arch(arch_path.read_text())
    except ValidationError as exc:
        _fail_on_input_error(InputError.from_validation(exc, prefix=["arch"]))
    if isinstance(arch, OnnxSpec):
        raise click.UsageError("ONNX graphs carry their own weights; upload the .onnx file itself")
    model = build_model(arch, seed=seed)
    out_path = out_path or arch_path.with_suffix(".safetensors")
    save_safetensors(model, out_path)
    for name, tensor in model.state_dict().items():
        click.echo(f"{name}\t{list(tensor.shape)}")
    click.echo(f"wrote {out_path}")


@main.command("run")
@click.argument("spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the JSON report.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
def run_spec(spec_path: Path, out_path: Path | None, device: str) -> None:
    """Run SPEC_PATH locally (no server) and write the report.

    Paths in the spec (model.weights, task.dataset.path) are relative to the spec file.
    """
    from workers.runspec import RunSpec

    # Validate before importing the runner: it pulls in torch (seconds on a cold start), and a
    # spec error should come back at once.
    try:
        spec = RunSpec.model_validate_json(spec_path.read_text())
    except ValidationError as exc:
        _fail_on_input_error(InputError.from_validation(exc))

    from tqdm import tqdm

    from app.report_table import format_summary
    from workers.preflight import preflight
    from workers.runner import execute_run, load_task_dataset, pick_device
    from workers.runspec import with_data_input

    base_dir = spec_path.parent
    weights_path = None
    if spec.model.weights is not None:
        weights_path = Path(spec.model.weights)
        weights_path = weights_path if weights_path.is_absolute() else base_dir / weights_path
        if not weights_path.is_file():
            _fail_on_input_error(InputError.at(["model", "weights"], f"no such file: {weights_path}"))
    try:
        dataset = load_task_dataset(spec, base_dir=base_dir)
        if spec.model.arch is None and weights_path is not None and weights_path.suffix.lower() == ".onnx":
            spec.model.arch = _onnx_arch(weights_path, spec, dataset)
        spec = with_data_input(spec, None if dataset is None else dataset.describe())
        # What the API refuses with a 422, refused here before any probe starts (the same function).
        preflight(spec, None if dataset is None else dataset.describe())
    except InputError as exc:
        _fail_on_input_error(exc)
    with tqdm(total=100, desc="run", unit="%", bar_format="{l_bar}{bar}| {n:.0f}% {postfix}") as bar:

        def progress(fraction: float, message: str) -> None:
            bar.n = round(100 * fraction, 1)
            bar.set_postfix_str(message[:60])
            bar.refresh()

        try:
            report = execute_run(
                spec, weights_path=weights_path, dataset=dataset, progress=progress, device=pick_device(device),
                artifact_sink=_npy_file_sink(out_path) if out_path is not None else None,
            )
        except InputError as exc:
            bar.close()
            _fail_on_input_error(exc)
    text = report.model_dump_json(indent=2)
    if out_path is not None:
        out_path.write_text(text)
        click.echo(f"report written to {out_path}")
    else:
        click.echo(text)
    click.echo(format_summary({spec_path.stem: report}))


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations to PRIORPROBE_DATABASE_URL (or the embedded SQLite file)."""
    from app.config import get_settings
    from app.migrate import upgrade

    settings = get_settings()
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(url, revision)
    click.echo(f"database at {url.split('@')[-1]} is at revision {revision}")


@main.group()
def keys() -> None:
    """API keys (stored as hashes in PRIORPROBE_DATABASE_URL or the embedded SQLite file)."""


def _key_session():
    from app.config import get_settings
    from app.migrate import upgrade
    from app.runtime import Runtime

    settings = get_settings()
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.resolved_database_url)  # as `serve` does: the laptop's file may be new
    runtime = Runtime(settings)
    return runtime, runtime.session_factory()


@keys.command("create")
@click.option("--name", required=True, help="Who or what uses the key (recorded as created_by), e.g. ci-bot.")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), default="read", show_default=True,
              help="read; write = read + upload, queue, cancel; admin = write + keys and deletes.")
def keys_create(name: str, scope: str) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from app.services.api_keys import create_key
    from priorprobe_client.schemas.keys import ApiKeyCreate

    try:
        request = ApiKeyCreate(name=name, scope=scope)
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"], param_hint="--name") from None
    runtime, session = _key_session()
    with session:
        record, key = create_key(session, request.name, request.scope, runtime.settings.api_key_pepper)
        click.echo(key)
        click.echo(f"created key {record.prefix} '{record.name}' with scope {scope}; it is shown only this once", err=True)
    runtime.dispose()


@keys.command("list")
def keys_list() -> None:
    """Every key: prefix, name, scope, created, last used, revoked."""
    from app.services.api_keys import granted_scope, list_keys

    runtime, session = _key_session()
    with session:
        click.echo(f"{'prefix':<10} {'name':<24} {'scope':<6} {'created':<20} {'last used':<20} revoked")
        for record in list_keys(session):
            stamp = lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"  # noqa: E731
            click.echo(f"{record.prefix:<10} {record.name:<24} {granted_scope(record):<6} {stamp(record.created_at):<20} "
                       f"{stamp(record.last_used_at):<20} {stamp(record.revoked_at)}")  # fmt: skip
    runtime.dispose()


@keys.command("revoke")
@click.argument("key_ref")
def keys_revoke(key_ref: str) -> None:
    """Revoke the key with this prefix, id or (unique) name; it stops working at once."""
    from app.services.api_keys import KeyNotFound, revoke_key

    runtime, session = _key_session()
    with session:
        try:
            record = revoke_key(session, key_ref)
        except KeyNotFound as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"revoked key {record.prefix} '{record.name}'")
    runtime.dispose()


@main.command(
    "submit", add_help_option=False, context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.pass_context
def submit(ctx: click.Context) -> None:
    """Upload a checkpoint, run it on a server, gate on its metrics (see `priorprobe submit --help`).

    The same command as the light client's `priorprobe-client submit`.
    """
    from priorprobe_client.cli import main as client_main

    sys.exit(client_main(["submit", *ctx.args]))


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("priorprobe-data/demo"),
              show_default=True, help="Where the demo's SQLite file, blobs, models and data go.")
@click.option("--local", is_flag=True, help="Skip the service: run the specs in this process directly.")
def demo(data_dir: Path, local: bool) -> None:
    """Build example models and data, run every registered probe, print a summary table.

    By default this goes through the embedded service exactly as a user would: upload the models
    and the dataset over the REST API, queue runs, watch their progress, fetch the reports.
    """
    from app.demo import run_demo

    run_demo(data_dir, through_service=not local)


if __name__ == "__main__":
    main()
