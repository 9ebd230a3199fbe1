"""Hostile and damaged files for the checkpoint-loading tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: a stand-in for arbitrary code execution."""

    def __init__(self, marker: str | os.PathLike[str]):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def corrupted_variants(good: bytes, count: int = 40, seed: int = 0) -> Iterator[bytes]:
    """Deterministic damaged copies of ``good``: every 4th truncated, the others with 1-7 bytes flipped."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        data = bytearray(good[: rng.integers(len(good))] if trial % 4 == 0 else good)
        if trial % 4:
            for position in rng.integers(len(data), size=rng.integers(1, 8)):
                data[position] = int(rng.integers(256))
        yield bytes(data)
