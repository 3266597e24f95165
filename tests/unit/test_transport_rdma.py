"""The RDMA transport where no RDMA hardware is: what can be checked without it.

* Its protocol (SETUP, payloads placed in announced slots, slots owned by calls and
  streams, credits naming slots) runs in the conformance suite as ``rdma-emulated``; here,
  that payloads really went by "remote write" and that every slot comes back.
* pyverbs is imported only inside rdma.py's functions, never at import time.
* The real transport skips with its reason (this machine has no pyverbs).

None of this runs a verbs call: ``rdma._QueuePair`` is untested on hardware.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import pathlib

import pytest

from storage import limits
from storage.api import NodeUnavailable
from storage.node import StorageNode
from storage.transport import rdma
from storage.transport.base import Operation, Request
from storage.transport.tcp import TcpNodeServer
from tests.unit.transport_harness import (
    EmulatedQueuePair,
    Store,
    emulated_rdma_classes,
    eventually,
    put_object,
    read_all,
    run_over,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHUNK = limits.chunk_size_bytes


def _client_connection(store: Store) -> rdma._RdmaClientConnection:
    [connection] = store.transport._connections.values()  # type: ignore[attr-defined]
    assert isinstance(connection, rdma._RdmaClientConnection)
    return connection


def test_payloads_go_by_remote_write_and_every_slot_comes_back(tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        before = EmulatedQueuePair.writes
        body = bytes(range(256)) * (3 * CHUNK // 256) + b"tail"
        version = await put_object(client, "b", "k", body, CHUNK)
        assert EmulatedQueuePair.writes - before == 4  # 3 staged chunks + the tail
        assert await read_all(client, version) == body
        assert EmulatedQueuePair.writes - before == 8  # + 4 pieces written to the client
        connection = _client_connection(store)
        slots = limits.rdma_receive_slots_per_connection
        # Streams closed early, dropped, exhausted, refused: all their slots come back.
        streams = [client.read_body(version) for _ in range(5)]
        for stream in streams:
            await anext(stream)
        for stream in streams[:3]:
            await stream.aclose()
        assert await read_all(client, version, 1, 2) == body[1:2]
        await eventually(lambda: len(connection._free_slots) == slots - 2 *
                         limits.transport_stream_window_pieces)
        for stream in streams[3:]:
            assert b"".join([bytes(p) async for p in stream]) == body[CHUNK:]
        await eventually(lambda: len(connection._free_slots) == slots)
        dropped = client.read_body(version)  # ended by the node, dropped by its consumer
        await anext(dropped)
        await eventually(lambda: connection._node_let_go != set())
        del dropped
        gc.collect()
        await eventually(lambda: len(connection._free_slots) == slots)
        assert connection._stream_slots == {} and connection._delivered == {}
        # Every node slot came back with its answer.
        await asyncio.gather(*(put_object(client, "b", f"c{i}", body) for i in range(8)))
        assert len(connection._node_slots) == slots and connection._node_slot_of_call == {}

    run_over("rdma-emulated", tmp_path, scenario)


def test_more_streams_than_slots_wait_for_them(tmp_path: pathlib.Path) -> None:
    """64 receive slots hold 16 streams' windows; the 17th waits for one to end."""

    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        body = b"s" * (6 * CHUNK)
        version = await put_object(client, "b", "k", body, CHUNK)
        count = limits.rdma_receive_slots_per_connection // limits.transport_stream_window_pieces
        streams = [client.read_body(version) for _ in range(count + 4)]
        results = await asyncio.gather(*(_join(stream) for stream in streams))
        assert results == [body] * len(streams)

    run_over("rdma-emulated", tmp_path, scenario)


async def _join(stream: object) -> bytes:
    return b"".join([bytes(piece) async for piece in stream])  # type: ignore[attr-defined]


def test_an_rdma_client_refused_by_a_tcp_node_is_told_why(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        node = StorageNode.open("n0", tmp_path / "n0", durable=False)
        server = TcpNodeServer(node)  # accepts no SETUP frame
        _, transport_class = emulated_rdma_classes()
        transport = transport_class({"n0": await server.start()})
        try:
            with pytest.raises(NodeUnavailable, match="SETUP frame is not accepted"):
                await transport.call("n0", Request(Operation.LIST_BUCKETS, {"owner_id": "o"}))
        finally:
            await transport.close()
            await server.close()
            await node.close()

    asyncio.run(main())


def test_the_real_transport_says_why_it_cannot_run_here() -> None:
    reason = rdma.unavailable_reason()
    try:
        import pyverbs  # noqa: F401
    except ImportError:
        assert reason is not None and "pyverbs is not installed" in reason
    else:  # pragma: no cover - a machine with pyverbs
        assert reason is None or "no RDMA device" in reason


def _module_level_imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for statement in tree.body:  # module level only; imports inside functions are lazy
        if isinstance(statement, ast.Import):
            names += [alias.name for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom) and statement.module:
            names.append(statement.module)
    return names


def _all_imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_pyverbs_is_imported_only_lazily_and_only_in_rdma() -> None:
    rdma_path = ROOT / "storage" / "transport" / "rdma.py"
    assert any(name.startswith("pyverbs") for name in _all_imports(rdma_path))
    assert not any(name.startswith("pyverbs") for name in _module_level_imports(rdma_path))
    for package in ("storage", "gateway", "triggers", "squall"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path != rdma_path:
                assert not any(n.startswith("pyverbs") for n in _all_imports(path)), path
    # And the package itself does not import rdma.
    for path in (ROOT / "storage" / "transport").glob("*.py"):
        if path.name != "rdma.py":
            assert "storage.transport.rdma" not in _all_imports(path), path
