"""Transports side by side: the storage client over the in-process transport vs TCP.

One run measures, through ``ShardedStorageClient`` (what the gateway calls):

* small-op latency: ``get_version`` of a 4-byte object, one call at a time (p50, p99,
  mean), and ``get_version`` calls at 16 in flight (calls per second);
* body throughput: PUT and GET of 1 MiB and 16 MiB bodies (MiB/s, median of rounds;
  a GET is ``get_version`` + ``read_body``, each piece copied to bytes as the gateway
  does).

over three set-ups, each on its own volatile store (no fsync: the transport is measured,
not the disk), all on uvloop as ``squall serve`` runs:

* ``local``: ``LocalTransport``, the node in this process (what ``squall serve`` does);
* ``tcp-inproc``: ``TcpTransport`` to a ``TcpNodeServer`` in this process, on the same
  event loop (the protocol's own CPU cost, both ends on one core);
* ``tcp``: ``TcpTransport`` to a node served by a child process on 127.0.0.1 (both ends
  have a core of their own, on a machine that has two).

Rounds alternate the set-ups so that a noisy neighbour hits them all; ratios are over
``local``. Results are printed (a markdown table for docs/benchmarks.md) and written as
JSON under bench/results/.

    python -m bench.transport                       # 5 rounds
    python -m bench.transport --rounds 3 --small-calls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from storage.api import PutSpec
from storage.client import ShardedStorageClient
from storage.node import StorageNode
from storage.placement import single_node_view
from storage.transport.local import LocalTransport
from storage.transport.tcp import TcpNodeServer, TcpTransport

SETUPS = ("local", "tcp-inproc", "tcp")
BUCKET = "bench"
MIB = 1024 * 1024
BODY_SIZES_MIB = (1, 16)
CONCURRENCY = 16


# --- the node in a child process --------------------------------------------------------


async def serve_node(data_dir: Path) -> None:
    node = StorageNode.open("n0", data_dir, durable=False)
    server = TcpNodeServer(node)
    _, port = await server.start()
    print(f"listening {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await server.close()
    await node.close()


@asynccontextmanager
async def open_setup(kind: str, data_dir: Path) -> AsyncIterator[ShardedStorageClient]:
    view = single_node_view("n0")
    if kind == "local":
        node = StorageNode.open("n0", data_dir, durable=False)
        client = ShardedStorageClient(view, LocalTransport({"n0": node}), (node,))
        try:
            yield client
        finally:
            await client.close()
    elif kind == "tcp-inproc":
        node = StorageNode.open("n0", data_dir, durable=False)
        server = TcpNodeServer(node)
        client = ShardedStorageClient(view, TcpTransport({"n0": await server.start()}))
        try:
            yield client
        finally:
            await client.close()
            await server.close()
            await node.close()
    else:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.transport", "--serve-node", str(data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[1])
        assert child.stdin is not None and child.stdout is not None
        try:
            line = await asyncio.to_thread(child.stdout.readline)
            assert line.startswith("listening "), line
            address = ("127.0.0.1", int(line.split()[1]))
            client = ShardedStorageClient(view, TcpTransport({"n0": address}))
            try:
                yield client
            finally:
                await client.close()
        finally:
            child.stdin.close()
            child.wait(timeout=30)
            child.stdout.close()


# --- measurements ------------------------------------------------------------------------


async def put(client: ShardedStorageClient, key: str, body: bytes) -> None:
    async with client.open_upload(BUCKET, key) as upload:
        await upload.write(body)  # bytes: full chunks are staged by reference
        await upload.commit(PutSpec(etag="bench"))


async def get(client: ShardedStorageClient, key: str) -> int:
    """Read a body as the gateway's ``BodyResponse`` does: each piece copied to bytes
    (in-process a piece is a view of the memory map; without the copy a local GET would
    move no byte at all)."""
    version = await client.get_version(BUCKET, key)
    size = 0
    async for piece in client.read_body(version):
        size += len(bytes(piece))
    return size


async def small_latencies_us(client: ShardedStorageClient, calls: int) -> list[float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await client.get_version(BUCKET, "tiny")
        latencies.append((time.perf_counter() - started) * 1e6)
    return latencies


async def small_calls_per_second(client: ShardedStorageClient, calls: int) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await client.get_version(BUCKET, "tiny")

    started = time.perf_counter()
    await asyncio.gather(*(worker(calls // CONCURRENCY) for _ in range(CONCURRENCY)))
    return (calls // CONCURRENCY * CONCURRENCY) / (time.perf_counter() - started)


async def timed_mib_per_second(operation: Callable[[], Awaitable[Any]], size_mib: int) -> float:
    started = time.perf_counter()
    await operation()
    return size_mib / (time.perf_counter() - started)


async def one_round(client: ShardedStorageClient, small_calls: int,
                    bodies: dict[int, bytes]) -> dict[str, Any]:
    result: dict[str, Any] = {"small_us": await small_latencies_us(client, small_calls),
                              "small_calls_per_s": await small_calls_per_second(
                                  client, small_calls)}
    for size_mib, body in bodies.items():
        key = f"body-{size_mib}"
        result[f"put_{size_mib}m_mib_s"] = await timed_mib_per_second(
            lambda: put(client, key, body), size_mib)  # noqa: B023  awaited at once
        result[f"get_{size_mib}m_mib_s"] = await timed_mib_per_second(
            lambda: get(client, key), size_mib)  # noqa: B023
        assert await get(client, key) == len(body)
    return result


async def bench(rounds: int, small_calls: int, setups: tuple[str, ...]) -> dict[str, Any]:
    bodies = {size: os.urandom(size * MIB) for size in BODY_SIZES_MIB}
    raw: dict[str, list[dict[str, Any]]] = {kind: [] for kind in setups}
    with tempfile.TemporaryDirectory(prefix="squall-bench-transport-") as temporary:
        async with _all_open(setups, Path(temporary)) as clients:
            for client in clients.values():
                await client.create_bucket(BUCKET, "bench")
                await put(client, "tiny", b"tiny")
                await one_round(client, min(small_calls, 200), bodies)  # warm-up
            for round_index in range(rounds):
                for kind in setups:  # alternated: a neighbour's burst hits every set-up
                    raw[kind].append(await one_round(clients[kind], small_calls, bodies))
                print(f"round {round_index + 1}/{rounds} done", flush=True)
    return {kind: _summary(rounds_of) for kind, rounds_of in raw.items()}


@asynccontextmanager
async def _all_open(setups: tuple[str, ...],
                    directory: Path) -> AsyncIterator[dict[str, ShardedStorageClient]]:
    if not setups:
        yield {}
        return
    kind, rest = setups[0], setups[1:]
    async with open_setup(kind, directory / kind) as client, _all_open(rest, directory) as others:
        yield {kind: client, **others}


def _summary(rounds: list[dict[str, Any]]) -> dict[str, float]:
    latencies = sorted(value for r in rounds for value in r["small_us"])
    summary = {
        "small_p50_us": latencies[len(latencies) // 2],
        "small_p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "small_mean_us": statistics.fmean(latencies),
        "small_c16_calls_per_s": statistics.median(r["small_calls_per_s"] for r in rounds),
    }
    for size in BODY_SIZES_MIB:
        for direction in ("put", "get"):
            name = f"{direction}_{size}m_mib_s"
            summary[name] = statistics.median(r[name] for r in rounds)
    return summary


ROWS = [
    ("get_version p50 (µs, c=1)", "small_p50_us", "{:.0f}"),
    ("get_version p99 (µs, c=1)", "small_p99_us", "{:.0f}"),
    ("get_version mean (µs, c=1)", "small_mean_us", "{:.0f}"),
    ("get_version calls/s (c=16)", "small_c16_calls_per_s", "{:,.0f}"),
    *[(f"{d.upper()} {s} MiB (MiB/s)", f"{d}_{s}m_mib_s", "{:,.0f}")
      for s in BODY_SIZES_MIB for d in ("put", "get")],
]


def markdown(results: dict[str, dict[str, float]]) -> str:
    setups = list(results)
    others = [kind for kind in setups if kind != "local"]
    head = ("| measure | " + " | ".join(setups) + " | "
            + " | ".join(f"{kind}/local" for kind in others) + " |")
    lines = [head, "|" + "---|" * (1 + len(setups) + len(others))]
    for label, name, form in ROWS:
        cells = [form.format(results[kind][name]) for kind in setups]
        ratios = [f"{results[kind][name] / results['local'][name]:.2f}×" for kind in others]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small-calls", type=int, default=3000)
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--serve-node", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_node:
        uvloop.run(serve_node(Path(args.serve_node)))
        return 0
    setups = tuple(args.setups.split(","))
    assert setups[0] == "local" and set(setups) <= set(SETUPS), "local first"
    started = time.perf_counter()
    results = uvloop.run(bench(args.rounds, args.small_calls, setups))
    report = {
        "benchmark": "transport",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.transport " + " ".join(sys.argv[1:]),
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "system": platform.system(),
                        "load_average": os.getloadavg()},
        "parameters": {"rounds": args.rounds, "small_calls": args.small_calls,
                       "concurrency": CONCURRENCY, "body_sizes_mib": BODY_SIZES_MIB},
        "seconds": time.perf_counter() - started,
        "results": results,
    }
    print(markdown(results))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = output_dir / f"transport-{stamp}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
