"""The gateway's way into a replicated cluster: a ``Transport`` that sends each request to
its shard's current leader, following the agreed view, and retries across failovers.

Rules and theory of operation:

* ``open_cluster_client`` gives the gateway an ordinary ``ShardedStorageClient`` over a
  view whose shards each have ONE member, ``shard-N`` (a route, not a node); this
  transport resolves a route to the shard's leader in the newest view it knows and adds
  the ``shard`` argument the node needs (``cluster_node``).
* A node that does not lead the shard answers ``NotShardLeader`` with the leader it
  knows: the request goes there at once. A node that cannot be reached
  (``NodeUnavailable``), and a write the replicas could not acknowledge in time
  (``ReplicationUnavailable``), make the transport ask every node for its view
  (``GET_VIEW``), keep the newest epoch, wait ``limits.cluster_retry_backoff_ms`` and try
  again, for at most ``limits.cluster_retry_ms`` (``retry_ms``); then the last error is raised (503).
* What a retry costs: a request whose answer was lost may have been carried out. Reads
  are harmless; a write may then be stored twice (one more version of a PUT, one more
  delete marker). Commits of staged bodies and multipart completions are not sent again
  after a lost answer (``_NOT_REPEATED``): 503, and the client repeats the whole
  request. A write is never acknowledged unless every replica of the view holds it, so
  no acknowledged write is lost by a failover.
* A body stream is routed the same way when it opens; one cut off mid-body by a failover
  fails (the client retries the GET).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from storage import limits
from storage.api import NodeUnavailable, NotShardLeader, ReplicationUnavailable, StorageError
from storage.client import ShardedStorageClient
from storage.cluster_config import ClusterConfig
from storage.placement import View
from storage.transport.base import BodyPiece, Operation, Request
from storage.transport.tcp import TcpTransport

_log = logging.getLogger(__name__)
_ROUTE_PREFIX = "shard-"
_RETRIED = (NodeUnavailable, ReplicationUnavailable)
# Operations NOT sent again after an answer was lost (NodeUnavailable,
# ReplicationUnavailable: the first attempt may have been stored), because a second
# apply could not succeed: a commit of a staged body (its chunks were taken by the first)
# and the completion of a multipart upload (the upload is gone). The client gets 503 and
# PUTs again. A redirect (NotShardLeader: nothing was done) is always followed.
_NOT_REPEATED = frozenset({Operation.COMPLETE_MULTIPART_UPLOAD})
_NOT_REPEATED_WITH_BLOB = frozenset({Operation.COMMIT_VERSION, Operation.COMMIT_PART})


def _repeatable(request: Request) -> bool:
    if request.operation in _NOT_REPEATED:
        return False
    return not (request.operation in _NOT_REPEATED_WITH_BLOB
                and request.arguments.get("blob_id") is not None)


def route_view(shard_count: int) -> View:
    return View(0, tuple((f"{_ROUTE_PREFIX}{shard}",) for shard in range(shard_count)))


class ClusterTransport:
    def __init__(self, config: ClusterConfig, inner: TcpTransport | None = None,
                 retry_ms: int = limits.cluster_retry_ms) -> None:
        assert retry_ms >= 0
        self._config = config
        self._retry_ms = retry_ms
        self._inner = inner or TcpTransport(config.addresses())
        self.view = config.first_view()
        self.retries = 0  # requests sent again (for tests and metrics)

    def _shard(self, route: str) -> int:
        assert route.startswith(_ROUTE_PREFIX), route
        return int(route[len(_ROUTE_PREFIX):])

    async def call(self, route: str, request: Request) -> Any:
        shard = self._shard(route)
        routed = Request(request.operation, {**request.arguments, "shard": shard},
                         request.payload)
        deadline = time.monotonic() + self._retry_ms / 1000
        target = self.view.leader(shard)
        while True:
            try:
                return await self._inner.call(target, routed)
            except NotShardLeader as error:
                target = await self._next_target(shard, error, target, deadline)
            except _RETRIED as error:
                if not _repeatable(request):
                    raise
                target = await self._next_target(shard, error, target, deadline)
            self.retries += 1

    async def _next_target(self, shard: int, error: StorageError, tried: str,
                           deadline: float) -> str:
        """Where to send a request again after ``error`` from ``tried`` (module rules)."""
        if time.monotonic() >= deadline:
            raise error
        await asyncio.sleep(limits.cluster_retry_backoff_ms / 1000)
        await self.refresh_view()
        leader = self.view.leader(shard)
        hint = error.leader if isinstance(error, NotShardLeader) else None
        if leader == tried and hint is not None and hint != tried \
                and hint in self._config.addresses():
            return hint  # that node knows a newer view than any node answered with
        return leader

    async def refresh_view(self) -> View:
        """Ask every node for its view; keep the newest."""
        async def ask(node_id: str) -> View | None:
            try:
                async with asyncio.timeout(limits.membership_ping_timeout_ms / 1000):
                    epoch, shards = await self._inner.call(node_id, Request(Operation.GET_VIEW))
            except (TimeoutError, StorageError):
                return None
            return View(epoch, tuple(tuple(members) for members in shards))

        views = await asyncio.gather(*(ask(node.node_id) for node in self._config.nodes))
        for view in views:
            if view is not None and view.epoch > self.view.epoch:
                _log.info("cluster view %d: %s", view.epoch, view.shards)
                self.view = view
        return self.view

    def open_stream(self, route: str, request: Request) -> AsyncIterator[BodyPiece]:
        return self._stream(route, request)

    async def _stream(self, route: str, request: Request) -> AsyncIterator[BodyPiece]:
        shard = self._shard(route)
        routed = Request(request.operation, {**request.arguments, "shard": shard})
        deadline = time.monotonic() + self._retry_ms / 1000
        target = self.view.leader(shard)
        while True:
            stream = self._inner.open_stream(target, routed)
            iterator = stream.__aiter__()
            try:
                first = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except (NotShardLeader, *_RETRIED) as error:
                target = await self._next_target(shard, error, target, deadline)
                continue
            break
        yield first
        async for piece in iterator:
            yield piece

    async def close(self) -> None:
        await self._inner.close()


async def open_cluster_client(config: ClusterConfig, retry_ms: int = limits.cluster_retry_ms
                              ) -> ShardedStorageClient:
    transport = ClusterTransport(config, retry_ms=retry_ms)
    await transport.refresh_view()
    return ShardedStorageClient(route_view(config.shard_count), transport)  # type: ignore[arg-type]
