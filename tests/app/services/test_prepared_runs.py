"""The per-process cache of prepared runs: keyed by (run, attempt), bounded, built once per key."""

from __future__ import annotations

import threading
import time

import pytest

from app.services.prepared_runs import PreparedRunCache


class _Built:
    """Stands in for a PreparedRun: the cache only stores what ``build`` returns."""

    def __init__(self, key):
        self.key = key


def test_a_key_is_built_once_and_the_least_recently_used_is_evicted():
    cache = PreparedRunCache(max_entries=2)
    first = cache.get(("run-a", 1), lambda: _Built("a1"))
    assert cache.get(("run-a", 1), lambda: _Built("again")) is first
    cache.get(("run-b", 1), lambda: _Built("b1"))
    cache.get(("run-a", 1), lambda: _Built("again"))  # a is now the most recently used
    cache.get(("run-c", 1), lambda: _Built("c1"))
    assert cache.keys() == [("run-a", 1), ("run-c", 1)]
    assert cache.builds == 3
    assert cache.get(("run-b", 1), lambda: _Built("b1 rebuilt")).key == "b1 rebuilt"


def test_a_new_attempt_of_a_run_is_a_new_entry():
    cache = PreparedRunCache(max_entries=2)
    cache.get(("run-a", 1), lambda: _Built("attempt 1"))
    assert cache.get(("run-a", 2), lambda: _Built("attempt 2")).key == "attempt 2"
    assert cache.builds == 2


def test_threads_asking_for_one_run_at_once_build_it_once():
    cache = PreparedRunCache()

    def slow_build():
        time.sleep(0.05)  # long enough that every thread asks while the first still builds
        return _Built("slow")

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(("run-a", 1), slow_build))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.builds == 1 and len({id(value) for value in got}) == 1 and len(got) == 4


def test_the_cache_holds_at_least_one_entry():
    with pytest.raises(ValueError):
        PreparedRunCache(max_entries=0)
