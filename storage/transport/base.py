"""What a transport implements: deliver a request to a node and bring back its answer.

Rules:

* A ``Request`` is an ``Operation`` plus small control ``arguments`` (ids, names,
  specs, conditions), with the bulk ``payload`` (a chunk of body) kept apart, so a
  network transport can send control data as a small message and land the payload in a
  pre-allocated buffer (or an RDMA write) without copying it through a serializer.
* ``call`` is unary: one request, one result (or a typed ``StorageError`` raised as it
  was raised on the node). ``open_stream`` is for body reads: it yields payload pieces.
* Every implementation must pass the same conformance tests (tests/unit/test_client*).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class Operation(enum.Enum):
    CREATE_BUCKET = "create_bucket"
    DELETE_BUCKET = "delete_bucket"
    GET_BUCKET = "get_bucket"
    LIST_BUCKETS = "list_buckets"
    SET_BUCKET_VERSIONING = "set_bucket_versioning"
    PUT_OBJECT_LOCK_CONFIGURATION = "put_object_lock_configuration"
    PUT_BUCKET_CONFIG = "put_bucket_config"
    GET_BUCKET_CONFIG = "get_bucket_config"
    NEW_BLOB_ID = "new_blob_id"
    STAGE_CHUNK = "stage_chunk"  # payload: the chunk
    ABORT_UPLOAD = "abort_upload"
    COMMIT_VERSION = "commit_version"  # payload: the tail chunk, if any
    GET_VERSION = "get_version"
    DELETE_OBJECT = "delete_object"
    REPLACE_TAGS = "replace_tags"
    REPLACE_ACL = "replace_acl"
    UPDATE_OBJECT_LOCK = "update_object_lock"
    LIST_OBJECTS = "list_objects"
    LIST_OBJECT_VERSIONS = "list_object_versions"
    READ_BODY = "read_body"  # a stream
    SNAPSHOT = "snapshot"  # a stream: a consistent copy of the node's store (backups)
    CREATE_MULTIPART_UPLOAD = "create_multipart_upload"
    COMMIT_PART = "commit_part"  # payload: the part's tail chunk, if any
    COMPLETE_MULTIPART_UPLOAD = "complete_multipart_upload"
    ABORT_MULTIPART_UPLOAD = "abort_multipart_upload"
    LIST_PARTS = "list_parts"
    LIST_MULTIPART_UPLOADS = "list_multipart_uploads"
    OUTBOX_STATUS = "outbox_status"
    OUTBOX_READ = "outbox_read"
    OUTBOX_ACK = "outbox_ack"
    OUTBOX_WAIT = "outbox_wait"
    # A replicated cluster (storage/cluster_node.py): node to node and gateway to node.
    REPLICATE = "replicate"  # payload: the carried entries' payloads
    PING = "ping"
    GET_VIEW = "get_view"


Payload = bytes | bytearray | memoryview
BodyPiece = bytes | memoryview  # what a body stream yields


@dataclass(frozen=True, slots=True)
class Request:
    operation: Operation
    arguments: Mapping[str, Any] = field(default_factory=dict)
    payload: Payload | None = None


class Transport(Protocol):
    async def call(self, node_id: str, request: Request) -> Any: ...

    def open_stream(self, node_id: str, request: Request) -> AsyncIterator[BodyPiece]: ...

    async def close(self) -> None: ...
