"""Who holds a run or a shard, and whether that holder is provably dead.

Every process that executes jobs has its own worker id, ``node/host/pid`` (a Celery node runs
several pool children under one node name, so the node name alone cannot say which child died).
A claim stores that id on the row. A heartbeat's age only says a holder *may* be dead, after
``stale_run_after_s``; a holder on this same host whose process no longer exists is dead *now*, so
a redelivered message (Celery requeues a killed child's message at once) or a restarted embedded
server takes the run over immediately instead of skipping it as "held by someone else".
"""

from __future__ import annotations

import os
import socket
from functools import cache

_SEPARATOR = "/"


@cache
def _host() -> str:
    return socket.gethostname()


def worker_id(node: str) -> str:
    """This process's worker id under the node name ``node`` (e.g. ``gpu0@host`` or ``embedded``)."""
    return _SEPARATOR.join((node.replace(_SEPARATOR, "_"), _host(), str(os.getpid())))


def node_of(worker: str | None) -> str | None:
    """The node name part of a worker id (the id itself when it is not one)."""
    if worker is None:
        return None
    parts = worker.rsplit(_SEPARATOR, 2)
    return parts[0] if len(parts) == 3 else worker


def is_dead(worker: str | None) -> bool:
    """True only when ``worker`` names a process on this host that no longer exists.

    Unknown formats and other hosts are never declared dead here (the heartbeat's age decides for
    them); a live process under a reused pid is taken for alive, which only delays the takeover
    until the heartbeat goes stale.
    """
    if worker is None:
        return False
    parts = worker.rsplit(_SEPARATOR, 2)
    if len(parts) != 3 or parts[1] != _host() or not parts[2].isdigit():
        return False
    pid = int(parts[2])
    if pid == os.getpid():
        return False  # this process is alive by definition (see ``claim``: "held by me" is handled there)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A zombie (killed, not yet reaped by its parent) still has a pid but runs nothing.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
