"""One registry of job kinds: the Celery app registers a task for each, and unknown kinds fail loudly."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.jobs.celery_app import create_celery
from app.jobs.celery_queue import task_name
from app.jobs.registry import JOBS, RUN, SHARD, JobContext, execute


def test_the_existing_kinds_are_registered():
    assert {RUN, SHARD} <= set(JOBS)


def test_the_celery_app_has_one_task_per_job_kind():
    app = create_celery(Settings(broker_url="redis://127.0.0.1:1/0", database_url="sqlite://"))
    try:
        ours = {name for name in app.tasks if name.startswith("priorprobe.")}
        assert ours == {task_name(kind) for kind in JOBS}
        for kind in JOBS:
            task = app.tasks[task_name(kind)]
            assert task.acks_late and task.reject_on_worker_lost
    finally:
        app.close()


def test_an_unknown_kind_is_an_error_naming_the_known_ones():
    with pytest.raises(LookupError, match="known kinds"):
        execute("no-such-kind", JobContext(runtime=None, worker="w", queue=None), {})
