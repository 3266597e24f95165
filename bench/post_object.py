"""CPU time of a POST Object (browser form) against a PutObject of the same bytes.

Both go through the real gateway in process (``Gateway`` over ``open_embedded``,
volatile): a presigned SigV4 PUT with an unsigned payload, and a form signed by a SigV4
policy (key, Content-Type, a metadata field, the file). Bodies arrive in 64 KiB ASGI
messages, as uvicorn delivers them. ``time.process_time`` covers every thread (the
gateway, the parser, the storage writer); rounds alternate PUT and POST so a noisy
neighbour hits both, and the ratio POST/PUT is the number to read.

    python -m bench.post_object                     # 4 KiB and 8 MiB, 5 rounds
    python -m bench.post_object --rounds 3 --small 300 --large 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.get_path import ACCESS_KEY, SECRET_KEY, _Sink, presigned, scope_for
from gateway.app import Gateway
from gateway.s3.common import GatewayConfig, owner_for
from storage.client import open_embedded

MESSAGE_BYTES = 64 * 1024  # what uvicorn hands over per http.request message
BOUNDARY = b"----benchBoundary0123456789"
BUCKET = "bench"


def form_body(key: str, data: bytes) -> bytes:
    now = datetime.now(UTC)
    date, amz_date = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
    credential = f"{ACCESS_KEY}/{date}/us-east-1/s3/aws4_request"
    fields = {"key": key, "Content-Type": "application/octet-stream",
              "x-amz-meta-source": "bench", "x-amz-algorithm": "AWS4-HMAC-SHA256",
              "x-amz-credential": credential, "x-amz-date": amz_date}
    document = {"expiration": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "conditions": [{"bucket": BUCKET}, *({n: v} for n, v in fields.items())]}
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    signing_key = ("AWS4" + SECRET_KEY).encode()
    for part in (date, "us-east-1", "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    fields["policy"] = policy
    fields["x-amz-signature"] = hmac.new(signing_key, policy.encode(), hashlib.sha256).hexdigest()
    parts = [b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name.encode()
             + b'"\r\n\r\n' + value.encode() + b"\r\n" for name, value in fields.items()]
    parts.append(b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
                 b'filename="data.bin"\r\nContent-Type: application/octet-stream\r\n\r\n')
    return b"".join(parts) + data + b"\r\n--" + BOUNDARY + b"--\r\n"


async def _send(app: Gateway, scope: dict, body: bytes, expected_status: int) -> None:
    messages = [body[i:i + MESSAGE_BYTES] for i in range(0, len(body), MESSAGE_BYTES)] or [b""]
    position = 0

    async def receive() -> dict:
        nonlocal position
        if position >= len(messages):
            return {"type": "http.disconnect"}
        position += 1
        return {"type": "http.request", "body": messages[position - 1],
                "more_body": position < len(messages)}

    sink = _Sink()
    await app(scope, receive, sink)
    assert sink.status == expected_status, sink.status


def put_scope(key: str, size_bytes: int) -> dict:
    scope = scope_for("PUT", *presigned("PUT", BUCKET, key))
    scope["headers"].append((b"content-length", str(size_bytes).encode()))
    return scope


def post_scope(size_bytes: int) -> dict:
    scope = scope_for("POST", f"/{BUCKET}", b"")
    scope["headers"] += [(b"content-length", str(size_bytes).encode()),
                         (b"content-type", b"multipart/form-data; boundary=" + BOUNDARY)]
    return scope


async def main(rounds: int, counts: dict[int, int]) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        storage = await open_embedded(Path(data_dir), durable=False, lifecycle=None)
        try:
            app = Gateway(storage, GatewayConfig(credentials={ACCESS_KEY: SECRET_KEY}))
            await storage.create_bucket(BUCKET, owner_for(ACCESS_KEY).id)
            for size_bytes, count in counts.items():
                data = bytes(range(256)) * (size_bytes // 256)
                form = form_body("post-key", data)

                async def put(n: int, data: bytes = data) -> None:
                    for _ in range(n):
                        await _send(app, put_scope("put-key", len(data)), data, 200)

                async def post(n: int, form: bytes = form) -> None:
                    for _ in range(n):
                        await _send(app, post_scope(len(form)), form, 204)

                await put(2)
                await post(2)
                results: dict[str, list[float]] = {"PUT": [], "POST": []}
                for _ in range(rounds):
                    for name, operation in (("PUT", put), ("POST", post)):
                        started = time.process_time()
                        await operation(count)
                        results[name].append((time.process_time() - started) / count * 1e6)
                put_us, post_us = (statistics.median(results[n]) for n in ("PUT", "POST"))
                print(f"{size_bytes:>9} B  PUT median {put_us:9.1f} µs CPU/op  POST median "
                      f"{post_us:9.1f} µs CPU/op  POST/PUT {post_us / put_us:.2f}  (rounds PUT "
                      + ", ".join(f"{v:.0f}" for v in results["PUT"]) + "; POST "
                      + ", ".join(f"{v:.0f}" for v in results["POST"]) + ")")
        finally:
            await storage.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", type=int, default=1000, help="4 KiB requests per round")
    parser.add_argument("--large", type=int, default=10, help="8 MiB requests per round")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, {4096: arguments.small, 8 * 1024 * 1024: arguments.large}))
