"""CPU time per listing page of 1000 keys at each layer, in process (no sockets).

A bucket of ``--keys`` objects (and a versioned bucket with two versions and a delete
marker per key) is filled through the engine; then pages of 1000 keys are listed,
interleaved round by round so a noisy neighbour hits every case alike:

* ``engine``: ``Engine.list_objects`` / ``list_object_versions`` (the LMDB walk and
  whatever the page is built of);
* ``client``: ``StorageClient.list_objects`` (+ node, transport and the event loop);
* ``gateway``: the real ASGI app (``Gateway`` over ``open_embedded``) answering a
  presigned ListObjectsV2 / ListObjects / ListObjectVersions with a synthetic scope,
  as ``bench/get_path.py`` drives GETs: routing, SigV4, the handler, storage and the
  XML. uvicorn and the socket are not in it.

``time.process_time`` over many pages gives CPU per page; divided by 1000, per key.

``--http`` measures instead the CPU time of a real ``squall serve`` process (utime +
stime from /proc) over pages requested by presigned URLs on one keep-alive connection:
everything the server spends on a page (uvicorn too), and steady on a busy machine, as
wall time is not.

    python -m bench.list_path                         # 5 rounds of 20 pages per case
    python -m bench.list_path --http                  # server CPU per page over HTTP
    python -m bench.list_path --http --py-spy 10      # + py-spy of the server, v2 pages
    python -m bench.list_path --profile gateway-v2    # cProfile of one case
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import http.client
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from bench.get_path import _receive, _Sink, scope_for
from gateway.app import Gateway
from gateway.s3.common import GatewayConfig, owner_for
from squall.launcher import ServerProcess
from storage.api import PutSpec
from storage.client import open_embedded
from storage.engine import Engine

ACCESS_KEY, SECRET_KEY = "AKIDBENCH", "bench-secret"
HOST = "127.0.0.1:9000"
PAGE_KEYS = 1000
POPULATE_TXN_KEYS = 20_000
# What boto3 sends by default today: an MD5 ETag and a CRC32 checksum per object.
SPEC = PutSpec(etag="9e107d9d372bb6826bd81d3542a419d6", content_type="text/plain",
               checksums={"CRC32": "NSRBwg=="}, user_metadata={"origin": "bench"})


def _key(index: int) -> str:
    return f"data/object-{index:09d}.txt"


def populate(data_dir: Path, keys: int) -> None:
    engine = Engine(data_dir, durable=False)
    owner = owner_for(ACCESS_KEY).id
    try:
        with engine.env.begin(write=True) as txn:
            engine.apply_create_bucket(txn, "flat", owner)
            engine.apply_create_bucket(txn, "versioned", owner)
            engine.apply_set_bucket_versioning(txn, "versioned", "Enabled")
        for start in range(0, keys, POPULATE_TXN_KEYS):
            with engine.env.begin(write=True) as txn:
                for index in range(start, min(keys, start + POPULATE_TXN_KEYS)):
                    engine.apply_commit(txn, "flat", _key(index), blob_id=None,
                                        size_bytes=0, spec=SPEC)
        with engine.env.begin(write=True) as txn:
            for index in range(PAGE_KEYS):  # three entries per key: ~3 pages of versions
                for _ in range(2):
                    engine.apply_commit(txn, "versioned", _key(index), blob_id=None,
                                        size_bytes=0, spec=SPEC)
                if index % 3 == 0:
                    engine.apply_delete_object(txn, "versioned", _key(index))
        with engine.env.begin(write=True) as txn:
            engine.record_clock(txn)
    finally:
        engine.close()


def presigned_list(bucket: str, query: str) -> tuple[str, bytes]:
    return presigned_list_for(HOST, bucket, query)


async def main(rounds: int, pages: int, keys: int, profile: str | None) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        populate(Path(data_dir), keys)
        storage = await open_embedded(Path(data_dir), durable=False, lifecycle=None)
        engine = storage._owned_nodes[0].engine  # the engine layer alone, same data
        try:
            app = Gateway(storage, GatewayConfig(credentials={ACCESS_KEY: SECRET_KEY}))
            starts = [_key(i * (keys - PAGE_KEYS - 1) // max(1, pages - 1)) for i in range(pages)]
            gateway_scopes = {
                "gateway-v2": [scope_for("GET", *presigned_list(
                    "flat", f"list-type=2&max-keys=1000&start-after={start}"))
                    for start in starts],
                "gateway-v2-owner-url": [scope_for("GET", *presigned_list(
                    "flat", f"list-type=2&fetch-owner=true&encoding-type=url&start-after={start}"))
                    for start in starts],
                "gateway-v1": [scope_for("GET", *presigned_list("flat", f"marker={start}"))
                               for start in starts],
                "gateway-versions": [scope_for("GET", *presigned_list(
                    "versioned", "versions&max-keys=1000"))],
            }

            def engine_v2() -> None:
                for start in starts:
                    page = engine.list_objects("flat", start_after=start)
                    assert len(page.objects) == PAGE_KEYS

            def engine_versions() -> None:
                for _ in starts:
                    page = engine.list_object_versions("versioned")
                    assert len(page.versions) == PAGE_KEYS

            async def client_v2() -> None:
                for start in starts:
                    page = await storage.list_objects("flat", start_after=start)
                    assert len(page.objects) == PAGE_KEYS

            def gateway(name: str) -> Callable[[], Awaitable[None]]:
                scopes = gateway_scopes[name]

                async def run() -> None:
                    for n in range(pages):
                        sink = _Sink()
                        await app(scopes[n % len(scopes)], _receive, sink)
                        assert sink.status == 200, sink.status
                return run

            cases: dict[str, Callable[[], object]] = {
                "engine-v2": engine_v2, "engine-versions": engine_versions,
                "client-v2": client_v2,
                **{name: gateway(name) for name in gateway_scopes},
            }

            async def timed(name: str) -> float:
                started = time.process_time()
                result = cases[name]()
                if asyncio.iscoroutine(result):
                    await result
                return (time.process_time() - started) / pages * 1e3

            for name in cases:  # warm up
                await timed(name)
            if profile is not None:
                profiler = cProfile.Profile()
                profiler.enable()
                await timed(profile)
                profiler.disable()
                stats = pstats.Stats(profiler)
                stats.sort_stats("tottime").print_stats(25)
                stats.sort_stats("cumulative").print_stats(30)
                return
            results: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(rounds):
                for name in cases:
                    results[name].append(await timed(name))
            print(f"{'case':22} {'min ms':>8} {'median ms':>10} {'µs/key (min)':>13}")
            for name, values in results.items():
                print(f"{name:22} {min(values):8.2f} {statistics.median(values):10.2f} "
                      f"{min(values) / PAGE_KEYS * 1e3:13.2f}")
        finally:
            await storage.close()


def _server_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure_http(rounds: int, pages: int, keys: int, py_spy_seconds: float) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        populate(Path(data_dir), keys)
        with ServerProcess(Path(data_dir), access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                           extra_args=("--log-level", "warning", "--volatile")) as server:
            assert server.process is not None
            host = f"127.0.0.1:{server.port}"
            starts = [_key(i * (keys - PAGE_KEYS - 1) // max(1, pages - 1)) for i in range(pages)]
            targets = {
                "http-v2": [f"list-type=2&start-after={start}" for start in starts],
                "http-v2-owner-url": [
                    f"list-type=2&fetch-owner=true&encoding-type=url&start-after={start}"
                    for start in starts],
                "http-v1": [f"marker={start}" for start in starts],
                "http-versions": ["versions&max-keys=1000"],
            }
            connection = http.client.HTTPConnection("127.0.0.1", server.port)

            def run(name: str) -> float:
                bucket = "versioned" if name == "http-versions" else "flat"
                queries = targets[name]
                urls = []
                for n in range(pages):
                    path, query = presigned_list_for(host, bucket, queries[n % len(queries)])
                    urls.append(f"{path}?{query.decode()}")
                before = _server_cpu_seconds(server.process.pid)  # type: ignore[union-attr]
                for url in urls:
                    connection.request("GET", url)
                    response = connection.getresponse()
                    body = response.read()
                    assert response.status == 200 and body.count(b"<Key>") == PAGE_KEYS, body[:300]
                after = _server_cpu_seconds(server.process.pid)  # type: ignore[union-attr]
                return (after - before) / pages * 1e3

            for name in targets:
                run(name)  # warm up
            results: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(rounds):
                for name in targets:
                    results[name].append(run(name))
            if py_spy_seconds:
                profile_while(server.process.pid, py_spy_seconds, lambda: run("http-v2"))
            connection.close()
    print(f"{'case (server CPU)':22} {'min ms':>8} {'median ms':>10} {'µs/key (min)':>13}")
    for name, values in results.items():
        print(f"{name:22} {min(values):8.2f} {statistics.median(values):10.2f} "
              f"{min(values) / PAGE_KEYS * 1e3:13.2f}")


def profile_while(pid: int, seconds: float, work: Callable[[], object]) -> None:
    """py-spy (raw collapsed stacks) on the server while ``work`` runs again and again;
    the file is summarised by ``bench.profile_summary``."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    output = Path(tempfile.gettempdir()) / f"list_path-py-spy-{pid}.txt"
    recorder = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration",
                                 str(int(seconds)), "--rate", "200", "--format", "raw",
                                 "--output", str(output)], stdout=subprocess.DEVNULL)
    while recorder.poll() is None:
        work()
    print(f"py-spy profile of http-v2 pages: {output}\n"
          f"  {sys.executable} -m bench.profile_summary {output}")


def presigned_list_for(host: str, bucket: str, query: str) -> tuple[str, bytes]:
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1", 3600)
    request = AWSRequest(method="GET", url=f"http://{host}/{bucket}?{query}")
    auth.add_auth(request)
    split = urlsplit(request.url)
    return split.path, split.query.encode()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--profile", help="a case name (see the table) to profile")
    parser.add_argument("--http", action="store_true", help="server CPU per page over HTTP")
    parser.add_argument("--py-spy", type=float, default=0.0, metavar="SECONDS",
                        help="with --http: py-spy the server this long on v2 pages")
    arguments = parser.parse_args()
    if arguments.http:
        measure_http(arguments.rounds, arguments.pages, arguments.keys, arguments.py_spy)
    else:
        asyncio.run(main(arguments.rounds, arguments.pages, arguments.keys, arguments.profile))
