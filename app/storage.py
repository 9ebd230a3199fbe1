"""Content-addressed blob storage on the local filesystem.

A blob's name is the SHA-256 of its bytes, so the same file uploaded twice is stored once and a
stored file can never be silently replaced. Writes go to a temporary file in the same directory
and are renamed into place, so a crash or an over-size upload leaves no partial blob behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path


class BlobTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"file is larger than the {limit} byte limit")
        self.limit = limit


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size_bytes: int
    path: Path
    already_stored: bool


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._incoming = self.root / "incoming"

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def begin(self, max_bytes: int, suffix: str = "") -> "IncomingBlob":
        """Start a streamed write; use as a context manager and call ``commit()`` at the end."""
        self._incoming.mkdir(parents=True, exist_ok=True)
        return IncomingBlob(self, max_bytes, suffix)

    def put_chunks(self, chunks: Iterable[bytes], max_bytes: int, suffix: str = "") -> StoredBlob:
        """Store a stream of byte chunks; raise ``BlobTooLarge`` as soon as the limit is passed."""
        with self.begin(max_bytes, suffix) as blob:
            for chunk in chunks:
                blob.write(chunk)
            return blob.commit()

    async def put_async_chunks(self, chunks: AsyncIterator[bytes], max_bytes: int, suffix: str = "") -> StoredBlob:
        """Async twin of ``put_chunks`` for request bodies."""
        with self.begin(max_bytes, suffix) as blob:
            async for chunk in chunks:
                blob.write(chunk)
            return blob.commit()

    def put_file(self, path: Path, max_bytes: int) -> StoredBlob:
        def read() -> Iterable[bytes]:
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    yield chunk

        return self.put_chunks(read(), max_bytes, suffix=Path(path).suffix)


class IncomingBlob:
    """A blob being written: hashed and size-checked chunk by chunk, renamed into place on commit.

    Leaving the ``with`` block without ``commit()`` (an error, an over-size body) deletes the
    temporary file, so nothing partial is ever visible under its digest.
    """

    def __init__(self, store: BlobStore, max_bytes: int, suffix: str):
        self._store = store
        self._max_bytes = max_bytes
        self._hasher = hashlib.sha256()
        self._size = 0
        self._tmp = tempfile.NamedTemporaryFile(dir=store._incoming, suffix=suffix, delete=False)
        self._tmp_path = Path(self._tmp.name)
        self._committed = False

    def __enter__(self) -> "IncomingBlob":
        return self

    def __exit__(self, *exc_info) -> None:
        self._tmp.close()
        if not self._committed:
            self._tmp_path.unlink(missing_ok=True)

    @property
    def path(self) -> Path:
        """The temporary file, readable for validation before ``commit()`` makes it permanent."""
        return self._tmp_path

    def flush(self) -> None:
        self._tmp.flush()

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max_bytes:
            raise BlobTooLarge(self._max_bytes)
        self._hasher.update(chunk)
        self._tmp.write(chunk)

    def commit(self) -> StoredBlob:
        self._tmp.close()
        digest = self._hasher.hexdigest()
        final = self._store.path_for(digest)
        self._committed = True
        if final.is_file():
            self._tmp_path.unlink(missing_ok=True)
            return StoredBlob(digest, self._size, final, already_stored=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp_path, final)
        return StoredBlob(digest, self._size, final, already_stored=False)
