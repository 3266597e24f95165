"""Stored records (msgpack) of the engine and their conversion to ``storage.api`` types.

A version record holds everything in ``api.ObjectVersion`` except bucket, key and
is_latest (those come from the LMDB key and its position), plus where its body lives
and ``null_version``: true for writes made while the bucket was unversioned or
Suspended (S3 shows their version id as 'null').

Where a body lives: a body written in one piece is ONE blob (``blob_id``,
``chunk_count``). A body made by CompleteMultipartUpload is a list of ``segments``
``(blob_id, size_bytes)``, one per part, in order: the parts' blobs become the
version's without a byte copied. Each segment's blob is chunked from its own offset 0.

Records are stored as msgpack arrays (positional, compact); the first element is the
record format number so the layout can evolve. Format 6 (written now) appends to
format 5 the record of the SSE-C key the body is encrypted with (``[key MD5, salt,
verifier]``, ``api.CustomerKeyRecord``; nil when the body is not SSE-C). Format 5
appended to format 4 the version's owner (the canonical id of its writer) and its ACL (the gateway's
document, opaque here; None for the default, private to the owner). Format 4 appended
to format 3 (the tag set and the segment list) the Object Lock state (retention mode,
retain-until ms, legal hold) and each part's own checksum (``part_checksums``, for
GetObjectAttributes; empty when the parts had none). Formats 1 (single blob, no tags),
2 (with segments, no tags), 3 (no lock state, no part checksums: read as none), 4
(no owner, no ACL: read as owner '' and ACL None) and 5 (no SSE-C) are still read.

Listings read a version record with ``listed_version``: the msgpack array as it comes
(one C call), then the few fields a listing shows into an ``api.ListedVersion``, with no
``VersionRecord`` or ``ObjectVersion`` built. Fields 1 to 11 sit at the same positions
in every format (``_FIELD_*``). A GET or HEAD of a key's latest version reads its record
the same way (``version_fields``, then ``fields_object_version``): the one
``ObjectVersion`` the caller gets is built straight from the array, with no
``VersionRecord`` in between.

Bucket records: format 2 (written now) appends Object Lock (enabled, and the default
retention as ``[mode, days, years]`` or None) to format 1, which is still read (no
Object Lock).

Multipart records: an upload (``uploads``: key prefix + upload id -> metadata given
at Create) and its parts (``parts``: upload id + part number -> blob, size, ETag,
checksum, time). Upload format 2 adds the tag set given at Create (``x-amz-tagging``),
which Complete gives the new version; format 3 appends the Object Lock state asked for
at Create; format 4 the initiator's owner id and the ACL given at Create, which Complete
gives the new version; format 5 (written now) the record of the SSE-C key given at
Create (every part is encrypted with that key; the completed version keeps the record);
formats 1 (no tags), 2 (no lock state), 3 (no owner, no ACL) and 4 (no SSE-C) are still
read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from storage.api import (
    BucketInfo,
    CustomerKeyRecord,
    DefaultRetention,
    ListedVersion,
    MultipartUploadInfo,
    ObjectVersion,
    PartInfo,
    PutSpec,
)
from storage.versions import LOGICAL_BITS, encode_version_id, hlc_to_ms

VERSION_RECORD_FORMAT = 6
_VERSION_RECORD_FORMATS_READ = (1, 2, 3, 4, 5, 6)
BUCKET_RECORD_FORMAT = 2
_BUCKET_RECORD_FORMATS_READ = (1, 2)
UPLOAD_RECORD_FORMAT = 5
_UPLOAD_RECORD_FORMATS_READ = (1, 2, 3, 4, 5)
PART_RECORD_FORMAT = 1

Segment = tuple[bytes | None, int]  # (blob id, or None for an empty part; size in bytes)

# Positions in a version record's msgpack array, the same in formats 1 to 6.
_FIELD_FORMAT = 0
_FIELD_SIZE_BYTES = 1
_FIELD_ETAG = 2
_FIELD_IS_DELETE_MARKER = 3
_FIELD_NULL_VERSION = 4
_FIELD_BLOB_ID = 5
_FIELD_CONTENT_TYPE = 7
_FIELD_SYSTEM_METADATA = 8
_FIELD_USER_METADATA = 9
_FIELD_CHECKSUMS = 10
_FIELD_STORAGE_CLASS = 11
# Format 4 only: the Object Lock state.
_FIELD_LOCK_MODE = 14
_FIELD_LOCK_RETAIN_UNTIL_MS = 15
_FIELD_LEGAL_HOLD = 16
_FIELD_PART_CHECKSUMS = 17
# Format 5 only: the owner and the ACL.
_FIELD_OWNER_ID = 18
_FIELD_ACL = 19
# Format 6 only: the SSE-C key's record.
_FIELD_CUSTOMER_KEY = 20
_new_tuple = tuple.__new__


@dataclass(frozen=True, slots=True)
class VersionRecord:
    hlc: int
    size_bytes: int
    etag: str
    is_delete_marker: bool
    null_version: bool
    blob_id: bytes | None = None  # None for delete markers and empty bodies
    chunk_count: int = 0
    content_type: str = "binary/octet-stream"
    system_metadata: Mapping[str, str] = field(default_factory=dict)
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    checksums: Mapping[str, str] = field(default_factory=dict)
    storage_class: str = "STANDARD"
    segments: tuple[Segment, ...] = ()  # multipart bodies only (then blob_id is None)
    tags: Mapping[str, str] = field(default_factory=dict)
    lock_mode: str = ""  # '' or one of api.OBJECT_LOCK_MODES
    lock_retain_until_ms: int = 0
    legal_hold: bool = False
    # One base64 checksum per segment (the upload's algorithm), or () when the parts
    # carried none.
    part_checksums: tuple[str, ...] = ()
    owner_id: str = ""  # the writer's canonical id; '' in records older than format 5
    acl: bytes | None = None  # the gateway's ACL document; None: private to the owner
    customer_key: CustomerKeyRecord | None = None  # SSE-C; None in records before format 6

    @property
    def version_id(self) -> str:
        return encode_version_id(self.hlc)

    @property
    def s3_version_id(self) -> str:
        return "null" if self.null_version else self.version_id

    def to_object_version(
        self,
        bucket: str,
        key: str,
        is_latest: bool,
        bucket_versioning: str | None = None,
        inline_body: bytes | None = None,
    ) -> ObjectVersion:
        return ObjectVersion(
            bucket=bucket,
            key=key,
            version_id=self.version_id,
            last_modified_ms=hlc_to_ms(self.hlc),
            size_bytes=self.size_bytes,
            etag=self.etag,
            is_delete_marker=self.is_delete_marker,
            content_type=self.content_type,
            # A record's mappings are its own (fresh from msgpack, or copied when it was
            # built from a spec) and neither side mutates them: no copy per listed key.
            system_metadata=self.system_metadata,
            user_metadata=self.user_metadata,
            checksums=self.checksums,
            s3_version_id=self.s3_version_id,
            is_latest=is_latest,
            storage_class=self.storage_class,
            part_sizes=tuple(size for _, size in self.segments),
            part_checksums=self.part_checksums,
            tags=self.tags,
            lock_mode=self.lock_mode,
            lock_retain_until_ms=self.lock_retain_until_ms,
            legal_hold=self.legal_hold,
            owner_id=self.owner_id,
            acl=self.acl,
            customer_key=self.customer_key,
            bucket_versioning=bucket_versioning,
            inline_body=inline_body,
        )

    def blobs(self) -> list[Segment]:
        """Every blob holding this version's body, with its size: what GC frees."""
        if self.segments:
            return [segment for segment in self.segments if segment[0] is not None]
        if self.blob_id is None:
            return []
        return [(self.blob_id, self.size_bytes)]


def pack_version(record: VersionRecord) -> bytes:
    return msgpack.packb(
        [
            VERSION_RECORD_FORMAT,
            record.size_bytes,
            record.etag,
            record.is_delete_marker,
            record.null_version,
            record.blob_id,
            record.chunk_count,
            record.content_type,
            dict(record.system_metadata),
            dict(record.user_metadata),
            dict(record.checksums),
            record.storage_class,
            dict(record.tags),
            [[blob_id, size] for blob_id, size in record.segments],
            record.lock_mode,
            record.lock_retain_until_ms,
            record.legal_hold,
            list(record.part_checksums),
            record.owner_id,
            record.acl,
            pack_customer_key(record.customer_key),
        ],
        use_bin_type=True,
    )


def pack_customer_key(record: CustomerKeyRecord | None) -> list[Any] | None:
    return None if record is None else [record.key_md5, record.salt, record.verifier]


def unpack_customer_key(fields: list[Any] | None) -> CustomerKeyRecord | None:
    return None if fields is None else CustomerKeyRecord(fields[0], fields[1], fields[2])


def fields_customer_key(fields: list[Any]) -> CustomerKeyRecord | None:
    """Format 6's SSE-C key record; None for the older formats (no SSE-C then)."""
    if fields[_FIELD_FORMAT] >= 6:
        return unpack_customer_key(fields[_FIELD_CUSTOMER_KEY])
    return None


def unpack_version(hlc: int, packed: bytes | memoryview) -> VersionRecord:
    fields = msgpack.unpackb(packed, raw=False)
    record_format = fields[0]
    assert record_format in _VERSION_RECORD_FORMATS_READ, (
        f"unknown version record format {record_format}"
    )
    tags, raw_segments = _tags_and_segments(fields)
    lock_mode, lock_retain_until_ms, legal_hold = fields_lock_state(fields)
    owner_id, acl = _owner_and_acl(fields)
    segments: tuple[Segment, ...] = tuple((blob_id, size) for blob_id, size in raw_segments)
    return VersionRecord(
        hlc=hlc,
        size_bytes=fields[1],
        etag=fields[2],
        is_delete_marker=fields[3],
        null_version=fields[4],
        blob_id=fields[5],
        chunk_count=fields[6],
        content_type=fields[7],
        system_metadata=fields[8],
        user_metadata=fields[9],
        checksums=fields[10],
        storage_class=fields[11],
        segments=segments,
        tags=tags,
        lock_mode=lock_mode,
        lock_retain_until_ms=lock_retain_until_ms,
        legal_hold=legal_hold,
        part_checksums=_part_checksums(fields),
        owner_id=owner_id,
        acl=acl,
        customer_key=fields_customer_key(fields),
    )


def version_fields(packed: bytes | memoryview) -> list[Any]:
    """A version record's msgpack array as it comes, its format checked."""
    fields: list[Any] = msgpack.unpackb(packed, raw=False)
    assert fields[_FIELD_FORMAT] in _VERSION_RECORD_FORMATS_READ, (
        f"unknown version record format {fields[_FIELD_FORMAT]}"
    )
    return fields


def _tags_and_segments(fields: list[Any]) -> tuple[Mapping[str, str], list[list[Any]]]:
    """Format 2 put the segments at [12]; formats 3 and 4 put the tags there, segments at
    [13]."""
    record_format = fields[_FIELD_FORMAT]
    if record_format >= 3:
        return fields[12], fields[13]
    if record_format == 2:
        return {}, fields[12]
    return {}, []


def fields_lock_state(fields: list[Any]) -> tuple[str, int, bool]:
    """(mode, retain-until ms, legal hold): format 4's, none for the older formats."""
    if fields[_FIELD_FORMAT] >= 4:
        return (fields[_FIELD_LOCK_MODE], fields[_FIELD_LOCK_RETAIN_UNTIL_MS],
                fields[_FIELD_LEGAL_HOLD])
    return "", 0, False


def _owner_and_acl(fields: list[Any]) -> tuple[str, bytes | None]:
    """Format 5 appends the owner id and the ACL; older formats have neither."""
    if fields[_FIELD_FORMAT] >= 5:
        return fields[_FIELD_OWNER_ID], fields[_FIELD_ACL]
    return "", None


def _part_checksums(fields: list[Any]) -> tuple[str, ...]:
    """Format 4's per-part checksums at [17]; none in earlier formats."""
    return tuple(fields[_FIELD_PART_CHECKSUMS]) if fields[_FIELD_FORMAT] >= 4 else ()


def fields_single_blob(fields: list[Any]) -> tuple[bytes | None, int] | None:
    """(blob id, size) of a version written in one piece (None for a delete marker or a
    multipart body): what ``VersionRecord.blob_id`` and ``size_bytes`` would say."""
    if fields[_FIELD_IS_DELETE_MARKER] or _tags_and_segments(fields)[1]:
        return None
    return fields[_FIELD_BLOB_ID], fields[_FIELD_SIZE_BYTES]


def fields_object_version(
    bucket: str,
    key: str,
    hlc: int,
    fields: list[Any],
    is_latest: bool,
    bucket_versioning: str | None,
    inline_body: bytes | None,
) -> ObjectVersion:
    """``unpack_version(hlc, packed).to_object_version(...)`` from ``version_fields``'
    array, with no ``VersionRecord`` built (equal results: tested)."""
    tags, raw_segments = _tags_and_segments(fields)
    lock_mode, lock_retain_until_ms, legal_hold = fields_lock_state(fields)
    # _owner_and_acl, inline: this runs for every GET and HEAD.
    owner_id, acl = ((fields[_FIELD_OWNER_ID], fields[_FIELD_ACL])
                     if fields[_FIELD_FORMAT] >= 5 else ("", None))
    version_id = f"{hlc:016x}"  # encode_version_id, without a call and a check
    return ObjectVersion(
        bucket=bucket,
        key=key,
        version_id=version_id,
        last_modified_ms=hlc >> LOGICAL_BITS,
        size_bytes=fields[_FIELD_SIZE_BYTES],
        etag=fields[_FIELD_ETAG],
        is_delete_marker=fields[_FIELD_IS_DELETE_MARKER],
        content_type=fields[_FIELD_CONTENT_TYPE],
        system_metadata=fields[_FIELD_SYSTEM_METADATA],
        user_metadata=fields[_FIELD_USER_METADATA],
        checksums=fields[_FIELD_CHECKSUMS],
        s3_version_id="null" if fields[_FIELD_NULL_VERSION] else version_id,
        is_latest=is_latest,
        storage_class=fields[_FIELD_STORAGE_CLASS],
        part_sizes=tuple(size for _, size in raw_segments),
        part_checksums=_part_checksums(fields),
        tags=tags,
        lock_mode=lock_mode,
        lock_retain_until_ms=lock_retain_until_ms,
        legal_hold=legal_hold,
        owner_id=owner_id,
        acl=acl,
        customer_key=fields_customer_key(fields),
        bucket_versioning=bucket_versioning,
        inline_body=inline_body,
    )


def listed_version(
    key: str, hlc: int, packed: bytes | memoryview, is_latest: bool
) -> ListedVersion:
    """What a listing shows of the version ``hlc`` of ``key`` (its record ``packed``):
    one msgpack decode (C) and a named tuple, for up to 1000 records a page."""
    fields = msgpack.unpackb(packed)
    assert fields[_FIELD_FORMAT] in _VERSION_RECORD_FORMATS_READ, (
        f"unknown version record format {fields[_FIELD_FORMAT]}"
    )
    version_id = f"{hlc:016x}"  # encode_version_id, without a call and a check per key
    checksums = fields[_FIELD_CHECKSUMS]
    # tuple.__new__ skips the named tuple's Python-level __new__ (a third of the cost).
    return _new_tuple(ListedVersion, (
        key,
        version_id,
        "null" if fields[_FIELD_NULL_VERSION] else version_id,
        hlc >> LOGICAL_BITS,
        fields[_FIELD_SIZE_BYTES],
        fields[_FIELD_ETAG],
        fields[_FIELD_STORAGE_CLASS],
        tuple(checksums) if checksums else (),
        fields[_FIELD_IS_DELETE_MARKER],
        is_latest,
        fields[_FIELD_OWNER_ID] if fields[_FIELD_FORMAT] >= 5 else "",
    ))


def pack_bucket(info: BucketInfo) -> bytes:
    retention = info.default_retention
    return msgpack.packb(
        [
            BUCKET_RECORD_FORMAT,
            info.created_ms,
            info.owner_id,
            info.versioning,
            info.object_lock_enabled,
            None if retention is None else [retention.mode, retention.days, retention.years],
        ],
        use_bin_type=True,
    )


def unpack_bucket(name: str, packed: bytes | memoryview) -> BucketInfo:
    fields = msgpack.unpackb(packed, raw=False)
    assert fields[0] in _BUCKET_RECORD_FORMATS_READ, f"unknown bucket record format {fields[0]}"
    info = BucketInfo(name=name, created_ms=fields[1], owner_id=fields[2], versioning=fields[3])
    if fields[0] == 1:  # format 1: no Object Lock
        return info
    retention = None if fields[5] is None else DefaultRetention(*fields[5])
    return BucketInfo(info.name, info.created_ms, info.owner_id, info.versioning,
                      object_lock_enabled=fields[4], default_retention=retention)


def pack_staging(started_ms: int) -> bytes:
    return msgpack.packb([started_ms])


def unpack_staging(packed: bytes | memoryview) -> int:
    """When the staging of a blob began (``pack_staging``)."""
    started_ms: int = msgpack.unpackb(packed)[0]
    return started_ms


# --- multipart uploads ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadRecord:
    initiated_ms: int
    content_type: str
    system_metadata: Mapping[str, str]
    user_metadata: Mapping[str, str]
    storage_class: str
    checksum_algorithm: str
    checksum_type: str
    tags: Mapping[str, str] = field(default_factory=dict)  # the completed version's
    # The Object Lock state asked for at Create (the completed version's).
    lock_mode: str = ""
    lock_retain_until_ms: int = 0
    legal_hold: bool = False
    owner_id: str = ""  # the initiator's canonical id: the completed version's owner
    acl: bytes | None = None  # the completed version's ACL (None: private)
    customer_key: CustomerKeyRecord | None = None  # SSE-C: the parts' and the version's

    def to_info(self, bucket: str, key: str, upload_id: str) -> MultipartUploadInfo:
        spec = PutSpec(
            etag="",
            content_type=self.content_type,
            system_metadata=dict(self.system_metadata),
            user_metadata=dict(self.user_metadata),
            storage_class=self.storage_class,
            tags=dict(self.tags),
            lock_mode=self.lock_mode,
            lock_retain_until_ms=self.lock_retain_until_ms,
            legal_hold=self.legal_hold,
            owner_id=self.owner_id,
            acl=self.acl,
            customer_key=self.customer_key,
        )
        return MultipartUploadInfo(
            bucket=bucket,
            key=key,
            upload_id=upload_id,
            initiated_ms=self.initiated_ms,
            spec=spec,
            checksum_algorithm=self.checksum_algorithm,
            checksum_type=self.checksum_type,
        )


def pack_upload(record: UploadRecord) -> bytes:
    return msgpack.packb(
        [
            UPLOAD_RECORD_FORMAT,
            record.initiated_ms,
            record.content_type,
            dict(record.system_metadata),
            dict(record.user_metadata),
            record.storage_class,
            record.checksum_algorithm,
            record.checksum_type,
            dict(record.tags),
            record.lock_mode,
            record.lock_retain_until_ms,
            record.legal_hold,
            record.owner_id,
            record.acl,
            pack_customer_key(record.customer_key),
        ],
        use_bin_type=True,
    )


def unpack_upload(packed: bytes | memoryview) -> UploadRecord:
    fields = msgpack.unpackb(packed, raw=False)
    assert fields[0] in _UPLOAD_RECORD_FORMATS_READ, f"unknown upload record format {fields[0]}"
    # Format 1 ends after the checksum type; format 2 appends the tag set; format 3 the
    # Object Lock state; format 4 the owner id and the ACL; format 5 the SSE-C key record.
    record = UploadRecord(*fields[1:14])
    if fields[0] >= 5 and fields[14] is not None:
        return replace(record, customer_key=unpack_customer_key(fields[14]))
    return record


@dataclass(frozen=True, slots=True)
class PartRecord:
    blob_id: bytes | None  # None for an empty part
    size_bytes: int
    etag: str
    checksum: str
    last_modified_ms: int

    def to_info(self, part_number: int) -> PartInfo:
        return PartInfo(
            part_number=part_number,
            size_bytes=self.size_bytes,
            etag=self.etag,
            last_modified_ms=self.last_modified_ms,
            checksum=self.checksum,
        )


def pack_part(record: PartRecord) -> bytes:
    return msgpack.packb(
        [
            PART_RECORD_FORMAT,
            record.blob_id,
            record.size_bytes,
            record.etag,
            record.checksum,
            record.last_modified_ms,
        ],
        use_bin_type=True,
    )


def unpack_part(packed: bytes | memoryview) -> PartRecord:
    fields = msgpack.unpackb(packed, raw=False)
    assert fields[0] == PART_RECORD_FORMAT, f"unknown part record format {fields[0]}"
    return PartRecord(*fields[1:6])
