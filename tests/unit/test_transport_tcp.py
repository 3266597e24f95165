"""What only the TCP transport has: bytes from a broken or hostile peer, timeouts,
reconnection, the in-flight bounds and back-pressure, and uvloop.

Raw-socket tests speak the frame format by hand (``frames`` and ``codec``) to a real
``TcpNodeServer``; client-side tests put a fake node (a bare asyncio server) in front of
a real ``TcpTransport``. The kill -9 of a node in a child process is in
tests/integration/test_transport_kill.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvloop

from storage import limits
from storage.api import InvalidArgument, NodeUnavailable, PutSpec
from storage.client import ShardedStorageClient
from storage.node import StorageNode
from storage.placement import single_node_view
from storage.transport import codec
from storage.transport.base import Operation, Request
from storage.transport.frames import HEADER, HEADER_BYTES, MAGIC, VERSION, FrameKind, encode_header
from storage.transport.local import NoSuchNode
from storage.transport.tcp import TcpNodeServer, TcpTransport
from tests.unit.transport_harness import eventually, put_object, read_all

CHUNK = limits.chunk_size_bytes


@contextlib.asynccontextmanager
async def served_node(tmp_path: pathlib.Path) -> AsyncIterator[tuple[StorageNode, TcpNodeServer]]:
    node = StorageNode.open("n0", tmp_path / "n0", durable=False)
    server = TcpNodeServer(node)
    await server.start()
    try:
        yield node, server
    finally:
        await server.close()
        await node.close()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


# --- raw frames --------------------------------------------------------------------------


def request_frame(request_id: int, operation: Operation, payload: bytes | None = None,
                  **arguments: Any) -> bytes:
    control = codec.encode_request(operation, arguments)
    header = encode_header(FrameKind.REQUEST, request_id, len(control),
                           None if payload is None else len(payload))
    return header + control + (payload or b"")


async def read_frame(reader: asyncio.StreamReader) -> tuple[FrameKind, int, Any]:
    header = await reader.readexactly(HEADER_BYTES)
    _, _, kind, flags, request_id, control_length, payload_length = HEADER.unpack(header)
    control = await reader.readexactly(control_length)
    await reader.readexactly(payload_length)
    kind = FrameKind(kind)
    if kind is FrameKind.ERROR:
        return kind, request_id, codec.decode_error(control, "n0")
    return kind, request_id, codec.decode(control) if control else None


async def expect_goaway_then_eof(reader: asyncio.StreamReader) -> str:
    async with asyncio.timeout(5):
        kind, request_id, reason = await read_frame(reader)
        assert (kind, request_id) == (FrameKind.GOAWAY, 0)
        assert await reader.read() == b""  # then the node closes the connection
    return str(reason)


async def still_serving(server: TcpNodeServer) -> None:
    transport = TcpTransport({"n0": server.address})
    try:
        buckets = await transport.call("n0", Request(Operation.LIST_BUCKETS,
                                                     {"owner_id": "o"}))
        assert isinstance(buckets, list)
    finally:
        await transport.close()


@pytest.mark.parametrize("garbage, reason", [
    (b"GET / HTTP/1.1\r\nHost: node\r\n\r\n", "not a Squall frame"),
    (HEADER.pack(MAGIC, VERSION + 1, 1, 0, 1, 0, 0), "version"),
    (HEADER.pack(MAGIC, VERSION, FrameKind.REPLY, 0, 1, 0, 0), "not accepted"),
    (HEADER.pack(MAGIC, VERSION, FrameKind.REQUEST, 0, 1, 2**32 - 1, 0), "control bytes"),
    (HEADER.pack(MAGIC, VERSION, FrameKind.REQUEST, 1, 1, 0, CHUNK + 1), "payload of"),
    (HEADER.pack(MAGIC, VERSION, FrameKind.STREAM_CREDIT, 0, 1, 1, 0) + b"\xc1",
     "STREAM_CREDIT"),
])
def test_garbled_or_oversized_frames_close_the_connection_not_the_node(
    tmp_path: pathlib.Path, garbage: bytes, reason: str
) -> None:
    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(garbage + b"\x00" * 64)
            assert reason in await expect_goaway_then_eof(reader)
            writer.close()
            await eventually(lambda: server.connection_count == 0)
            await still_serving(server)

    run(main)


def test_an_undecodable_request_fails_alone(tmp_path: pathlib.Path) -> None:
    """A well-framed request whose control does not decode gets an ERROR naming the
    problem; the connection goes on serving."""

    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            reader, writer = await asyncio.open_connection(*server.address)
            bad = msgpack_record("NoSuchRecord")
            writer.write(encode_header(FrameKind.REQUEST, 7, len(bad)) + bad)
            writer.write(request_frame(8, Operation.LIST_BUCKETS, owner_id="o"))
            kind, request_id, error = await read_frame(reader)
            assert (kind, request_id) == (FrameKind.ERROR, 7)
            assert type(error) is codec.RemoteError and "NoSuchRecord" in str(error)
            assert await read_frame(reader) == (FrameKind.REPLY, 8, [])
            writer.close()

    run(main)


def msgpack_record(name: str) -> bytes:
    import msgpack

    return msgpack.packb(["get_bucket", {"name": msgpack.ExtType(1, msgpack.packb([name]))}])


def test_a_reused_request_id_is_a_protocol_error(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            reader, writer = await asyncio.open_connection(*server.address)
            wait = request_frame(3, Operation.OUTBOX_WAIT, after_sequence=0, timeout_ms=5000)
            writer.write(wait + wait)
            assert "request id 3 is in use" in await expect_goaway_then_eof(reader)
            writer.close()

    run(main)


def test_connections_beyond_the_bound_are_refused(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "transport_node_connections_max", 1)

    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            _, first = await asyncio.open_connection(*server.address)
            await eventually(lambda: server.connection_count == 1)
            reader, second = await asyncio.open_connection(*server.address)
            assert "connections" in await expect_goaway_then_eof(reader)
            first.close()
            second.close()
            await eventually(lambda: server.connection_count == 0)
            await still_serving(server)

    run(main)


def test_the_node_stops_reading_beyond_the_calls_in_flight_bound(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 2 calls in flight the node reads no third request until one is answered."""
    monkeypatch.setattr(limits, "transport_calls_in_flight_per_connection_max", 2)

    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            reader, writer = await asyncio.open_connection(*server.address)
            for request_id in (1, 2, 3):
                writer.write(request_frame(request_id, Operation.OUTBOX_WAIT,
                                           after_sequence=0, timeout_ms=300))
            writer.write(request_frame(4, Operation.LIST_BUCKETS, owner_id="o"))
            order = [(await read_frame(reader))[1] for _ in range(4)]
            assert order[:2] in ([1, 2], [2, 1]) and order[2:] == [4, 3]
            writer.close()

    run(main)


# --- client side: a fake node ------------------------------------------------------------


@contextlib.asynccontextmanager
async def fake_node(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
) -> AsyncIterator[tuple[str, int]]:
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await answer(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[:2]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def test_garbage_from_a_node_fails_the_call_promptly() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(HEADER_BYTES)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\x00" * 32)
        await reader.read()

    async def main() -> None:
        async with fake_node(garbage) as address:
            transport = TcpTransport({"n0": address})
            started = time.monotonic()
            with pytest.raises(NodeUnavailable, match="not a Squall frame"):
                await transport.call("n0", Request(Operation.LIST_BUCKETS, {"owner_id": "o"}))
            assert time.monotonic() - started < 2
            await transport.close()

    run(main)


def test_a_node_that_does_not_answer_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "transport_call_timeout_ms", 200)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def main() -> None:
        async with fake_node(silent) as address:
            transport = TcpTransport({"n0": address})
            started = time.monotonic()
            with pytest.raises(NodeUnavailable, match="did not answer list_buckets"):
                await transport.call("n0", Request(Operation.LIST_BUCKETS, {"owner_id": "o"}))
            assert 0.19 < time.monotonic() - started < 2
            stream = transport.open_stream("n0", Request(Operation.SNAPSHOT, {}))
            monkeypatch.setattr(limits, "transport_stream_idle_ms_max", 200)
            with pytest.raises(NodeUnavailable, match="sent nothing"):
                await anext(stream)
            await transport.close()

    run(main)


def test_unreachable_and_unknown_nodes() -> None:
    async def main() -> None:
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        address = probe.sockets[0].getsockname()[:2]
        probe.close()
        await probe.wait_closed()  # nothing listens there now
        transport = TcpTransport({"n0": address})
        with pytest.raises(NodeUnavailable, match="cannot connect to node n0"):
            await transport.call("n0", Request(Operation.LIST_BUCKETS, {"owner_id": "o"}))
        with pytest.raises(NodeUnavailable, match="cannot connect"):
            await anext(transport.open_stream("n0", Request(Operation.SNAPSHOT, {})))
        with pytest.raises(NoSuchNode):
            await transport.call("n9", Request(Operation.LIST_BUCKETS, {"owner_id": "o"}))
        with pytest.raises(NoSuchNode):
            transport.open_stream("n9", Request(Operation.SNAPSHOT, {}))
        await transport.close()

    run(main)


def test_limits_are_checked_before_sending(tmp_path: pathlib.Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            transport = TcpTransport({"n0": server.address})
            too_big = Request(Operation.STAGE_CHUNK, {"blob_id": b"x" * 16, "chunk_index": 0},
                              payload=b"x" * (CHUNK + 1))
            with pytest.raises(InvalidArgument, match="at most"):
                await transport.call("n0", too_big)
            monkeypatch.setattr(limits, "transport_request_control_bytes_max", 100)
            with pytest.raises(InvalidArgument, match="arguments"):
                await transport.call("n0", Request(Operation.PUT_BUCKET_CONFIG, {
                    "bucket": "b", "name": "cors", "document": b"d" * 200}))
            with pytest.raises(codec.CodecError, match="set"):
                await transport.call("n0", Request(Operation.LIST_BUCKETS, {"owner_id": {1}}))
            await still_serving(server)
            await transport.close()

    run(main)


# --- reconnection, back-pressure ---------------------------------------------------------


def test_a_closed_server_fails_calls_in_flight_and_a_new_one_is_reached(
    tmp_path: pathlib.Path,
) -> None:
    async def main() -> None:
        node = StorageNode.open("n0", tmp_path / "n0", durable=False)
        server = TcpNodeServer(node)
        address = await server.start()
        client = ShardedStorageClient(single_node_view("n0"), TcpTransport({"n0": address}))
        try:
            await client.create_bucket("b", "owner")
            version = await put_object(client, "b", "k", b"z" * (8 * CHUNK))
            waiting = asyncio.create_task(client.outbox_wait(0, 0, 20_000))
            stream = client.read_body(version)
            await anext(stream)
            await asyncio.sleep(0.05)
            started = time.monotonic()
            await server.close()
            with pytest.raises(NodeUnavailable):
                await waiting
            with pytest.raises(NodeUnavailable):
                async for _ in stream:
                    pass
            assert time.monotonic() - started < 2
            assert node.open_stream_count == 0  # the server released the stream
            with pytest.raises(NodeUnavailable, match="cannot connect"):
                await client.get_bucket("b")
            server = TcpNodeServer(node, *address)
            await server.start()
            assert await read_all(client, await client.get_version("b", "k")) == b"z" * (
                8 * CHUNK)
        finally:
            await client.close()
            await server.close()
            await node.close()

    run(main)


def test_a_slow_reader_holds_at_most_a_window(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            client = ShardedStorageClient(single_node_view("n0"),
                                          TcpTransport({"n0": server.address}))
            await client.create_bucket("b", "owner")
            size = 4 * limits.transport_stream_window_pieces * CHUNK
            version = await put_object(client, "b", "k", b"w" * size, CHUNK)
            stream = client.read_body(version)
            received = [bytes(await anext(stream))]
            await asyncio.sleep(0.3)  # the reader stalls; the node must wait for credit
            buffered = len(stream._pieces)  # type: ignore[attr-defined]
            assert buffered <= limits.transport_stream_window_pieces
            assert node.open_stream_count == 1  # the node has not run ahead to the end
            received += [bytes(piece) async for piece in stream]
            assert b"".join(received) == b"w" * size
            await eventually(lambda: node.open_stream_count == 0)
            await client.close()

    run(main)


# --- uvloop (what squall serve runs; the conformance suite runs tcp on it too) ---------


def test_uvloop_sends_vectored(tmp_path: pathlib.Path) -> None:
    """On uvloop the payload goes to writelines as its own buffer (no join)."""

    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            transport = TcpTransport({"n0": server.address})
            connection = await transport.connection("n0")
            assert connection._vectored  # type: ignore[attr-defined]
            await transport.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def test_the_stdlib_loop_on_311_writes_payloads_apart(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            transport = TcpTransport({"n0": server.address})
            connection = await transport.connection("n0")
            joins = type(connection._transport).writelines is (  # type: ignore[attr-defined]
                asyncio.WriteTransport.writelines)
            assert connection._vectored is not joins  # type: ignore[attr-defined]
            await transport.close()

    run(main)


def test_put_spec_round_trip_over_tcp(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        async with served_node(tmp_path) as (node, server):
            client = ShardedStorageClient(single_node_view("n0"),
                                          TcpTransport({"n0": server.address}))
            await client.create_bucket("b", "owner")
            spec = PutSpec(etag="e", content_type="image/png", system_metadata={
                "Cache-Control": "no-cache"}, user_metadata={"ünïcode": "välue"},
                checksums={"SHA256": "x"}, tags={"k": "v"}, owner_id="o", acl=b"\x00acl",
                legal_hold=False)
            async with client.open_upload("b", "k") as upload:
                await upload.write(b"png")
                version = await upload.commit(spec)
            assert version.user_metadata == {"ünïcode": "välue"} and version.acl == b"\x00acl"
            assert version.system_metadata == {"Cache-Control": "no-cache"}
            await client.close()

    run(main)
