"""What the gateway calls: ``api.StorageClient`` over a ``View`` and a ``Transport``.

Rules and theory of operation:

* Object operations go to the leader of the shard that ``placement`` gives
  ``bucket/key``. Bucket writes go to every shard's leader (each shard checks bucket
  existence at its own commit point); bucket reads go to shard 0. With more than one
  shard, bucket create/delete are not atomic across shards: membership/replication
  work will give them one home. The embedded store has one shard, so this is moot there.
* Listings are asked of every shard and merged (each shard returns its first
  ``max_keys`` items after the marker; the merged first ``max_keys`` are then exact).
* An upload buffers at most one chunk, stages each full chunk as soon as it is full
  (at most ``limits.upload_chunks_in_flight_max`` staged chunks in flight per upload),
  and sends the tail inside the commit: a small PUT is ONE writer operation. A part of
  a multipart upload is staged the same way (``ClientPartUpload``); multipart
  operations route by ``bucket/key`` like object operations, so an upload's parts and
  its completed object live on one shard.
* SSE-C: an upload (or part, or body read) opened with a customer key sends it with
  every staging request, its commit and the read, as a control argument: the node
  encrypts or decrypts with it and keeps only its record. The key lives as long as the
  request that gave it (the in-process transport passes it by reference; a network
  transport must only ever carry it over an encrypted link).
* Bucket configuration documents are cached against the bucket's configuration change
  counter (``get_bucket_config``), read before the document: a write that changes it
  bumps the counter before it is acknowledged, so the next read after the
  acknowledgement misses and reads again (the rule of
  ``storage.engine.writer.ChangeCounters``). Creating or deleting a bucket bumps it too,
  so a deleted bucket is NoSuchBucket again. Without local counters (a remote leader)
  nothing is cached. Bounded by ``limits.bucket_configs_cached_bytes_max``: past it the
  whole cache is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import pathlib
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, Self, TypeVar

from storage.api import (
    CHANGES_CONFIGURATION,
    BucketInfo,
    BucketNotEmpty,
    CompletedPart,
    CustomerKey,
    DefaultRetention,
    DeleteResult,
    EventOrigin,
    InvalidArgument,
    ListedVersion,
    ListPage,
    ListPartsPage,
    ListUploadsPage,
    ListVersionsPage,
    MultipartUploadInfo,
    ObjectLockUpdate,
    ObjectVersion,
    OutboxPage,
    OutboxStatus,
    PartInfo,
    PreCommitHook,
    PutSpec,
    StorageError,
    WriteConditions,
    WriteDiscarded,
    WriteRejected,
    limits,
)
from storage.engine.cipher import ChunkCipher
from storage.lifecycle import SweeperSettings
from storage.node import StorageNode
from storage.placement import View, single_node_view
from storage.transport.base import BodyPiece, Operation, Payload, Request, Transport
from storage.transport.local import LocalTransport

_Keyed = TypeVar("_Keyed", ListedVersion, MultipartUploadInfo)

__all__ = ["ShardedStorageClient", "ClientUpload", "ClientPartUpload", "open_embedded"]

_log = logging.getLogger(__name__)
EMBEDDED_NODE_ID = "node-0"
DEFAULT_SWEEPER_SETTINGS = SweeperSettings()


class ShardedStorageClient:
    def __init__(
        self, view: View, transport: Transport, owned_nodes: tuple[StorageNode, ...] = ()
    ) -> None:
        self._view = view
        self._transport = transport
        self._owned_nodes = owned_nodes
        self._local_nodes = {node.node_id: node for node in owned_nodes}
        # (view, its shards' leader nodes when all are in this process): change_count is
        # asked on every request (the gateway's user directory), the view seldom changes.
        # With one shard, that leader's counter itself (no sum to make).
        self._counting_nodes_cache: tuple[
            View, tuple[StorageNode, ...] | None, Callable[[str, str], int] | None] | None = None
        # (bucket, document name) -> (the configuration change count read before the
        # document, the document or None); and the cached documents' bytes.
        self._configs: dict[tuple[str, str], tuple[int, bytes | None]] = {}
        self._configs_bytes = 0
        self._closed = False

    @property
    def view(self) -> View:
        return self._view

    # --- routing -----------------------------------------------------------------------

    def _object_leader(self, bucket: str, key: str) -> str:
        return self._view.leader(self._view.shard_for_object(bucket, key))

    def _leaders(self) -> list[str]:
        return [self._view.leader(shard) for shard in range(self._view.shard_count)]

    async def _call(self, node_id: str, operation: Operation, **arguments: Any) -> Any:
        return await self._transport.call(node_id, Request(operation, arguments))

    async def _call_all(self, operation: Operation, **arguments: Any) -> list[Any]:
        return [await self._call(leader, operation, **arguments) for leader in self._leaders()]

    # --- buckets -----------------------------------------------------------------------

    async def create_bucket(
        self, name: str, owner_id: str, object_lock_enabled: bool = False
    ) -> BucketInfo:
        results = await self._call_all(Operation.CREATE_BUCKET, name=name, owner_id=owner_id,
                                       object_lock_enabled=object_lock_enabled)
        return results[0]

    async def delete_bucket(self, name: str) -> None:
        if self._view.shard_count > 1:
            # Shard by shard is not atomic: a shard holding objects would refuse after the
            # others had dropped the bucket. So every shard is asked first (a write that
            # races this check can still split it: docs/architecture.md, "Cluster").
            page = await self.list_object_versions(name, max_keys=1)
            if page.versions:
                raise BucketNotEmpty(f"bucket {name} is not empty")
        await self._call_all(Operation.DELETE_BUCKET, name=name)

    async def get_bucket(self, name: str) -> BucketInfo:
        return await self._call(self._view.leader(0), Operation.GET_BUCKET, name=name)

    async def list_buckets(self, owner_id: str) -> list[BucketInfo]:
        return await self._call(self._view.leader(0), Operation.LIST_BUCKETS, owner_id=owner_id)

    async def set_bucket_versioning(self, name: str, versioning: str) -> BucketInfo:
        results = await self._call_all(
            Operation.SET_BUCKET_VERSIONING, name=name, versioning=versioning
        )
        return results[0]

    async def put_object_lock_configuration(
        self, name: str, default_retention: DefaultRetention | None
    ) -> BucketInfo:
        results = await self._call_all(Operation.PUT_OBJECT_LOCK_CONFIGURATION, name=name,
                                       default_retention=default_retention)
        return results[0]

    async def put_bucket_config(
        self, bucket: str, name: str, document: bytes | None, origin: EventOrigin | None = None
    ) -> None:
        # Every shard keeps the document; only shard 0 is given the origin, so a
        # notification configuration's test events are written once, not once per shard.
        for shard, leader in enumerate(self._leaders()):
            await self._call(leader, Operation.PUT_BUCKET_CONFIG, bucket=bucket, name=name,
                             document=document, origin=origin if shard == 0 else None)

    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        change_count = self.change_count(bucket, CHANGES_CONFIGURATION)
        cached = self._configs.get((bucket, name))
        if cached is not None and change_count is not None and cached[0] == change_count:
            return cached[1]
        document: bytes | None = await self._call(
            self._view.leader(0), Operation.GET_BUCKET_CONFIG, bucket=bucket, name=name
        )
        if change_count is not None:
            size = len(document or b"")
            if self._configs_bytes + size > limits.bucket_configs_cached_bytes_max:
                self._configs.clear()
                self._configs_bytes = 0
            previous = self._configs.get((bucket, name))
            self._configs_bytes += size - len((previous[1] or b"") if previous else b"")
            self._configs[(bucket, name)] = (change_count, document)
        return document

    def change_count(self, bucket: str, scope: str) -> int | None:
        """The sum over every shard of the leaders' counters (objects of one bucket are
        spread over the shards; configurations are written to every shard), when every
        leader is a node of this process; None otherwise. Each term only grows, so the
        sum only grows, and a write that bumps one shard's term changes it."""
        cached = self._counting_nodes_cache
        if cached is not None and cached[0] is self._view and cached[2] is not None:
            return cached[2](bucket, scope)  # the embedded store: one call, every request
        nodes = self._counting_nodes()
        if nodes is None:
            return None
        return sum(node.change_count(bucket, scope) for node in nodes)

    def _counting_nodes(self) -> tuple[StorageNode, ...] | None:
        """Every shard's leader node when all are in this process, else None; worked out
        once per view."""
        cached = self._counting_nodes_cache
        if cached is not None and cached[0] is self._view:
            return cached[1]
        found = [self._local_nodes.get(leader) for leader in self._leaders()]
        nodes = tuple(node for node in found if node is not None)
        counting = nodes if len(nodes) == len(found) else None
        single = counting[0].change_counter if counting is not None and len(counting) == 1 \
            else None
        self._counting_nodes_cache = (self._view, counting, single)
        return counting

    # --- objects -----------------------------------------------------------------------

    def open_upload(self, bucket: str, key: str, customer_key: CustomerKey | None = None
                    ) -> ClientUpload:
        return ClientUpload(self._transport, self._object_leader(bucket, key), bucket, key,
                            customer_key)

    async def get_version(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        as_of_ms: int | None = None,
        inline_body_bytes_max: int = 0,
    ) -> ObjectVersion:
        return await self._call(
            self._object_leader(bucket, key),
            Operation.GET_VERSION,
            bucket=bucket,
            key=key,
            version_id=version_id,
            as_of_ms=as_of_ms,
            inline_body_bytes_max=inline_body_bytes_max,
        )

    def read_body(
        self, version: ObjectVersion, start: int = 0, end_exclusive: int | None = None,
        customer_key: CustomerKey | None = None,
    ) -> AsyncIterator[BodyPiece]:
        """Chunks as memoryviews of the node's memory map (local transport): each is
        valid until the iterator is exhausted or closed (``aclose``); copy to keep."""
        arguments: dict[str, Any] = {"version": version, "start": start,
                                     "end_exclusive": end_exclusive}
        if customer_key is not None:
            arguments["customer_key"] = customer_key
        request = Request(Operation.READ_BODY, arguments)
        node_id = self._object_leader(version.bucket, version.key)
        return self._transport.open_stream(node_id, request)

    @property
    def shard_count(self) -> int:
        return self._view.shard_count

    def snapshot(self, shard: int) -> AsyncIterator[BodyPiece]:
        """A consistent copy of shard ``shard``'s store, streamed by its leader (a
        backup: ``storage.engine.backup``)."""
        if not 0 <= shard < self._view.shard_count:
            raise InvalidArgument(f"shard {shard}: this store has {self._view.shard_count}")
        return self._transport.open_stream(self._view.leader(shard),
                                           Request(Operation.SNAPSHOT, {}))

    async def delete_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        origin: EventOrigin | None = None,
        bypass_governance: bool = False,
    ) -> DeleteResult:
        return await self._call(
            self._object_leader(bucket, key),
            Operation.DELETE_OBJECT,
            bucket=bucket,
            key=key,
            version_id=version_id,
            origin=origin,
            bypass_governance=bypass_governance,
        )

    async def update_object_lock(
        self, bucket: str, key: str, version_id: str, update: ObjectLockUpdate
    ) -> ObjectVersion:
        return await self._call(
            self._object_leader(bucket, key),
            Operation.UPDATE_OBJECT_LOCK,
            bucket=bucket,
            key=key,
            version_id=version_id,
            update=update,
        )

    async def replace_tags(
        self,
        bucket: str,
        key: str,
        version_id: str,
        tags: Mapping[str, str],
        *,
        event_name: str = "s3:ObjectTagging:Put",
        origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        return await self._call(
            self._object_leader(bucket, key),
            Operation.REPLACE_TAGS,
            bucket=bucket,
            key=key,
            version_id=version_id,
            tags=dict(tags),
            event_name=event_name,
            origin=origin,
        )

    async def replace_acl(
        self, bucket: str, key: str, version_id: str, acl: bytes | None,
        origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        return await self._call(
            self._object_leader(bucket, key),
            Operation.REPLACE_ACL,
            bucket=bucket,
            key=key,
            version_id=version_id,
            acl=acl,
            origin=origin,
        )

    async def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = 1000,
        as_of_ms: int | None = None,
    ) -> ListPage:
        pages: list[ListPage] = await self._call_all(
            Operation.LIST_OBJECTS,
            bucket=bucket,
            prefix=prefix,
            delimiter=delimiter,
            start_after=start_after,
            max_keys=max_keys,
            as_of_ms=as_of_ms,
        )
        return pages[0] if len(pages) == 1 else _merge_pages(pages, max_keys)

    async def list_object_versions(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = 1000,
    ) -> ListVersionsPage:
        pages: list[ListVersionsPage] = await self._call_all(
            Operation.LIST_OBJECT_VERSIONS,
            bucket=bucket,
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            version_id_marker=version_id_marker,
            max_keys=max_keys,
        )
        return pages[0] if len(pages) == 1 else _merge_version_pages(pages, max_keys)

    # --- multipart uploads -------------------------------------------------------------

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        spec: PutSpec,
        checksum_algorithm: str = "",
        checksum_type: str = "",
    ) -> MultipartUploadInfo:
        return await self._call(
            self._object_leader(bucket, key),
            Operation.CREATE_MULTIPART_UPLOAD,
            bucket=bucket,
            key=key,
            spec=spec,
            checksum_algorithm=checksum_algorithm,
            checksum_type=checksum_type,
        )

    def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int,
        customer_key: CustomerKey | None = None,
    ) -> ClientPartUpload:
        node_id = self._object_leader(bucket, key)
        return ClientPartUpload(self._transport, node_id, bucket, key, upload_id, part_number,
                                customer_key)

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
        return await self._call(
            self._object_leader(bucket, key),
            Operation.COMPLETE_MULTIPART_UPLOAD,
            bucket=bucket,
            key=key,
            upload_id=upload_id,
            parts=tuple(parts),
            etag=etag,
            checksums=dict(checksums or {}),
            conditions=conditions,
            origin=origin,
            customer_key=customer_key,
        )

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self._call(
            self._object_leader(bucket, key),
            Operation.ABORT_MULTIPART_UPLOAD,
            bucket=bucket,
            key=key,
            upload_id=upload_id,
        )

    async def list_parts(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number_marker: int = 0,
        max_parts: int = 1000,
    ) -> ListPartsPage:
        return await self._call(
            self._object_leader(bucket, key),
            Operation.LIST_PARTS,
            bucket=bucket,
            key=key,
            upload_id=upload_id,
            part_number_marker=part_number_marker,
            max_parts=max_parts,
        )

    async def list_multipart_uploads(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> ListUploadsPage:
        pages: list[ListUploadsPage] = await self._call_all(
            Operation.LIST_MULTIPART_UPLOADS,
            bucket=bucket,
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            upload_id_marker=upload_id_marker,
            max_uploads=max_uploads,
        )
        return pages[0] if len(pages) == 1 else _merge_upload_pages(pages, max_uploads)

    # --- post-commit notifications: one outbox per shard, on its leader ----------------

    async def outbox_status(self) -> list[OutboxStatus]:
        statuses = []
        for shard in range(self._view.shard_count):
            status = await self._call(self._view.leader(shard), Operation.OUTBOX_STATUS)
            statuses.append(dataclasses.replace(status, shard=shard))
        return statuses

    async def outbox_wait(self, shard: int, after_sequence: int, timeout_ms: int) -> bool:
        result: bool = await self._call(
            self._view.leader(shard), Operation.OUTBOX_WAIT,
            after_sequence=after_sequence, timeout_ms=timeout_ms,
        )
        return result

    async def outbox_read(
        self,
        shard: int,
        after_sequence: int,
        limit: int,
        target_arns: Collection[str] | None = None,
    ) -> OutboxPage:
        return await self._call(
            self._view.leader(shard),
            Operation.OUTBOX_READ,
            after_sequence=after_sequence,
            limit=limit,
            target_arns=None if target_arns is None else tuple(target_arns),
        )

    async def outbox_ack(self, shard: int, sequences: Sequence[int]) -> None:
        await self._call(self._view.leader(shard), Operation.OUTBOX_ACK,
                         sequences=tuple(sequences))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._transport.close()
        for node in self._owned_nodes:
            await node.close()


def _merge_pages(pages: list[ListPage], max_keys: int) -> ListPage:
    items: dict[bytes, ListedVersion | str] = {}
    for page in pages:
        items.update((o.key.encode("utf-8"), o) for o in page.objects)
        items.update((p.encode("utf-8"), p) for p in page.common_prefixes)
    max_keys = min(max(max_keys, 0), limits.list_keys_max)
    ordered = [items[name] for name in sorted(items)]
    kept = ordered[:max_keys]
    truncated = len(ordered) > max_keys or any(page.is_truncated for page in pages)
    last = None if not kept else kept[-1] if isinstance(kept[-1], str) else kept[-1].key
    return ListPage(
        objects=tuple(item for item in kept if isinstance(item, ListedVersion)),
        common_prefixes=tuple(item for item in kept if isinstance(item, str)),
        is_truncated=truncated,
        next_marker=last if truncated else None,
    )


def _merge_keyed(
    pages: Sequence[tuple[Sequence[_Keyed], Sequence[str], bool]], limit: int, limit_max: int
) -> tuple[list[_Keyed | str], bool]:
    """Merge per-shard pages of per-key entries (versions, uploads) and common prefixes.

    All entries of one key live on one shard, so (key, position in its shard's page) is
    the global order; a common prefix sorts before the keys it covers and appears once.
    Returns the first ``limit`` items and whether more remain.
    """
    items: list[tuple[bytes, int, _Keyed | str]] = []
    for entries, common_prefixes, _ in pages:
        items.extend((e.key.encode("utf-8"), i, e) for i, e in enumerate(entries))
        items.extend((p.encode("utf-8"), -1, p) for p in common_prefixes)
    unique = {(name, order): item for name, order, item in items}
    ordered = [unique[position] for position in sorted(unique)]
    limit = min(max(limit, 0), limit_max)
    kept = ordered[:limit]
    truncated = len(ordered) > limit or any(page_truncated for _, _, page_truncated in pages)
    return kept, truncated


def _merge_version_pages(pages: list[ListVersionsPage], max_keys: int) -> ListVersionsPage:
    kept, truncated = _merge_keyed(
        [(p.versions, p.common_prefixes, p.is_truncated) for p in pages],
        max_keys, limits.list_keys_max,
    )
    versions = tuple(item for item in kept if isinstance(item, ListedVersion))
    prefixes = tuple(item for item in kept if isinstance(item, str))
    if not truncated or not kept:
        return ListVersionsPage(versions, prefixes, truncated, None, None)
    last = kept[-1]
    if isinstance(last, str):
        return ListVersionsPage(versions, prefixes, True, last, None)
    assert isinstance(last, ListedVersion)
    return ListVersionsPage(versions, prefixes, True, last.key, last.s3_version_id)


def _merge_upload_pages(pages: list[ListUploadsPage], max_uploads: int) -> ListUploadsPage:
    kept, truncated = _merge_keyed(
        [(p.uploads, p.common_prefixes, p.is_truncated) for p in pages],
        max_uploads, limits.list_uploads_max,
    )
    uploads = tuple(item for item in kept if isinstance(item, MultipartUploadInfo))
    prefixes = tuple(item for item in kept if isinstance(item, str))
    if not truncated or not kept:
        return ListUploadsPage(uploads, prefixes, truncated, None, None)
    last = kept[-1]
    if isinstance(last, str):
        return ListUploadsPage(uploads, prefixes, True, last, None)
    assert isinstance(last, MultipartUploadInfo)
    return ListUploadsPage(uploads, prefixes, True, last.key, last.upload_id)


class UploadClosed(StorageError):
    """write/commit after the upload was committed or aborted."""


class _StagedBody:
    """A body staged chunk by chunk as it is written; subclasses say what commit makes
    of it. Stages full chunks as they fill; commit sends the tail."""

    def __init__(self, transport: Transport, node_id: str, bucket: str, key: str,
                 customer_key: CustomerKey | None = None) -> None:
        self._transport = transport
        self._node_id = node_id
        self.bucket = bucket
        self.key = key
        # SSE-C: sent with every chunk and the commit (the node encrypts with it).
        self._customer_key = customer_key
        self._buffer = bytearray()
        self._blob_id: bytes | None = None
        self._chunks_staged = 0
        self._size_bytes = 0
        self._in_flight: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._finished = False

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    async def write(self, data: bytes | memoryview) -> None:
        self._check_open()
        view = memoryview(data).cast("B")
        if self._size_bytes + len(view) > limits.object_size_bytes_max:
            raise InvalidArgument(f"objects are at most {limits.object_size_bytes_max} bytes")
        self._size_bytes += len(view)
        chunk_size = limits.chunk_size_bytes
        # Immutable input can be staged by reference; anything else is copied into the
        # upload's own chunk buffer (the caller may reuse its buffer when we return).
        while len(view) >= chunk_size and not self._buffer and isinstance(data, bytes):
            await self._stage(view[:chunk_size])
            view = view[chunk_size:]
        while view:
            room = chunk_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == chunk_size:
                chunk, self._buffer = self._buffer, bytearray()
                await self._stage(chunk)

    async def _stage(self, chunk: Payload) -> None:
        if self._blob_id is None:
            self._blob_id = await self._transport.call(
                self._node_id, Request(Operation.NEW_BLOB_ID)
            )
        arguments: dict[str, Any] = {"blob_id": self._blob_id,
                                     "chunk_index": self._chunks_staged}
        if self._customer_key is not None:
            arguments["customer_key"] = self._customer_key
        request = Request(Operation.STAGE_CHUNK, arguments, payload=chunk)
        self._chunks_staged += 1
        self._in_flight.append(asyncio.ensure_future(self._transport.call(self._node_id, request)))
        while len(self._in_flight) >= limits.upload_chunks_in_flight_max:
            await self._in_flight.popleft()

    async def _drain_in_flight(self) -> None:
        while self._in_flight:
            await self._in_flight.popleft()

    def _check_open(self) -> None:
        if self._finished:
            raise UploadClosed(f"upload of {self.bucket}/{self.key} is finished")

    async def _commit(self, operation: Operation, arguments: dict[str, Any]) -> Any:
        """Send the commit with the tail chunk; the upload is finished once it succeeds
        (if it fails, leaving the ``async with`` block aborts and frees the staging)."""
        self._check_open()
        await self._drain_in_flight()
        arguments = {
            **arguments,
            "blob_id": self._blob_id,
            "size_bytes": self._size_bytes,
            "tail_chunk_index": self._chunks_staged,
        }
        if self._customer_key is not None:
            arguments["customer_key"] = self._customer_key
        tail = self._buffer if self._buffer else None
        try:
            result = await self._transport.call(
                self._node_id, Request(operation, arguments, payload=tail)
            )
        except (WriteRejected, WriteDiscarded):
            self._finished = True  # the node has already freed what was staged
            raise
        self._finished = True
        self._buffer = bytearray()
        return result

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._buffer = bytearray()
        # Staging requests already sent are ahead of the abort in the writer's queue;
        # wait for them so none lands after it. Their own errors no longer matter.
        results = await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
        if self._blob_id is not None:
            await self._transport.call(
                self._node_id, Request(Operation.ABORT_UPLOAD, {"blob_id": self._blob_id})
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._finished:
            return
        try:
            await self.abort()
        except StorageError as error:
            # E.g. Overloaded: the staged chunks stay until the node's next start-up
            # cleanup of staging. Not fatal to the caller, whose own error matters more.
            _log.warning("abort of upload %s/%s failed: %r", self.bucket, self.key, error)


class ClientUpload(_StagedBody):
    """``api.Upload``: the staged body becomes the key's new version."""

    async def commit(
        self,
        spec: PutSpec,
        conditions: WriteConditions | None = None,
        *,
        event_name: str = "s3:ObjectCreated:Put",
        origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        arguments = {"bucket": self.bucket, "key": self.key, "spec": spec,
                     "conditions": conditions, "event_name": event_name, "origin": origin}
        version: ObjectVersion = await self._commit(Operation.COMMIT_VERSION, arguments)
        return version


class ClientPartUpload(_StagedBody):
    """``api.PartUpload``: the staged body becomes one part of a multipart upload."""

    def __init__(
        self,
        transport: Transport,
        node_id: str,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        customer_key: CustomerKey | None = None,
    ) -> None:
        super().__init__(transport, node_id, bucket, key, customer_key)
        self.upload_id = upload_id
        self.part_number = part_number

    async def commit(self, etag: str, checksum: str = "") -> PartInfo:
        arguments = {
            "bucket": self.bucket,
            "key": self.key,
            "upload_id": self.upload_id,
            "part_number": self.part_number,
            "etag": etag,
            "checksum": checksum,
        }
        return await self._commit(Operation.COMMIT_PART, arguments)


async def open_embedded(
    data_dir: pathlib.Path,
    *,
    durable: bool = True,
    lifecycle: SweeperSettings | None = DEFAULT_SWEEPER_SETTINGS,
    pre_commit_hook: PreCommitHook | None = None,
    outbox_entries_max: int = limits.outbox_entries_max,
    cipher: ChunkCipher | None = None,
) -> ShardedStorageClient:
    """The embedded store: one node, one shard, the in-process transport. Its lifecycle
    sweeper runs with ``lifecycle`` (None: no sweeper) until the client is closed.

    ``pre_commit_hook`` (built by the composition root, e.g. from the import string
    "triggers.hook:TriggerHook") judges writes before they commit; it is started here
    with the client it reads configs and models through, and closed with the node.
    ``cipher``: the store's data is encrypted at rest with it (``storage.engine.cipher``).
    """
    node = await asyncio.to_thread(
        StorageNode.open,
        EMBEDDED_NODE_ID,
        pathlib.Path(data_dir),
        durable=durable,
        pre_commit_hook=pre_commit_hook,
        outbox_entries_max=outbox_entries_max,
        cipher=cipher,
    )
    if lifecycle is not None:
        node.start_lifecycle(lifecycle)
    transport = LocalTransport({EMBEDDED_NODE_ID: node})
    client = ShardedStorageClient(single_node_view(EMBEDDED_NODE_ID), transport, (node,))
    if pre_commit_hook is not None:
        await pre_commit_hook.start(client)
    return client
