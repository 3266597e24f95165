"""Multipart uploads in the engine and through the embedded client: parts are staged
like bodies, Complete is a manifest over the parts' blobs (no copy), and nothing an
upload staged outlives it (checked with the engine's entry counts)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib

import msgpack
import pytest

from storage.api import (
    CompletedPart,
    CustomerKey,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    NoSuchUpload,
    PreconditionFailed,
    PutSpec,
    WriteConditions,
    limits,
)
from storage.client import open_embedded
from storage.engine import keys, multipart, operations
from storage.engine.records import unpack_version
from tests.unit.engine_helpers import Store, open_store

CHUNK = limits.chunk_size_bytes
PART_MIN = CHUNK + CHUNK // 2  # the tests lower the 5 MiB minimum to keep bodies small


@pytest.fixture(autouse=True)
def small_part_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "part_size_bytes_min", PART_MIN)


@pytest.fixture
def store(tmp_path: pathlib.Path):
    with open_store(tmp_path) as opened:
        opened.create_bucket("b")
        yield opened


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def create(store: Store, key: str = "k", spec: PutSpec | None = None) -> str:
    spec = spec or PutSpec(etag="", content_type="text/plain", user_metadata={"a": "1"})
    return store.create_upload("b", key, spec)


def upload_part(store: Store, upload_id: str, number: int, body: bytes, key: str = "k"):
    return store.upload_part("b", key, upload_id, number, body)


def complete(store: Store, upload_id: str, parts: dict[int, bytes], key: str = "k", **kwargs):
    named = [CompletedPart(number, md5(body)) for number, body in sorted(parts.items())]
    return store.write(
        operations.complete_multipart_upload(
            "b", key, upload_id, named, etag="e-" + str(len(named)), checksums={}, **kwargs
        )
    )


def blob_entries(store: Store) -> tuple[int, int, int, int]:
    counts = store.engine.entry_counts()
    return counts["chunks"], counts["staging"], counts["uploads"], counts["parts"]


def three_parts() -> dict[int, bytes]:
    return {1: os.urandom(PART_MIN), 2: os.urandom(2 * CHUNK + 7), 3: os.urandom(100)}


def test_complete_is_a_manifest_over_the_parts(store: Store) -> None:
    parts = three_parts()
    upload_id = create(store)
    for number, body in parts.items():
        upload_part(store, upload_id, number, body)
    chunks_before, _, _, _ = blob_entries(store)
    version = complete(store, upload_id, parts)
    body = b"".join(parts[n] for n in sorted(parts))
    assert version.size_bytes == len(body)
    assert version.part_sizes == tuple(len(parts[n]) for n in sorted(parts))
    assert version.content_type == "text/plain" and version.user_metadata == {"a": "1"}
    assert store.read(version) == body
    # No byte was copied: the chunks are the parts' chunks; the upload is gone.
    assert blob_entries(store) == (chunks_before, 0, 0, 0)
    latest = store.engine.get_version("b", "k")
    assert latest.part_sizes == version.part_sizes and latest.etag == "e-3"


@pytest.mark.parametrize(
    "start, end",
    [(0, 1), (PART_MIN - 3, PART_MIN + 3), (PART_MIN, PART_MIN + 2 * CHUNK + 7),
     (CHUNK - 1, PART_MIN + CHUNK + 1), (PART_MIN + 2 * CHUNK + 5, None), (7, None)],
)  # fmt: skip
def test_ranges_read_across_segments(store: Store, start: int, end: int | None) -> None:
    parts = three_parts()
    upload_id = create(store)
    for number, body in parts.items():
        upload_part(store, upload_id, number, body)
    version = complete(store, upload_id, parts)
    body = b"".join(parts[n] for n in sorted(parts))
    assert store.read(version, start, end) == body[start:end]


def test_reuploading_a_part_frees_the_old_blob(store: Store) -> None:
    upload_id = create(store)
    upload_part(store, upload_id, 1, os.urandom(3 * CHUNK))
    first = blob_entries(store)
    replacement = os.urandom(CHUNK + 1)
    info = upload_part(store, upload_id, 1, replacement)
    assert info.etag == md5(replacement) and info.size_bytes == CHUNK + 1
    assert blob_entries(store) == (2, 0, 1, 1)
    assert first == (3, 0, 1, 1)
    version = complete(store, upload_id, {1: replacement})
    assert store.read(version) == replacement


def test_abort_and_unnamed_parts_leave_no_garbage(store: Store) -> None:
    empty = blob_entries(store)
    upload_id = create(store)
    for number, body in three_parts().items():
        upload_part(store, upload_id, number, body)
    store.write(operations.abort_multipart_upload("b", "k", upload_id))
    assert blob_entries(store) == empty
    with pytest.raises(NoSuchUpload):
        store.write(operations.abort_multipart_upload("b", "k", upload_id))

    parts = three_parts()
    upload_id = create(store)
    for number, body in parts.items():
        upload_part(store, upload_id, number, body)
    version = complete(store, upload_id, {1: parts[1], 3: parts[3]})
    assert store.read(version) == parts[1] + parts[3]
    expected_chunks = -(-len(parts[1]) // CHUNK) + 1
    assert blob_entries(store) == (expected_chunks, 0, 0, 0)


def test_overwrite_and_delete_free_every_segment(store: Store) -> None:
    empty = blob_entries(store)
    for _ in range(2):  # the second Complete replaces the first null version
        parts = three_parts()
        upload_id = create(store)
        for number, body in parts.items():
            upload_part(store, upload_id, number, body)
        complete(store, upload_id, parts)
    chunks = sum(-(-len(body) // CHUNK) for body in parts.values())
    assert blob_entries(store) == (chunks, 0, 0, 0)
    store.write(operations.delete_object("b", "k"))
    assert blob_entries(store) == empty


def test_complete_errors(store: Store) -> None:
    parts = three_parts()
    upload_id = create(store)
    for number, body in parts.items():
        upload_part(store, upload_id, number, body)
    small = os.urandom(10)
    upload_part(store, upload_id, 5, small)
    with pytest.raises(InvalidPartOrder):
        named = [CompletedPart(2, md5(parts[2])), CompletedPart(1, md5(parts[1]))]
        store.write(operations.complete_multipart_upload(
            "b", "k", upload_id, named, etag="e", checksums={}))  # fmt: skip
    with pytest.raises(InvalidPart):
        named = [CompletedPart(1, md5(parts[1])), CompletedPart(4, md5(b""))]
        store.write(operations.complete_multipart_upload(
            "b", "k", upload_id, named, etag="e", checksums={}))  # fmt: skip
    with pytest.raises(InvalidPart):
        named = [CompletedPart(1, md5(parts[2]))]
        store.write(operations.complete_multipart_upload(
            "b", "k", upload_id, named, etag="e", checksums={}))  # fmt: skip
    with pytest.raises(EntityTooSmall):
        complete(store, upload_id, {3: parts[3], 5: small})
    with pytest.raises(InvalidArgument):
        store.write(operations.complete_multipart_upload(
            "b", "k", upload_id, [], etag="e", checksums={}))  # fmt: skip
    with pytest.raises(NoSuchUpload):
        complete(store, "A" * 32, parts)
    with pytest.raises(NoSuchUpload):
        complete(store, upload_id, parts, key="other")
    with pytest.raises(InvalidArgument):
        upload_part(store, upload_id, limits.parts_per_upload_max + 1, b"x")
    # Nothing above changed the upload: it still completes.
    version = complete(store, upload_id, {1: parts[1], 5: small})
    assert store.read(version) == parts[1] + small


def test_complete_checks_write_conditions(store: Store) -> None:
    store.put("b", "k", b"existing")
    upload_id = create(store)
    upload_part(store, upload_id, 1, b"new")
    with pytest.raises(PreconditionFailed):
        complete(store, upload_id, {1: b"new"}, conditions=WriteConditions(if_none_match_any=True))
    with pytest.raises(PreconditionFailed):
        complete(store, upload_id, {1: b"new"}, conditions=WriteConditions(if_match="nope"))
    version = complete(
        store, upload_id, {1: b"new"}, conditions=WriteConditions(if_match=md5(b"existing"))
    )
    assert store.read(version) == b"new"


def test_part_of_an_unknown_upload_is_rolled_back(store: Store) -> None:
    with pytest.raises(NoSuchUpload):
        upload_part(store, "not-an-upload-id", 1, b"x")
    assert blob_entries(store) == (0, 0, 0, 0)


def test_list_parts_pages(store: Store) -> None:
    upload_id = create(store)
    for number in (1, 2, 3, 7):
        upload_part(store, upload_id, number, bytes([number]) * number)
    page = multipart.list_parts(store.engine, "b", "k", upload_id, max_parts=2)
    assert [p.part_number for p in page.parts] == [1, 2]
    assert page.is_truncated and page.next_part_number_marker == 2
    assert page.upload.spec.content_type == "text/plain"
    page = multipart.list_parts(store.engine, "b", "k", upload_id, part_number_marker=2)
    assert [(p.part_number, p.size_bytes) for p in page.parts] == [(3, 3), (7, 7)]
    assert not page.is_truncated and page.next_part_number_marker is None
    with pytest.raises(NoSuchUpload):
        multipart.list_parts(store.engine, "b", "k2", upload_id)


def test_list_uploads_pages_and_prefixes(store: Store) -> None:
    ids = {}
    for key in ["a/1", "a/2", "b", "b", "c/x/y", "d"]:
        ids.setdefault(key, []).append(create(store, key))
    page = multipart.list_uploads(store.engine, "b")
    assert [(u.key, u.upload_id) for u in page.uploads] == [
        (key, upload_id) for key in sorted(ids) for upload_id in ids[key]
    ]
    # Paging one at a time visits every upload once, both uploads of 'b' included.
    seen, key_marker, id_marker = [], "", ""
    while True:
        page = multipart.list_uploads(
            store.engine, "b", key_marker=key_marker, upload_id_marker=id_marker, max_uploads=1
        )
        seen += [(u.key, u.upload_id) for u in page.uploads]
        if not page.is_truncated:
            break
        key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker or ""
    assert seen == [(key, upload_id) for key in sorted(ids) for upload_id in ids[key]]
    page = multipart.list_uploads(store.engine, "b", delimiter="/")
    assert page.common_prefixes == ("a/", "c/")
    assert [u.key for u in page.uploads] == ["b", "b", "d"]
    page = multipart.list_uploads(store.engine, "b", prefix="c/", delimiter="/")
    assert page.common_prefixes == ("c/x/",) and page.uploads == ()
    page = multipart.list_uploads(store.engine, "b", delimiter="/", max_uploads=2)
    assert page.is_truncated and page.common_prefixes == ("a/",)
    assert (page.next_key_marker, page.next_upload_id_marker) == ("b", ids["b"][0])


def test_deleting_a_bucket_aborts_its_uploads(store: Store) -> None:
    upload_id = create(store)
    upload_part(store, upload_id, 1, os.urandom(CHUNK + 1))
    store.write(operations.delete_bucket("b"))
    assert blob_entries(store) == (0, 0, 0, 0)


def test_older_record_formats_still_read(store: Store) -> None:
    """Records written by earlier formats read as before: format 1 (single blob, no
    tags), format 2 (segments at [12], no tags), format 3 (tags, segments, no Object
    Lock state, no part checksums), format 4 (no owner, no ACL) and format 5 (no SSE-C
    key record); new records are format 6."""
    version = store.put("b", "plain", b"abc")
    with store.engine.env.begin() as txn:
        cursor = txn.cursor(db=store.engine.versions)
        assert cursor.set_range(keys.key_prefix(b"b", b"plain"))
        fields = msgpack.unpackb(cursor.value(), raw=False)
    assert fields[0] == 6 and len(fields) == 21 and fields[20] is None
    assert version.part_sizes == ()
    format_1 = [1, *fields[1:12]]
    old = unpack_version(0, msgpack.packb(format_1, use_bin_type=True))
    assert (old.segments, dict(old.tags), old.etag) == ((), {}, version.etag)
    blob = b"\x01" * 16
    format_2 = [2, *fields[1:12], [[blob, 3]]]
    segmented = unpack_version(0, msgpack.packb(format_2, use_bin_type=True))
    assert (segmented.segments, dict(segmented.tags)) == (((blob, 3),), {})
    format_3 = [3, *fields[1:12], {"t": "v"}, [[blob, 3]]]
    tagged = unpack_version(0, msgpack.packb(format_3, use_bin_type=True))
    assert (tagged.segments, dict(tagged.tags), tagged.part_checksums) == (
        ((blob, 3),), {"t": "v"}, ())
    assert (tagged.lock_mode, tagged.lock_retain_until_ms, tagged.legal_hold) == ("", 0, False)
    format_4 = [4, *fields[1:12], {"t": "v"}, [[blob, 3]], "COMPLIANCE", 1234, True, ["c1"]]
    current = unpack_version(0, msgpack.packb(format_4, use_bin_type=True))
    assert (current.segments, dict(current.tags), current.part_checksums) == (
        ((blob, 3),), {"t": "v"}, ("c1",))
    assert (current.lock_mode, current.lock_retain_until_ms, current.legal_hold) == (
        "COMPLIANCE", 1234, True)
    assert (current.owner_id, current.acl) == ("", None)
    format_5 = [5, *format_4[1:], "owner", b"{}"]
    owned = unpack_version(0, msgpack.packb(format_5, use_bin_type=True))
    assert (owned.tags, owned.legal_hold, owned.owner_id, owned.acl) == (
        {"t": "v"}, True, "owner", b"{}")
    assert owned.customer_key is None
    record = CustomerKey.of(bytes(32)).new_record()
    format_6 = [6, *format_5[1:], [record.key_md5, record.salt, record.verifier]]
    sealed = unpack_version(0, msgpack.packb(format_6, use_bin_type=True))
    assert (sealed.owner_id, sealed.customer_key) == ("owner", record)


def test_tags_given_at_create_are_the_completed_versions(store: Store) -> None:
    upload_id = create(store, spec=PutSpec(etag="", tags={"project": "x", "tmp": ""}))
    page = multipart.list_parts(store.engine, "b", "k", upload_id)
    assert page.upload.spec.tags == {"project": "x", "tmp": ""}
    upload_part(store, upload_id, 1, b"body")
    version = complete(store, upload_id, {1: b"body"})
    assert version.tags == {"project": "x", "tmp": ""}
    assert store.engine.get_version("b", "k").tags == {"project": "x", "tmp": ""}
    too_many = {f"t{index}": "" for index in range(limits.object_tags_max + 1)}
    with pytest.raises(InvalidArgument):
        create(store, spec=PutSpec(etag="", tags=too_many))


@pytest.mark.parametrize("old_format", [1, 2, 4])
def test_older_upload_records_still_read(store: Store, old_format: int) -> None:
    """Upload format 1 (no tags), 2 (no Object Lock state) and 4 (no SSE-C key record)
    complete as before."""
    upload_id = create(store)
    upload_key = keys.upload_key(b"b", b"k", keys.decode_upload_id(upload_id))
    with store.engine.env.begin() as txn:
        fields = msgpack.unpackb(txn.get(upload_key, db=store.engine.uploads), raw=False)
    assert fields[0] == 5 and len(fields) == 15 and fields[14] is None
    old_fields = {1: [1, *fields[1:8]], 2: [2, *fields[1:9]],
                  4: [4, *fields[1:14]]}[old_format]
    with store.engine.env.begin(write=True) as txn:
        txn.put(upload_key, msgpack.packb(old_fields, use_bin_type=True), db=store.engine.uploads)
    upload_part(store, upload_id, 1, b"old")
    version = complete(store, upload_id, {1: b"old"})
    assert (version.tags, version.content_type, store.read(version)) == ({}, "text/plain", b"old")


def test_versioned_multipart_versions_are_listed_and_freed_by_version_id(store: Store) -> None:
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    empty = blob_entries(store)
    versions = []
    for _ in range(2):
        parts = three_parts()
        upload_id = create(store)
        for number, body in parts.items():
            upload_part(store, upload_id, number, body)
        versions.append(complete(store, upload_id, parts))
    assert all(v.s3_version_id == v.version_id for v in versions)
    listed = store.engine.list_object_versions("b").versions
    assert [(v.version_id, v.is_latest, v.etag) for v in listed] == [
        (versions[1].version_id, True, versions[1].etag),
        (versions[0].version_id, False, versions[0].etag),
    ]
    # A listing shows no part sizes (api.ListedVersion); each version read by id has its own.
    for version in versions:
        read = store.engine.get_version("b", "k", version.version_id)
        assert read.part_sizes == version.part_sizes == (PART_MIN, 2 * CHUNK + 7, 100)
    one_version_chunks = sum(-(-len(body) // CHUNK) for body in three_parts().values())
    assert blob_entries(store) == (2 * one_version_chunks, 0, 0, 0)
    store.write(operations.delete_object("b", "k", versions[0].version_id))
    assert blob_entries(store) == (one_version_chunks, 0, 0, 0)
    assert store.read(store.engine.get_version("b", "k", versions[1].version_id))
    store.write(operations.delete_object("b", "k", versions[1].version_id))
    assert blob_entries(store) == empty


def test_embedded_client_round_trip(tmp_path: pathlib.Path) -> None:
    parts = three_parts()

    async def scenario() -> None:
        client = await open_embedded(tmp_path, durable=False)
        try:
            await client.create_bucket("b", "owner")
            info = await client.create_multipart_upload(
                "b", "k", PutSpec(etag=""), checksum_algorithm="CRC32", checksum_type="COMPOSITE"
            )
            for number, body in parts.items():
                async with client.upload_part("b", "k", info.upload_id, number) as upload:
                    for offset in range(0, len(body), 100_000):
                        await upload.write(body[offset : offset + 100_000])
                    await upload.commit(md5(body), checksum=f"c{number}")
            async with client.upload_part("b", "k", info.upload_id, 9) as upload:
                await upload.write(b"abandoned")  # left without commit: aborted
            page = await client.list_parts("b", "k", info.upload_id)
            assert [(p.part_number, p.checksum) for p in page.parts] == [
                (1, "c1"), (2, "c2"), (3, "c3")]  # fmt: skip
            assert page.upload.checksum_algorithm == "CRC32"
            uploads = await client.list_multipart_uploads("b")
            assert [u.upload_id for u in uploads.uploads] == [info.upload_id]
            named = [CompletedPart(n, md5(parts[n]), f"c{n}") for n in sorted(parts)]
            with pytest.raises(InvalidPart):
                await client.complete_multipart_upload(
                    "b", "k", info.upload_id, [CompletedPart(1, md5(parts[1]), "bad")], "e"
                )
            version = await client.complete_multipart_upload(
                "b", "k", info.upload_id, named, "e-3", {"CRC32": "x-3"}
            )
            assert version.checksums == {"CRC32": "x-3"}
            # Each part's own checksum is kept with the version (GetObjectAttributes).
            assert version.part_checksums == ("c1", "c2", "c3")
            assert (await client.get_version("b", "k")).part_checksums == ("c1", "c2", "c3")
            received = bytearray()
            async for piece in client.read_body(version, 5, len(parts[1]) + 10):
                received += piece
            assert bytes(received) == b"".join(parts[n] for n in sorted(parts))[5 : len(parts[1]) + 10]
            other = await client.create_multipart_upload("b", "k2", PutSpec(etag=""))
            await client.abort_multipart_upload("b", "k2", other.upload_id)
            with pytest.raises(NoSuchUpload):
                await client.list_parts("b", "k2", other.upload_id)
        finally:
            await client.close()

    asyncio.run(scenario())
