"""What encryption at rest costs a PUT and a GET: the same gateway over a plain and an
encrypted store (``--encryption-key-file``), side by side in one process.

The ASGI app is called in process with presigned scopes (as ``bench/get_path.py``): no
sockets, so the CPU time per request is Squall's own (routing, SigV4, the handler,
storage, the writer thread for PUT) and, on the encrypted store, AES-CTR in the writer
(PUT) and in the body reader (GET). Rounds interleave the two stores and both body sizes,
so a noisy neighbour hits all of them. 4 KiB bodies show the fixed cost (a key derived
per chunk, a cipher object); 1 MiB bodies (one chunk) the per-byte cost.

    .venv/bin/python -m bench.encryption_cost                    # 5 rounds
    .venv/bin/python -m bench.encryption_cost --rounds 3 --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.get_path import ACCESS_KEY, SECRET_KEY, _body_once, _no_body, _Sink, presigned, scope_for
from gateway.app import Gateway
from gateway.s3.common import GatewayConfig, owner_for

SIZES = {"4KiB": 4 * 1024, "1MiB": 1024 * 1024}


async def measure(rounds: int, requests: int, keys: int) -> dict[str, list[float]]:
    from storage.client import open_embedded
    from storage.engine.cipher import ChunkCipher

    bodies = {name: os.urandom(size) for name, size in SIZES.items()}
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as plain_dir, tempfile.TemporaryDirectory() as enc_dir:
        stores = {
            "plain": await open_embedded(Path(plain_dir), durable=False, lifecycle=None),
            "encrypted": await open_embedded(Path(enc_dir), durable=False, lifecycle=None,
                                             cipher=ChunkCipher(os.urandom(32))),
        }
        try:
            apps = {}
            for name, storage in stores.items():
                apps[name] = Gateway(storage, GatewayConfig(
                    credentials={ACCESS_KEY: SECRET_KEY}, encryption_at_rest=name != "plain"))
                await storage.create_bucket("bench", owner_for(ACCESS_KEY).id)

            def put_scope(key: str, size: int) -> dict[str, Any]:
                scope = scope_for("PUT", *presigned("PUT", "bench", key))
                scope["headers"].append((b"content-length", str(size).encode()))
                return scope

            scopes = {(op, size): [] for op in ("put", "get") for size in SIZES}
            for size_name, size in SIZES.items():
                for n in range(keys):
                    key = f"{size_name}/{n:04d}"
                    scopes[("put", size_name)].append(put_scope(key, size))
                    scopes[("get", size_name)].append(scope_for("GET", *presigned("GET", "bench",
                                                                                   key)))

            async def run(store: str, op: str, size_name: str, count: int) -> float:
                app, body = apps[store], bodies[size_name]
                started = time.process_time()
                for n in range(count):
                    sink = _Sink()
                    receive = _body_once(body) if op == "put" else _no_body
                    await app(scopes[(op, size_name)][n % keys], receive, sink)
                    assert sink.status == 200, (store, op, sink.status)
                    if op == "get":
                        assert sink.body_bytes == len(body)
                return (time.process_time() - started) / count * 1e6

            cells = [(store, op, size) for size in SIZES for op in ("put", "get")
                     for store in stores]
            for cell in cells:  # warm-up; every key is written before it is read
                await run(*cell, keys)
            for _ in range(rounds):
                for cell in cells:
                    results.setdefault("/".join(cell), []).append(await run(*cell, requests))
        finally:
            for storage in stores.values():
                await storage.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--keys", type=int, default=50)
    arguments = parser.parse_args()
    results = asyncio.run(measure(arguments.rounds, arguments.requests, arguments.keys))
    print(f"{'cell':24} {'median µs CPU/request':>22}  rounds")
    for cell, values in results.items():
        print(f"{cell:24} {statistics.median(values):22.1f}  "
              + ", ".join(f"{v:.0f}" for v in values))
    for size in SIZES:
        for op in ("put", "get"):
            pairs = [e / p for p, e in zip(results[f"plain/{op}/{size}"],
                                           results[f"encrypted/{op}/{size}"], strict=True)]
            print(f"encrypted / plain, {op} {size}: median {statistics.median(pairs):.3f} "
                  f"(rounds {min(pairs):.3f} - {max(pairs):.3f})")


if __name__ == "__main__":
    main()
