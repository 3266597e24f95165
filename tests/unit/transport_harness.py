"""One way to open a store over each transport, for the conformance suite.

Every kind runs the same ``ShardedStorageClient`` over real ``StorageNode``s; the client
is given no owned nodes, so every call goes through the transport (no shortcut through a
node's local change counters). ``tcp`` serves each node with a ``TcpNodeServer`` on
127.0.0.1 in this process; ``rdma`` skips with the transport's own reason where it
cannot run (no pyverbs, no device).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import pathlib
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop

from storage import limits
from storage.api import (
    NOTIFICATION_CONFIG,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    CompletedPart,
    CustomerKey,
    CustomerKeyMismatch,
    CustomerKeyRequired,
    DefaultRetention,
    DeleteResult,
    EventOrigin,
    ListedVersion,
    NoSuchKey,
    NotificationConfiguration,
    NotificationRule,
    ObjectLocked,
    ObjectLockUpdate,
    ObjectVersion,
    OutboxEvent,
    PreCommitHook,
    PutSpec,
    WriteConditions,
)
from storage.client import ShardedStorageClient
from storage.node import StorageNode
from storage.placement import View
from storage.transport.base import Transport
from storage.transport.local import LocalTransport
from tests.certificates import self_signed

# tcp-uvloop: the TCP transport on uvloop, the loop ``squall serve`` runs (its transports
# keep references to written buffers, where the stdlib loop of 3.11 copies them).
# tcp-tls: the TCP transport over TLS (a self-signed certificate made here), which SSE-C
# customer keys require.
# rdma-emulated: rdma.py's protocol (SETUP, slots, credits, payloads placed by "remote
# writes") over an emulated queue pair, a memcpy between the two ends in this process.
# It tests that protocol, not one verbs call: the real "rdma" kind skips without pyverbs
# or a device.
TRANSPORT_KINDS = ("local", "tcp", "tcp-uvloop", "tcp-tls", "rdma-emulated", "rdma")
# Kinds whose links are encrypted: SSE-C keys travel over them (and in-process).
CUSTOMER_KEY_KINDS = ("local", "tcp-tls")


_certificates: tempfile.TemporaryDirectory[str] | None = None


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts for 127.0.0.1: a self-signed certificate made once
    per test process; the client verifies it (host name included)."""
    global _certificates
    if _certificates is None:
        _certificates = tempfile.TemporaryDirectory(prefix="squall-transport-tls-")
        self_signed(pathlib.Path(_certificates.name), "node")
    directory = pathlib.Path(_certificates.name)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "node.crt", directory / "node.key")
    client = ssl.create_default_context(cafile=str(directory / "node.crt"))
    return server, client




class _EmulatedRegion:
    def __init__(self, slot_count: int) -> None:
        self.slot_count = slot_count
        self._view = memoryview(bytearray(slot_count * limits.transport_payload_bytes_max))

    def slot(self, index: int, length: int = limits.transport_payload_bytes_max) -> memoryview:
        assert 0 <= index < self.slot_count and 0 <= length <= limits.transport_payload_bytes_max
        start = index * limits.transport_payload_bytes_max
        return self._view[start:start + length]


class EmulatedQueuePair:
    """``rdma._QueuePair``'s interface without pyverbs: ``write`` copies into the peer's
    receive region, found through this process's table of pairs (both ends of the
    conformance suite run here), after yielding once (a completion never comes at
    once). It counts writes, so tests can see payloads did not travel in frames."""

    pairs: dict[int, EmulatedQueuePair] = {}
    numbers = itertools.count(1)
    writes = 0

    def __init__(self, device_name: str | None, port: int, gid_index: int) -> None:
        self.number = next(self.numbers)
        self.pairs[self.number] = self
        self.receive = _EmulatedRegion(limits.rdma_receive_slots_per_connection)
        self.remote_slot_count = 0
        self._peer: EmulatedQueuePair | None = None

    def endpoint(self) -> dict[str, Any]:
        return {"qp_number": self.number, "psn": 0, "lid": 0, "gid": "emulated",
                "address": 0, "rkey": 0, "slots": self.receive.slot_count,
                "slot_bytes": limits.transport_payload_bytes_max}

    def connect(self, remote: dict[str, Any]) -> None:
        self._peer = self.pairs[remote["qp_number"]]
        self.remote_slot_count = remote["slots"]

    async def write(self, payload: memoryview, remote_slot: int) -> None:
        assert self._peer is not None and 0 <= remote_slot < self.remote_slot_count
        await asyncio.sleep(0)
        self._peer.receive.slot(remote_slot, len(payload))[:] = payload
        EmulatedQueuePair.writes += 1

    def close(self) -> None:
        self.pairs.pop(self.number, None)


def emulated_rdma_classes() -> tuple[type[Any], type[Any]]:
    """RdmaNodeServer and RdmaTransport whose connections use ``EmulatedQueuePair``."""
    from storage.transport import rdma

    class Client(rdma._RdmaClientConnection):
        queue_pair_factory = EmulatedQueuePair

    class Node(rdma._RdmaNodeConnection):
        queue_pair_factory = EmulatedQueuePair

    class Server(rdma.RdmaNodeServer):
        connection_class = Node

    class Transport(rdma.RdmaTransport):
        connection_class = Client

    return Server, Transport


def skip_if_unavailable(kind: str) -> None:
    if kind == "rdma":
        from storage.transport import rdma

        reason = rdma.unavailable_reason()
        if reason is not None:
            pytest.skip(f"rdma: {reason}")


@dataclass
class Store:
    client: ShardedStorageClient
    nodes: tuple[StorageNode, ...]
    transport: Transport
    servers: list[Any] = field(default_factory=list)


@contextlib.asynccontextmanager
async def open_store(
    kind: str,
    data_dir: pathlib.Path,
    *,
    shards: int = 1,
    pre_commit_hook: PreCommitHook | None = None,
    durable: bool = False,
) -> AsyncIterator[Store]:
    nodes = tuple(
        StorageNode.open(f"n{i}", data_dir / f"n{i}", durable=durable,
                         pre_commit_hook=pre_commit_hook)
        for i in range(shards)
    )
    view = View(epoch=1, shards=tuple((node.node_id,) for node in nodes))
    servers: list[Any] = []
    transport: Transport
    try:
        if kind == "local":
            transport = LocalTransport({node.node_id: node for node in nodes})
        elif kind in ("tcp", "tcp-uvloop", "tcp-tls"):
            from storage.transport.tcp import TcpNodeServer, TcpTransport

            server_tls, client_tls = tls_contexts() if kind == "tcp-tls" else (None, None)
            servers = [TcpNodeServer(node, ssl_context=server_tls) for node in nodes]
            addresses = {node.node_id: await server.start()
                         for node, server in zip(nodes, servers, strict=True)}
            transport = TcpTransport(addresses, ssl_context=client_tls)
        elif kind in ("rdma", "rdma-emulated"):
            from storage.transport.rdma import RdmaNodeServer, RdmaTransport

            server_class, transport_class = ((RdmaNodeServer, RdmaTransport) if kind == "rdma"
                                             else emulated_rdma_classes())
            servers = [server_class(node) for node in nodes]
            addresses = {node.node_id: await server.start()
                         for node, server in zip(nodes, servers, strict=True)}
            transport = transport_class(addresses)
        else:
            raise AssertionError(f"unknown transport kind {kind!r}")
        client = ShardedStorageClient(view, transport)
        try:
            yield Store(client, nodes, transport, servers)
        finally:
            await client.close()
    finally:
        for server in servers:  # servers before nodes: a server may hold views of a map
            await server.close()
        for node in nodes:
            await node.close()


def run_async(kind: str, main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main()`` in a fresh event loop of the kind's choice."""
    skip_if_unavailable(kind)
    loop_factory = uvloop.new_event_loop if kind == "tcp-uvloop" else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())  # type: ignore[arg-type]


def run_over(kind: str, data_dir: pathlib.Path, scenario: Callable[[Store], Any],
             **options: Any) -> None:
    """Run ``scenario(store)`` on a fresh store over ``kind`` in a fresh event loop."""

    async def main() -> None:
        async with open_store(kind, data_dir, **options) as store:
            await scenario(store)

    run_async(kind, main)


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (bounded) until ``predicate()`` holds: for effects a network transport
    delivers asynchronously (a cancelled stream's slot coming back)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def deep_equal(left: object, right: object) -> bool:
    """Equality that also checks types (a tuple is not a list, bytes not a memoryview)
    and the fields that dataclass equality skips (``compare=False``: inline_body)."""
    if type(left) is not type(right):
        return False
    if dataclasses.is_dataclass(left) and not isinstance(left, type):
        return all(deep_equal(getattr(left, f.name), getattr(right, f.name))
                   for f in dataclasses.fields(left))
    if isinstance(left, tuple | list):
        assert isinstance(right, tuple | list)
        return len(left) == len(right) and all(
            deep_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return left.keys() == right.keys() and all(deep_equal(left[k], right[k]) for k in left)
    return left == right


# --- every operation, through the client ---------------------------------------------------

QUEUE_ARN = "arn:squall:sqs::hooks:webhook"
ORIGIN = EventOrigin("principal-1", "10.0.0.1", "request-1", "host-1")
PART_BYTES = limits.part_size_bytes_min


async def put_object(client: ShardedStorageClient, bucket: str, key: str, body: bytes,
                     piece_bytes: int = 65536, **spec: Any) -> ObjectVersion:
    async with client.open_upload(bucket, key) as upload:
        for offset in range(0, len(body), piece_bytes):
            await upload.write(memoryview(body)[offset:offset + piece_bytes])
        return await upload.commit(PutSpec(etag=hashlib.md5(body).hexdigest(), **spec),
                                   origin=ORIGIN)


async def read_all(client: ShardedStorageClient, version: ObjectVersion, start: int = 0,
                   end: int | None = None) -> bytes:
    return b"".join([bytes(piece) async for piece in client.read_body(version, start, end)])


async def exercise_every_operation(store: Store) -> None:
    """Every ``Operation`` at least once, with arguments and results of every record type
    the client sends or gets (the codec's walk and the conformance suite share it)."""
    client = store.client
    await client.create_bucket("ops", "owner-1")
    await client.create_bucket("locked", "owner-1", object_lock_enabled=True)
    assert [b.name for b in await client.list_buckets("owner-1")] == ["locked", "ops"]
    assert (await client.get_bucket("ops")).owner_id == "owner-1"
    await client.set_bucket_versioning("ops", "Enabled")
    info = await client.put_object_lock_configuration(
        "locked", DefaultRetention("GOVERNANCE", days=1))
    assert info.default_retention == DefaultRetention("GOVERNANCE", days=1)
    notification = NotificationConfiguration(
        (NotificationRule("queue", "q1", QUEUE_ARN, ("s3:ObjectCreated:*",),
                          (("prefix", "n/"),)),))
    await client.put_bucket_config("ops", NOTIFICATION_CONFIG, notification.to_json(), ORIGIN)
    assert await client.get_bucket_config("ops", NOTIFICATION_CONFIG) == notification.to_json()

    body = bytes(range(256)) * 5000  # 1.2 chunks: one staged chunk and a tail
    written = await put_object(client, "ops", "n/one", body, content_type="text/plain",
                               user_metadata={"colour": "blue"}, tags={"t": "1"},
                               checksums={"CRC32": "AAAAAA=="}, acl=b"<acl/>")
    version = await client.get_version("ops", "n/one", inline_body_bytes_max=1 << 20)
    assert version.inline_body is None  # over a chunk: streamed, not inline
    small = await put_object(client, "ops", "small", b"tiny")
    inline = await client.get_version("ops", "small", inline_body_bytes_max=1024)
    assert inline.inline_body == b"tiny" and inline.bucket_versioning == "Enabled"
    assert inline.version_id == small.version_id
    assert await read_all(client, version) == body
    assert await read_all(client, version, 10, 70000) == body[10:70000]
    assert version.version_id == written.version_id and version.user_metadata == {
        "colour": "blue"}
    tagged = await client.replace_tags("ops", "n/one", version.version_id, {"t": "2"},
                                       origin=ORIGIN)
    assert tagged.tags == {"t": "2"}
    acl = await client.replace_acl("ops", "n/one", version.version_id, b"<acl2/>", ORIGIN)
    assert acl.acl == b"<acl2/>"
    locked = await put_object(client, "locked", "k", b"keep")
    assert locked.lock_mode == "GOVERNANCE"
    held = await client.update_object_lock(
        "locked", "k", locked.version_id, ObjectLockUpdate(retention=None, legal_hold=True))
    assert held.legal_hold
    page = await client.list_objects("ops", prefix="n/", delimiter="/")
    assert [entry.key for entry in page.objects] == ["n/one"]
    assert isinstance(page.objects, tuple) and isinstance(page.objects[0], ListedVersion)
    versions = await client.list_object_versions("ops")
    assert {entry.key for entry in versions.versions} == {"n/one", "small"}
    deleted = await client.delete_object("ops", "small", origin=ORIGIN)
    assert deleted.delete_marker
    with pytest.raises(ObjectLocked):  # the legal hold: no bypass lifts it
        await client.delete_object("locked", "k", locked.version_id, bypass_governance=True)
    await client.update_object_lock("locked", "k", locked.version_id,
                                    ObjectLockUpdate(legal_hold=False))
    with pytest.raises(ObjectLocked):  # the default GOVERNANCE retention
        await client.delete_object("locked", "k", locked.version_id)
    removed = await client.delete_object("locked", "k", locked.version_id,
                                         bypass_governance=True)
    assert removed == DeleteResult(False, locked.s3_version_id)

    upload = await client.create_multipart_upload(
        "ops", "n/multi", PutSpec(etag="", user_metadata={"m": "1"}), "CRC32", "COMPOSITE")
    parts = []
    for number, size in ((1, PART_BYTES), (2, 1000)):
        part_body = bytes([number]) * size
        async with client.upload_part("ops", "n/multi", upload.upload_id, number) as part:
            await part.write(part_body)
            parts.append(await part.commit(hashlib.md5(part_body).hexdigest(), "AAAAAA=="))
    listed = await client.list_parts("ops", "n/multi", upload.upload_id)
    assert listed.parts == tuple(parts) and listed.upload.spec.user_metadata == {"m": "1"}
    uploads = await client.list_multipart_uploads("ops")
    assert [u.upload_id for u in uploads.uploads] == [upload.upload_id]
    other = await client.create_multipart_upload("ops", "n/other", PutSpec(etag=""))
    await client.abort_multipart_upload("ops", "n/other", other.upload_id)
    completed = await client.complete_multipart_upload(
        "ops", "n/multi", upload.upload_id,
        [CompletedPart(p.part_number, p.etag, p.checksum) for p in parts], "etag-2",
        {"CRC32": "BBBBBB=="}, WriteConditions(if_none_match_any=True), ORIGIN)
    assert completed.part_sizes == (PART_BYTES, 1000)
    assert await read_all(client, completed) == b"\x01" * PART_BYTES + b"\x02" * 1000

    async with client.open_upload("ops", "n/abandoned") as abandoned:
        await abandoned.write(b"a" * (limits.chunk_size_bytes + 1))  # one chunk staged
    with pytest.raises(NoSuchKey):
        await client.get_version("ops", "n/abandoned")
    await client.create_bucket("gone", "owner-1")
    with pytest.raises(BucketAlreadyOwnedByYou):
        await client.create_bucket("gone", "owner-1")
    await client.delete_bucket("gone")
    with pytest.raises(BucketNotEmpty):
        await client.delete_bucket("ops")

    statuses = await client.outbox_status()
    assert [s.shard for s in statuses] == list(range(client.shard_count))
    assert any(s.depth for s in statuses)
    for shard in range(client.shard_count):
        assert await client.outbox_wait(shard, 0, 10) is (statuses[shard].depth > 0)
        events = await client.outbox_read(shard, 0, 100, [QUEUE_ARN])
        assert all(isinstance(e, OutboxEvent) and e.target_arn == QUEUE_ARN
                   for e in events.events)
        await client.outbox_ack(shard, [e.sequence for e in events.events])
    assert sum(s.depth for s in await client.outbox_status()) == 0
    backup = b"".join([bytes(piece) async for piece in client.snapshot(0)])
    assert len(backup) > 0


async def first_piece(open_stream: Callable[[], AsyncIterator[Any]]) -> bytes:
    """The first piece of ``open_stream()``: raises whatever refuses the stream, whether
    the opening call or its first step does."""
    stream = open_stream()
    try:
        return bytes(await anext(stream))
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


CUSTOMER_KEY = CustomerKey.of(bytes(range(100, 132)))
OTHER_CUSTOMER_KEY = CustomerKey.of(bytes(range(200, 232)))


async def exercise_customer_keys(store: Store) -> None:
    """SSE-C through the client: a PUT, a multipart upload and reads with the key, and
    the typed refusals of a missing or wrong key. Over links that are encrypted."""
    client = store.client
    await client.create_bucket("sse", "owner-1")
    body = bytes(range(256)) * (limits.chunk_size_bytes // 256) + b"tail"
    async with client.open_upload("sse", "one", CUSTOMER_KEY) as upload:
        await upload.write(body)
        version = await upload.commit(PutSpec(etag=hashlib.md5(body).hexdigest(),
                                              customer_key=CUSTOMER_KEY.new_record()))
    assert version.customer_key is not None
    assert version.customer_key.key_md5 == CUSTOMER_KEY.key_md5
    assert b"".join([bytes(p) async for p in client.read_body(
        version, customer_key=CUSTOMER_KEY)]) == body
    with pytest.raises(CustomerKeyRequired):
        await first_piece(lambda: client.read_body(version))
    with pytest.raises(CustomerKeyMismatch):
        await first_piece(lambda: client.read_body(version, customer_key=OTHER_CUSTOMER_KEY))
    upload_info = await client.create_multipart_upload(
        "sse", "multi", PutSpec(etag="", customer_key=CUSTOMER_KEY.new_record()))
    async with client.upload_part("sse", "multi", upload_info.upload_id, 1,
                                  CUSTOMER_KEY) as part:
        await part.write(b"p" * 1000)
        info = await part.commit("part-etag")
    completed = await client.complete_multipart_upload(
        "sse", "multi", upload_info.upload_id, [CompletedPart(1, info.etag)], "etag-1",
        customer_key=CUSTOMER_KEY)
    assert b"".join([bytes(p) async for p in client.read_body(
        completed, 10, 20, customer_key=CUSTOMER_KEY)]) == b"p" * 10
