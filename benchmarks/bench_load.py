"""Load benchmark: many concurrent clients reading reports and run lists from one API process.

Usage (from the repository root; needs the PostgreSQL of the README's Tests section)::

    python benchmarks/bench_load.py [--clients 16,64,200] [--duration 10] [--runs 20]
                                    [--think 0] [--max-requests 20000]

What it does, all on 127.0.0.1 and bounded in time and request count:

1. creates a throw-away PostgreSQL database (``--admin-url``), migrates it, and stores ``--runs``
   succeeded runs whose report is a real one: one run of every probe (``--probes``) on a small MLP,
   computed once at start-up and stored under each run id (about 24 kB of JSON with every probe);
2. starts ``uvicorn app.main:create_app --factory`` (one process, the embedded job queue on that
   database, nothing queued) on a free port;
3. for each client count, runs that many concurrent keep-alive clients for ``--duration`` seconds
   (or until ``--max-requests`` in all): each client loops over ``GET /api/v1/runs/{id}/report``
   for a random stored run (three in four requests) and ``GET /api/v1/runs?limit=50`` (one in four),
   waiting ``--think`` seconds between its requests (0 = closed loop, the worst case); a separate
   probe asks ``GET /api/v1/healthz`` every 0.25 s meanwhile;
4. prints, per client count: requests, errors (any status but 200/304, timeouts, resets),
   throughput, p50/p99 latency, and the worst ``/healthz`` latency during the load; then drops the
   database and stops the server.

The client is a small asyncio HTTP/1.1 client (keep-alive, ``Content-Length`` bodies only), so on
a small machine the measurement is not dominated by the client library. ``main()`` returns the rows
so the smoke test can call it at toy scale.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ADMIN_URL = os.environ.get(
    "PRIORPROBE_TEST_DATABASE_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUEST_TIMEOUT_S = 15.0
ALL_PROBES = ("inductive_bias", "invariance", "simplicity", "weight_spectrum", "sharpness")


# --- the database and the stored reports -------------------------------------------------------


@contextmanager
def bench_database(admin_url: str):
    import sqlalchemy as sa

    name = f"priorprobe_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        from app.migrate import upgrade

        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def real_report(probes: tuple[str, ...]) -> tuple[dict, dict]:
    """One real run's spec and report JSON (small MLP, built-in clusters, default probe params)."""
    import torch

    from workers.runner import execute_run, load_task_dataset
    from workers.runspec import RunSpec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = RunSpec.model_validate({
            "model": {"arch": {"name": "mlp", "in_dim": 2, "hidden": [16], "out_dim": 3}},
            "task": {"dataset": {"builtin": "gaussian_clusters", "in_dim": 2, "n_classes": 3}, "target_error": 0.5},
            "probes": {name: {} for name in probes},
            "seed": 0,
        })
        report = execute_run(spec, weights_path=None, dataset=load_task_dataset(spec)).model_dump(mode="json")
    finally:
        torch.set_num_threads(threads)
    return spec.model_dump(mode="json", exclude_none=True), report


def store_runs(url: str, n_runs: int, spec: dict, report: dict) -> list[str]:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from app.orm import Report, Run, RunStatus
    from app.orm.base import utcnow

    engine = sa.create_engine(url)
    ids = []
    with Session(engine) as session:
        for _ in range(n_runs):
            now = utcnow()
            run = Run(spec=spec, status=RunStatus.succeeded, progress=1.0, queue="cpu",
                      started_at=now, finished_at=now, timing=report.get("timing"))
            session.add(run)
            session.flush()
            body = {**report, "run": {**report.get("run", {}), "id": run.id}}
            session.add(Report(run_id=run.id, body=body))
            ids.append(run.id)
        session.commit()
    engine.dispose()
    return ids


# --- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def api_server(database_url: str, data_dir: Path, port: int):
    env = {**os.environ, "PRIORPROBE_DATABASE_URL": database_url, "PRIORPROBE_DATA_DIR": str(data_dir),
           "PRIORPROBE_BROKER_URL": "", "PYTHONPATH": str(REPO_ROOT)}
    log = open(data_dir / "uvicorn.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not start; see {data_dir / 'uvicorn.log'}")
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# --- the client ------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: enough for this server's Content-Length responses."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, int]:
        """(status, body length); reconnects after a reset or a ``Connection: close``."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        length = int(headers.get("content-length", "0"))
        await self.reader.readexactly(length)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, length

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class LevelResult:
    clients: int
    latencies_s: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=lambda: {"report": [], "list": []})
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    health_s: list[float] = field(default_factory=list)
    health_errors: int = 0
    elapsed_s: float = 0.0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def row(self) -> dict:
        def quantile(q: float, latencies: list[float] | None = None) -> float | None:
            ordered = sorted(self.latencies_s if latencies is None else latencies)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3 if ordered else None

        return {
            "clients": self.clients,
            "requests": len(self.latencies_s) + self.errors,
            "ok": len(self.latencies_s),
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "req_per_s": len(self.latencies_s) / self.elapsed_s if self.elapsed_s else 0.0,
            "p50_ms": quantile(0.5),
            "p99_ms": quantile(0.99),
            "report_p99_ms": quantile(0.99, self.by_kind["report"]),
            "list_p99_ms": quantile(0.99, self.by_kind["list"]),
            "health_max_ms": max(self.health_s) * 1e3 if self.health_s else None,
            "health_median_ms": statistics.median(self.health_s) * 1e3 if self.health_s else None,
            "health_errors": self.health_errors,
        }


async def run_level(port: int, run_ids: list[str], clients: int, duration_s: float, think_s: float,
                    max_requests: int, seed: int) -> LevelResult:
    result = LevelResult(clients)
    rng = random.Random(seed)
    stop_at = time.monotonic() + duration_s
    budget = [max_requests]

    async def client(index: int) -> None:
        connection = Connection(port)
        local = random.Random(rng.random())
        try:
            while time.monotonic() < stop_at and budget[0] > 0:
                budget[0] -= 1
                kind = "list" if local.random() < 0.25 else "report"
                path = "/api/v1/runs?limit=50" if kind == "list" else f"/api/v1/runs/{local.choice(run_ids)}/report"
                started = time.monotonic()
                try:
                    status, _ = await asyncio.wait_for(connection.get(path), REQUEST_TIMEOUT_S)
                except TimeoutError:
                    result.error("timeout")
                    connection.close()
                    continue
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    result.error(type(exc).__name__)
                    connection.close()
                    continue
                if status in (200, 304):
                    result.latencies_s.append(time.monotonic() - started)
                    result.by_kind[kind].append(result.latencies_s[-1])
                else:
                    result.error(f"http {status}")
                if think_s:
                    await asyncio.sleep(think_s * (0.5 + local.random()))
        finally:
            connection.close()

    async def health() -> None:
        while time.monotonic() < stop_at and budget[0] > 0:
            connection = Connection(port)  # a fresh connection, like a load balancer's check
            started = time.monotonic()
            try:
                status, _ = await asyncio.wait_for(connection.get("/api/v1/healthz"), REQUEST_TIMEOUT_S)
                result.health_s.append(time.monotonic() - started)
                result.health_errors += status != 200
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                result.health_s.append(time.monotonic() - started)
                result.health_errors += 1
            finally:
                connection.close()
            await asyncio.sleep(0.25)

    started = time.monotonic()
    await asyncio.gather(health(), *(client(i) for i in range(clients)))
    result.elapsed_s = time.monotonic() - started
    return result


def print_row(row: dict) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:8.1f}"

    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(row["error_kinds"].items()))
    print(f"{row['clients']:>7} {row['requests']:>8} {row['errors']:>6} {row['req_per_s']:>8.1f} {ms(row['p50_ms'])} "
          f"{ms(row['p99_ms'])} {ms(row['report_p99_ms'])} {ms(row['list_p99_ms'])} {ms(row['health_median_ms'])} {ms(row['health_max_ms'])} {row['health_errors']:>6}"
          + (f"   ({kinds})" if kinds else ""), flush=True)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="16,64,200", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per client count")
    parser.add_argument("--think", type=float, default=0.0, help="mean seconds each client waits between requests")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap on requests per client count")
    parser.add_argument("--runs", type=int, default=20, help="stored runs with a report")
    parser.add_argument("--probes", default=",".join(ALL_PROBES), help="probes in the stored report")
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL URL allowed to CREATE DATABASE")
    parser.add_argument("--data-dir", type=Path, default=None, help="server data dir (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",") if c]
    if not levels or min(levels) < 1 or args.duration <= 0 or args.duration > 120 or args.max_requests < 1:
        parser.error("client counts must be >= 1, 0 < duration <= 120 s, max-requests >= 1")

    import tempfile

    spec, report = real_report(tuple(p for p in args.probes.split(",") if p))
    rows = []
    with tempfile.TemporaryDirectory(prefix="priorprobe-bench-") as tmp, bench_database(args.admin_url) as url:
        data_dir = args.data_dir or Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        run_ids = store_runs(url, args.runs, spec, report)
        port = free_port()
        with api_server(url, data_dir, port):
            print(f"{len(run_ids)} stored runs, report {len(json.dumps(report)) / 1024:.1f} KiB; "
                  f"{args.duration:g} s per level, think {args.think:g} s, one uvicorn process on 127.0.0.1:{port}")
            print(" clients requests errors    req/s   p50 ms   p99 ms  rep p99 list p99  hz50 ms hzmax ms  hzerr")
            for index, clients in enumerate(levels):
                result = asyncio.run(run_level(port, run_ids, clients, args.duration, args.think,
                                               args.max_requests, args.seed + index))
                row = result.row()
                print_row(row)
                rows.append(row)
    return rows


if __name__ == "__main__":
    main()
