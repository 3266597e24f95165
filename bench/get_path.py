"""CPU time per 4 KiB GET / HEAD / PUT through the real gateway, in process (no sockets).

The ASGI app (``Gateway`` over ``open_embedded``, volatile, no sweeper) is called with
synthetic scopes signed by botocore: presigned path-style URLs (as the load generator
signs them) and, for ``get-header``, a SigV4 ``Authorization`` header as boto3 sends
it. ``time.process_time`` over many requests gives the CPU cost of Squall's own code:
routing, SigV4, the handler, storage (the writer thread included, for PUT), the
response object. uvicorn and the socket are not in it. On a shared machine CPU time is
steadier than wall time, and rounds of the operations are interleaved so that a noisy
neighbour hits them all.

    python -m bench.get_path                      # get, head, put, get-header: 5 x 2000
    python -m bench.get_path --ops get,put        # some of them
    python -m bench.get_path --ops get,get-policy,get-anonymous   # a bucket policy's cost
    python -m bench.get_path --profile get        # cProfile of GETs, top functions

``--rounds 1 --requests N --ops get --lmdb-map-mib 1024`` under ``valgrind
--tool=cachegrind`` (see docs/benchmarks.md) counts instructions, which a busy machine
does not disturb.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from gateway.app import Gateway
from gateway.s3.common import GatewayConfig, owner_for

ACCESS_KEY, SECRET_KEY = "AKIDBENCH", "bench-secret"
HOST = "127.0.0.1:9000"
OPERATIONS = ("get", "head", "put", "get-header", "get-policy", "get-anonymous")
DEFAULT_OPERATIONS = ("get", "head", "put", "get-header")
# get-policy and get-anonymous read from a bucket with this policy (the two statements
# most public buckets have): signed presigned GETs, and unsigned GETs it lets in.
POLICY_BUCKET = "bench-policy"
POLICY_DOCUMENT = (
    b'{"Version": "2012-10-17", "Statement": ['
    b'{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",'
    b' "Resource": "arn:aws:s3:::bench-policy/*"},'
    b'{"Sid": "NoDeletes", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",'
    b' "Resource": "arn:aws:s3:::bench-policy/*",'
    b' "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}'
)
BODY = bytes(range(256)) * 16  # 4 KiB

Receive = Callable[[], Awaitable[dict[str, Any]]]


def presigned(method: str, bucket: str, key: str) -> tuple[str, bytes]:
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1", 3600)
    request = AWSRequest(method=method, url=f"http://{HOST}/{bucket}/{quote(key, safe='/~')}")
    auth.add_auth(request)
    split = urlsplit(request.url)
    return split.path, split.query.encode()


def header_signed(method: str, bucket: str, key: str) -> dict[str, Any]:
    """A scope signed in the Authorization header, as boto3 signs a GetObject."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=f"http://{HOST}/{bucket}/{quote(key, safe='/~')}",
                         headers={"User-Agent": "bench"})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    scope = scope_for(method, urlsplit(request.url).path, b"")
    scope["headers"] = [(b"host", HOST.encode()), (b"accept", b"*/*")] + [
        (name.lower().encode(), value.encode() if isinstance(value, str) else value)
        for name, value in request.headers.items()
    ]
    return scope


def scope_for(method: str, path: str, query: bytes) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query, "root_path": "",
        "headers": [(b"host", HOST.encode()), (b"user-agent", b"bench"),
                    (b"accept", b"*/*")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 9000),
    }  # fmt: skip


def put_scope(bucket: str, key: str) -> dict[str, Any]:
    scope = scope_for("PUT", *presigned("PUT", bucket, key))
    scope["headers"].append((b"content-length", str(len(BODY)).encode()))
    return scope


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _body_once(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class _Sink:
    __slots__ = ("status", "body_bytes")

    def __init__(self) -> None:
        self.status = 0
        self.body_bytes = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body_bytes += len(message.get("body", b""))


async def main(ops: list[str], rounds: int, requests: int, keys: int,
               profile: str | None) -> None:  # fmt: skip
    from storage.client import open_embedded  # after --lmdb-map-mib is applied

    with tempfile.TemporaryDirectory() as data_dir:
        storage = await open_embedded(Path(data_dir), durable=False, lifecycle=None)
        try:
            app = Gateway(storage, GatewayConfig(credentials={ACCESS_KEY: SECRET_KEY}))
            await storage.create_bucket("bench", owner_for(ACCESS_KEY).id)
            names = [f"k/{i:05d}" for i in range(keys)]
            for name in names:
                sink = _Sink()
                await app(put_scope("bench", name), _body_once(BODY), sink)
                assert sink.status == 200, sink.status
            if {"get-policy", "get-anonymous"} & set(ops):
                await storage.create_bucket(POLICY_BUCKET, "owner")
                await storage.put_bucket_config(POLICY_BUCKET, "policy", POLICY_DOCUMENT)
                for name in names:
                    sink = _Sink()
                    await app(put_scope(POLICY_BUCKET, name), _body_once(BODY), sink)
                    assert sink.status == 200, sink.status
            scopes = {
                "get": [scope_for("GET", *presigned("GET", "bench", n)) for n in names],
                "head": [scope_for("HEAD", *presigned("HEAD", "bench", n)) for n in names],
                "put": [put_scope("bench", n) for n in names],
                "get-header": [header_signed("GET", "bench", n) for n in names],
                "get-policy": [scope_for("GET", *presigned("GET", POLICY_BUCKET, n))
                               for n in names],
                "get-anonymous": [scope_for("GET", f"/{POLICY_BUCKET}/{n}", b"")
                                  for n in names],
            }
            expected_body_bytes = {"get": len(BODY), "head": 0, "put": 0, "get-header": len(BODY),
                                   "get-policy": len(BODY), "get-anonymous": len(BODY)}

            async def run(op: str, count: int) -> float:
                op_scopes = scopes[op]
                body_bytes = expected_body_bytes[op]
                started = time.process_time()
                for n in range(count):
                    sink = _Sink()
                    receive = _body_once(BODY) if op == "put" else _no_body
                    await app(op_scopes[n % keys], receive, sink)
                    assert sink.status == 200, (op, sink.status)
                    assert sink.body_bytes == body_bytes, (op, sink.body_bytes)
                return (time.process_time() - started) / count * 1e6

            for op in ops:  # warm-up: caches, first-call imports
                await run(op, 200)
            if profile is not None:
                profiler = cProfile.Profile()
                profiler.enable()
                await run(profile, requests)
                profiler.disable()
                stats = pstats.Stats(profiler)
                stats.sort_stats("tottime").print_stats(40)
                stats.sort_stats("cumulative").print_stats(45)
                return
            results: dict[str, list[float]] = {op: [] for op in ops}
            for _ in range(rounds):  # interleaved, so a noisy neighbour hits all
                for op in ops:
                    results[op].append(await run(op, requests))
            for op, values in results.items():
                print(f"{op:10} 4 KiB: min {min(values):6.1f} µs CPU/request, median "
                      f"{statistics.median(values):6.1f} (rounds: "
                      + ", ".join(f"{v:.1f}" for v in values) + ")")
        finally:
            await storage.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ops", default=",".join(DEFAULT_OPERATIONS),
                        help="comma-separated, of: " + ", ".join(OPERATIONS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--profile", choices=OPERATIONS)
    parser.add_argument("--lmdb-map-mib", type=int,
                        help="LMDB map size (under valgrind, which cannot reserve the 1 TiB)")
    arguments = parser.parse_args()
    if arguments.lmdb_map_mib is not None:
        # Before the engine is imported: its default map size is read at definition.
        import storage.limits

        storage.limits.lmdb_map_size_bytes = arguments.lmdb_map_mib * 2**20
    chosen = [op for op in arguments.ops.split(",") if op]
    unknown = [op for op in chosen if op not in OPERATIONS]
    if unknown:
        parser.error(f"unknown operations: {', '.join(unknown)}")
    asyncio.run(main(chosen, arguments.rounds, arguments.requests, arguments.keys,
                     arguments.profile))
