"""Constructors of the writer's operations: one per kind of engine write.

Each returns a ``WriteOperation`` whose ``apply`` calls the matching ``Engine.apply_*``
method inside the writer's child transaction. Payload buffers are passed by reference:
the caller must not mutate them until the operation's future resolves.
"""

from __future__ import annotations

from collections.abc import Mapping

from storage.api import PutSpec, WriteConditions
from storage.engine.store import StagedTail
from storage.engine.writer import WriteOperation


def create_bucket(name: str, owner_id: str) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_create_bucket(txn, name, owner_id), name="create_bucket"
    )


def delete_bucket(name: str) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_delete_bucket(txn, name), name="delete_bucket"
    )


def set_bucket_versioning(name: str, versioning: str) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_set_bucket_versioning(txn, name, versioning),
        name="set_bucket_versioning",
    )


def put_bucket_config(bucket: str, name: str, document: bytes | None) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_put_bucket_config(txn, bucket, name, document),
        name="put_bucket_config",
    )


def stage_chunk(
    blob_id: bytes, chunk_index: int, data: bytes | bytearray | memoryview
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_stage_chunk(txn, blob_id, chunk_index, data),
        payload_bytes=len(data),
        name="stage_chunk",
    )


def abort_upload(blob_id: bytes) -> WriteOperation:
    return WriteOperation(lambda engine, txn: engine.apply_abort(txn, blob_id), name="abort")


def commit_version(
    bucket: str,
    key: str,
    *,
    blob_id: bytes | None,
    size_bytes: int,
    spec: PutSpec,
    conditions: WriteConditions | None = None,
    tail: StagedTail | None = None,
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_commit(
            txn,
            bucket,
            key,
            blob_id=blob_id,
            size_bytes=size_bytes,
            spec=spec,
            conditions=conditions,
            tail=tail,
        ),
        payload_bytes=0 if tail is None else len(tail.data),
        name="commit_version",
    )


def delete_object(bucket: str, key: str, version_id: str | None = None) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_delete_object(txn, bucket, key, version_id),
        name="delete_object",
    )


def replace_tags(bucket: str, key: str, version_id: str, tags: Mapping[str, str]) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_replace_tags(txn, bucket, key, version_id, tags),
        name="replace_tags",
    )
