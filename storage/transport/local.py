"""The in-process transport: a direct call on the node object.

No serialization and no copies: arguments and payload buffers are handed over by
reference, results and typed errors come back as they are. The embedded store
(one node, one shard) uses it; so do tests of everything above the transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from storage.api import StorageError
from storage.node import StorageNode
from storage.transport.base import BodyPiece, Request


class NoSuchNode(StorageError):
    """The view names a node this transport does not reach."""


class LocalTransport:
    def __init__(self, nodes: Mapping[str, StorageNode]) -> None:
        self._nodes = dict(nodes)

    def _node(self, node_id: str) -> StorageNode:
        node = self._nodes.get(node_id)
        if node is None:
            raise NoSuchNode(f"no local node {node_id!r}")
        return node

    async def call(self, node_id: str, request: Request) -> Any:
        return await self._node(node_id).handle(request)

    def open_stream(self, node_id: str, request: Request) -> AsyncIterator[BodyPiece]:
        return self._node(node_id).open_stream(request)

    async def close(self) -> None:
        """Nothing to release: the nodes belong to whoever opened them."""
