import hashlib

import pytest

from app.storage import BlobStore, BlobTooLarge


def test_blob_is_named_by_its_sha256_and_stored_once(tmp_path):
    store = BlobStore(tmp_path)
    payload = b"weights" * 1000
    first = store.put_chunks([payload[:10], payload[10:]], max_bytes=10**6)
    second = store.put_chunks([payload], max_bytes=10**6)
    assert first.sha256 == hashlib.sha256(payload).hexdigest() == second.sha256
    assert (first.already_stored, second.already_stored) == (False, True)
    assert first.path.read_bytes() == payload
    stored_files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert stored_files == [first.path]


def test_over_size_upload_leaves_nothing_behind(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(BlobTooLarge):
        store.put_chunks([b"x" * 600, b"x" * 600], max_bytes=1000)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_uncommitted_blob_is_discarded(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.begin(max_bytes=100) as blob:
            blob.write(b"abc")
            raise RuntimeError("validation failed")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_path_for_rejects_anything_but_a_digest(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(ValueError):
        store.path_for("../../etc/passwd")
