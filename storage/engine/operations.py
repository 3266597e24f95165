"""Constructors of the writer's operations: one per kind of engine write.

Each returns a ``WriteOperation`` whose ``apply`` calls the matching ``Engine.apply_*``
method inside the writer's child transaction. Payload buffers are passed by reference:
the caller must not mutate them until the operation's future resolves. Each says what
it may change (``WriteOperation.changes``), for the writer's change counters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from storage.api import (
    CHANGES_CONFIGURATION,
    CHANGES_OBJECTS,
    CompletedPart,
    CustomerKey,
    DefaultRetention,
    EventOrigin,
    ObjectLockUpdate,
    PutSpec,
    WriteConditions,
)
from storage.engine import multipart
from storage.engine.store import StagedTail
from storage.engine.writer import WriteOperation


def create_bucket(name: str, owner_id: str, object_lock_enabled: bool = False) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_create_bucket(txn, name, owner_id, object_lock_enabled),
        name="create_bucket",
        changes=((name, CHANGES_CONFIGURATION), (name, CHANGES_OBJECTS))
    )


def delete_bucket(name: str) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_delete_bucket(txn, name), name="delete_bucket",
        changes=((name, CHANGES_CONFIGURATION), (name, CHANGES_OBJECTS))
    )


def set_bucket_versioning(name: str, versioning: str) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_set_bucket_versioning(txn, name, versioning),
        name="set_bucket_versioning",
        changes=((name, CHANGES_CONFIGURATION),),
    )


def put_object_lock_configuration(
    name: str, default_retention: DefaultRetention | None
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_put_object_lock_configuration(
            txn, name, default_retention),
        name="put_object_lock_configuration",
        changes=((name, CHANGES_CONFIGURATION),),
    )


def put_bucket_config(
    bucket: str, name: str, document: bytes | None, origin: EventOrigin | None = None
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_put_bucket_config(txn, bucket, name, document, origin),
        name="put_bucket_config",
        changes=((bucket, CHANGES_CONFIGURATION),),
    )


def stage_chunk(
    blob_id: bytes, chunk_index: int, data: bytes | bytearray | memoryview,
    customer_key: CustomerKey | None = None,
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_stage_chunk(txn, blob_id, chunk_index, data,
                                                     customer_key),
        payload_bytes=len(data),
        name="stage_chunk",
        changes=(),
    )


def abort_upload(blob_id: bytes) -> WriteOperation:
    return WriteOperation(lambda engine, txn: engine.apply_abort(txn, blob_id), name="abort",
        changes=())


def commit_version(
    bucket: str,
    key: str,
    *,
    blob_id: bytes | None,
    size_bytes: int,
    spec: PutSpec,
    conditions: WriteConditions | None = None,
    tail: StagedTail | None = None,
    event_name: str = "s3:ObjectCreated:Put",
    origin: EventOrigin | None = None,
    customer_key: CustomerKey | None = None,
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
            event_name=event_name,
            origin=origin,
            customer_key=customer_key,
        ),
        payload_bytes=0 if tail is None else len(tail.data),
        name="commit_version",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def delete_object(
    bucket: str,
    key: str,
    version_id: str | None = None,
    origin: EventOrigin | None = None,
    bypass_governance: bool = False,
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_delete_object(
            txn, bucket, key, version_id, origin, bypass_governance=bypass_governance),
        name="delete_object",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def create_multipart_upload(
    bucket: str, key: str, spec: PutSpec, checksum_algorithm: str, checksum_type: str,
    upload_random: bytes | None = None,
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: multipart.apply_create(
            engine, txn, bucket, key, spec, checksum_algorithm, checksum_type, upload_random
        ),
        name="create_multipart_upload",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def commit_part(
    bucket: str,
    key: str,
    upload_id: str,
    part_number: int,
    *,
    blob_id: bytes | None,
    size_bytes: int,
    etag: str,
    checksum: str,
    tail: StagedTail | None = None,
    customer_key: CustomerKey | None = None,
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: multipart.apply_commit_part(
            engine,
            txn,
            bucket,
            key,
            upload_id,
            part_number,
            blob_id=blob_id,
            size_bytes=size_bytes,
            etag=etag,
            checksum=checksum,
            tail_chunk_index=0 if tail is None else tail.chunk_index,
            tail=None if tail is None else tail.data,
            customer_key=customer_key,
        ),
        payload_bytes=0 if tail is None else len(tail.data),
        name="commit_part",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def complete_multipart_upload(
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[CompletedPart],
    *,
    etag: str,
    checksums: Mapping[str, str],
    conditions: WriteConditions | None = None,
    origin: EventOrigin | None = None,
    destination: tuple[str, str] | None = None,
    extra_user_metadata: Mapping[str, str] | None = None,
    retag: Callable[[Mapping[str, str]], dict[str, str]] | None = None,
    customer_key: CustomerKey | None = None,
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: multipart.apply_complete(
            engine,
            txn,
            bucket,
            key,
            upload_id,
            parts,
            etag=etag,
            checksums=dict(checksums),
            conditions=conditions,
            origin=origin,
            destination=destination,
            extra_user_metadata=extra_user_metadata,
            retag=retag,
            customer_key=customer_key,
        ),
        name="complete_multipart_upload",
        changes=((bucket, CHANGES_OBJECTS), ((destination or (bucket,))[0], CHANGES_OBJECTS)),
    )


def abort_multipart_upload(bucket: str, key: str, upload_id: str) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: multipart.apply_abort(engine, txn, bucket, key, upload_id),
        name="abort_multipart_upload",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def replace_tags(
    bucket: str,
    key: str,
    version_id: str,
    tags: Mapping[str, str],
    event_name: str = "s3:ObjectTagging:Put",
    origin: EventOrigin | None = None,
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_replace_tags(
            txn, bucket, key, version_id, tags, event_name, origin
        ),
        name="replace_tags",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def replace_acl(
    bucket: str, key: str, version_id: str, acl: bytes | None,
    origin: EventOrigin | None = None,
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_replace_acl(txn, bucket, key, version_id, acl,
                                                     origin),
        name="replace_acl",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def update_object_lock(
    bucket: str, key: str, version_id: str, update: ObjectLockUpdate
) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_update_object_lock(txn, bucket, key, version_id, update),
        name="update_object_lock",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def collect_staging(staged_before_ms: int) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.apply_collect_staging(txn, staged_before_ms),
        name="collect_staging", changes=())


def outbox_ack(sequences: Sequence[int]) -> WriteOperation:
    return WriteOperation(
        lambda engine, txn: engine.outbox.apply_ack(txn, tuple(sequences)), name="outbox_ack",
        changes=()
    )
