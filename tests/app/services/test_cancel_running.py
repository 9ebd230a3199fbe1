"""A running run stops at its next progress point once cancelled, and its result is never recorded."""

from __future__ import annotations

import threading
import time

from app.config import Settings
from app.migrate import upgrade
from app.orm import Run, RunStatus
from app.runtime import Runtime
from app.services import run_state
from app.services.execution import process_run
from app.services.runs import create_run
from workers.runspec import RunSpec


class _HeldQueue:
    """A job queue that only records what was queued: the test runs the run itself, in a thread."""

    parallel = False

    def __init__(self):
        self.queued: list[tuple[str, dict]] = []

    def enqueue(self, kind: str, args: dict, queue: str) -> None:
        self.queued.append((kind, args))

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_running_run_stops_at_a_progress_point(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=None, broker_url=None)
    upgrade(settings.resolved_database_url)
    runtime = Runtime(settings)
    # 64 random members of a 512-wide MLP: a progress point per member, and seconds of work in all.
    spec = RunSpec.model_validate({
        "model": {"arch": {"name": "mlp", "in_dim": 256, "hidden": [512, 512], "out_dim": 10, "activation": "relu"}},
        "probes": {"weight_spectrum": {"n_init_samples": 64}},
    })  # fmt: skip
    with runtime.session_factory() as session:
        run_id = create_run(session, spec, settings, _HeldQueue()).id
    outcome: dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.update(status=process_run(run_id, runtime, "test")))
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with runtime.session_factory() as session:
            status = session.get(Run, run_id).status
        if status != RunStatus.queued:
            break
        time.sleep(0.01)
    assert status == RunStatus.running
    assert run_state.cancel(runtime.session_factory, run_id) == RunStatus.running
    cancelled_at = time.monotonic()
    worker.join(timeout=60)
    assert outcome["status"] == "cancelled"  # stopped by RunCancelled, not finished and then refused
    # A progress write is at most 0.5 s apart (the throttle) plus one member's work.
    assert time.monotonic() - cancelled_at < 10
    with runtime.session_factory() as session:
        run = session.get(Run, run_id)
        assert run.status == RunStatus.cancelled and run.progress_message == "cancelled" and run.finished_at is not None
        assert run.progress < 1.0
    runtime.dispose()
