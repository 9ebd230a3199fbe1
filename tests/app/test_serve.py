"""``priorprobe serve`` with nothing configured really serves the embedded default over HTTP."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # starts a server process that imports torch: 10-30 s
def test_serve_embedded_default_answers_healthz(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORPROBE_")}
    env["PRIORPROBE_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/healthz", timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                time.sleep(0.2)
        assert body == {"status": "ok", "mode": "embedded", "database": "ok", "broker": "embedded", "migrations": "ok"}
        assert (tmp_path / "data" / "priorprobe.db").is_file()
    finally:
        process.terminate()
        process.wait(timeout=20)
    start_up = process.stdout.read().decode().splitlines()[0]
    assert start_up.endswith("auth: off: no API keys, every caller is the one local user (PRIORPROBE_AUTH=required to change)")


# inductive_bias in 16 shards: several seconds of work with a progress point after every shard.
_SLOW_SPEC = {
    "model": {"arch": {"name": "mlp", "in_dim": 2, "hidden": [16], "out_dim": 3}},
    # Sized for the batched trainer with hand-written MLP gradients: 16 shards of about a second, so
    # both signals land mid-run (a 24-epoch budget on 128 rows finished before the first one).
    "task": {"dataset": {"builtin": "gaussian_clusters", "in_dim": 2, "n_classes": 3, "n_train": 256, "n_test": 64},
             "target_error": 0.4, "train": {"epochs": 96, "batch_size": 16}},
    "probes": {"inductive_bias": {"sampler": "trained", "n_hypotheses": 480, "shard_size": 30, "chunk_size": 30}},
    "seed": 5,
}


class _Server:
    def __init__(self, tmp_path: Path):
        self.port, self.log = _free_port(), tmp_path / "serve.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORPROBE_")}
        self.env.update(PRIORPROBE_DATA_DIR=str(tmp_path / "data"), OMP_NUM_THREADS="1")

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
                                            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("/api/v1/healthz")
                return
            except OSError:
                assert self.process.poll() is None and time.monotonic() < deadline, self.log.read_text()[-3000:]
                time.sleep(0.2)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_run(self, run_id: str, predicate, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.get(f"/api/v1/runs/{run_id}")
            if predicate(run):
                return run
            assert time.monotonic() < deadline, run
            time.sleep(0.1)


@pytest.mark.slow
def test_serve_stops_within_seconds_and_resumes_a_crashed_run_at_once(tmp_path):
    server = _Server(tmp_path)
    server.start()
    try:
        run_id = server.post("/api/v1/runs", _SLOW_SPEC)["id"]
        server.wait_run(run_id, lambda run: run["status"] == "running" and run["progress"] > 0, 120)
        # SIGTERM mid-run: the probe stops at its next shard and the run goes back to the queue.
        stopping = time.monotonic()
        server.process.terminate()
        server.process.wait(timeout=30)
        stop_s = time.monotonic() - stopping
        server.start()
        requeued = server.get(f"/api/v1/runs/{run_id}")
        # (It may already be running again: the restart resumes queued runs.)
        assert requeued["status"] in ("queued", "running") and requeued["attempts"] <= 1

        # SIGKILL mid-run, then restart: the previous process is provably dead, so the run is taken
        # over at once, not after stale_run_after_s (300 s by default).
        running = server.wait_run(run_id, lambda run: run["status"] == "running" and run["progress"] > 0, 120)
        server.process.kill()
        server.process.wait()
        restarting = time.monotonic()
        server.start()
        resumed = server.wait_run(run_id, lambda run: run["attempts"] > running["attempts"] or run["status"] != "running", 30)
        resume_s = time.monotonic() - restarting
        finished = server.wait_run(run_id, lambda run: run["status"] in ("succeeded", "failed"), 300)
        print(f"\nembedded serve: SIGTERM exit {stop_s:.1f} s; after SIGKILL + restart the run resumed in {resume_s:.1f} s")
        # Bounded by one shard of work plus shutdown, far below the run's length.
        assert stop_s < 15
        assert resumed["attempts"] == running["attempts"] + 1
        assert finished["status"] == "succeeded", finished["error"]
        # JSON logs carry the run id on the lines the run's job wrote.
        lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
        assert any(line["run_id"] == run_id and "re-queued" in line["message"] for line in lines)
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)
