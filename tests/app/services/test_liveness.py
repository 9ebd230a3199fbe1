"""A holder is declared dead only when it is provably so: a process of this host that is gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from app.services.liveness import is_dead, node_of, worker_id


def test_worker_id_names_node_host_and_process():
    worker = worker_id("gpu0@box")
    assert worker == f"gpu0@box/{socket.gethostname()}/{os.getpid()}"
    assert node_of(worker) == "gpu0@box"
    assert node_of("legacy-name") == "legacy-name"


def test_a_finished_process_of_this_host_is_dead_and_a_live_one_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        alive = f"w/{socket.gethostname()}/{child.pid}"
        assert not is_dead(alive)
        child.kill()
        child.wait()  # reaped: the pid no longer exists
        assert is_dead(alive)
    finally:
        child.kill()


def test_a_zombie_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # Not waited for: after it exits it stays a zombie of this process until reaped.
    import time

    deadline = time.monotonic() + 10
    while not is_dead(f"w/{socket.gethostname()}/{child.pid}"):
        assert time.monotonic() < deadline, "an exited, unreaped child was not seen as dead"
        time.sleep(0.05)
    child.wait()


def test_other_hosts_unknown_formats_and_this_process_are_never_declared_dead():
    assert not is_dead(f"w/another-host-{os.getpid()}/1")
    assert not is_dead("celery@host")
    assert not is_dead(None)
    assert not is_dead(worker_id("me"))
