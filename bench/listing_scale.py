"""Does a listing page cost the same in a bucket of 1,000 and of 1,000,000 objects?

Buckets of growing size are filled directly through the engine (big write
transactions: the point is the index, not the write path), then pages of 1000 keys are
listed at random start points:

* in process, through ``StorageClient.list_objects`` (the storage layer's own cost), and
* over HTTP, ``ListObjectsV2`` through ``squall serve`` with a presigned URL per page on
  one keep-alive connection (what a client sees).

The same is done for ``ListObjectVersions`` over ONE key holding 100 to 100,000
versions: pages of 100 starting at a random version deep in the key's history. Results: JSON under bench/results/, a PNG plot, and a table printed.

    .venv/bin/python bench/listing_scale.py            # quick: up to 100,000 objects
    .venv/bin/python bench/listing_scale.py --full     # up to 1,000,000 objects
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import pathlib
import random
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from gateway.app import owner_for
from squall.launcher import ServerProcess
from storage.api import PutSpec
from storage.client import open_embedded
from storage.engine import Engine

ACCESS_KEY, SECRET_KEY = "BENCHROOT", "bench-secret"
PAGE_KEYS = 1000
VERSION_PAGE = 100  # versions per ListObjectVersions page, so every key fills a page
POPULATE_TXN_KEYS = 20_000
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def _key(index: int) -> str:
    # Two levels of prefixes, so delimiter listings have something to roll up.
    return f"d{index % 100:02d}/s{(index // 100) % 100:02d}/object-{index:09d}"


def populate(data_dir: pathlib.Path, sizes: list[int], versions: list[int]) -> None:
    engine = Engine(data_dir, durable=False)
    owner = owner_for(ACCESS_KEY).id
    spec = PutSpec(etag="d41d8cd98f00b204e9800998ecf8427e")
    try:
        with engine.env.begin(write=True) as txn:
            for size in sizes:
                engine.apply_create_bucket(txn, f"n{size}", owner)
            engine.apply_create_bucket(txn, "versions", owner)
            engine.apply_set_bucket_versioning(txn, "versions", "Enabled")
        for size in sizes:
            began = time.perf_counter()
            for start in range(0, size, POPULATE_TXN_KEYS):
                with engine.env.begin(write=True) as txn:
                    for index in range(start, min(size, start + POPULATE_TXN_KEYS)):
                        engine.apply_commit(txn, f"n{size}", _key(index), blob_id=None,
                                            size_bytes=0, spec=spec)
            print(f"  bucket n{size}: {size:,} objects in {time.perf_counter() - began:.1f} s",
                  flush=True)
        for count in versions:
            with engine.env.begin(write=True) as txn:
                for _ in range(count):
                    engine.apply_commit(txn, "versions", f"versioned-{count:06d}", blob_id=None,
                                        size_bytes=0, spec=spec)
        with engine.env.begin(write=True) as txn:
            engine.record_clock(txn)
    finally:
        engine.close()


def _summary(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p90_ms": ordered[int(len(ordered) * 0.9)] * 1e3,
        "mean_ms": statistics.fmean(ordered) * 1e3,
    }


async def measure_storage(
    data_dir: pathlib.Path, sizes: list[int], versions: list[int], pages: int
) -> tuple[dict[str, dict[str, float]], dict[int, list[str]]]:
    client = await open_embedded(data_dir, durable=False, lifecycle=None)
    results: dict[str, dict[str, float]] = {}
    version_markers: dict[int, list[str]] = {}
    rng = random.Random(7)
    try:
        for size in sizes:
            for delimiter in ("", "/"):
                samples = []
                for _ in range(pages):
                    start = _key(rng.randrange(max(1, size - PAGE_KEYS)))
                    began = time.perf_counter()
                    page = await client.list_objects(f"n{size}", delimiter=delimiter,
                                                     start_after=start, max_keys=PAGE_KEYS)
                    samples.append(time.perf_counter() - began)
                    assert page.objects or page.common_prefixes
                results[f"list n={size} delimiter={delimiter or 'none'}"] = _summary(samples)
        for count in versions:
            key = f"versioned-{count:06d}"
            markers = version_markers[count] = await _version_markers(client, key)
            samples = []
            for _ in range(pages):
                marker = rng.choice(markers[: max(1, len(markers) - VERSION_PAGE)])
                began = time.perf_counter()
                page = await client.list_object_versions(
                    "versions", prefix=key, key_marker=key, version_id_marker=marker,
                    max_keys=VERSION_PAGE)
                samples.append(time.perf_counter() - began)
                assert page.versions
            results[f"versions of one key, v={count}"] = _summary(samples)
    finally:
        await client.close()
    return results, version_markers


async def _version_markers(client, key: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Every version id of ``key``, newest first (to start pages deep in its history)."""
    ids: list[str] = []
    key_marker = version_marker = ""
    while True:
        page = await client.list_object_versions("versions", prefix=key, key_marker=key_marker,
                                                 version_id_marker=version_marker,
                                                 max_keys=PAGE_KEYS)
        ids += [version.version_id for version in page.versions]
        if not page.is_truncated:
            return ids
        key_marker, version_marker = page.next_key_marker, page.next_version_id_marker


def measure_http(server: ServerProcess, sizes: list[int], version_markers: dict[int, list[str]],
                 pages: int) -> dict[str, dict[str, float]]:
    s3 = boto3.client("s3", endpoint_url=server.url, aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                      config=Config(signature_version="s3v4",
                                    s3={"addressing_style": "path"}))
    rng = random.Random(11)
    connection = http.client.HTTPConnection("127.0.0.1", server.port)
    results: dict[str, dict[str, float]] = {}

    def timed(url: str) -> float:
        parts = urlsplit(url)
        began = time.perf_counter()
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - began
        assert response.status == 200, body[:300]
        return elapsed

    for size in sizes:
        urls = [s3.generate_presigned_url("list_objects_v2", Params={
            "Bucket": f"n{size}", "MaxKeys": PAGE_KEYS,
            "StartAfter": _key(rng.randrange(max(1, size - PAGE_KEYS)))}) for _ in range(pages)]
        results[f"ListObjectsV2 n={size}"] = _summary([timed(url) for url in urls])
    for count, markers in version_markers.items():
        key = f"versioned-{count:06d}"
        urls = [s3.generate_presigned_url("list_object_versions", Params={
            "Bucket": "versions", "Prefix": key, "KeyMarker": key, "MaxKeys": VERSION_PAGE,
            "VersionIdMarker": rng.choice(markers[: max(1, len(markers) - VERSION_PAGE)])})
            for _ in range(pages)]
        results[f"ListObjectVersions v={count}"] = _summary([timed(url) for url in urls])
    connection.close()
    s3.close()
    return results


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, prefix in (("storage, no delimiter", "list n={} delimiter=none"),
                          ("storage, delimiter '/'", "list n={} delimiter=/")):
        left.plot(sizes, [result["storage"][prefix.format(n)]["p50_ms"] for n in sizes],
                  marker="o", label=label)
    left.plot(sizes, [result["http"][f"ListObjectsV2 n={n}"]["p50_ms"] for n in sizes],
              marker="s", label="HTTP ListObjectsV2")
    left.set(xscale="log", xlabel="objects in the bucket", ylabel="p50 per 1000-key page (ms)",
             title="A listing page vs bucket size")
    left.set_ylim(bottom=0)
    left.legend()
    counts = result["versions"]
    right.plot(counts, [result["storage"][f"versions of one key, v={v}"]["p50_ms"]
                        for v in counts], marker="o", label="storage")
    right.plot(counts, [result["http"][f"ListObjectVersions v={v}"]["p50_ms"] for v in counts],
               marker="s", label="HTTP")
    right.set(xscale="log", xlabel="versions of the key",
              ylabel=f"p50 per page of {VERSION_PAGE} versions (ms)",
              title="ListObjectVersions, pages deep in one key's history")
    right.set_ylim(bottom=0)
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="buckets up to 1,000,000 objects")
    parser.add_argument("--pages", type=int, default=60, help="pages measured per case")
    args = parser.parse_args()
    sizes = [1_000, 10_000, 100_000] + ([1_000_000] if args.full else [])
    versions = [100, 1_000, 10_000, 100_000]
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        data_dir = pathlib.Path(directory) / "data"
        print("populating ...", flush=True)
        populate(data_dir, sizes, versions)
        print("listing in process ...", flush=True)
        storage, version_markers = asyncio.run(
            measure_storage(data_dir, sizes, versions, args.pages))
        print("listing over HTTP ...", flush=True)
        with ServerProcess(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                           extra_args=("--log-level", "warning")) as server:
            over_http = measure_http(server, sizes, version_markers, args.pages)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {"benchmark": "listing_scale", "date": stamp, "commit": commit,
              "sizes": sizes, "versions": versions, "pages": args.pages,
              "storage": storage, "http": over_http}
    (RESULTS / f"listing_scale-{stamp}.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / f"listing_scale-{stamp}.png")
    print(f"\n{'case':42} {'p50 ms':>8} {'p90 ms':>8}")
    for name, row in {**storage, **over_http}.items():
        print(f"{name:42} {row['p50_ms']:8.2f} {row['p90_ms']:8.2f}")
    smallest, largest = sizes[0], sizes[-1]
    ratio = (over_http[f"ListObjectsV2 n={largest}"]["p50_ms"]
             / over_http[f"ListObjectsV2 n={smallest}"]["p50_ms"])
    print(f"\nHTTP page p50, {largest:,} vs {smallest:,} objects: {ratio:.2f}x")
    print(f"results: bench/results/listing_scale-{stamp}.json (+ .png)")


if __name__ == "__main__":
    main()
