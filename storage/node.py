"""A storage node: one engine, its group-commit writer, and the asyncio bridge.

Rules and theory of operation:

* Writes go to the writer thread; the node awaits them with ``asyncio.wrap_future``, so
  the event loop never blocks on a write or an fsync.
* Metadata reads (get a version, list, get a bucket) run directly on the event loop
  thread: each is a few LMDB seeks in the memory map, microseconds, cheaper than a hop
  to a thread. (A cold page fault can make one slower; that is accepted for now.)
* Body streams hold one read transaction each and yield memoryviews of the map. At most
  ``limits.read_streams_max`` are open at once; one more raises ``Overloaded`` when
  ``read_body`` is called, before anything is sent. A stream gives its slot back when it
  is exhausted or closed (``aclose``); one dropped unclosed gives it back when collected.
* The node is addressed through a transport with ``Request``s; ``handle`` maps each
  operation to one method. Payloads travel apart from control arguments.
* Pre-commit hook (``api.PreCommitHook``, given by the composition root): before a
  commit, the node asks it which functions the bucket binds to the write; if any, it
  opens zero-copy views of the staged body (``StagedBody``), awaits the verdict (bounded
  by ``limits.trigger_judge_timeout_ms``), closes the views, and applies the verdict:
  reject/discard abort the staged body and raise; a route commits under the new
  bucket/key; annotations join the user metadata of the SAME version record. An SSE-C
  write carries its customer key here (checked against the record it commits before
  any function reads): functions read its plaintext. A CompleteMultipartUpload of an
  SSE-C upload that functions judge must carry the key too (CustomerKeyRequired
  otherwise: the body cannot be read, and the upload is left as it was).
* Post-commit events: the write operations carry the event name and the request's
  ``EventOrigin``; the engine decides from the bucket's notification document which
  events the write makes and writes them to its outbox in the write's own transaction.
  ``outbox_read`` runs in a thread (it may decode a thousand records); ``outbox_ack``
  is a writer operation like any other write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import pathlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any

from storage.api import (
    BucketInfo,
    CompletedPart,
    CustomerKey,
    CustomerKeyRequired,
    DefaultRetention,
    DeleteResult,
    EventOrigin,
    InvalidArgument,
    ListPage,
    ListPartsPage,
    ListUploadsPage,
    ListVersionsPage,
    MultipartUploadInfo,
    ObjectLockUpdate,
    ObjectVersion,
    OutboxPage,
    OutboxStatus,
    Overloaded,
    PartInfo,
    PreCommitHook,
    PutSpec,
    Verdict,
    WriteConditions,
    WriteDiscarded,
    WriteEvent,
    WriteRejected,
    annotation_tags,
    check_customer_key,
    limits,
)
from storage.engine import (
    BodyReader,
    Engine,
    GroupCommitWriter,
    StagedTail,
    multipart,
    operations,
)
from storage.engine.backup import Snapshot
from storage.engine.cipher import ChunkCipher
from storage.engine.staged import StagedBody
from storage.engine.writer import WriteOperation
from storage.lifecycle import LifecycleSweeper, SweeperSettings
from storage.transport.base import Operation, Request


class _StreamSlots:
    """A counter of open body streams, safe to release from any thread (GC finalizers)."""

    def __init__(self, slots_max: int) -> None:
        self._slots_max = slots_max
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open_count(self) -> int:
        return self._open

    def acquire(self) -> None:
        with self._lock:
            if self._open >= self._slots_max:
                raise Overloaded(f"{self._slots_max} body streams already open")
            self._open += 1

    def release(self) -> None:
        with self._lock:
            assert self._open > 0
            self._open -= 1


def _close_reader(reader: BodyReader, slots: _StreamSlots) -> None:
    if not reader.closed:
        reader.close()
        slots.release()


class BodyStream:
    """An async iterator over a ``BodyReader``; views valid until the stream closes."""

    def __init__(self, reader: BodyReader, slots: _StreamSlots) -> None:
        self._reader = reader
        self._chunks = iter(reader)
        self._finalizer = weakref.finalize(self, _close_reader, reader, slots)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes | memoryview:
        if self._reader.closed:
            raise StopAsyncIteration
        try:
            return next(self._chunks)
        except StopIteration:
            await self.aclose()
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._finalizer()


def _stored_or_raise(verdict: Verdict) -> Verdict:
    """The verdict of a write that goes on; WriteRejected / WriteDiscarded otherwise."""
    if verdict.action == "reject":
        raise WriteRejected(verdict.reason, verdict)
    if verdict.action == "discard":
        raise WriteDiscarded(verdict)
    return verdict


class StorageNode:
    def __init__(
        self, node_id: str, engine: Engine, pre_commit_hook: PreCommitHook | None = None
    ) -> None:
        self.node_id = node_id
        self.engine = engine
        # Woken (and replaced) after each commit that added outbox events: lets a
        # notification dispatcher wait for new events instead of polling for them.
        self._outbox_grew = asyncio.Event()
        self._outbox_sequence_seen = engine.outbox.next_sequence
        self.pre_commit_hook = pre_commit_hook
        self.writer = GroupCommitWriter(engine)
        self._stream_slots = _StreamSlots(limits.read_streams_max)
        self._snapshots = 0  # backups streaming now (snapshot)
        self._streams: weakref.WeakSet[BodyStream] = weakref.WeakSet()
        self._closed = False
        self.lifecycle: LifecycleSweeper | None = None
        self._handlers: dict[Operation, Callable[..., Coroutine[Any, Any, Any]]] = {
            Operation.CREATE_BUCKET: self.create_bucket,
            Operation.DELETE_BUCKET: self.delete_bucket,
            Operation.GET_BUCKET: self.get_bucket,
            Operation.LIST_BUCKETS: self.list_buckets,
            Operation.SET_BUCKET_VERSIONING: self.set_bucket_versioning,
            Operation.PUT_OBJECT_LOCK_CONFIGURATION: self.put_object_lock_configuration,
            Operation.PUT_BUCKET_CONFIG: self.put_bucket_config,
            Operation.GET_BUCKET_CONFIG: self.get_bucket_config,
            Operation.NEW_BLOB_ID: self.new_blob_id,
            Operation.STAGE_CHUNK: self.stage_chunk,
            Operation.ABORT_UPLOAD: self.abort_upload,
            Operation.COMMIT_VERSION: self.commit_version,
            Operation.GET_VERSION: self.get_version,
            Operation.DELETE_OBJECT: self.delete_object,
            Operation.REPLACE_TAGS: self.replace_tags,
            Operation.REPLACE_ACL: self.replace_acl,
            Operation.UPDATE_OBJECT_LOCK: self.update_object_lock,
            Operation.LIST_OBJECTS: self.list_objects,
            Operation.LIST_OBJECT_VERSIONS: self.list_object_versions,
            Operation.CREATE_MULTIPART_UPLOAD: self.create_multipart_upload,
            Operation.COMMIT_PART: self.commit_part,
            Operation.COMPLETE_MULTIPART_UPLOAD: self.complete_multipart_upload,
            Operation.ABORT_MULTIPART_UPLOAD: self.abort_multipart_upload,
            Operation.LIST_PARTS: self.list_parts,
            Operation.LIST_MULTIPART_UPLOADS: self.list_multipart_uploads,
            Operation.OUTBOX_STATUS: self.outbox_status,
            Operation.OUTBOX_READ: self.outbox_read,
            Operation.OUTBOX_ACK: self.outbox_ack,
            Operation.OUTBOX_WAIT: self.outbox_wait,
        }

    @classmethod
    def open(
        cls,
        node_id: str,
        data_dir: pathlib.Path,
        *,
        durable: bool = True,
        pre_commit_hook: PreCommitHook | None = None,
        outbox_entries_max: int = limits.outbox_entries_max,
        cipher: ChunkCipher | None = None,
    ) -> StorageNode:
        engine = Engine(data_dir, durable=durable, outbox_entries_max=outbox_entries_max,
                        cipher=cipher)
        return cls(node_id, engine, pre_commit_hook)

    def change_count(self, bucket: str, scope: str) -> int:
        """The writer's change counter of (bucket, scope): see ``api.StorageClient
        .change_count`` and ``storage.engine.writer.ChangeCounters``."""
        return self.writer.changes.count(bucket, scope)

    @property
    def change_counter(self) -> Callable[[str, str], int]:
        """``change_count`` itself, for a caller that asks on every request (the
        writer's counters live as long as the node)."""
        return self.writer.changes.count

    @property
    def open_stream_count(self) -> int:
        return self._stream_slots.open_count

    # --- transport entry points --------------------------------------------------------

    async def handle(self, request: Request) -> Any:
        handler = self._handlers.get(request.operation)
        if handler is None:
            raise InvalidArgument(f"not a unary operation: {request.operation}")
        if request.payload is None:
            return await handler(**request.arguments)
        return await handler(**request.arguments, payload=request.payload)

    def open_stream(self, request: Request) -> AsyncIterator[bytes | memoryview]:
        if request.operation is Operation.SNAPSHOT:
            return self.snapshot()
        if request.operation is not Operation.READ_BODY:
            raise InvalidArgument(f"not a stream operation: {request.operation}")
        return self.read_body(**request.arguments)

    async def snapshot(self) -> AsyncIterator[bytes]:
        """A consistent, compacted copy of this node's store (``backup.Snapshot``: one
        read transaction; writers go on), streamed; at most
        ``limits.snapshots_concurrent_max`` at once: the first step of one more raises
        Overloaded."""
        if self._snapshots >= limits.snapshots_concurrent_max:
            raise Overloaded(f"{limits.snapshots_concurrent_max} backup(s) already running")
        self._snapshots += 1
        try:
            async for chunk in self.snapshot_chunks():
                yield chunk
        finally:
            self._snapshots -= 1

    async def snapshot_chunks(self) -> AsyncIterator[bytes]:
        """The store's copy from one read transaction, read in a thread, unbounded by
        ``snapshots_concurrent_max`` (``snapshot`` bounds backups; a cluster's replica
        catch-up streams this directly)."""
        snapshot = Snapshot(self.engine.env)
        try:
            while chunk := await asyncio.to_thread(snapshot.read):
                yield chunk
        finally:
            await asyncio.to_thread(snapshot.close)

    # --- writes ------------------------------------------------------------------------

    async def _write(self, operation: WriteOperation) -> Any:
        try:
            return await asyncio.wrap_future(self.writer.submit(operation))
        finally:
            self._wake_outbox_waiters()

    def _wake_outbox_waiters(self) -> None:
        """After a commit: wake ``outbox_wait`` callers if the outbox grew."""
        sequence = self.engine.outbox.next_sequence
        if sequence != self._outbox_sequence_seen:
            self._outbox_sequence_seen = sequence
            self._outbox_grew.set()
            self._outbox_grew = asyncio.Event()

    async def create_bucket(
        self, name: str, owner_id: str, object_lock_enabled: bool = False
    ) -> BucketInfo:
        return await self._write(operations.create_bucket(name, owner_id, object_lock_enabled))

    async def delete_bucket(self, name: str) -> None:
        await self._write(operations.delete_bucket(name))

    async def set_bucket_versioning(self, name: str, versioning: str) -> BucketInfo:
        return await self._write(operations.set_bucket_versioning(name, versioning))

    async def put_object_lock_configuration(
        self, name: str, default_retention: DefaultRetention | None
    ) -> BucketInfo:
        return await self._write(operations.put_object_lock_configuration(name, default_retention))

    async def put_bucket_config(
        self, bucket: str, name: str, document: bytes | None, origin: EventOrigin | None = None
    ) -> None:
        await self._write(operations.put_bucket_config(bucket, name, document, origin))

    async def new_blob_id(self) -> bytes:
        return self.engine.new_blob_id()

    async def stage_chunk(
        self, blob_id: bytes, chunk_index: int, payload: bytes | bytearray | memoryview,
        customer_key: CustomerKey | None = None,
    ) -> None:
        await self._write(operations.stage_chunk(blob_id, chunk_index, payload, customer_key))

    async def abort_upload(self, blob_id: bytes) -> None:
        await self._write(operations.abort_upload(blob_id))

    async def commit_version(
        self,
        bucket: str,
        key: str,
        blob_id: bytes | None,
        size_bytes: int,
        spec: PutSpec,
        conditions: WriteConditions | None = None,
        tail_chunk_index: int = 0,
        payload: bytes | bytearray | memoryview | None = None,
        event_name: str = "s3:ObjectCreated:Put",
        origin: EventOrigin | None = None,
        customer_key: CustomerKey | None = None,
    ) -> ObjectVersion:
        # Before any function reads the body through this key (the commit checks again).
        check_customer_key(spec.customer_key, customer_key)
        verdict = None
        if self.pre_commit_hook is not None:
            functions = await self.pre_commit_hook.bindings(bucket, key, event_name)
            if functions:
                event = WriteEvent(bucket, key, event_name, size_bytes, spec.content_type,
                                   spec.user_metadata, ())
                staged = [(blob_id, tail_chunk_index)] if blob_id is not None else []
                try:
                    verdict = _stored_or_raise(await self._judge(event, functions, staged,
                                                                 payload, customer_key))
                except (WriteRejected, WriteDiscarded):
                    # Nothing is stored, whether the verdict said so or the hook raised
                    # it: the staged body is freed here (the client counts on it).
                    if blob_id is not None:
                        await self.abort_upload(blob_id)
                    raise
                bucket, key = verdict.bucket or bucket, verdict.key or key
                if verdict.store_annotations and verdict.annotations:
                    metadata = {**spec.user_metadata, **verdict.annotations}
                    spec = dataclasses.replace(spec, user_metadata=metadata)
                if verdict.tag_annotations and verdict.annotations:
                    tags = annotation_tags(spec.tags, verdict.annotations, verdict.function)
                    spec = dataclasses.replace(spec, tags=tags)
        tail = None if not payload else StagedTail(tail_chunk_index, payload)
        operation = operations.commit_version(
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
        )
        version: ObjectVersion = await self._write(operation)
        return version if verdict is None else dataclasses.replace(version, verdict=verdict)

    async def _judge(
        self,
        event: WriteEvent,
        functions: Sequence[str],
        blobs: Sequence[tuple[bytes, int]],
        tail: bytes | bytearray | memoryview | None,
        customer_key: CustomerKey | None = None,
    ) -> Verdict:
        assert self.pre_commit_hook is not None
        with StagedBody(self.engine, blobs, tail, customer_key) as staged:
            event = dataclasses.replace(event, body=staged.views)
            try:  # a timeout scope, not wait_for: no extra task per judgement
                async with asyncio.timeout(limits.trigger_judge_timeout_ms / 1000):
                    return await self.pre_commit_hook.judge(event, tuple(functions))
            except TimeoutError:
                raise Overloaded(
                    f"functions {', '.join(functions)} took more than "
                    f"{limits.trigger_judge_timeout_ms} ms"
                ) from None

    async def delete_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        origin: EventOrigin | None = None,
        bypass_governance: bool = False,
    ) -> DeleteResult:
        return await self._write(
            operations.delete_object(bucket, key, version_id, origin, bypass_governance))

    # --- multipart uploads ------------------------------------------------------------

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        spec: PutSpec,
        checksum_algorithm: str = "",
        checksum_type: str = "",
    ) -> MultipartUploadInfo:
        return await self._write(
            operations.create_multipart_upload(bucket, key, spec, checksum_algorithm, checksum_type)
        )

    async def commit_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        blob_id: bytes | None,
        size_bytes: int,
        etag: str,
        checksum: str = "",
        tail_chunk_index: int = 0,
        payload: bytes | bytearray | memoryview | None = None,
        customer_key: CustomerKey | None = None,
    ) -> PartInfo:
        tail = None if not payload else StagedTail(tail_chunk_index, payload)
        operation = operations.commit_part(
            bucket,
            key,
            upload_id,
            part_number,
            blob_id=blob_id,
            size_bytes=size_bytes,
            etag=etag,
            checksum=checksum,
            tail=tail,
            customer_key=customer_key,
        )
        return await self._write(operation)

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        etag: str,
        checksums: Mapping[str, str] | None = None,
        conditions: WriteConditions | None = None,
        origin: EventOrigin | None = None,
        customer_key: CustomerKey | None = None,
    ) -> ObjectVersion:
        event_name = "s3:ObjectCreated:CompleteMultipartUpload"
        verdict = None
        destination = None
        annotations: Mapping[str, str] = {}
        retag: Callable[[Mapping[str, str]], dict[str, str]] | None = None
        if self.pre_commit_hook is not None:
            functions = await self.pre_commit_hook.bindings(bucket, key, event_name)
            if functions:
                # Judged like a PUT, on views of the named parts' stored chunks.
                upload, segments = multipart.judged_parts(self.engine, bucket, key, upload_id,
                                                          parts)
                if upload.customer_key is not None and customer_key is None:
                    raise CustomerKeyRequired(
                        f"functions {', '.join(functions)} judge {bucket}/{key} before it "
                        "is completed, and its parts are encrypted with a customer-provided "
                        "key (SSE-C): CompleteMultipartUpload must carry that key (the "
                        "x-amz-server-side-encryption-customer-* headers) for them to read it")
                check_customer_key(upload.customer_key, customer_key)
                event = WriteEvent(bucket, key, event_name, sum(s for _, s in segments),
                                   upload.content_type, upload.user_metadata, ())
                chunk = limits.chunk_size_bytes
                blobs = [(blob, -(-size // chunk)) for blob, size in segments if blob]
                try:
                    verdict = _stored_or_raise(await self._judge(event, functions, blobs, None,
                                                                 customer_key))
                except (WriteRejected, WriteDiscarded):
                    # Nothing is stored: the upload and its parts are freed, as a
                    # rejected PUT frees its staged body.
                    await self.abort_multipart_upload(bucket, key, upload_id)
                    raise
                if verdict.bucket or verdict.key:
                    destination = (verdict.bucket or bucket, verdict.key or key)
                if verdict.store_annotations:
                    annotations = verdict.annotations
                if verdict.tag_annotations and verdict.annotations:
                    retag = functools.partial(annotation_tags, annotations=verdict.annotations,
                                              function=verdict.function)
        operation = operations.complete_multipart_upload(
            bucket,
            key,
            upload_id,
            parts,
            etag=etag,
            checksums=checksums or {},
            conditions=conditions,
            origin=origin,
            destination=destination,
            extra_user_metadata=annotations,
            retag=retag,
            customer_key=customer_key,
        )
        version: ObjectVersion = await self._write(operation)
        return version if verdict is None else dataclasses.replace(version, verdict=verdict)

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self._write(operations.abort_multipart_upload(bucket, key, upload_id))

    async def list_parts(self, bucket: str, key: str, upload_id: str, **query: Any) -> ListPartsPage:
        return multipart.list_parts(self.engine, bucket, key, upload_id, **query)

    async def list_multipart_uploads(self, bucket: str, **query: Any) -> ListUploadsPage:
        return multipart.list_uploads(self.engine, bucket, **query)

    async def replace_tags(
        self,
        bucket: str,
        key: str,
        version_id: str,
        tags: Mapping[str, str],
        event_name: str = "s3:ObjectTagging:Put",
        origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        operation = operations.replace_tags(bucket, key, version_id, dict(tags), event_name,
                                            origin)
        return await self._write(operation)

    async def replace_acl(
        self, bucket: str, key: str, version_id: str, acl: bytes | None,
        origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        return await self._write(operations.replace_acl(bucket, key, version_id, acl, origin))
    async def update_object_lock(
        self, bucket: str, key: str, version_id: str, update: ObjectLockUpdate
    ) -> ObjectVersion:
        return await self._write(operations.update_object_lock(bucket, key, version_id, update))

    # --- reads (on the event loop thread: microseconds each) ---------------------------

    async def get_bucket(self, name: str) -> BucketInfo:
        return self.engine.get_bucket(name)

    async def list_buckets(self, owner_id: str) -> list[BucketInfo]:
        return self.engine.list_buckets(owner_id)

    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        return self.engine.get_bucket_config(bucket, name)

    async def get_version(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        as_of_ms: int | None = None,
        inline_body_bytes_max: int = 0,
    ) -> ObjectVersion:
        return self.engine.get_version(bucket, key, version_id, as_of_ms, inline_body_bytes_max)

    async def list_objects(self, bucket: str, **query: Any) -> ListPage:
        return self.engine.list_objects(bucket, **query)

    async def list_object_versions(self, bucket: str, **query: Any) -> ListVersionsPage:
        return self.engine.list_object_versions(bucket, **query)

    def read_body(
        self, version: ObjectVersion, start: int = 0, end_exclusive: int | None = None,
        customer_key: CustomerKey | None = None,
    ) -> BodyStream:
        self._stream_slots.acquire()
        try:
            reader = self.engine.open_body(version, start, end_exclusive, customer_key)
        except BaseException:
            self._stream_slots.release()
            raise
        stream = BodyStream(reader, self._stream_slots)
        self._streams.add(stream)
        return stream

    # --- post-commit notifications: the outbox -----------------------------------------

    async def outbox_status(self) -> OutboxStatus:
        """This node's outbox (``shard`` is 0: the client, which knows the shard, sets it)."""
        outbox = self.engine.outbox
        return OutboxStatus(0, outbox.depth(), outbox.entries_max, outbox.next_sequence,
                            outbox.oldest_event_time_ms())

    async def outbox_read(
        self, after_sequence: int, limit: int, target_arns: Sequence[str] | None = None
    ) -> OutboxPage:
        return await asyncio.to_thread(
            self.engine.outbox.read, after_sequence, limit, target_arns
        )

    async def outbox_wait(self, after_sequence: int, timeout_ms: int) -> bool:
        """Return once the outbox may hold an event after ``after_sequence`` (True), or
        after ``timeout_ms`` (False; clamped to ``limits.outbox_wait_ms_max``)."""
        last = self.engine.outbox.last_sequence()
        if last is not None and last > after_sequence:
            return True
        grew = self._outbox_grew
        try:
            await asyncio.wait_for(grew.wait(), min(timeout_ms, limits.outbox_wait_ms_max) / 1000)
        except TimeoutError:
            return False
        return True

    async def outbox_ack(self, sequences: Sequence[int]) -> int:
        acked: int = await self._write(operations.outbox_ack(sequences))
        return acked

    # --- lifecycle ---------------------------------------------------------------------

    def start_lifecycle(self, settings: SweeperSettings) -> LifecycleSweeper:
        """Start the object lifecycle sweeper (see ``storage.lifecycle``); from a coroutine.

        The embedded store's: a cluster node runs its own per shard, sweeping only on the
        shard's leader and through the shard's log (``storage.cluster_node``)."""
        assert self.lifecycle is None and not self._closed
        self.lifecycle = LifecycleSweeper(self.engine, self._write, settings)
        self.lifecycle.start()
        return self.lifecycle

    async def close(self) -> None:
        """Stop the lifecycle sweeper, drain and stop the writer (in a thread: it may wait
        on an fsync), close any body stream still open (its views become invalid), then
        the environment."""
        if self._closed:
            return
        self._closed = True
        if self.lifecycle is not None:
            await self.lifecycle.close()
        if self.pre_commit_hook is not None:
            await self.pre_commit_hook.close()
        await asyncio.to_thread(self.writer.close)
        for stream in list(self._streams):
            await stream.aclose()
        assert self._stream_slots.open_count == 0
        self.engine.close()
