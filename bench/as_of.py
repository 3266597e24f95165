"""As-of GET latency: a key with 1 version vs a key with 10,000 versions.

An as-of read is one LMDB seek to (key, inverted upper-bound HLC of T), so its cost
should not depend on how many versions the key has (B+tree depth aside). This measures
that claim at two levels:

* ``storage``: ``StorageClient.get_version(..., as_of_ms=T)`` in process (no HTTP);
* ``http``: a full GET through ``squall serve``, with presigned URLs carrying ``as-of``
  (signed ahead of time, so client-side signing is not measured) sent over one
  keep-alive connection.

The store is populated through the storage client directly (fast: group commit, no
HTTP). Run::

    .venv/bin/python bench/as_of.py            # 10,000 versions, 2,000 GETs
    .venv/bin/python bench/as_of.py --versions 1000 --requests 300   # quick

Results are printed and written as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
from botocore.client import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from squall.asof import reading_as_of  # noqa: E402
from storage.api import PutSpec  # noqa: E402
from storage.client import open_embedded  # noqa: E402

BUCKET = "bench-as-of"
ACCESS_KEY = "BENCHASOF00000000000"
SECRET_KEY = "bench-as-of-secret-000000000000000000000"
BODY = os.urandom(1024)
WRITE_BATCH = 256  # concurrent puts per batch: they share group commits
WARMUP_REQUESTS = 100
KEYS = ("one", "many")
SERVER_START_TIMEOUT_SECONDS = 20.0


async def _put(storage, key: str) -> int:
    async with storage.open_upload(BUCKET, key) as upload:
        await upload.write(BODY)
        version = await upload.commit(PutSpec(etag="0" * 32))
    return version.last_modified_ms


async def populate(data_dir: Path, versions: int) -> dict[str, tuple[int, int]]:
    """Write 'one' once and 'many' ``versions`` times; return each key's (first, last) ms."""
    storage = await open_embedded(data_dir, durable=False)
    try:
        await storage.create_bucket(BUCKET, "bench")
        await storage.set_bucket_versioning(BUCKET, "Enabled")
        one_ms = await _put(storage, "one")
        stamps: list[int] = []
        for start in range(0, versions, WRITE_BATCH):
            count = min(WRITE_BATCH, versions - start)
            stamps += await asyncio.gather(*(_put(storage, "many") for _ in range(count)))
        page = await storage.list_object_versions(BUCKET, prefix="many", max_keys=1000)
        assert len(page.versions) == min(versions, 1000)
        return {"one": (one_ms, one_ms), "many": (min(stamps), max(stamps))}
    finally:
        await storage.close()


def _summary(latencies_s: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_s)

    def percentile(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6

    return {
        "count": len(ordered),
        "mean_us": statistics.fmean(ordered) * 1e6,
        "p50_us": percentile(0.50),
        "p90_us": percentile(0.90),
        "p99_us": percentile(0.99),
    }


def _as_of_times(span: tuple[int, int], count: int, rng: random.Random) -> list[int]:
    first, last = span
    return [rng.randint(first, last) for _ in range(count)]


async def bench_storage(data_dir: Path, spans, requests: int, seed: int) -> dict:
    storage = await open_embedded(data_dir, durable=False)
    rng = random.Random(seed)
    times = {key: _as_of_times(spans[key], WARMUP_REQUESTS + requests, rng) for key in KEYS}
    latencies: dict[str, list[float]] = {key: [] for key in KEYS}
    try:
        # Interleaved, so drift in a shared machine's load hits both keys alike.
        for index in range(WARMUP_REQUESTS + requests):
            for key in KEYS:
                started = time.perf_counter()
                version = await storage.get_version(BUCKET, key, as_of_ms=times[key][index])
                elapsed = time.perf_counter() - started
                assert not version.is_delete_marker
                if index >= WARMUP_REQUESTS:
                    latencies[key].append(elapsed)
    finally:
        await storage.close()
    return {key: _summary(latencies[key]) for key in KEYS}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(data_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "SQUALL_ROOT_USER": ACCESS_KEY, "SQUALL_ROOT_PASSWORD": SECRET_KEY}
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "squall", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--log-level", "warning"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0)
            return process
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit("squall serve did not start") from None
            time.sleep(0.1)


def bench_http(data_dir: Path, spans, requests: int, seed: int) -> dict:
    port = _free_port()
    process = _start_server(data_dir, port)
    rng = random.Random(seed)
    try:
        s3 = boto3.session.Session().client(
            "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        urls: dict[str, list[str]] = {key: [] for key in KEYS}
        for key in KEYS:
            for as_of_ms in _as_of_times(spans[key], WARMUP_REQUESTS + requests, rng):
                with reading_as_of(s3, as_of_ms):
                    urls[key].append(s3.generate_presigned_url(
                        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600))
        latencies: dict[str, list[float]] = {key: [] for key in KEYS}
        with httpx.Client(timeout=30.0) as http:  # one keep-alive connection
            for index in range(WARMUP_REQUESTS + requests):
                for key in KEYS:  # interleaved, as in bench_storage
                    started = time.perf_counter()
                    response = http.get(urls[key][index])
                    elapsed = time.perf_counter() - started
                    assert response.status_code == 200 and response.content == BODY, response
                    if index >= WARMUP_REQUESTS:
                        latencies[key].append(elapsed)
        results = {key: _summary(latencies[key]) for key in KEYS}
        s3.close()
        return results
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _ratios(results: dict) -> dict[str, float]:
    return {f"{name}_many_over_one": results["many"][name] / results["one"][name]
            for name in ("p50_us", "p99_us", "mean_us")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="squall-bench-as-of-") as temporary:
        data_dir = Path(temporary)
        started = time.perf_counter()
        spans = asyncio.run(populate(data_dir, args.versions))
        populate_s = time.perf_counter() - started
        print(f"populated 1 + {args.versions} versions in {populate_s:.1f} s")
        storage_results = asyncio.run(bench_storage(data_dir, spans, args.requests, args.seed))
        http_results = bench_http(data_dir, spans, args.requests, args.seed)
    report = {
        "benchmark": "as_of_get",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/as_of.py " + " ".join(sys.argv[1:]),
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "system": platform.system()},
        "parameters": {"versions_of_many": args.versions, "requests": args.requests,
                       "warmup_requests": WARMUP_REQUESTS, "body_bytes": len(BODY),
                       "seed": args.seed},
        "populate_seconds": populate_s,
        "storage": {**storage_results, "ratios": _ratios(storage_results)},
        "http": {**http_results, "ratios": _ratios(http_results)},
    }
    for level in ("storage", "http"):
        print(f"{level}:")
        for key in KEYS:
            r = report[level][key]
            print(f"  {key:>4}: p50 {r['p50_us']:8.1f} us  p90 {r['p90_us']:8.1f} us  "
                  f"p99 {r['p99_us']:8.1f} us  mean {r['mean_us']:8.1f} us")
        ratios = report[level]["ratios"]
        print("  many/one: " + "  ".join(f"{k.split('_')[0]} {v:.2f}x"
                                         for k, v in ratios.items()))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = output_dir / f"as_of-{stamp}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
