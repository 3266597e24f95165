"""``squall verify`` (storage/engine/verify.py) on real LMDB stores: a healthy store
passes; a changed byte, a missing chunk, a short chunk and a stray chunk are each found
and named; multipart bodies are checked by size; an encrypted store's MD5s need its key;
and the command's exit status says which."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from storage.api import CompletedPart, limits
from storage.engine import keys, operations
from storage.engine.cipher import ChunkCipher
from storage.engine.verify import VerifyError, verify
from tests.unit.engine_helpers import FakeClock, Store
from tests.unit.test_encryption_at_rest import EncryptedStore

CHUNK = limits.chunk_size_bytes


def filled(data_dir: pathlib.Path) -> dict[str, bytes]:
    """A store with small, multi-chunk, versioned, empty and multipart bodies."""
    store = Store(data_dir, FakeClock())
    bodies = {"small": b"hello", "big": os.urandom(2 * CHUNK + 99), "empty": b""}
    try:
        store.create_bucket()
        store.write(operations.set_bucket_versioning("b", "Enabled"))
        for key, body in bodies.items():
            store.put("b", key, body)
        store.put("b", "small", b"hello again")  # two versions of one key
        upload = store.create_upload("b", "mp")
        parts = [store.upload_part("b", "mp", upload, n, body) for n, body in
                 ((1, os.urandom(limits.part_size_bytes_min)), (2, b"tail"))]
        store.write(operations.complete_multipart_upload(
            "b", "mp", upload, [CompletedPart(n, p.etag) for n, p in enumerate(parts, 1)],
            etag="abc-2", checksums={}))
    finally:
        store.close()
    return bodies


def chunk_keys_of(data_dir: pathlib.Path, size: int) -> list[bytes]:
    """The chunk keys of the blob whose first chunk has ``size`` bytes... of the only one."""
    import lmdb

    env = lmdb.open(str(data_dir), max_dbs=16)
    try:
        chunks = env.open_db(b"chunks", create=False)
        with env.begin() as txn:
            return [bytes(k) for k, v in txn.cursor(db=chunks) if len(v) == size]
    finally:
        env.close()


def rewrite(data_dir: pathlib.Path, chunk_key: bytes, value: bytes | None) -> None:
    import lmdb

    env = lmdb.open(str(data_dir), max_dbs=16)
    try:
        chunks = env.open_db(b"chunks", create=False)
        with env.begin(write=True) as txn:
            if value is None:
                txn.delete(chunk_key, db=chunks)
            else:
                txn.put(chunk_key, value, db=chunks)
    finally:
        env.close()


def test_a_healthy_store_passes(tmp_path: pathlib.Path) -> None:
    filled(tmp_path)
    progress: list[tuple[int, int]] = []
    report = verify(tmp_path, progress=lambda v, b: progress.append((v, b)))
    assert report.problems == [] and report.md5_skipped == ""
    assert report.versions == 5  # small twice, big, empty, mp
    assert report.bodies_hashed == 3  # the single-part bodies with bytes
    assert progress[-1] == (report.versions, report.bytes_checked)


def test_a_changed_byte_is_found(tmp_path: pathlib.Path) -> None:
    bodies = filled(tmp_path)
    tail_size = len(bodies["big"]) - 2 * CHUNK  # the big body's last chunk
    [tail_key] = chunk_keys_of(tmp_path, tail_size)
    changed = bytearray(bodies["big"][2 * CHUNK:])
    changed[7] ^= 1
    rewrite(tmp_path, tail_key, bytes(changed))
    [problem] = verify(tmp_path).problems
    assert problem.startswith("b/big (version ") and "MD5" in problem
    assert hashlib.md5(bodies["big"]).hexdigest() in problem


@pytest.mark.parametrize("damage", ["missing", "short", "stray"])
def test_missing_short_and_stray_chunks_are_found(tmp_path: pathlib.Path, damage: str) -> None:
    bodies = filled(tmp_path)
    [tail_key] = chunk_keys_of(tmp_path, len(bodies["big"]) - 2 * CHUNK)
    if damage == "missing":
        rewrite(tmp_path, tail_key, None)
        expected = "chunk 2 of 3 is missing"
    elif damage == "short":
        rewrite(tmp_path, tail_key, b"x")
        expected = "chunk 2 has 1 bytes, not 99"
    else:
        rewrite(tmp_path, tail_key[:keys.BLOB_ID_BYTES] + (3).to_bytes(4, "big"), b"extra")
        expected = "a chunk 3 past its size"
    [problem] = verify(tmp_path).problems
    assert problem.startswith("b/big (version ") and expected in problem


def test_a_multipart_part_is_checked(tmp_path: pathlib.Path) -> None:
    filled(tmp_path)
    [tail_key] = chunk_keys_of(tmp_path, 4)  # the upload's second part: b"tail"
    rewrite(tmp_path, tail_key, None)
    [problem] = verify(tmp_path).problems
    assert problem.startswith("b/mp (version ") and "part 2: chunk 0 of 1 is missing" in problem


def test_an_encrypted_store_needs_its_key_for_md5s(tmp_path: pathlib.Path) -> None:
    key = os.urandom(32)
    store = EncryptedStore(tmp_path, key)
    try:
        store.create_bucket()
        store.put("b", "k", os.urandom(CHUNK + 5))
    finally:
        store.close()
    with_key = verify(tmp_path, ChunkCipher(key))
    assert with_key.problems == [] and with_key.bodies_hashed == 1
    without = verify(tmp_path)
    assert without.problems == [] and without.bodies_hashed == 0
    assert "encrypted" in without.md5_skipped
    with pytest.raises(VerifyError, match="not with the given key"):
        verify(tmp_path, ChunkCipher(os.urandom(32)))


def test_the_command_s_exit_status(tmp_path: pathlib.Path) -> None:
    bodies = filled(tmp_path / "data")

    def squall_verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "squall", "verify", "--data-dir",
                               str(tmp_path / "data")], capture_output=True, text=True,
                              timeout=120, check=False)

    healthy = squall_verify()
    assert healthy.returncode == 0, healthy.stderr
    assert "5 versions" in healthy.stdout and "0 problem(s)" in healthy.stdout
    [tail_key] = chunk_keys_of(tmp_path / "data", len(bodies["big"]) - 2 * CHUNK)
    rewrite(tmp_path / "data", tail_key, None)
    broken = squall_verify()
    assert broken.returncode == 1 and "PROBLEM b/big" in broken.stdout
    missing = subprocess.run([sys.executable, "-m", "squall", "verify", "--data-dir",
                              str(tmp_path / "nothing")], capture_output=True, text=True,
                             timeout=120, check=False)
    assert missing.returncode == 2 and "holds no store" in missing.stderr
