"""Encryption at rest (storage/engine/cipher.py): the cipher, the key file, and an engine
whose chunks are encrypted on a real LMDB on disk: what is on disk, what readers get,
and which keys a store opens with."""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib

import pytest

from storage.api import CompletedPart, PutSpec, StorageError, limits
from storage.engine import Engine, GroupCommitWriter, StagedTail, operations
from storage.engine.cipher import ChunkCipher, KeyFileError, load_key
from storage.engine.staged import StagedBody
from tests.unit.engine_helpers import FakeClock, Store

CHUNK = limits.chunk_size_bytes
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
MARKER = b"squall-plaintext-marker-7d1f"


def body_with_markers(size: int) -> bytes:
    """Random bytes with MARKER every 64 KiB: plaintext a scan of the files can find."""
    data = bytearray(os.urandom(size))
    for at in range(0, size - len(MARKER), 64 * 1024):
        data[at:at + len(MARKER)] = MARKER
    return bytes(data)


# --- the cipher and the key file -----------------------------------------------------------


def test_cipher_round_trips_at_any_offset() -> None:
    cipher = ChunkCipher(KEY)
    blob = os.urandom(16)
    data = os.urandom(5000)
    sealed = cipher.apply(blob, 3, data)
    assert len(sealed) == len(data) and sealed != data
    assert cipher.apply(blob, 3, sealed) == data
    for start, end in ((0, 1), (1, 17), (15, 16), (16, 48), (17, 4999), (4096, 5000)):
        assert cipher.apply(blob, 3, sealed[start:end], start) == data[start:end]


def test_every_blob_and_chunk_has_its_own_key_stream() -> None:
    cipher = ChunkCipher(KEY)
    zeros = bytes(64)
    blob_a, blob_b = os.urandom(16), os.urandom(16)
    streams = {cipher.apply(blob_a, 0, zeros), cipher.apply(blob_a, 1, zeros),
               cipher.apply(blob_b, 0, zeros), ChunkCipher(OTHER_KEY).apply(blob_a, 0, zeros)}
    assert len(streams) == 4
    assert ChunkCipher(KEY).key_id == cipher.key_id != ChunkCipher(OTHER_KEY).key_id
    assert KEY.hex() not in cipher.key_id


def test_key_file_forms(tmp_path: pathlib.Path) -> None:
    forms = {"raw": KEY, "hex": KEY.hex().encode() + b"\n",
             "base64": base64.b64encode(KEY) + b"\n"}
    for name, content in forms.items():
        (tmp_path / name).write_bytes(content)
        assert load_key(tmp_path / name) == KEY, name
    (tmp_path / "short").write_bytes(b"0123456789")
    with pytest.raises(KeyFileError, match="holds 10 bytes"):
        load_key(tmp_path / "short")
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key(tmp_path / "missing")
    with pytest.raises(KeyFileError, match="32 bytes"):
        ChunkCipher(b"too short")


# --- an encrypted engine ---------------------------------------------------------------------


class EncryptedStore(Store):
    def __init__(self, data_dir: pathlib.Path, key: bytes | None = KEY) -> None:
        self.clock = FakeClock()
        self.engine = Engine(data_dir, durable=False, now_ms=self.clock,
                             cipher=None if key is None else ChunkCipher(key))
        self.writer = GroupCommitWriter(self.engine)


def files_contain(data_dir: pathlib.Path, needle: bytes) -> bool:
    return any(needle in path.read_bytes() for path in data_dir.iterdir() if path.is_file())


def test_chunks_are_encrypted_on_disk_and_read_back_in_plaintext(tmp_path: pathlib.Path) -> None:
    store = EncryptedStore(tmp_path)
    try:
        store.create_bucket()
        small, large = body_with_markers(70_000), body_with_markers(2 * CHUNK + 12_345)
        small_version = store.put("b", "small", small)
        large_version = store.put("b", "large", large)
        store.engine.env.sync(True)
        assert not files_contain(tmp_path, MARKER)
        assert store.read(large_version) == large
        # Ranges at odd offsets, across chunk boundaries.
        for start, end in ((1, 2), (CHUNK - 7, CHUNK + 9), (17, 2 * CHUNK + 100),
                           (2 * CHUNK + 1, len(large))):
            assert store.read(large_version, start, end) == large[start:end]
        # A small GET reads the whole body with the version (the inline body).
        got = store.engine.get_version("b", "small", inline_body_bytes_max=CHUNK)
        assert got.inline_body == small
        assert store.read(small_version, 5, 9) == small[5:9]
    finally:
        store.close()


def test_multipart_parts_are_encrypted_and_read_across_segments(tmp_path: pathlib.Path) -> None:
    store = EncryptedStore(tmp_path)
    try:
        store.create_bucket()
        parts = [body_with_markers(limits.part_size_bytes_min + 100), body_with_markers(300)]
        upload_id = store.create_upload("b", "mp")
        infos = [store.upload_part("b", "mp", upload_id, n, body)
                 for n, body in enumerate(parts, start=1)]
        version = store.write(operations.complete_multipart_upload(
            "b", "mp", upload_id,
            [CompletedPart(n, info.etag) for n, info in enumerate(infos, start=1)],
            etag="e-2", checksums={}))
        store.engine.env.sync(True)
        assert not files_contain(tmp_path, MARKER)
        whole = b"".join(parts)
        assert store.read(version) == whole
        boundary = len(parts[0])  # a range across the two parts
        assert store.read(version, boundary - 50, boundary + 50) == whole[boundary - 50:
                                                                          boundary + 50]
        assert store.read(version, CHUNK + 50, CHUNK + 250) == whole[CHUNK + 50:CHUNK + 250]
    finally:
        store.close()


def test_a_pre_commit_function_reads_the_staged_body_in_plaintext(tmp_path: pathlib.Path) -> None:
    store = EncryptedStore(tmp_path)
    try:
        body = body_with_markers(CHUNK + 500)
        blob_id, tail = store.stage_all_but_tail(body)
        assert blob_id is not None and tail is not None
        with StagedBody(store.engine, [(blob_id, 1)], tail.data) as staged:
            assert b"".join(bytes(view) for view in staged.views) == body
    finally:
        store.close()


def test_a_store_opens_only_with_the_key_it_was_made_with(tmp_path: pathlib.Path) -> None:
    encrypted, plain = tmp_path / "encrypted", tmp_path / "plain"
    store = EncryptedStore(encrypted)
    store.create_bucket()
    version = store.put("b", "k", MARKER * 10)
    store.close()
    with pytest.raises(StorageError, match="encrypted at rest .*give its key"):
        Engine(encrypted, durable=False)
    with pytest.raises(StorageError, match="not with the given key"):
        Engine(encrypted, durable=False, cipher=ChunkCipher(OTHER_KEY))
    reopened = EncryptedStore(encrypted)
    try:
        assert reopened.read(version) == MARKER * 10
    finally:
        reopened.close()

    store = EncryptedStore(plain, key=None)
    store.create_bucket()
    store.put("b", "k", b"plain data")
    store.close()
    with pytest.raises(StorageError, match="created without encryption"):
        Engine(plain, durable=False, cipher=ChunkCipher(KEY))


def test_a_store_without_object_data_takes_a_key_or_drops_it(tmp_path: pathlib.Path) -> None:
    """Buckets but no body yet (a server started once, nothing uploaded): nothing needs
    rewriting, so the key of the next open is recorded."""
    store = EncryptedStore(tmp_path, key=None)
    store.create_bucket()
    store.close()
    store = EncryptedStore(tmp_path)  # now encrypted
    try:
        store.put("b", "k", MARKER)
        store.engine.env.sync(True)
        assert not files_contain(tmp_path, MARKER)
    finally:
        store.close()
    with pytest.raises(StorageError, match="encrypted at rest"):
        Engine(tmp_path, durable=False)  # it holds encrypted data now


def test_a_store_from_before_encryption_counts_as_unencrypted(tmp_path: pathlib.Path) -> None:
    """A store with buckets and no record of its key (made before the record existed)
    opens without a key, and refuses one once it holds data."""
    store = EncryptedStore(tmp_path, key=None)
    store.create_bucket()
    store.put("b", "k", b"old data")
    with store.engine.env.begin(write=True) as txn:
        assert txn.delete(b"encryption_key_id", db=store.engine.meta)
    store.close()
    with pytest.raises(StorageError, match="created without encryption"):
        Engine(tmp_path, durable=False, cipher=ChunkCipher(KEY))
    Engine(tmp_path, durable=False).close()


def test_a_copy_reads_plaintext_and_stores_it_encrypted(tmp_path: pathlib.Path) -> None:
    """CopyObject streams the source through a reader into a new blob (gateway): both
    ends go through the cipher, under different blob keys."""
    store = EncryptedStore(tmp_path)
    try:
        store.create_bucket()
        body = body_with_markers(CHUNK + 10)
        source = store.put("b", "src", body)
        copied = store.put("b", "dst", store.read(source))
        assert store.read(copied) == body
        with store.engine.env.begin(buffers=True) as txn:
            raw = [bytes(value) for _, value in txn.cursor(db=store.engine.chunks)]
        assert len(set(raw)) == len(raw)  # same plaintext, different ciphertext
        assert hashlib.md5(store.read(copied)).hexdigest() == copied.etag
    finally:
        store.close()


def test_the_commit_operation_encrypts_a_tail_it_carries(tmp_path: pathlib.Path) -> None:
    store = EncryptedStore(tmp_path)
    try:
        store.create_bucket()
        operation = operations.commit_version(
            "b", "tail-only", blob_id=None, size_bytes=len(MARKER),
            spec=PutSpec(etag=hashlib.md5(MARKER).hexdigest()),
            tail=StagedTail(0, MARKER))
        version = store.write(operation)
        store.engine.env.sync(True)
        assert not files_contain(tmp_path, MARKER)
        assert store.read(version) == MARKER
    finally:
        store.close()
