"""A replicated cluster vs the embedded store: what replication costs a write and a read.

One run measures, through ``ShardedStorageClient`` (what the gateway calls), in durable
mode (every acknowledged write fsynced: on every replica for the cluster):

* PUT of a 4 KiB object, one at a time (p50, p99, mean) and 16 in flight (PUTs/s);
* GET (``get_version`` + ``read_body``) of it, one at a time (p50, p99).

over two set-ups:

* ``embedded``: ``open_embedded``, one node in this process (what ``squall serve`` does);
* ``cluster``: three ``squall node`` processes on 127.0.0.1, one shard replicated on all
  three, reached through ``ClusterTransport`` (what ``squall serve --cluster`` does).

On this 2-core machine the three nodes and the client share two cores: the numbers are
what a laptop shows, not what three machines would. Results are printed (a markdown table
for docs/benchmarks.md) and written as JSON under bench/results/.

    python -m bench.cluster                  # 300 sequential PUTs/GETs, 1000 concurrent
    python -m bench.cluster --puts 100 --concurrent-puts 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storage.api import PutSpec
from storage.client import ShardedStorageClient, open_embedded
from storage.cluster_client import open_cluster_client
from storage.cluster_config import load_cluster_config

BUCKET = "bench"
BODY = os.urandom(4096)
CONCURRENCY = 16
REPO_ROOT = Path(__file__).resolve().parents[1]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start_cluster(root: Path) -> tuple[Path, list[subprocess.Popen[bytes]]]:
    ports = _free_ports(6)
    (root / "secret").write_text("bench-cluster-secret-000000")
    config = root / "cluster.json"
    config.write_text(json.dumps({
        "nodes": {f"n{i}": {"address": f"127.0.0.1:{ports[i]}",
                            "raft": f"127.0.0.1:{ports[3 + i]}"} for i in range(3)},
        "shards": 1, "replication_factor": 3, "secret_file": "secret"}))
    processes = [subprocess.Popen(
        [sys.executable, "-m", "squall", "node", "--node-id", f"n{i}", "--data-dir",
         str(root / f"n{i}"), "--cluster", str(config)], cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(3)]
    return config, processes


async def _put(client: ShardedStorageClient, key: str) -> None:
    async with client.open_upload(BUCKET, key) as upload:
        await upload.write(BODY)
        await upload.commit(PutSpec(etag="e"))


async def _get(client: ShardedStorageClient, key: str) -> None:
    version = await client.get_version(BUCKET, key)
    async for piece in client.read_body(version):
        bytes(piece)


def _summary(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {"p50_ms": 1000 * ordered[len(ordered) // 2],
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "mean_ms": 1000 * statistics.fmean(ordered)}


async def measure(client: ShardedStorageClient, puts: int, concurrent_puts: int
                  ) -> dict[str, Any]:
    await client.create_bucket(BUCKET, "bench")
    put_s, get_s = [], []
    for index in range(puts):
        began = time.perf_counter()
        await _put(client, f"seq-{index}")
        put_s.append(time.perf_counter() - began)
    for index in range(puts):
        began = time.perf_counter()
        await _get(client, f"seq-{index}")
        get_s.append(time.perf_counter() - began)
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> None:
        async with semaphore:
            await _put(client, f"par-{index}")

    began = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(concurrent_puts)))
    elapsed_s = time.perf_counter() - began
    return {"put": _summary(put_s), "get": _summary(get_s),
            "puts_per_second_16_in_flight": concurrent_puts / elapsed_s}


async def run(puts: int, concurrent_puts: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        embedded = await open_embedded(root / "embedded", durable=True)
        try:
            results["embedded"] = await measure(embedded, puts, concurrent_puts)
        finally:
            await embedded.close()
        config, processes = start_cluster(root)
        try:
            await asyncio.sleep(3)  # the nodes start and agree their first view
            client = await open_cluster_client(load_cluster_config(config))
            try:
                results["cluster"] = await measure(client, puts, concurrent_puts)
            finally:
                await client.close()
        finally:
            for process in processes:
                process.send_signal(signal.SIGKILL)
                process.wait()
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| set-up | PUT 4 KiB p50 / p99 ms | GET 4 KiB p50 / p99 ms | PUTs/s, 16 in flight |",
             "|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['put']['p50_ms']:.1f} / {r['put']['p99_ms']:.1f} | "
                     f"{r['get']['p50_ms']:.2f} / {r['get']['p99_ms']:.2f} | "
                     f"{r['puts_per_second_16_in_flight']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=300)
    parser.add_argument("--concurrent-puts", type=int, default=1000)
    args = parser.parse_args()
    results = asyncio.run(run(args.puts, args.concurrent_puts))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {"bench": "cluster", "when": stamp, "machine": platform.platform(),
                "cpus": os.cpu_count(), "parameters": vars(args), "results": results}
    path = REPO_ROOT / "bench" / "results" / f"cluster-{stamp}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(table(results))
    print(f"written: {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
