"""Node writes as replicable entries: what a shard's log carries and every replica applies.

Rules and theory of operation:

* A ``WriteEntry`` is one node write as data: the operation's name (one of
  ``ENTRY_OPERATIONS``), its control arguments (values of ``storage.api``'s record types
  and msgpack's own, never a function), its payload bytes apart (a staged chunk or a
  commit's tail, never copied into the control part), and ``now_ms``: the leader's
  clock when it made the entry.
* Applying an entry is deterministic: ``apply_entry`` runs the engine's ordinary
  ``apply_*`` code (``operations``) with the engine's time pinned to the entry's
  ``now_ms`` (``Engine.entry_time``): creation times and Object Lock checks read it, and
  the hybrid logical clock ticks from it. So two engines that start from the same state
  (their last HLC included, which the writer persists with every group) and apply the
  same entries in the same order make the same version ids, the same records and the
  same outbox, byte for byte.
* Whatever a write would draw at random is drawn BEFORE its entry is made, by whoever
  makes it (``new_entry_blob_id``, ``new_upload_random``), and travels in the entry.
  Blob ids of replicated uploads do not tick the engine's clock (a leader that ticked it
  for them would run ahead of its replicas).
* What is not replicable is refused when the entry is made, with the reason
  (``InvalidArgument``): an SSE-C customer key (it would be written to every replica's log
  in the clear), and the pre-commit functions' verdicts (routes and annotations are made
  on a leader before the entry; a cluster does not run functions yet).
* The embedded store does not make entries: its writes stay the direct
  ``operations`` closures, with no encoding on their path.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import lmdb
import msgpack

from storage import api
from storage.api import InvalidArgument
from storage.engine import expiry, keys, operations
from storage.engine.store import Engine, StagedTail
from storage.engine.writer import WriteOperation

Payload = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class WriteEntry:
    operation: str
    arguments: Mapping[str, Any]
    payload: Payload | None = None
    now_ms: int = 0

    def __post_init__(self) -> None:
        assert self.operation in _BUILDERS, self.operation
        assert self.now_ms >= 0


def _tail(arguments: Mapping[str, Any], payload: Payload | None) -> StagedTail | None:
    return None if not payload else StagedTail(arguments.get("tail_chunk_index", 0), payload)


def _stage_chunk(a: Mapping[str, Any], payload: Payload | None) -> WriteOperation:
    assert payload is not None
    return operations.stage_chunk(a["blob_id"], a["chunk_index"], payload)


def _commit_version(a: Mapping[str, Any], payload: Payload | None) -> WriteOperation:
    return operations.commit_version(
        a["bucket"], a["key"], blob_id=a["blob_id"], size_bytes=a["size_bytes"],
        spec=a["spec"], conditions=a.get("conditions"), tail=_tail(a, payload),
        event_name=a.get("event_name", "s3:ObjectCreated:Put"), origin=a.get("origin"))


def _commit_part(a: Mapping[str, Any], payload: Payload | None) -> WriteOperation:
    return operations.commit_part(
        a["bucket"], a["key"], a["upload_id"], a["part_number"], blob_id=a["blob_id"],
        size_bytes=a["size_bytes"], etag=a["etag"], checksum=a.get("checksum", ""),
        tail=_tail(a, payload))


def _complete(a: Mapping[str, Any], _: Payload | None) -> WriteOperation:
    return operations.complete_multipart_upload(
        a["bucket"], a["key"], a["upload_id"], a["parts"], etag=a["etag"],
        checksums=a.get("checksums") or {}, conditions=a.get("conditions"),
        origin=a.get("origin"))


def _lifecycle_expire(a: Mapping[str, Any], _: Payload | None) -> WriteOperation:
    actions = tuple(expiry.ExpiryAction(expiry.ExpiryKind(kind), key, version_id)
                    for kind, key, version_id in a["actions"])
    return expiry.expire(a["bucket"], actions, a["request_id_prefix"])


def _lifecycle_abort_uploads(a: Mapping[str, Any], _: Payload | None) -> WriteOperation:
    aborts = tuple(expiry.UploadAbort(key, upload_id) for key, upload_id in a["aborts"])
    return expiry.abort_uploads(a["bucket"], aborts)


_Builder = Callable[[Mapping[str, Any], Payload | None], WriteOperation]

# Entry operation -> how to make the engine's write of it. The names are the node's
# (transport) operation names, so a node hands a request's arguments over unchanged.
_BUILDERS: dict[str, _Builder] = {
    "create_bucket": lambda a, _: operations.create_bucket(
        a["name"], a["owner_id"], a.get("object_lock_enabled", False)),
    "delete_bucket": lambda a, _: operations.delete_bucket(a["name"]),
    "set_bucket_versioning": lambda a, _: operations.set_bucket_versioning(
        a["name"], a["versioning"]),
    "put_object_lock_configuration": lambda a, _: operations.put_object_lock_configuration(
        a["name"], a["default_retention"]),
    "put_bucket_config": lambda a, _: operations.put_bucket_config(
        a["bucket"], a["name"], a["document"], a.get("origin")),
    "stage_chunk": _stage_chunk,
    "abort_upload": lambda a, _: operations.abort_upload(a["blob_id"]),
    "commit_version": _commit_version,
    "delete_object": lambda a, _: operations.delete_object(
        a["bucket"], a["key"], a.get("version_id"), a.get("origin"),
        a.get("bypass_governance", False)),
    "create_multipart_upload": lambda a, _: operations.create_multipart_upload(
        a["bucket"], a["key"], a["spec"], a.get("checksum_algorithm", ""),
        a.get("checksum_type", ""), a["upload_random"]),
    "commit_part": _commit_part,
    "complete_multipart_upload": _complete,
    "abort_multipart_upload": lambda a, _: operations.abort_multipart_upload(
        a["bucket"], a["key"], a["upload_id"]),
    "replace_tags": lambda a, _: operations.replace_tags(
        a["bucket"], a["key"], a["version_id"], a["tags"],
        a.get("event_name", "s3:ObjectTagging:Put"), a.get("origin")),
    "replace_acl": lambda a, _: operations.replace_acl(
        a["bucket"], a["key"], a["version_id"], a["acl"], a.get("origin")),
    "update_object_lock": lambda a, _: operations.update_object_lock(
        a["bucket"], a["key"], a["version_id"], a["update"]),
    "outbox_ack": lambda a, _: operations.outbox_ack(a["sequences"]),
    # A shard leader's collection of bodies staged too long ago (abandoned uploads).
    "collect_staging": lambda a, _: operations.collect_staging(a["staged_before_ms"]),
    # The lifecycle sweeper of a shard's leader (``lifecycle_entries``): actions as
    # (kind, key, version id) and (key, upload id) tuples.
    "lifecycle_expire": _lifecycle_expire,
    "lifecycle_abort_uploads": _lifecycle_abort_uploads,
}
ENTRY_OPERATIONS = frozenset(_BUILDERS)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def new_entry_blob_id(now_ms: int) -> bytes:
    """A blob id for a replicated upload: the time (so ids sort roughly by age, as the
    engine's do) and random bytes; the engine's clock is not ticked (module rules)."""
    return keys.new_blob_id(now_ms << 16, os.urandom(keys.BLOB_ID_BYTES - 8))


def new_upload_random() -> bytes:
    return os.urandom(keys.UPLOAD_ID_RANDOM_BYTES)


def make_entry(
    operation: str, arguments: Mapping[str, Any], payload: Payload | None = None,
    now_ms: int | None = None,
) -> WriteEntry:
    """The entry of one node write (a request's operation name and arguments), with what
    it would draw at random drawn now; InvalidArgument for what cannot be replicated."""
    if operation not in _BUILDERS:
        raise InvalidArgument(f"{operation} is not a replicable write")
    if arguments.get("customer_key") is not None:
        raise InvalidArgument("SSE-C (customer-provided keys) is not supported by a replicated "
                           "cluster yet: the key would be written to every replica's log")
    now_ms = wall_clock_ms() if now_ms is None else now_ms
    arguments = {name: value for name, value in arguments.items() if name != "customer_key"}
    if operation == "create_multipart_upload" and "upload_random" not in arguments:
        arguments["upload_random"] = new_upload_random()
    if operation == "lifecycle_expire" and "request_id_prefix" not in arguments:
        arguments["request_id_prefix"] = expiry.new_request_id_prefix()
    if operation in ("commit_version", "commit_part") and arguments.get("blob_id") is None \
            and arguments.get("size_bytes", 0) > 0:
        # A body that fits in the commit's tail still gets a blob (the engine would
        # draw its id inside the apply).
        arguments["blob_id"] = new_entry_blob_id(now_ms)
    return WriteEntry(operation, arguments, payload, now_ms)


def lifecycle_entries(bucket: str, actions: tuple[Any, ...]) -> WriteEntry:
    """The entry of one batch of the lifecycle sweeper (``ExpiryAction``s or
    ``UploadAbort``s), made on the shard leader that decided it."""
    if actions and isinstance(actions[0], expiry.UploadAbort):
        return make_entry("lifecycle_abort_uploads", {
            "bucket": bucket, "aborts": tuple((a.key, a.upload_id) for a in actions)})
    return make_entry("lifecycle_expire", {"bucket": bucket, "actions": tuple(
        (a.kind.value, a.key, a.version_id) for a in actions)})


def operation_for_entry(entry: WriteEntry) -> WriteOperation:
    """The writer's operation that applies ``entry`` (deterministically: module rules)."""
    direct = _BUILDERS[entry.operation](entry.arguments, entry.payload)

    def apply(engine: Engine, txn: lmdb.Transaction) -> Any:
        with engine.entry_time(entry.now_ms):
            return direct.apply(engine, txn)

    return WriteOperation(apply, payload_bytes=direct.payload_bytes, name=direct.name,
                          changes=direct.changes)


def apply_entry(engine: Engine, txn: lmdb.Transaction, entry: WriteEntry) -> Any:
    """Apply ``entry`` in ``txn`` (the writer thread's); raises what the write raises."""
    return operation_for_entry(entry).apply(engine, txn)



# --- the entry's encoding (what the shard's log stores and peers send) --------------------
#
# Control: msgpack ``[ENTRY_FORMAT, operation, now_ms, arguments]``; the payload travels
# and is stored apart, as raw bytes. Arguments hold msgpack's own values plus the record
# types below (extension ``_EXT_RECORD``: ``[type name, *fields in declaration order]``)
# and tuples (``_EXT_TUPLE``: records compare their tuple fields); anything else is
# EntryCodecError when encoded, and a decoded type name outside the table is one too.

ENTRY_FORMAT = 1
_EXT_RECORD = 1
_EXT_TUPLE = 2
_RECORD_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (api.PutSpec, api.WriteConditions, api.EventOrigin, api.CompletedPart,
                api.ObjectLockUpdate, api.DefaultRetention, api.CustomerKeyRecord)
}


class EntryCodecError(ValueError):
    """Bytes that are not an entry, or a value that an entry cannot hold."""


def _default(value: object) -> msgpack.ExtType:
    if isinstance(value, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _pack(list(value)))
    cls = type(value)
    if _RECORD_TYPES.get(cls.__name__) is cls:
        fields = [getattr(value, f.name) for f in dataclasses.fields(value)]  # type: ignore[arg-type]
        return msgpack.ExtType(_EXT_RECORD, _pack([cls.__name__, *fields]))
    raise EntryCodecError(f"an entry cannot hold a {cls.__name__}")


def _pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, default=_default, use_bin_type=True, strict_types=True)
    return packed


def _ext_hook(code: int, data: bytes) -> object:
    if code == _EXT_TUPLE:
        return tuple(_unpack(data))
    if code == _EXT_RECORD:
        name, *fields = _unpack(data)
        cls = _RECORD_TYPES.get(name)
        if cls is None:
            raise EntryCodecError(f"unknown record type in an entry: {name!r}")
        return cls(*fields)
    raise EntryCodecError(f"unknown msgpack extension {code} in an entry")


def _unpack(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=True,
                           use_list=True)


def encode_write_entry(entry: WriteEntry) -> tuple[bytes, Payload | None]:
    """(control bytes, payload): the payload is handed back as it is, never copied."""
    return _pack([ENTRY_FORMAT, entry.operation, entry.now_ms, dict(entry.arguments)]), \
        entry.payload


def decode_write_entry(control: bytes | memoryview, payload: Payload | None) -> WriteEntry:
    try:
        version, operation, now_ms, arguments = _unpack(control)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise EntryCodecError(f"not an entry: {error}") from None
    if version != ENTRY_FORMAT or operation not in _BUILDERS or not isinstance(arguments, dict) \
            or not isinstance(now_ms, int) or now_ms < 0:
        raise EntryCodecError(f"not an entry (format {version!r}, operation {operation!r})")
    return WriteEntry(operation, arguments, payload, now_ms)
