"""Lifecycle expiry inside the engine: scan a bucket's versions, apply expiry actions.

Rules and theory of operation:

* The lifecycle sweeper (``storage.lifecycle``) decides what to expire from a snapshot
  read in pages (``scan_versions``); its decisions are applied later, in the writer
  thread, when the key may have changed (a new PUT, a DELETE, a version deleted by id).
  So each ``ExpiryAction`` names the version it was decided for and, inside the write
  transaction, re-checks that the reason still holds; if not it does nothing. Applying an
  action twice is harmless.
* Expiring a current version does exactly what a DELETE without a version id does
  (``Engine.apply_delete_object``): an unversioned bucket loses the object, a versioned
  one gets a delete marker, a Suspended one a null delete marker.
* Notifications: as AWS, lifecycle makes ``s3:LifecycleExpiration:Delete`` (a version,
  or a delete marker, removed for good) and ``s3:LifecycleExpiration:DeleteMarkerCreated``
  events, never ``s3:ObjectRemoved:*``; their requester is ``LIFECYCLE_PRINCIPAL_ID``
  (AWS's example message shows ``s3.amazonaws.com`` as principal and source IP). They
  are written in the action's own transaction, like every event.
* A full outbox must not fail (or silently thin out) a sweep: when the outbox is near
  its bound, each action runs in its own nested transaction, and the first one whose
  events do not fit is rolled back and returned with every later one as ``deferred``
  (applied actions stay applied). The sweeper waits and retries the deferred ones
  (``storage.lifecycle``). With room for every action's events, a batch runs without
  nesting (an LMDB nested transaction is not free).
* Removing a version frees its chunks in the same transaction; LMDB reuses freed pages,
  so a workload under a rule that expires old data reaches a steady file size.
* Object Lock outranks lifecycle, as on AWS: a noncurrent version under a legal hold or
  an unexpired retention is left alone (checked at the commit point, like every other
  reason); expiring a current version only adds a delete marker, which is allowed.
* AbortIncompleteMultipartUpload decisions (``UploadAbort``) are applied the same way:
  the upload is aborted (every part's blob freed) only if it still exists at the commit
  point; one completed or aborted since the decision is left alone.
* This module reaches into ``Engine`` internals (same package) so that store.py, shared
  by every object operation, stays free of lifecycle code.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Generic, TypeVar

import lmdb

from storage.api import CHANGES_OBJECTS, EventOrigin, ObjectLocked, ObjectVersion, Overloaded
from storage.engine import keys, multipart
from storage.engine.records import VersionRecord, unpack_version
from storage.engine.store import LIFECYCLE_REMOVAL, Engine
from storage.engine.writer import WriteOperation
from storage.versions import decode_version_id

# Who a lifecycle event names as requester (userIdentity.principalId) and source IP: what
# AWS's example s3:LifecycleExpiration:Delete message shows for both.
LIFECYCLE_PRINCIPAL_ID = "s3.amazonaws.com"


class ExpiryKind(enum.Enum):
    EXPIRE_CURRENT = "expire_current"  # a DELETE of the key (marker when versioned)
    REMOVE_NONCURRENT = "remove_noncurrent"  # remove one noncurrent version for good
    REMOVE_EXPIRED_DELETE_MARKER = "remove_expired_delete_marker"  # a lone current marker


@dataclass(frozen=True, slots=True)
class ExpiryAction:
    kind: ExpiryKind
    key: str
    version_id: str  # the internal version id the decision was made for


@dataclass(frozen=True, slots=True)
class UploadAbort:
    """AbortIncompleteMultipartUpload, decided for one upload of one key."""

    key: str
    upload_id: str


Action = TypeVar("Action", ExpiryAction, UploadAbort)


@dataclass(frozen=True, slots=True)
class BatchOutcome(Generic[Action]):
    """What a writer operation of the sweeper did: how many actions it applied, and the
    actions it did not try because the notification outbox was full (in order)."""

    applied: int
    deferred: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class ScanPage:
    # In ``versions`` order: keys ascending (UTF-8 bytes), newest version first per key.
    versions: tuple[ObjectVersion, ...]
    # The LMDB key of the last entry read: the next page starts after it. None: the
    # bucket has no more versions.
    resume_after: bytes | None


def bucket_names(engine: Engine) -> list[str]:
    """Every bucket of this node, whoever owns it."""
    with engine.env.begin(db=engine.buckets) as txn:
        return [bytes(name).decode("utf-8") for name in txn.cursor().iternext(values=False)]


def scan_versions(
    engine: Engine, bucket: str, resume_after: bytes | None, versions_max: int
) -> ScanPage:
    """Up to ``versions_max`` versions of ``bucket`` after ``resume_after`` (one read
    transaction). ``is_latest`` is exact only for keys whose newest version is in the page
    or, across a page boundary, when the previous page ended on the same key."""
    assert versions_max > 0
    bucket_raw = keys.bucket_bytes(bucket)
    prefix = keys.bucket_prefix(bucket_raw)
    previous_key_raw = None
    if resume_after is not None:
        previous_key_raw = keys.split_version_key(bucket_raw, resume_after)[0]
    found: list[ObjectVersion] = []
    last_read: bytes | None = None
    with engine.env.begin(db=engine.versions, buffers=True) as txn:
        cursor = txn.cursor()
        positioned = cursor.set_range(prefix if resume_after is None else resume_after)
        if positioned and resume_after is not None and bytes(cursor.key()) == resume_after:
            positioned = cursor.next()
        while positioned and len(found) < versions_max:
            lmdb_key = bytes(cursor.key())
            if not lmdb_key.startswith(prefix):
                break
            key_raw, hlc = keys.split_version_key(bucket_raw, lmdb_key)
            record = unpack_version(hlc, cursor.value())
            is_latest = key_raw != previous_key_raw
            found.append(record.to_object_version(bucket, key_raw.decode("utf-8"), is_latest))
            previous_key_raw, last_read = key_raw, lmdb_key
            positioned = cursor.next()
        more = positioned and bytes(cursor.key()).startswith(prefix)
    return ScanPage(tuple(found), last_read if more else None)


def apply_expiry_actions(
    engine: Engine, txn: lmdb.Transaction, bucket: str, actions: tuple[ExpiryAction, ...],
    request_id_prefix: str | None = None,
) -> BatchOutcome[ExpiryAction]:
    """Apply the actions whose reason still holds until one's events do not fit in the
    outbox: it and the rest come back ``deferred``. ``request_id_prefix``: of the events'
    request ids, drawn before a replicated entry is made (None: drawn here)."""
    if request_id_prefix is None:
        request_id_prefix = new_request_id_prefix()
    origins = [lifecycle_origin(f"{request_id_prefix}{index:08X}")
               for index in range(len(actions))]
    if engine.outbox.has_room_for_changes(txn, bucket, len(actions)):
        # Nothing can overflow, so no nested transactions: LMDB allocates a large dirty
        # list for each one, which is not worth paying per action when it cannot help.
        return BatchOutcome(sum(
            _apply_one(engine, txn, bucket, action, origin)
            for action, origin in zip(actions, origins, strict=True)
        ))  # fmt: skip
    applied = 0
    for index, (action, origin) in enumerate(zip(actions, origins, strict=True)):
        nested = engine.env.begin(write=True, parent=txn)
        try:
            done = _apply_one(engine, nested, bucket, action, origin)
        except Overloaded:
            nested.abort()
            return BatchOutcome(applied, actions[index:])
        except BaseException:
            nested.abort()
            raise
        nested.commit()
        applied += done
    return BatchOutcome(applied)


def new_request_id_prefix() -> str:
    return os.urandom(4).hex().upper()


def expire(bucket: str, actions: tuple[ExpiryAction, ...],
           request_id_prefix: str | None = None) -> WriteOperation:
    """The writer operation that applies ``actions`` in one (child) transaction."""
    return WriteOperation(
        lambda engine, txn: apply_expiry_actions(engine, txn, bucket, actions,
                                                 request_id_prefix),
        name="lifecycle_expire",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def apply_upload_aborts(
    engine: Engine, txn: lmdb.Transaction, bucket: str, aborts: tuple[UploadAbort, ...]
) -> BatchOutcome[UploadAbort]:
    """Abort the uploads that still exist (an abort makes no event: nothing deferred)."""
    return BatchOutcome(sum(
        1 for abort in aborts
        if multipart.abort_if_present(engine, txn, bucket, abort.key, abort.upload_id)
    ))  # fmt: skip


def abort_uploads(bucket: str, aborts: tuple[UploadAbort, ...]) -> WriteOperation:
    """The writer operation that applies ``aborts`` in one (child) transaction."""
    return WriteOperation(
        lambda engine, txn: apply_upload_aborts(engine, txn, bucket, aborts),
        name="lifecycle_abort_uploads",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def lifecycle_origin(request_id: str) -> EventOrigin:
    """The origin of one lifecycle action's events: AWS's lifecycle requester, and the
    action's own request id (16 upper-case hex digits, as the gateway's)."""
    return EventOrigin(LIFECYCLE_PRINCIPAL_ID, LIFECYCLE_PRINCIPAL_ID, request_id, request_id)


def _apply_one(
    engine: Engine, txn: lmdb.Transaction, bucket: str, action: ExpiryAction, origin: EventOrigin
) -> bool:
    bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(action.key)
    hlc = decode_version_id(action.version_id)
    cursor = txn.cursor(db=engine.versions)
    latest = engine._latest(cursor, bucket_raw, key_raw)
    if latest is None:
        return False
    if action.kind is ExpiryKind.EXPIRE_CURRENT:
        if latest.hlc != hlc or latest.is_delete_marker:
            return False  # overwritten or deleted since the decision
        engine.apply_delete_object(txn, bucket, action.key, origin=origin,
                                   events=LIFECYCLE_REMOVAL)
        return True
    if action.kind is ExpiryKind.REMOVE_NONCURRENT:
        if latest.hlc == hlc:
            return False  # it became current again (newer versions were deleted)
        packed = txn.get(keys.version_key(bucket_raw, key_raw, hlc), db=engine.versions)
        if packed is None:
            return False
        record = unpack_version(hlc, packed)
        try:
            engine.check_removable(record, bypass_governance=False)
        except ObjectLocked:
            return False  # Object Lock outranks lifecycle: AWS skips a locked version
        _remove_for_good(engine, txn, bucket, action.key, record, origin)
        return True
    assert action.kind is ExpiryKind.REMOVE_EXPIRED_DELETE_MARKER
    if latest.hlc != hlc or not latest.is_delete_marker:
        return False
    versions = engine._versions_of_key(cursor, bucket_raw, key_raw)
    if sum(1 for _, _ in zip(range(2), versions, strict=False)) != 1:
        return False  # a noncurrent version remains: the marker is not expired yet
    _remove_for_good(engine, txn, bucket, action.key, latest, origin)
    return True


def _remove_for_good(
    engine: Engine,
    txn: lmdb.Transaction,
    bucket: str,
    key: str,
    record: VersionRecord,
    origin: EventOrigin,
) -> None:
    """Remove one version (a delete marker too) with its LifecycleExpiration:Delete
    events, as AWS reports a version permanently deleted by lifecycle."""
    info = engine._bucket(txn, bucket)
    engine._remove_version(txn, keys.bucket_bytes(bucket), keys.object_key_bytes(key), record)
    engine.removed_event(txn, info, key, record.s3_version_id, origin,
                         LIFECYCLE_REMOVAL.version_removed)
