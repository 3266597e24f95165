"""A GET whose body stream the node refuses, over a network transport.

Over TCP a body stream is opened by its first step, so a node that refuses it (all its
read slots taken: ``Overloaded``) says so only when the gateway reads the first piece.
The gateway reads that piece before it answers (``gateway.responses.first_piece``): the
client gets S3's 503 SlowDown with its XML, not a 200 whose body breaks off after the
headers. Real parts: a node served by ``TcpNodeServer``, the client over ``TcpTransport``,
the gateway app called through ASGI.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.app import Gateway
from gateway.s3.common import GatewayConfig, owner_for
from storage.api import limits
from tests.unit.transport_harness import open_store, put_object

ACCESS_KEY, SECRET_KEY = "AKIDREMOTEBODY", "remote-body-secret"
HOST = "127.0.0.1:9000"
BODY = b"remote body " * 100_000  # > one chunk: not an inline body


async def _get(gateway: Gateway, path: str) -> tuple[int, bytes]:
    request = AWSRequest(method="GET", url=f"http://{HOST}{path}")
    S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1", 60).add_auth(
        request)
    query = request.url.split("?", 1)[1]
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", HOST.encode())],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 9000),
    }  # fmt: skip
    status, body = 0, bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            body.extend(message.get("body", b""))

    await gateway(scope, receive, send)
    return status, bytes(body)


def test_a_refused_remote_stream_is_a_slowdown_not_a_cut_200(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        async with open_store("tcp", tmp_path) as store:
            client, [node] = store.client, store.nodes
            await client.create_bucket("b", owner_for(ACCESS_KEY).id)
            version = await put_object(client, "b", "k", BODY)
            gateway = Gateway(client, GatewayConfig(credentials={ACCESS_KEY: SECRET_KEY}))

            assert await _get(gateway, "/b/k") == (200, BODY)  # the control

            held = [node.read_body(version) for _ in range(limits.read_streams_max)]
            try:
                status, answer = await _get(gateway, "/b/k")
            finally:
                for stream in held:
                    await stream.aclose()
            assert status == 503, (status, answer[:200])
            assert b"<Code>SlowDown</Code>" in answer

            assert await _get(gateway, "/b/k") == (200, BODY)  # slots back: served again

    asyncio.run(main())
