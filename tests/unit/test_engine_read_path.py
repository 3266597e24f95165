"""The engine's lean read of a key's latest version and its decoded-bucket cache.

``get_version`` of the latest version builds its ``ObjectVersion`` straight from the
record's msgpack array; the general path (by version id) goes through ``VersionRecord``.
Both must give the same answer for records of every format, delete markers, multipart
and empty bodies. The bucket cache must never hide a change of the bucket's record.
"""

from __future__ import annotations

import dataclasses
import pathlib

import msgpack
import pytest

from storage.api import (
    CompletedPart,
    NoSuchBucket,
    NoSuchKey,
    ObjectVersion,
    PutSpec,
    limits,
)
from storage.engine import keys, operations
from tests.unit.engine_helpers import open_store


def _everything(version: ObjectVersion) -> dict[str, object]:
    """Every field, those left out of equality (versioning state, inline body) too."""
    return {f.name: getattr(version, f.name) for f in dataclasses.fields(version)}


def test_latest_read_equals_the_general_read(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        spec = PutSpec(etag="e1", content_type="text/plain", user_metadata={"m": "v"},
                       system_metadata={"Cache-Control": "no-cache"},
                       checksums={"CRC32": "AAAAAA==", "SHA256": "x"},
                       storage_class="GLACIER", tags={"t": "1", "u": "2"})
        store.write(operations.commit_version("b", "empty", blob_id=None, size_bytes=0,
                                              spec=spec))
        store.put("b", "plain", b"abc")
        store.put("b", "big", b"x" * (limits.chunk_size_bytes + 1))
        upload_id = store.create_upload("b", "multi")
        parts = [store.upload_part("b", "multi", upload_id, n, b"p" * 10) for n in (1,)]
        store.write(operations.complete_multipart_upload(
            "b", "multi", upload_id,
            [CompletedPart(number, part.etag) for number, part in zip((1,), parts, strict=True)],
            etag="e-1", checksums={},
        ))
        store.write(operations.set_bucket_versioning("b", "Enabled"))
        store.put("b", "versioned", b"one")
        store.put("b", "versioned", b"two")
        store.put("b", "marked", b"one")
        store.write(operations.delete_object("b", "marked"))  # a delete marker on top
        hlc = (store.clock.now_ms + 1000) << 16
        legacy = {  # records as formats 1 and 2 wrote them
            "format-1": [1, 3, "e3", False, True, None, 0, "text/plain", {}, {"m": "v"},
                         {"CRC32C": "c"}, "STANDARD"],
            "format-2": [2, 4, "e4-2", False, False, None, 0, "", {}, {}, {}, "STANDARD",
                         [[b"\x01" * 16, 2], [b"\x02" * 16, 2]]],
            "format-3": [3, 4, "e4-2", False, False, None, 0, "", {}, {}, {}, "STANDARD",
                         {"t": "v"}, [[b"\x01" * 16, 2], [b"\x02" * 16, 2]]],
        }
        with store.engine.env.begin(write=True) as txn:
            for key, fields in legacy.items():
                txn.put(keys.version_key(b"b", key.encode(), hlc),
                        msgpack.packb(fields, use_bin_type=True), db=store.engine.versions)
        names = ["empty", "plain", "big", "multi", "versioned", "marked", "format-1", "format-2",
                 "format-3"]
        for inline_max in (0, 3, limits.chunk_size_bytes * 2):
            for name in names:
                lean = store.engine.get_version("b", name, inline_body_bytes_max=inline_max)
                general = store.engine.get_version("b", name, version_id=lean.version_id,
                                                   inline_body_bytes_max=inline_max)
                assert _everything(lean) == _everything(general), (name, inline_max)
        # The cases above do reach the inline body and the multipart and marker fields.
        small = store.engine.get_version("b", "plain", inline_body_bytes_max=3)
        assert small.inline_body == b"abc" and small.bucket_versioning == "Enabled"
        assert store.engine.get_version("b", "multi").part_sizes == (10,)
        assert store.engine.get_version("b", "marked").is_delete_marker
        assert store.engine.get_version("b", "format-1").s3_version_id == "null"
        format_3 = store.engine.get_version("b", "format-3")
        assert (format_3.part_sizes, format_3.part_checksums, format_3.tags) == (
            (2, 2), (), {"t": "v"})
        with pytest.raises(NoSuchKey):
            store.engine.get_version("b", "absent")
        with pytest.raises(NoSuchKey):
            store.engine.get_version("b", "plai")  # a prefix of a stored key


def test_a_changed_bucket_record_is_read_at_once(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b", owner_id="first")
        store.put("b", "k", b"abc")
        assert store.engine.get_version("b", "k").bucket_versioning == ""
        store.write(operations.set_bucket_versioning("b", "Enabled"))
        assert store.engine.get_version("b", "k").bucket_versioning == "Enabled"
        store.write(operations.set_bucket_versioning("b", "Suspended"))
        assert store.engine.get_version("b", "k").bucket_versioning == "Suspended"
        assert store.engine.get_bucket("b").owner_id == "first"
        store.write(operations.delete_object("b", "k", version_id="null"))
        for version in store.engine.list_object_versions("b").versions:
            store.write(operations.delete_object("b", version.key,
                                                 version_id=version.version_id))
        store.write(operations.delete_bucket("b"))
        with pytest.raises(NoSuchBucket):
            store.engine.get_bucket("b")
        store.create_bucket("b", owner_id="second")
        info = store.engine.get_bucket("b")
        assert (info.owner_id, info.versioning) == ("second", "")
