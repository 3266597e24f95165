"""gateway/bucket_policy.py over a real embedded store: the per-bucket cache of parsed
policies follows the storage change counter, and a stored policy that no longer parses
is enforced as a Deny of everything but the owner's policy operations (fail closed)."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.app import Gateway
from gateway.bucket_policy import POLICY_CONFIG, PolicyCache
from gateway.s3.common import GatewayConfig, owner_for
from storage.client import ShardedStorageClient, open_embedded

ACCESS_KEY, SECRET_KEY = "AKIDPOLICYTEST", "policy-test-secret"
HOST = "127.0.0.1:9000"
PUBLIC_READ = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
    "Resource": "arn:aws:s3:::b/*"}]}).encode()


def run(tmp_path: pathlib.Path,
        scenario: Callable[[ShardedStorageClient, Gateway], Awaitable[None]]) -> None:
    async def main() -> None:
        storage = await open_embedded(tmp_path, durable=False, lifecycle=None)
        try:
            await storage.create_bucket("b", owner_for(ACCESS_KEY).id)
            gateway = Gateway(storage, GatewayConfig(credentials={ACCESS_KEY: SECRET_KEY}))
            await scenario(storage, gateway)
        finally:
            await storage.close()

    asyncio.run(main())


async def call(gateway: Gateway, method: str, path: str, *, signed: bool = True,
               query: str = "", body: bytes = b"") -> tuple[int, bytes]:
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    if signed:
        request = AWSRequest(method=method, url=url)
        S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1",
                         3600).add_auth(request)
        url = request.url
    split = urlsplit(url)
    headers = [(b"host", HOST.encode()), (b"content-length", str(len(body)).encode())]
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": split.path, "raw_path": split.path.encode(),
        "query_string": split.query.encode(), "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 9000),
    }  # fmt: skip
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 0
    parts: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            parts.append(message.get("body", b""))

    await gateway(scope, receive, send)
    return status, b"".join(parts)


def test_the_cache_follows_the_configuration_counter(tmp_path: pathlib.Path) -> None:
    async def scenario(storage: ShardedStorageClient, gateway: Gateway) -> None:
        cache = PolicyCache()
        assert await cache.policy(storage, "b") is None
        await storage.put_bucket_config("b", POLICY_CONFIG, PUBLIC_READ)
        first = await cache.policy(storage, "b")
        assert first is not None
        assert await cache.policy(storage, "b") is first  # unchanged: the same parse
        await storage.put_bucket_config("b", "tagging", b"<Tagging/>")
        assert await cache.policy(storage, "b") is first  # re-read, same bytes: kept
        await storage.put_bucket_config("b", POLICY_CONFIG, None)
        assert await cache.policy(storage, "b") is None
        assert await cache.policy(storage, "missing") is None

    run(tmp_path, scenario)


def test_a_policy_applies_to_the_next_request(tmp_path: pathlib.Path) -> None:
    async def scenario(storage: ShardedStorageClient, gateway: Gateway) -> None:
        assert (await call(gateway, "PUT", "/b/k", body=b"data"))[0] == 200
        assert (await call(gateway, "GET", "/b/k", signed=False))[0] == 403
        status, _ = await call(gateway, "PUT", "/b", query="policy=", body=PUBLIC_READ)
        assert status == 204
        assert await call(gateway, "GET", "/b/k", signed=False) == (200, b"data")
        assert (await call(gateway, "DELETE", "/b", query="policy="))[0] == 204
        assert (await call(gateway, "GET", "/b/k", signed=False))[0] == 403

    run(tmp_path, scenario)


def test_a_stored_policy_that_no_longer_parses_denies_all_but_its_owner(
        tmp_path: pathlib.Path) -> None:
    # What an older, laxer validation could have stored: Allow with NotPrincipal.
    lax = json.dumps({"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "x"},
                                     "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}]})

    async def scenario(storage: ShardedStorageClient, gateway: Gateway) -> None:
        assert (await call(gateway, "PUT", "/b/k", body=b"data"))[0] == 200
        await storage.put_bucket_config("b", POLICY_CONFIG, lax.encode())
        status, body = await call(gateway, "GET", "/b/k")
        assert status == 403 and b"<Code>AccessDenied</Code>" in body
        assert await call(gateway, "GET", "/b", query="policy=") == (200, lax.encode())
        assert (await call(gateway, "DELETE", "/b", query="policy="))[0] == 204
        assert await call(gateway, "GET", "/b/k") == (200, b"data")

    run(tmp_path, scenario)


def test_a_tagging_body_read_for_the_policy_is_checked_as_the_handler_would(
        tmp_path: pathlib.Path) -> None:
    deny_secret = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:PutObjectTagging",
        "Resource": "arn:aws:s3:::b/*", "Condition": {
            "ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": "secret"}}}]}).encode()
    tagging = ("<Tagging><TagSet><Tag><Key>{}</Key><Value>v</Value></Tag></TagSet>"
               "</Tagging>")

    async def scenario(storage: ShardedStorageClient, gateway: Gateway) -> None:
        assert (await call(gateway, "PUT", "/b/k", body=b"data"))[0] == 200
        await storage.put_bucket_config("b", POLICY_CONFIG, deny_secret)
        status, body = await call(gateway, "PUT", "/b/k", query="tagging=", body=b"<Tagging")
        assert status == 400 and b"<Code>MalformedXML</Code>" in body
        secret = tagging.format("secret").encode()
        assert (await call(gateway, "PUT", "/b/k", query="tagging=", body=secret))[0] == 403
        plain = tagging.format("plain").encode()
        assert (await call(gateway, "PUT", "/b/k", query="tagging=", body=plain))[0] == 200
        version = await storage.get_version("b", "k")
        assert dict(version.tags) == {"plain": "v"}

    run(tmp_path, scenario)
