"""Stored records (msgpack) of the engine and their conversion to ``storage.api`` types.

A version record holds everything in ``api.ObjectVersion`` except bucket, key and
is_latest (those come from the LMDB key and its position), plus where its body lives
(``blob_id``, ``chunk_count``) and ``null_version``: true for writes made while the
bucket was unversioned or Suspended (S3 shows their version id as 'null').
Records are stored as msgpack arrays (positional, compact); the first element is the
record format number so the layout can evolve. Format 2 appended the tag set; format 1
records (written before tags existed) are still read, with no tags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack

from storage.api import BucketInfo, ObjectVersion
from storage.versions import encode_version_id, hlc_to_ms

VERSION_RECORD_FORMAT = 2
_VERSION_RECORD_FORMATS_READ = (1, 2)
BUCKET_RECORD_FORMAT = 1


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
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def version_id(self) -> str:
        return encode_version_id(self.hlc)

    @property
    def s3_version_id(self) -> str:
        return "null" if self.null_version else self.version_id

    def to_object_version(self, bucket: str, key: str, is_latest: bool) -> ObjectVersion:
        return ObjectVersion(
            bucket=bucket,
            key=key,
            version_id=self.version_id,
            last_modified_ms=hlc_to_ms(self.hlc),
            size_bytes=self.size_bytes,
            etag=self.etag,
            is_delete_marker=self.is_delete_marker,
            content_type=self.content_type,
            system_metadata=dict(self.system_metadata),
            user_metadata=dict(self.user_metadata),
            checksums=dict(self.checksums),
            s3_version_id=self.s3_version_id,
            is_latest=is_latest,
            storage_class=self.storage_class,
            tags=dict(self.tags),
        )


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
        ],
        use_bin_type=True,
    )


def unpack_version(hlc: int, packed: bytes | memoryview) -> VersionRecord:
    fields = msgpack.unpackb(packed, raw=False)
    assert fields[0] in _VERSION_RECORD_FORMATS_READ, f"unknown version record format {fields[0]}"
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
        tags=fields[12] if fields[0] >= 2 else {},
    )


def pack_bucket(info: BucketInfo) -> bytes:
    return msgpack.packb(
        [BUCKET_RECORD_FORMAT, info.created_ms, info.owner_id, info.versioning],
        use_bin_type=True,
    )


def unpack_bucket(name: str, packed: bytes | memoryview) -> BucketInfo:
    fields = msgpack.unpackb(packed, raw=False)
    assert fields[0] == BUCKET_RECORD_FORMAT, f"unknown bucket record format {fields[0]}"
    return BucketInfo(name=name, created_ms=fields[1], owner_id=fields[2], versioning=fields[3])


def pack_staging(started_ms: int) -> bytes:
    return msgpack.packb([started_ms])
