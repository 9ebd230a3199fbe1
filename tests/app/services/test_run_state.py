"""Run transitions tied to the holder's liveness, the reaper's bounded attempts, and the queued
runs the reconciler looks at, on a real (SQLite) database."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from app.config import Settings
from app.migrate import upgrade
from app.orm import Run, RunStatus
from app.runtime import Runtime
from app.services import run_state


@pytest.fixture
def runtime(tmp_path) -> Runtime:
    settings = Settings(data_dir=tmp_path / "data", database_url=None, broker_url=None)
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    runtime = Runtime(settings)
    yield runtime
    runtime.dispose()


def _queued_run(runtime: Runtime) -> str:
    with runtime.session_factory() as session:
        run = Run(spec={}, status=RunStatus.queued, queue="cpu", progress=0.0, attempts=0)
        session.add(run)
        session.commit()
        return run.id


def _dead_worker() -> str:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"celery@x/{socket.gethostname()}/{child.pid}"


def _row(runtime: Runtime, run_id: str) -> Run:
    with runtime.session_factory() as session:
        return session.get(Run, run_id)


def test_a_run_held_by_a_dead_process_is_taken_over_at_once(runtime):
    factory, run_id, dead = runtime.session_factory, _queued_run(runtime), _dead_worker()
    assert run_state.claim(factory, run_id, dead, stale_after_s=3600)
    # Heartbeat fresh, but its holder is gone: a redelivered message must not be skipped.
    assert run_state.claim(factory, run_id, "celery@x/other-host/1", stale_after_s=3600)
    # Held by a live holder (another host, fresh heartbeat): not claimable.
    assert not run_state.claim(factory, run_id, "celery@y/third-host/2", stale_after_s=3600)
    assert _row(runtime, run_id).attempts == 2


def test_writes_of_a_worker_that_lost_the_run_are_refused(runtime):
    factory, run_id = runtime.session_factory, _queued_run(runtime)
    assert run_state.claim(factory, run_id, "old", stale_after_s=3600)
    assert run_state.claim(factory, run_id, "new", stale_after_s=0.0)  # presumed dead, taken over
    assert not run_state.heartbeat(factory, run_id, "old")
    assert not run_state.requeue(factory, run_id, "old", "shutting down")
    assert not run_state.record_failure(factory, run_id, "late error", "old")
    assert run_state.heartbeat(factory, run_id, "new")
    assert _row(runtime, run_id).status == "running"


def test_requeue_hands_the_run_back_without_counting_the_attempt(runtime):
    factory, run_id = runtime.session_factory, _queued_run(runtime)
    assert run_state.claim(factory, run_id, "w", stale_after_s=3600)
    assert run_state.requeue(factory, run_id, "w", "re-queued: shutting down")
    row = _row(runtime, run_id)
    assert (row.status, row.attempts, row.progress_message) == ("queued", 0, "re-queued: shutting down")


def test_reaper_requeues_until_max_attempts_then_fails_with_the_reason(runtime):
    factory, run_id = runtime.session_factory, _queued_run(runtime)
    for attempt in (1, 2):
        assert run_state.claim(factory, run_id, f"w{attempt}", stale_after_s=3600)
        time.sleep(0.05)
        reaped = run_state.reap(factory, stale_after_s=0.01, max_attempts=2)
        if attempt == 1:
            assert reaped.requeued == [(run_id, "cpu")] and reaped.failed == []
            assert _row(runtime, run_id).status == "queued"
    assert reaped.failed == [run_id] and reaped.requeued == []
    row = _row(runtime, run_id)
    assert row.status == "failed" and "worker lost" in row.error and "w2" in row.error and "2 attempts" in row.error
    # Idempotent: a second reaper finds nothing.
    assert run_state.reap(factory, stale_after_s=0.01, max_attempts=2) == run_state.Reaped([], [])


def test_reaper_leaves_live_runs_alone(runtime):
    factory, run_id = runtime.session_factory, _queued_run(runtime)
    assert run_state.claim(factory, run_id, "celery@y/other-host/7", stale_after_s=3600)
    assert run_state.reap(factory, stale_after_s=3600, max_attempts=3) == run_state.Reaped([], [])
    assert _row(runtime, run_id).status == "running"


def test_queued_before_sees_runs_waiting_longer_than_the_grace(runtime):
    run_id = _queued_run(runtime)
    assert run_state.queued_before(runtime.session_factory, 60) == []
    time.sleep(0.05)
    assert run_state.queued_before(runtime.session_factory, 0.01) == [(run_id, "cpu")]
