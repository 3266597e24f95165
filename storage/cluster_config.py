"""The cluster file: which nodes a cluster has, where they listen, how it is sharded.

    {
      "nodes": {
        "n1": {"address": "127.0.0.1:9101", "raft": "127.0.0.1:9201"},
        "n2": {"address": "127.0.0.1:9102", "raft": "127.0.0.1:9202"},
        "n3": {"address": "127.0.0.1:9103", "raft": "127.0.0.1:9203"}
      },
      "shards": 2,
      "replication_factor": 3,
      "secret_file": "cluster.secret"
    }

Rules:

* Every node and the gateway read the same file. ``address`` is a node's storage
  transport endpoint (TCP), ``raft`` its membership (Raft) endpoint.
* Shard ``s`` lives on ``replication_factor`` nodes: the node list (in file order)
  rotated by ``s``, so shard leaders are spread. That is the shard's *home* (the nodes
  that hold it) and the first view (epoch 0) has exactly those members.
* The cluster secret authenticates Raft and the storage transport. It comes from
  ``SQUALL_CLUSTER_SECRET`` if set, else from ``secret_file`` (relative to the cluster
  file); it is never written in the cluster file itself. A missing or short secret is a
  ``ClusterConfigError``, as is anything malformed, with the reason.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass
from typing import Any

from storage import limits
from storage.api import StorageError
from storage.placement import View

SECRET_ENVIRONMENT_VARIABLE = "SQUALL_CLUSTER_SECRET"


class ClusterConfigError(StorageError):
    """The cluster file (or the secret) is missing or malformed; the message says how."""


@dataclass(frozen=True, slots=True)
class NodeAddress:
    node_id: str
    address: str  # host:port of the storage transport
    raft: str  # host:port of the membership agreement


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    nodes: tuple[NodeAddress, ...]
    shard_count: int
    replication_factor: int
    secret: str

    def __post_init__(self) -> None:
        assert self.nodes and 1 <= self.replication_factor <= len(self.nodes)
        assert 1 <= self.shard_count <= limits.cluster_shards_max

    def node(self, node_id: str) -> NodeAddress:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise ClusterConfigError(f"node {node_id!r} is not in the cluster file "
                                 f"(it names {', '.join(n.node_id for n in self.nodes)})")

    def home(self, shard: int) -> tuple[str, ...]:
        """The nodes that hold ``shard``, its first leader first."""
        ids = [node.node_id for node in self.nodes]
        rotated = ids[shard % len(ids):] + ids[: shard % len(ids)]
        return tuple(rotated[: self.replication_factor])

    def homes(self) -> dict[int, tuple[str, ...]]:
        return {shard: self.home(shard) for shard in range(self.shard_count)}

    def first_view(self) -> View:
        return View(0, tuple(self.home(shard) for shard in range(self.shard_count)))

    def shards_of(self, node_id: str) -> tuple[int, ...]:
        return tuple(shard for shard in range(self.shard_count) if node_id in self.home(shard))

    def addresses(self) -> dict[str, tuple[str, int]]:
        return {node.node_id: split_address(node.address) for node in self.nodes}


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterConfigError(f"not a host:port address: {address!r}")
    return host.strip("[]"), int(port)


def load_cluster_config(path: pathlib.Path) -> ClusterConfig:
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise ClusterConfigError(f"cannot read the cluster file {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ClusterConfigError(f"{path} is not JSON: {error}") from None
    return parse_cluster_config(document, path.parent)


def parse_cluster_config(document: Any, base_dir: pathlib.Path) -> ClusterConfig:
    if not isinstance(document, dict):
        raise ClusterConfigError("the cluster file must hold a JSON object")
    nodes_document = document.get("nodes")
    if not isinstance(nodes_document, dict) or not nodes_document:
        raise ClusterConfigError('"nodes" must be an object naming at least one node')
    if len(nodes_document) > limits.cluster_nodes_max:
        raise ClusterConfigError(f"at most {limits.cluster_nodes_max} nodes")
    nodes = []
    for node_id, entry in nodes_document.items():
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(name), str) for name in ("address", "raft")):
            raise ClusterConfigError(f'node {node_id!r} needs "address" and "raft" '
                                     '("host:port" strings)')
        split_address(entry["address"])
        split_address(entry["raft"])
        nodes.append(NodeAddress(node_id, entry["address"], entry["raft"]))
    shard_count = document.get("shards", 1)
    replication_factor = document.get("replication_factor", min(3, len(nodes)))
    if not isinstance(shard_count, int) or not 1 <= shard_count <= limits.cluster_shards_max:
        raise ClusterConfigError(f'"shards" must be 1..{limits.cluster_shards_max}')
    if not isinstance(replication_factor, int) or not 1 <= replication_factor <= len(nodes):
        raise ClusterConfigError(f'"replication_factor" must be 1..{len(nodes)} (the nodes)')
    return ClusterConfig(tuple(nodes), shard_count, replication_factor,
                         _secret(document, base_dir))


def _secret(document: dict[str, Any], base_dir: pathlib.Path) -> str:
    secret = os.environ.get(SECRET_ENVIRONMENT_VARIABLE)
    if secret is None:
        secret_file = document.get("secret_file")
        if not isinstance(secret_file, str):
            raise ClusterConfigError(f"no cluster secret: set {SECRET_ENVIRONMENT_VARIABLE} "
                                     'or name a "secret_file" in the cluster file')
        try:
            secret = (base_dir / secret_file).read_text().strip()
        except OSError as error:
            raise ClusterConfigError(f"cannot read the cluster secret: {error}") from None
    if len(secret) < limits.cluster_secret_chars_min:
        raise ClusterConfigError(f"the cluster secret must be at least "
                                 f"{limits.cluster_secret_chars_min} characters")
    return secret
