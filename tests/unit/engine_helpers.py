"""Shared helpers of the engine tests: an engine with a fake clock and its writer."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from storage.api import ObjectVersion, PartInfo, PutSpec, WriteConditions, limits
from storage.engine import Engine, GroupCommitWriter, StagedTail, operations
from storage.engine.writer import WriteOperation


class FakeClock:
    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, delta_ms: int = 10) -> None:
        self.now_ms += delta_ms


class Store:
    """An engine plus its writer, with synchronous write helpers."""

    def __init__(self, data_dir: pathlib.Path, clock: FakeClock, **writer_options: Any) -> None:
        self.clock = clock
        self.engine = Engine(data_dir, durable=False, now_ms=clock)
        self.writer = GroupCommitWriter(self.engine, **writer_options)

    def write(self, operation: WriteOperation) -> Any:
        return self.writer.submit(operation).result(timeout=30)

    def create_bucket(self, name: str = "b", owner_id: str = "owner") -> None:
        self.write(operations.create_bucket(name, owner_id))

    def stage_all_but_tail(self, body: bytes) -> tuple[bytes | None, StagedTail | None]:
        """Stage every full chunk but the last; the commit carries the tail (as the
        client does). Returns (blob id or None, tail or None)."""
        chunk_size = limits.chunk_size_bytes
        chunk_count = -(-len(body) // chunk_size)
        blob_id = self.engine.new_blob_id() if chunk_count > 1 else None
        for index in range(chunk_count - 1):
            assert blob_id is not None
            piece = body[index * chunk_size : (index + 1) * chunk_size]
            self.write(operations.stage_chunk(blob_id, index, piece))
        tail = None
        if chunk_count:
            tail = StagedTail(chunk_count - 1, body[(chunk_count - 1) * chunk_size :])
        return blob_id, tail

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        conditions: WriteConditions | None = None,
    ) -> ObjectVersion:
        blob_id, tail = self.stage_all_but_tail(body)
        spec = PutSpec(etag=hashlib.md5(body).hexdigest())
        operation = operations.commit_version(
            bucket,
            key,
            blob_id=blob_id,
            size_bytes=len(body),
            spec=spec,
            conditions=conditions,
            tail=tail,
        )
        return self.write(operation)

    def create_upload(self, bucket: str, key: str, spec: PutSpec | None = None) -> str:
        """CreateMultipartUpload; returns the upload id."""
        spec = spec or PutSpec(etag="")
        return self.write(operations.create_multipart_upload(bucket, key, spec, "", "")).upload_id

    def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: bytes
    ) -> PartInfo:
        blob_id, tail = self.stage_all_but_tail(body)
        operation = operations.commit_part(
            bucket,
            key,
            upload_id,
            part_number,
            blob_id=blob_id,
            size_bytes=len(body),
            etag=hashlib.md5(body).hexdigest(),
            checksum="",
            tail=tail,
        )
        return self.write(operation)

    def read(self, version: ObjectVersion, start: int = 0, end: int | None = None) -> bytes:
        reader = self.engine.open_body(version, start, end)
        try:
            return b"".join(bytes(piece) for piece in reader)
        finally:
            reader.close()

    def close(self) -> None:
        self.writer.close()
        self.engine.close()


@contextmanager
def open_store(data_dir: pathlib.Path, **writer_options: Any) -> Iterator[Store]:
    store = Store(data_dir, FakeClock(), **writer_options)
    try:
        yield store
    finally:
        store.close()
