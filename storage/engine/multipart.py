"""Multipart uploads in the engine: uploads, parts, and Complete as a manifest.

Rules and theory of operation:

* An upload is one ``uploads`` entry (see ``keys``: the key's prefix + the raw upload
  id) holding the metadata and tag set given at Create (the completed version gets
  both); its parts are ``parts`` entries (raw upload id + part number), each owning one
  blob (none for an empty part).
* A part's bytes are staged exactly as a PutObject body is (``stage_chunk`` into a
  fresh blob); ``apply_commit_part`` takes the blob out of staging and into the part
  record. Uploading a part number again replaces the record and frees the old blob in
  the same transaction.
* SSE-C: an upload created with a customer key's record (``PutSpec.customer_key``)
  keeps it; every part must be committed with that key (``check_customer_key``: its
  chunks are encrypted with it), and the completed version keeps the record. Complete
  itself needs no key (it copies and decrypts nothing); given one, it must be the
  upload's.
* ``apply_complete`` copies no byte: the new version's body is the list of the named
  parts' blobs (``VersionRecord.segments``). Ownership of those blobs moves from the
  part records to the version; the blobs of parts not named are freed; the upload and
  its part records are removed. The version then follows the ordinary commit rules
  (write conditions, null-version replacement, HLC version id).
* ``apply_abort`` (and deleting the bucket, and the lifecycle rule
  AbortIncompleteMultipartUpload through ``abort_if_present``) frees every part's blob
  and removes every record of the upload: an upload leaves nothing behind.
* Work per operation is bounded: an upload has at most ``limits.parts_per_upload_max``
  parts; listings return at most ``limits.list_parts_max`` / ``list_uploads_max`` items.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import lmdb

from storage.api import (
    CompletedPart,
    CustomerKey,
    EntityTooSmall,
    EventOrigin,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    KeyTooLong,
    ListPartsPage,
    ListUploadsPage,
    MultipartUploadInfo,
    NoSuchUpload,
    ObjectLockNotEnabled,
    ObjectVersion,
    PartInfo,
    PutSpec,
    WriteConditions,
    check_customer_key,
    limits,
)
from storage.engine import keys
from storage.engine.records import (
    PartRecord,
    Segment,
    UploadRecord,
    VersionRecord,
    pack_part,
    pack_upload,
    unpack_part,
    unpack_upload,
)

if TYPE_CHECKING:
    from storage.engine.store import Engine


# --- lookups ------------------------------------------------------------------------------


def _upload(
    engine: Engine, txn: lmdb.Transaction, bucket: str, key: str, upload_id: str
) -> tuple[bytes, bytes, UploadRecord]:
    """(uploads key, raw upload id, record) of a live upload, else NoSuchUpload."""
    bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(key)
    upload_id_raw = keys.decode_upload_id(upload_id)
    if upload_id_raw is None:
        raise NoSuchUpload(f"no upload {upload_id!r} of {bucket}/{key}")
    upload_key = keys.upload_key(bucket_raw, key_raw, upload_id_raw)
    packed = txn.get(upload_key, db=engine.uploads)
    if packed is None:
        raise NoSuchUpload(f"no upload {upload_id!r} of {bucket}/{key}")
    return upload_key, upload_id_raw, unpack_upload(packed)


def _parts(
    engine: Engine, txn: lmdb.Transaction, upload_id_raw: bytes, after_part_number: int = 0
) -> Iterator[tuple[int, PartRecord]]:
    cursor = txn.cursor(db=engine.parts)
    found = cursor.set_range(keys.part_key(upload_id_raw, after_part_number + 1))
    while found:
        lmdb_key = cursor.key()
        if bytes(lmdb_key[: keys.UPLOAD_ID_RAW_BYTES]) != upload_id_raw:
            return
        _, part_number = keys.split_part_key(lmdb_key)
        yield part_number, unpack_part(cursor.value())
        found = cursor.next()


def _check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= limits.parts_per_upload_max:
        raise InvalidArgument(
            f"part number must be 1..{limits.parts_per_upload_max}, not {part_number}"
        )


# --- writes (writer thread only) ----------------------------------------------------------


def apply_create(
    engine: Engine,
    txn: lmdb.Transaction,
    bucket: str,
    key: str,
    spec: PutSpec,
    checksum_algorithm: str,
    checksum_type: str,
    upload_random: bytes | None = None,
) -> MultipartUploadInfo:
    """``upload_random``: the upload id's random part, chosen before a replicated entry
    is logged (every replica makes the same id); None draws it here."""
    from storage.engine.store import checked_tags  # store imports this module

    info = engine._bucket(txn, bucket)
    if spec.asks_for_lock and not info.object_lock_enabled:
        # Refused at Create, as AWS does, not when the parts are already uploaded.
        raise ObjectLockNotEnabled("Bucket is missing Object Lock Configuration")
    bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(key)
    if upload_random is None:
        upload_random = os.urandom(keys.UPLOAD_ID_RANDOM_BYTES)
    assert len(upload_random) == keys.UPLOAD_ID_RANDOM_BYTES
    raw_id = keys.new_upload_id_raw(engine.clock.tick(), upload_random)
    upload_key = keys.upload_key(bucket_raw, key_raw, raw_id)
    if len(upload_key) > engine.key_size_max:
        raise KeyTooLong(f"encoded key is {len(upload_key)} bytes; LMDB allows fewer")
    record = UploadRecord(
        initiated_ms=engine._now_ms(),
        content_type=spec.content_type,
        system_metadata=dict(spec.system_metadata),
        user_metadata=dict(spec.user_metadata),
        storage_class=spec.storage_class,
        checksum_algorithm=checksum_algorithm,
        checksum_type=checksum_type,
        tags=checked_tags(spec.tags),
        owner_id=spec.owner_id,
        acl=spec.acl,
        lock_mode=spec.lock_mode,
        lock_retain_until_ms=spec.lock_retain_until_ms,
        legal_hold=spec.legal_hold,
        customer_key=spec.customer_key,
    )
    written = txn.put(upload_key, pack_upload(record), db=engine.uploads, overwrite=False)
    assert written, "an upload id was handed out twice"
    return record.to_info(bucket, key, keys.encode_upload_id(raw_id))


def apply_commit_part(
    engine: Engine,
    txn: lmdb.Transaction,
    bucket: str,
    key: str,
    upload_id: str,
    part_number: int,
    *,
    blob_id: bytes | None,
    size_bytes: int,
    etag: str,
    checksum: str,
    tail_chunk_index: int = 0,
    tail: bytes | bytearray | memoryview | None = None,
    customer_key: CustomerKey | None = None,
) -> PartInfo:
    """Make a staged body (plus ``tail``) the upload's part ``part_number``; its chunks
    were staged with ``customer_key``, which must open the upload's (SSE-C)."""
    _check_part_number(part_number)
    if size_bytes > limits.part_size_bytes_max:
        raise InvalidArgument(f"a part is at most {limits.part_size_bytes_max} bytes")
    _, upload_id_raw, upload = _upload(engine, txn, bucket, key, upload_id)
    check_customer_key(upload.customer_key, customer_key)
    chunk_count = -(-size_bytes // limits.chunk_size_bytes)
    if chunk_count and blob_id is None:
        blob_id = engine.new_blob_id()
    if tail:
        assert blob_id is not None
        engine.check_still_staged(txn, blob_id, tail_chunk_index)
        engine.apply_stage_chunk(txn, blob_id, tail_chunk_index, tail, customer_key)
    if chunk_count:
        assert blob_id is not None
        engine._take_staged_blob(txn, blob_id, chunk_count, size_bytes)
    part_key = keys.part_key(upload_id_raw, part_number)
    previous = txn.get(part_key, db=engine.parts)
    if previous is not None:
        _free_part(engine, txn, unpack_part(previous))
    record = PartRecord(
        blob_id=blob_id if chunk_count else None,
        size_bytes=size_bytes,
        etag=etag,
        checksum=checksum,
        last_modified_ms=engine._now_ms(),
    )
    txn.put(part_key, pack_part(record), db=engine.parts)
    return record.to_info(part_number)


def _free_part(engine: Engine, txn: lmdb.Transaction, part: PartRecord) -> None:
    if part.blob_id is not None:
        engine.free_blob(txn, part.blob_id, part.size_bytes)


def judged_parts(
    engine: Engine, bucket: str, key: str, upload_id: str, parts: Sequence[CompletedPart]
) -> tuple[UploadRecord, list[Segment]]:
    """The upload and its named parts' blobs, checked as Complete checks them: what a
    pre-commit function judges before the Complete is committed."""
    with engine.env.begin() as txn:
        _, upload_id_raw, upload = _upload(engine, txn, bucket, key, upload_id)
        return upload, _checked_segments(engine, txn, upload_id_raw, parts)


def _checked_segments(
    engine: Engine, txn: lmdb.Transaction, upload_id_raw: bytes, parts: Sequence[CompletedPart]
) -> list[Segment]:
    """The named parts' blobs in order, after every check S3 makes at Complete."""
    if not parts:
        raise InvalidArgument("CompleteMultipartUpload names no part")
    if len(parts) > limits.parts_per_upload_max:
        raise InvalidArgument(f"at most {limits.parts_per_upload_max} parts")
    # Checked as S3 does: the order of the whole list first, then each part.
    numbers = [named.part_number for named in parts]
    if any(later <= earlier for earlier, later in itertools.pairwise(numbers)):
        raise InvalidPartOrder("the list of parts was not in ascending order")
    segments: list[Segment] = []
    for index, named in enumerate(parts):
        _check_part_number(named.part_number)
        packed = txn.get(keys.part_key(upload_id_raw, named.part_number), db=engine.parts)
        part = None if packed is None else unpack_part(packed)
        if part is None or part.etag != named.etag:
            raise InvalidPart(f"part {named.part_number} was not found or its ETag differs")
        if named.checksum and part.checksum != named.checksum:
            raise InvalidPart(f"part {named.part_number}: the checksum differs")
        is_last = index == len(parts) - 1
        if not is_last and part.size_bytes < limits.part_size_bytes_min:
            raise EntityTooSmall(
                f"part {named.part_number} has {part.size_bytes} bytes; all but the last "
                f"part need at least {limits.part_size_bytes_min}"
            )
        segments.append((part.blob_id, part.size_bytes))
    if sum(size for _, size in segments) > limits.multipart_object_size_bytes_max:
        raise InvalidArgument(
            f"an object is at most {limits.multipart_object_size_bytes_max} bytes"
        )
    return segments


def _part_checksums(
    engine: Engine, txn: lmdb.Transaction, upload_id_raw: bytes, parts: Sequence[CompletedPart]
) -> tuple[str, ...]:
    """Each named part's own checksum, in order, or () when none has one: what
    GetObjectAttributes shows per part. Read after ``_checked_segments``, which made
    sure every named part exists."""
    checksums: list[str] = []
    for named in parts:
        packed = txn.get(keys.part_key(upload_id_raw, named.part_number), db=engine.parts)
        assert packed is not None, "a checked part is missing"
        checksums.append(unpack_part(packed).checksum)
    return tuple(checksums) if any(checksums) else ()


def apply_complete(
    engine: Engine,
    txn: lmdb.Transaction,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[CompletedPart],
    *,
    etag: str,
    checksums: dict[str, str],
    conditions: WriteConditions | None = None,
    origin: EventOrigin | None = None,
    destination: tuple[str, str] | None = None,
    extra_user_metadata: Mapping[str, str] | None = None,
    retag: Callable[[Mapping[str, str]], dict[str, str]] | None = None,
    customer_key: CustomerKey | None = None,
) -> ObjectVersion:
    """``destination`` (bucket, key), ``extra_user_metadata`` and ``retag`` (the upload's
    tags -> the version's: ``api.annotation_tags``) carry a pre-commit function's route
    and annotations: the version is written there, with them. ``customer_key``, when
    given, must open the upload's SSE-C key record (none is needed)."""
    from storage.engine.store import check_conditions  # store imports this module

    upload_key, upload_id_raw, upload = _upload(engine, txn, bucket, key, upload_id)
    if customer_key is not None:
        check_customer_key(upload.customer_key, customer_key)
    segments = _checked_segments(engine, txn, upload_id_raw, parts)
    part_checksums = _part_checksums(engine, txn, upload_id_raw, parts)
    bucket, key = destination or (bucket, key)
    info = engine._bucket(txn, bucket)
    bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(key)
    cursor = txn.cursor(db=engine.versions)
    check_conditions(engine._latest(cursor, bucket_raw, key_raw), conditions)
    # The named parts' blobs now belong to the version; every other part is freed.
    named = {part.part_number for part in parts}
    _drop_upload(engine, txn, upload_key, upload_id_raw, keep_blobs_of=named)
    lock_mode, lock_retain_until_ms, legal_hold = engine.new_version_lock(
        info, upload.lock_mode, upload.lock_retain_until_ms, upload.legal_hold)
    null_version = info.versioning != "Enabled"
    if null_version:
        engine._remove_null_version(txn, cursor, bucket_raw, key_raw)
    record = VersionRecord(
        hlc=engine.clock.tick(),
        size_bytes=sum(size for _, size in segments),
        etag=etag,
        is_delete_marker=False,
        null_version=null_version,
        content_type=upload.content_type,
        system_metadata=dict(upload.system_metadata),
        user_metadata={**upload.user_metadata, **(extra_user_metadata or {})},
        checksums=dict(checksums),
        storage_class=upload.storage_class,
        segments=tuple(segments),
        tags=retag(upload.tags) if retag is not None else dict(upload.tags),
        owner_id=upload.owner_id,
        acl=upload.acl,
        lock_mode=lock_mode,
        lock_retain_until_ms=lock_retain_until_ms,
        legal_hold=legal_hold,
        part_checksums=part_checksums,
        customer_key=upload.customer_key,
    )
    engine._put_version(txn, bucket_raw, key_raw, record)
    engine.outbox.add_events(
        txn, info, key, "s3:ObjectCreated:CompleteMultipartUpload", hlc=record.hlc,
        size_bytes=record.size_bytes, etag=etag, s3_version_id=record.s3_version_id,
        origin=origin,
    )
    return record.to_object_version(bucket, key, is_latest=True)


def _drop_upload(
    engine: Engine,
    txn: lmdb.Transaction,
    upload_key: bytes,
    upload_id_raw: bytes,
    keep_blobs_of: frozenset[int] | set[int] = frozenset(),
) -> None:
    """Remove an upload and its part records, freeing the blobs of parts not kept."""
    doomed = list(_parts(engine, txn, upload_id_raw))
    assert len(doomed) <= limits.parts_per_upload_max
    for part_number, part in doomed:
        if part_number not in keep_blobs_of:
            _free_part(engine, txn, part)
        txn.delete(keys.part_key(upload_id_raw, part_number), db=engine.parts)
    deleted = txn.delete(upload_key, db=engine.uploads)
    assert deleted


def apply_abort(
    engine: Engine, txn: lmdb.Transaction, bucket: str, key: str, upload_id: str
) -> None:
    if not abort_if_present(engine, txn, bucket, key, upload_id):
        raise NoSuchUpload(f"no upload {upload_id!r} of {bucket}/{key}")


def abort_if_present(
    engine: Engine, txn: lmdb.Transaction, bucket: str, key: str, upload_id: str
) -> bool:
    """Abort the upload if it is still there; False when it was completed or aborted
    since (the lifecycle sweeper decides from a snapshot and re-checks here)."""
    engine._bucket(txn, bucket)
    try:
        upload_key, upload_id_raw, _ = _upload(engine, txn, bucket, key, upload_id)
    except NoSuchUpload:
        return False
    _drop_upload(engine, txn, upload_key, upload_id_raw)
    return True


def abort_bucket_uploads(engine: Engine, txn: lmdb.Transaction, bucket_raw: bytes) -> int:
    """Abort every upload of a bucket being deleted (S3 drops them with the bucket)."""
    prefix = keys.bucket_prefix(bucket_raw)
    doomed: list[bytes] = []
    cursor = txn.cursor(db=engine.uploads)
    found = cursor.set_range(prefix)
    while found and bytes(cursor.key()).startswith(prefix):
        doomed.append(bytes(cursor.key()))
        found = cursor.next()
    for upload_key in doomed:
        _, upload_id_raw = keys.split_upload_key(bucket_raw, upload_key)
        _drop_upload(engine, txn, upload_key, upload_id_raw)
    return len(doomed)


# --- reads --------------------------------------------------------------------------------


def list_parts(
    engine: Engine,
    bucket: str,
    key: str,
    upload_id: str,
    part_number_marker: int = 0,
    max_parts: int = limits.list_parts_max,
) -> ListPartsPage:
    max_parts = min(max(max_parts, 0), limits.list_parts_max)
    with engine.env.begin(buffers=True) as txn:
        engine._bucket(txn, bucket)
        _, upload_id_raw, upload = _upload(engine, txn, bucket, key, upload_id)
        info = upload.to_info(bucket, key, upload_id)
        listed: list[PartInfo] = []
        marker = max(part_number_marker, 0)
        for part_number, part in _parts(engine, txn, upload_id_raw, marker):
            if len(listed) == max_parts:
                last = listed[-1].part_number if listed else marker
                return ListPartsPage(info, tuple(listed), True, last)
            listed.append(part.to_info(part_number))
        return ListPartsPage(info, tuple(listed), False, None)


def list_uploads(
    engine: Engine,
    bucket: str,
    prefix: str = "",
    delimiter: str = "",
    key_marker: str = "",
    upload_id_marker: str = "",
    max_uploads: int = limits.list_uploads_max,
) -> ListUploadsPage:
    """Uploads after (key_marker, upload_id_marker), key order then initiation order."""
    max_uploads = min(max(max_uploads, 0), limits.list_uploads_max)
    with engine.env.begin(buffers=True) as txn:
        engine._bucket(txn, bucket)
        walk = _UploadWalk(engine, txn, bucket, prefix, delimiter, key_marker)
        if max_uploads == 0:
            return ListUploadsPage((), (), False, None, None)
        return walk.page(walk.start(upload_id_marker), max_uploads)


class _UploadWalk:
    """One ListMultipartUploads: a seek per upload, one per common prefix."""

    def __init__(
        self,
        engine: Engine,
        txn: lmdb.Transaction,
        bucket: str,
        prefix: str,
        delimiter: str,
        key_marker: str,
    ) -> None:
        self.cursor = txn.cursor(db=engine.uploads)
        self.bucket = bucket
        self.bucket_raw = keys.bucket_bytes(bucket)
        self.prefix_raw = prefix.encode("utf-8")
        self.delimiter_raw = delimiter.encode("utf-8")
        self.marker_raw = key_marker.encode("utf-8")
        self.scope = self.bucket_raw + b"\x00" + keys.escape(self.prefix_raw)

    def start(self, upload_id_marker: str) -> bytes:
        if not self.marker_raw:
            return self.scope
        marker_id_raw = keys.decode_upload_id(upload_id_marker) if upload_id_marker else None
        if marker_id_raw is None:
            start = keys.after_key(self.bucket_raw, self.marker_raw)
        else:  # just past that upload: the key's later uploads come next
            start = keys.upload_key(self.bucket_raw, self.marker_raw, marker_id_raw) + b"\x00"
        return max(self.scope, start)

    def _common_prefix(self, key_raw: bytes) -> bytes | None:
        if not self.delimiter_raw:
            return None
        found = key_raw.find(self.delimiter_raw, len(self.prefix_raw))
        return None if found < 0 else key_raw[: found + len(self.delimiter_raw)]

    def page(self, position: bytes, max_uploads: int) -> ListUploadsPage:
        uploads: list[MultipartUploadInfo] = []
        prefixes: list[str] = []
        last: tuple[str, str | None] | None = None
        while self.cursor.set_range(position):
            lmdb_key = bytes(self.cursor.key())
            if not lmdb_key.startswith(self.scope):
                break
            key_raw, upload_id_raw = keys.split_upload_key(self.bucket_raw, lmdb_key)
            common_prefix = self._common_prefix(key_raw)
            if common_prefix is not None and common_prefix <= self.marker_raw:
                position = keys.after_prefix(self.bucket_raw, common_prefix)
                continue
            if len(uploads) + len(prefixes) == max_uploads:
                assert last is not None
                return ListUploadsPage(tuple(uploads), tuple(prefixes), True, *last)
            if common_prefix is not None:
                prefixes.append(common_prefix.decode("utf-8"))
                last = (prefixes[-1], None)
                position = keys.after_prefix(self.bucket_raw, common_prefix)
                continue
            upload_id = keys.encode_upload_id(upload_id_raw)
            key = key_raw.decode("utf-8")
            uploads.append(unpack_upload(self.cursor.value()).to_info(self.bucket, key, upload_id))
            last = (key, upload_id)
            position = lmdb_key + b"\x00"
        return ListUploadsPage(tuple(uploads), tuple(prefixes), False, None, None)
