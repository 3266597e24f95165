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

from gateway.app import Gateway
from gateway.s3.common import GatewayConfig, owner_for
from storage.api import limits
from tests.unit.test_bucket_policy_gateway import ACCESS_KEY, SECRET_KEY, call
from tests.unit.transport_harness import open_store, put_object

BODY = b"remote body " * 100_000  # > one chunk: not an inline body


def test_a_refused_remote_stream_is_a_slowdown_not_a_cut_200(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        async with open_store("tcp", tmp_path) as store:
            client, [node] = store.client, store.nodes
            await client.create_bucket("b", owner_for(ACCESS_KEY).id)
            version = await put_object(client, "b", "k", BODY)
            gateway = Gateway(client, GatewayConfig(credentials={ACCESS_KEY: SECRET_KEY}))

            assert await call(gateway, "GET", "/b/k") == (200, BODY)  # the control

            held = [node.read_body(version) for _ in range(limits.read_streams_max)]
            try:
                status, answer = await call(gateway, "GET", "/b/k")
            finally:
                for stream in held:
                    await stream.aclose()
            assert status == 503, (status, answer[:200])
            assert b"<Code>SlowDown</Code>" in answer

            assert await call(gateway, "GET", "/b/k") == (200, BODY)  # slots back: served again

    asyncio.run(main())
