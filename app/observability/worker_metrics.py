"""Prometheus metrics a worker process records while executing jobs.

Defined once per process in the default registry. A Celery worker's pool children are separate
processes, so ``priorprobe worker`` runs prometheus-client's multiprocess mode (every child writes
its samples to files in ``PROMETHEUS_MULTIPROC_DIR``) and the parent serves their sum on
``worker_metrics_port`` (see ``serve_worker_metrics``).
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client import multiprocess

log = logging.getLogger(__name__)

# Runs last seconds to hours.
_RUN_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, float("inf"))

RUN_DURATION = Histogram(
    "priorprobe_run_duration_seconds", "Wall time of run attempts by outcome.", ["outcome"], buckets=_RUN_BUCKETS
)
PROBE_DURATION = Histogram(
    "priorprobe_probe_duration_seconds", "Wall time of each probe within succeeded runs.", ["probe"], buckets=_RUN_BUCKETS
)
RUN_FAILURES = Counter("priorprobe_run_failures_total", "Runs recorded as failed, by reason (the error's type).", ["reason"])
JOBS = Counter("priorprobe_jobs_total", "Jobs executed, by kind and outcome.", ["kind", "outcome"])
HEARTBEATS = Counter("priorprobe_heartbeats_total", "Heartbeats written, by outcome (ok, lost, error).", ["outcome"])


def serve_worker_metrics(port: int) -> None:
    """Serve the metrics of every process writing to ``PROMETHEUS_MULTIPROC_DIR`` on ``port``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        start_http_server(port, addr="0.0.0.0", registry=registry)
    except OSError as exc:  # e.g. a second worker on this host: it runs, unscraped, rather than not at all
        log.warning("worker metrics not served on port %d: %s (set PRIORPROBE_WORKER_METRICS_PORT)", port, exc)
