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
* Removing a version frees its chunks in the same transaction; LMDB reuses freed pages,
  so a workload under a rule that expires old data reaches a steady file size.
* AbortIncompleteMultipartUpload decisions (``UploadAbort``) are applied the same way:
  the upload is aborted (every part's blob freed) only if it still exists at the commit
  point; one completed or aborted since the decision is left alone.
* This module reaches into ``Engine`` internals (same package) so that store.py, shared
  by every object operation, stays free of lifecycle code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import lmdb

from storage.api import CHANGES_OBJECTS, ObjectVersion
from storage.engine import keys, multipart
from storage.engine.records import unpack_version
from storage.engine.store import Engine
from storage.engine.writer import WriteOperation
from storage.versions import decode_version_id


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
    engine: Engine, txn: lmdb.Transaction, bucket: str, actions: tuple[ExpiryAction, ...]
) -> int:
    """Apply the actions whose reason still holds; returns how many were applied."""
    return sum(1 for action in actions if _apply_one(engine, txn, bucket, action))


def expire(bucket: str, actions: tuple[ExpiryAction, ...]) -> WriteOperation:
    """The writer operation that applies ``actions`` in one (child) transaction."""
    return WriteOperation(
        lambda engine, txn: apply_expiry_actions(engine, txn, bucket, actions),
        name="lifecycle_expire",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def apply_upload_aborts(
    engine: Engine, txn: lmdb.Transaction, bucket: str, aborts: tuple[UploadAbort, ...]
) -> int:
    """Abort the uploads that still exist; returns how many were aborted."""
    return sum(
        1 for abort in aborts
        if multipart.abort_if_present(engine, txn, bucket, abort.key, abort.upload_id)
    )  # fmt: skip


def abort_uploads(bucket: str, aborts: tuple[UploadAbort, ...]) -> WriteOperation:
    """The writer operation that applies ``aborts`` in one (child) transaction."""
    return WriteOperation(
        lambda engine, txn: apply_upload_aborts(engine, txn, bucket, aborts),
        name="lifecycle_abort_uploads",
        changes=((bucket, CHANGES_OBJECTS),),
    )


def _apply_one(engine: Engine, txn: lmdb.Transaction, bucket: str, action: ExpiryAction) -> bool:
    bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(action.key)
    hlc = decode_version_id(action.version_id)
    cursor = txn.cursor(db=engine.versions)
    latest = engine._latest(cursor, bucket_raw, key_raw)
    if latest is None:
        return False
    if action.kind is ExpiryKind.EXPIRE_CURRENT:
        if latest.hlc != hlc or latest.is_delete_marker:
            return False  # overwritten or deleted since the decision
        engine.apply_delete_object(txn, bucket, action.key)
        return True
    if action.kind is ExpiryKind.REMOVE_NONCURRENT:
        if latest.hlc == hlc:
            return False  # it became current again (newer versions were deleted)
        packed = txn.get(keys.version_key(bucket_raw, key_raw, hlc), db=engine.versions)
        if packed is None:
            return False
        engine._remove_version(txn, bucket_raw, key_raw, unpack_version(hlc, packed))
        return True
    assert action.kind is ExpiryKind.REMOVE_EXPIRED_DELETE_MARKER
    if latest.hlc != hlc or not latest.is_delete_marker:
        return False
    versions = engine._versions_of_key(cursor, bucket_raw, key_raw)
    if sum(1 for _, _ in zip(range(2), versions, strict=False)) != 1:
        return False  # a noncurrent version remains: the marker is not expired yet
    engine._remove_version(txn, bucket_raw, key_raw, latest)
    return True
