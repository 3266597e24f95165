"""GET /_squall/health: the liveness/readiness probe answers without a signature and
says nothing of the store's data, while the rest of Squall's own API still needs one.

The healthy answers come from a real ``squall serve``; the unhealthy one from the real
gateway in-process over a real storage client whose transport does not reach its node
(what a gateway sees when its storage node is gone).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator

import httpx
import pytest
from defusedxml import ElementTree

from gateway.app import Gateway
from gateway.s3.common import GatewayConfig
from squall.launcher import ServerProcess
from storage.client import ShardedStorageClient
from storage.placement import single_node_view
from storage.transport.local import LocalTransport
from tests.integration import triggers_support as support

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from support.server(tmp_path_factory, "--pre-commit-hook", "")


def unsigned(process: ServerProcess, path: str, method: str = "GET"
             ) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(process.url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, lowered(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, lowered(error.headers.items()), error.read()


def lowered(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def s3_error_code(body: bytes) -> str:
    code = ElementTree.fromstring(body).findtext("Code")
    assert code is not None, body
    return code


def test_health_needs_no_signature(process: ServerProcess) -> None:
    status, headers, body = unsigned(process, "/_squall/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    status, _, body = unsigned(process, "/_squall/health", method="HEAD")
    assert (status, body) == (200, b"")


def test_health_reveals_no_data(process: ServerProcess) -> None:
    s3 = support.s3_client(process.url)
    s3.create_bucket(Bucket="private-bucket")
    s3.put_object(Bucket="private-bucket", Key="secret-key-name", Body=b"secret body")
    _, _, body = unsigned(process, "/_squall/health")
    assert body == b'{"status": "ok"}'


def test_health_is_read_only(process: ServerProcess) -> None:
    for method in ("PUT", "POST", "DELETE"):
        status, _, body = unsigned(process, "/_squall/health", method=method)
        assert status == 405, method
        assert s3_error_code(body) == "MethodNotAllowed"


@pytest.mark.parametrize("path", ["/_squall/metrics", "/_squall/functions", "/_squall/outbox",
                                  "/_squall/healthz", "/_squall/health/more"])
def test_other_squall_paths_still_need_a_signature(process: ServerProcess, path: str) -> None:
    status, _, body = unsigned(process, path)
    assert status == 403
    assert s3_error_code(body) == "AccessDenied"


def test_health_is_503_when_storage_does_not_answer() -> None:
    # The view names node "gone"; the transport reaches no node at all.
    storage = ShardedStorageClient(single_node_view("gone"), LocalTransport({}))
    gateway = Gateway(storage, GatewayConfig(credentials={support.ACCESS_KEY: support.SECRET_KEY}))

    async def probe() -> httpx.Response:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9") as client:
            return await client.get("/_squall/health")

    response = asyncio.run(probe())
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    assert "gone" not in response.text  # the error's text goes to the log only
