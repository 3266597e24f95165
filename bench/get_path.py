"""CPU time per 4 KiB GET / HEAD through the real gateway, in process (no sockets).

The ASGI app (``Gateway`` over ``open_embedded``, volatile, no sweeper) is called with a
synthetic scope for presigned path-style requests (botocore's presigner, as the load
generator signs them); ``time.process_time`` over many requests gives the CPU cost of
Squall's own code: routing, SigV4, the handler, storage, the response object. uvicorn
and the socket are not in it. On a shared machine CPU time is steadier than wall time.

    python -m bench.get_path                      # GET and HEAD, 5 rounds of 2000
    python -m bench.get_path --profile get        # cProfile of GETs, top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from gateway.app import Gateway
from gateway.s3.common import GatewayConfig
from storage.client import open_embedded

ACCESS_KEY, SECRET_KEY = "AKIDBENCH", "bench-secret"
HOST = "127.0.0.1:9000"


def presigned(method: str, bucket: str, key: str) -> tuple[str, bytes]:
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1", 3600)
    request = AWSRequest(method=method, url=f"http://{HOST}/{bucket}/{quote(key, safe='/~')}")
    auth.add_auth(request)
    split = urlsplit(request.url)
    return split.path, split.query.encode()


def scope_for(method: str, path: str, query: bytes) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query, "root_path": "",
        "headers": [(b"host", HOST.encode()), (b"user-agent", b"bench"),
                    (b"accept", b"*/*")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 9000),
    }


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


class _Sink:
    __slots__ = ("status", "body_bytes")

    def __init__(self) -> None:
        self.status = 0
        self.body_bytes = 0

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body_bytes += len(message.get("body", b""))


async def _put(app: Gateway, bucket: str, key: str, body: bytes) -> None:
    path, query = presigned("PUT", bucket, key)
    scope = scope_for("PUT", path, query)
    scope["headers"].append((b"content-length", str(len(body)).encode()))
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    sink = _Sink()
    await app(scope, receive, sink)
    assert sink.status == 200, sink.status


async def main(rounds: int, requests: int, keys: int, profile: str | None) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        storage = await open_embedded(Path(data_dir), durable=False, lifecycle=None)
        try:
            app = Gateway(storage, GatewayConfig(credentials={ACCESS_KEY: SECRET_KEY}))
            await storage.create_bucket("bench", "owner")
            body = bytes(range(256)) * 16
            for i in range(keys):
                await _put(app, "bench", f"k/{i:05d}", body)
            scopes = {
                method: [scope_for(method, *presigned(method, "bench", f"k/{i:05d}"))
                         for i in range(keys)]
                for method in ("GET", "HEAD")
            }

            async def run(method: str, count: int) -> float:
                method_scopes = scopes[method]
                started = time.process_time()
                for n in range(count):
                    sink = _Sink()
                    await app(method_scopes[n % keys], _receive, sink)
                    assert sink.status == 200, sink.status
                    assert sink.body_bytes == (len(body) if method == "GET" else 0)
                return (time.process_time() - started) / count * 1e6

            await run("GET", 200)
            await run("HEAD", 200)
            if profile is not None:
                profiler = cProfile.Profile()
                profiler.enable()
                await run(profile.upper(), requests)
                profiler.disable()
                stats = pstats.Stats(profiler)
                stats.sort_stats("tottime").print_stats(40)
                stats.sort_stats("cumulative").print_stats(45)
                return
            results: dict[str, list[float]] = {"GET": [], "HEAD": []}
            for _ in range(rounds):  # interleaved, so a noisy neighbour hits both
                for method in results:
                    results[method].append(await run(method, requests))
            for method, values in results.items():
                print(f"{method:4} 4 KiB: min {min(values):6.1f} µs CPU/request, median "
                      f"{statistics.median(values):6.1f} (rounds: "
                      + ", ".join(f"{v:.1f}" for v in values) + ")")
        finally:
            await storage.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--profile", choices=("get", "head"))
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.requests, arguments.keys, arguments.profile))
