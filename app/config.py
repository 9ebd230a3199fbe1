"""One validated settings object for the API, the workers and the CLI.

Every value can be set from the environment with the ``PRIORPROBE_`` prefix (or a ``.env`` file).
With neither ``database_url`` nor ``broker_url`` set the service runs its *embedded default*: a
SQLite file and an in-process worker under ``data_dir``, so it works with nothing but Python.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


if TYPE_CHECKING:
    from models.graph.checks import GraphLimits


class Queue(StrEnum):
    """Celery queues: GPU workers consume ``gpu`` (and usually ``cpu`` too), CPU-only ones ``cpu``."""

    cpu = "cpu"
    gpu = "gpu"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIORPROBE_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(default=Path("priorprobe-data"), description="SQLite file and blobs live here by default.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset = SQLite in data_dir.")
    broker_url: str | None = Field(default=None, description="Celery broker (redis://...); unset = in-process worker.")
    storage_dir: Path | None = Field(default=None, description="Content-addressed blob store; unset = data_dir/blobs.")
    max_upload_bytes: int = Field(default=512 * 2**20, gt=0, description="Largest model or dataset file accepted.")
    max_json_body_bytes: int = Field(
        default=2 * 2**20, gt=0,
        description="Largest JSON request body (a run spec); its own limit, far below the upload limit.",
    )
    # One API process serves sync routes from a thread pool; each thread holds at most one database
    # connection at a time, so a pool as large as the thread pool never makes a thread wait for a
    # connection (the collapse issue 14 measured: 40 threads queued on a pool of 5 + 10).
    api_threads: int = Field(default=32, ge=1, le=1000, description="Threads serving sync routes in one API process.")
    db_pool_size: int = Field(
        default=0, ge=0, le=1000, description="Database connections per process; 0 = api_threads + 4 (healthz, workers)."
    )
    report_cache_bytes: int = Field(
        default=64 * 2**20, ge=0, description="Stored report bytes each API process keeps in memory (0 = none)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = CUDA when available.")
    gpu_queue: bool = Field(
        default=False, description="Route runs whose probes benefit from a GPU to the 'gpu' queue (needs GPU workers)."
    )
    # A running run whose heartbeat is older than this is considered orphaned (its worker died) and
    # may be claimed again by the redelivered message.
    stale_run_after_s: float = Field(default=300.0, gt=0)
    heartbeat_every_s: float = Field(default=15.0, gt=0)
    max_run_attempts: int = Field(default=3, gt=0, description="Attempts a run gets when its workers keep dying; then it fails.")
    recover_every_s: float = Field(
        default=30.0, gt=0, description="Period of the reaper and the reconciler (app/jobs/periodic.py)."
    )
    requeue_after_s: float = Field(
        default=120.0, gt=0, description="A run queued this long with no message in the broker is enqueued again."
    )
    worker_metrics_port: int = Field(default=9808, ge=0, lt=65536, description="Prometheus port of a worker; 0 = off.")
    log_format: Literal["json", "text"] = Field(default="json", description="Logs of serve, worker and scheduler.")
    task_time_limit_s: int = Field(default=6 * 3600, gt=0, description="Hard limit per run on a Celery worker.")
    worker_max_tasks_per_child: int = Field(default=20, gt=0, description="Recycle workers to hand GPU memory back.")
    auth: Literal["required", "off"] | None = Field(
        default=None,
        description="API keys: 'required' (default with environment=production) or 'off' (default otherwise: one local user).",
    )
    public_read: bool = Field(default=False, description="With auth required, let requests without a key read.")
    webhook_allow_private: bool = Field(
        default=False, description="Let webhooks target private and loopback addresses (never link-local or metadata)."
    )
    webhook_max_attempts: int = Field(default=6, ge=1, le=20, description="Attempts per delivery before it is failed.")
    webhook_retry_base_s: float = Field(default=10.0, gt=0, description="First retry delay; doubles per attempt, with jitter.")
    webhook_retry_max_s: float = Field(default=3600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="How long a receiver may take to answer.")
    api_key_pepper: str = Field(
        default="",
        description="Extra secret mixed into stored key hashes (keys are 256-bit random, so this is defence in depth).",
    )
    # What an uploaded ONNX graph may cost (models.graph.checks.GraphLimits); over a limit is a 422.
    onnx_max_nodes: int = Field(default=10_000, gt=0, description="Most nodes in an uploaded ONNX graph.")
    onnx_max_initializers: int = Field(default=10_000, gt=0, description="Most initializers in an uploaded ONNX graph.")
    onnx_max_initializer_bytes: int = Field(default=256 * 2**20, gt=0, description="Most bytes the initializers may claim.")
    onnx_max_subgraph_depth: int = Field(default=4, ge=0, description="Deepest nesting of If/Loop/Scan bodies.")
    onnx_max_input_elements: int = Field(default=1_000_000, gt=0, description="Most input elements per sample.")

    def graph_limits(self) -> "GraphLimits":
        from models.graph.checks import GraphLimits

        return GraphLimits(
            max_file_bytes=self.max_upload_bytes, max_nodes=self.onnx_max_nodes,
            max_initializers=self.onnx_max_initializers, max_initializer_bytes=self.onnx_max_initializer_bytes,
            max_subgraph_depth=self.onnx_max_subgraph_depth, max_input_elements=self.onnx_max_input_elements,
        )

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        # Hosted Postgres URLs come as postgres:// or postgresql://; SQLAlchemy needs the driver.
        if value is None or value == "":
            return None
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix):]
        return value

    @field_validator("broker_url")
    @classmethod
    def _empty_broker_is_embedded(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _production_needs_real_services(self) -> "Settings":
        # The embedded default is for laptops and demos; a production deployment silently falling
        # back to SQLite and an in-process worker would lose the queue on every restart.
        if self.environment == "production" and (self.database_url is None or self.broker_url is None):
            raise ValueError("environment=production needs PRIORPROBE_DATABASE_URL and PRIORPROBE_BROKER_URL")
        return self

    @model_validator(mode="after")
    def _auth_default_follows_environment(self) -> "Settings":
        if self.auth is None:
            self.auth = "required" if self.environment == "production" else "off"
        return self

    @property
    def auth_required(self) -> bool:
        return self.auth == "required"

    @property
    def embedded(self) -> bool:
        """True when runs execute in the API process (no broker configured)."""
        return self.broker_url is None

    @property
    def resolved_db_pool_size(self) -> int:
        return self.db_pool_size or self.api_threads + 4

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'priorprobe.db').resolve()}"

    @cached_property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "blobs").resolve()


def get_settings() -> Settings:
    return Settings()
