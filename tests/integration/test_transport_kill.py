"""kill -9 a storage node served over TCP in a child process while calls and a stream
are in flight: each fails promptly with NodeUnavailable; the same client reaches the
node again once it is restarted on the same data directory and port, and finds every
committed object with its bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from storage import limits
from storage.api import NodeUnavailable, PutSpec
from storage.client import ShardedStorageClient
from storage.placement import single_node_view
from storage.transport.tcp import TcpTransport

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
NODE_SCRIPT = pathlib.Path(__file__).with_name("transport_node.py")
CHUNK = limits.chunk_size_bytes


def start_node(data_dir: pathlib.Path, port: int) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, str(NODE_SCRIPT), str(data_dir), str(port)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    line = child.stdout.readline()
    if not line.startswith("listening "):
        child.kill()
        raise AssertionError(f"the node did not start: {line!r} {child.stderr.read()}")
    return child, int(line.split()[1])


def kill(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    for pipe in (child.stdout, child.stderr):
        if pipe is not None:
            pipe.close()


async def put(client: ShardedStorageClient, key: str, body: bytes) -> str:
    async with client.open_upload("b", key) as upload:
        await upload.write(body)
        await upload.commit(PutSpec(etag=hashlib.md5(body).hexdigest()))
    return hashlib.md5(body).hexdigest()


@pytest.mark.slow
def test_a_killed_node_fails_calls_in_flight_and_is_reached_again(
    tmp_path: pathlib.Path,
) -> None:
    child, port = start_node(tmp_path, 0)
    children = [child]

    async def main() -> None:
        client = ShardedStorageClient(single_node_view("n0"),
                                      TcpTransport({"n0": ("127.0.0.1", port)}))
        try:
            await client.create_bucket("b", "owner")
            committed = {
                "small": await put(client, "small", b"s" * 100),
                "big": await put(client, "big", bytes(range(256)) * (9 * CHUNK // 256 + 3)),
            }
            big = await client.get_version("b", "big")
            waits = [asyncio.create_task(client.outbox_wait(0, 0, 20_000)) for _ in range(3)]
            stream = client.read_body(big)
            await anext(stream)  # open, the node waiting for credit
            upload = client.open_upload("b", "never")
            await upload.__aenter__()
            await upload.write(b"u" * (2 * CHUNK))  # staged chunks in flight, uncommitted
            await asyncio.sleep(0.1)  # the waits have reached the node
            assert not any(task.done() for task in waits)

            child.send_signal(signal.SIGKILL)
            started = time.monotonic()
            for task in waits:
                with pytest.raises(NodeUnavailable, match="n0"):
                    await asyncio.wait_for(task, 5)
            with pytest.raises(NodeUnavailable):
                async for _ in stream:
                    pass
            assert time.monotonic() - started < 2, "calls in flight were not failed promptly"
            with pytest.raises(NodeUnavailable):
                await upload.commit(PutSpec(etag="e"))
            await upload.__aexit__(None, None, None)  # its abort fails too, and is logged
            with pytest.raises(NodeUnavailable, match="cannot connect"):
                await client.get_bucket("b")

            restarted, _ = await asyncio.to_thread(start_node, tmp_path, port)
            children.append(restarted)
            for key, digest in committed.items():
                version = await client.get_version("b", key)
                body = b"".join([bytes(p) async for p in client.read_body(version)])
                assert hashlib.md5(body).hexdigest() == digest == version.etag, key
            page = await client.list_objects("b")
            assert [o.key for o in page.objects] == ["big", "small"]
        finally:
            await client.close()

    try:
        asyncio.run(main())
    finally:
        for started_child in children:
            kill(started_child)
