"""Engine: keys, versions (latest / by id / as of), null versions, conditions, staging,
group commit. Each test opens its own LMDB environment in tmp_path."""

from __future__ import annotations

import pathlib
import threading

import pytest

from storage.api import (
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    DeleteResult,
    InvalidArgument,
    KeyTooLong,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    Overloaded,
    PreconditionFailed,
    PutSpec,
    WriteConditions,
    limits,
)
from storage.engine import Engine, operations
from storage.engine.keys import escape, key_prefix
from storage.engine.writer import WriteOperation
from tests.unit.engine_helpers import FakeClock, Store, open_store

CHUNK = limits.chunk_size_bytes


@pytest.fixture
def store(tmp_path: pathlib.Path):
    with open_store(tmp_path) as opened:
        opened.create_bucket("b")
        yield opened


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "smaller, larger",
    [("a", "a\x00"), ("a", "ab"), ("a\x00", "a\x01"), ("a\x00b", "a\x00c"), ("", "\x00")],
)
def test_escaped_key_prefixes_keep_byte_order(smaller: str, larger: str) -> None:
    b = b"bucket"
    assert smaller.encode() < larger.encode()
    if smaller:
        assert key_prefix(b, smaller.encode()) < key_prefix(b, larger.encode())
    assert escape(smaller.encode()) < escape(larger.encode())


def test_keys_with_nul_bytes_are_distinct_objects(store: Store) -> None:
    names = ["a", "a\x00", "a\x00\x00", "a\x00b", "ab", "\x00"]
    for name in names:
        store.put("b", name, name.encode() + b"!")
    for name in names:
        version = store.engine.get_version("b", name)
        assert store.read(version) == name.encode() + b"!"
    listed = [o.key for o in store.engine.list_objects("b").objects]
    assert listed == sorted(names, key=lambda n: n.encode())


def test_1024_byte_key_works_and_longer_is_refused(store: Store) -> None:
    key = "k" * limits.key_bytes_max
    store.put("b", key, b"x")
    assert store.engine.get_version("b", key).size_bytes == 1
    with pytest.raises(KeyTooLong):
        store.put("b", key + "k", b"x")
    with pytest.raises(KeyTooLong):
        store.engine.get_version("b", key + "k")


def test_key_whose_escaped_form_exceeds_lmdb_is_refused(store: Store) -> None:
    with pytest.raises(KeyTooLong):
        store.put("b", "\x00" * limits.key_bytes_max, b"x")
    assert store.engine.entry_counts()["versions"] == 0


def test_empty_key_is_invalid(store: Store) -> None:
    with pytest.raises(InvalidArgument):
        store.put("b", "", b"x")


# --- buckets -------------------------------------------------------------------------------


def test_bucket_lifecycle(store: Store) -> None:
    with pytest.raises(BucketAlreadyOwnedByYou):
        store.create_bucket("b", "owner")
    with pytest.raises(BucketAlreadyExists):
        store.create_bucket("b", "someone-else")
    store.create_bucket("c", "someone-else")
    assert [i.name for i in store.engine.list_buckets("owner")] == ["b"]
    assert store.engine.get_bucket("c").owner_id == "someone-else"
    store.put("b", "k", b"x")
    with pytest.raises(BucketNotEmpty):
        store.write(operations.delete_bucket("b"))
    store.write(operations.delete_object("b", "k"))
    store.write(operations.delete_bucket("b"))
    with pytest.raises(NoSuchBucket):
        store.engine.get_bucket("b")
    with pytest.raises(NoSuchBucket):
        store.put("b", "k", b"x")
    with pytest.raises(NoSuchBucket):
        store.write(operations.delete_bucket("b"))


def test_delete_marker_keeps_a_bucket_non_empty(store: Store) -> None:
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    store.write(operations.delete_object("b", "ghost"))
    with pytest.raises(BucketNotEmpty):
        store.write(operations.delete_bucket("b"))


# --- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 17])
def test_body_round_trip_and_ranges(store: Store, size: int) -> None:
    body = bytes((i * 7) & 0xFF for i in range(size))
    version = store.put("b", "k", body)
    assert version.size_bytes == size
    assert store.read(version) == body
    for start, end in [(0, 1), (CHUNK - 3, CHUNK + 3), (size // 2, size), (size, size)]:
        if start <= size:
            assert store.read(version, start, min(end, size)) == body[start:end]


def test_range_reads_touch_only_overlapping_chunks(store: Store) -> None:
    version = store.put("b", "k", b"a" * CHUNK + b"b" * CHUNK + b"c" * 10)
    pieces = list(store.engine.open_body(version, CHUNK + 5, CHUNK + 9))
    assert [bytes(p) for p in pieces] == [b"bbbb"]
    assert all(isinstance(p, memoryview) for p in pieces)


def test_body_stream_is_a_snapshot_that_survives_overwrite_and_gc(store: Store) -> None:
    old = b"o" * (2 * CHUNK + 5)
    version = store.put("b", "k", old)
    reader = store.engine.open_body(version)
    try:
        chunks = iter(reader)
        first = bytes(next(chunks))
        store.put("b", "k", b"n" * (2 * CHUNK + 5))  # null version: old chunks are freed
        store.put("b", "other", b"z" * (3 * CHUNK))  # reuse of the freed pages, if allowed
        rest = b"".join(bytes(piece) for piece in chunks)
    finally:
        reader.close()
    assert first + rest == old


def test_reading_a_version_that_is_gone_raises_before_any_byte(store: Store) -> None:
    version = store.put("b", "k", b"old")
    store.put("b", "k", b"new")
    with pytest.raises(NoSuchVersion):
        store.engine.open_body(version)


# --- versions ------------------------------------------------------------------------------


def test_latest_by_id_and_as_of_in_an_enabled_bucket(store: Store) -> None:
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    store.clock.advance(100)
    v1 = store.put("b", "k", b"one")
    store.clock.advance(100)
    v2 = store.put("b", "k", b"two")
    store.clock.advance(100)
    marker = store.write(operations.delete_object("b", "k"))
    store.clock.advance(100)
    assert v1.s3_version_id == v1.version_id != "null"
    assert marker.delete_marker and marker.s3_version_id

    latest = store.engine.get_version("b", "k")
    assert latest.is_delete_marker and latest.is_latest
    assert latest.version_id == marker.s3_version_id
    by_id = store.engine.get_version("b", "k", version_id=v1.version_id)
    assert (by_id.etag, by_id.is_latest) == (v1.etag, False)
    assert store.read(by_id) == b"one"
    assert store.engine.get_version("b", "k", as_of_ms=v1.last_modified_ms).version_id == (
        v1.version_id
    )
    assert store.engine.get_version("b", "k", as_of_ms=v2.last_modified_ms + 50).version_id == (
        v2.version_id
    )
    with pytest.raises(NoSuchKey):
        store.engine.get_version("b", "k", as_of_ms=v1.last_modified_ms - 1)
    with pytest.raises(NoSuchVersion):
        store.engine.get_version("b", "k", version_id="0" * 16)
    with pytest.raises(InvalidArgument):
        store.engine.get_version("b", "k", version_id="not-a-version")
    assert [o.key for o in store.engine.list_objects("b").objects] == []
    as_of = store.engine.list_objects("b", as_of_ms=v2.last_modified_ms)
    assert [(o.key, o.etag) for o in as_of.objects] == [("k", v2.etag)]


def test_versions_in_the_same_millisecond_are_ordered(store: Store) -> None:
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    made = [store.put("b", "k", str(i).encode()) for i in range(5)]
    assert [v.version_id for v in made] == sorted(v.version_id for v in made)
    assert store.read(store.engine.get_version("b", "k")) == b"4"


def test_deleting_a_specific_version_and_a_missing_one(store: Store) -> None:
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    v1 = store.put("b", "k", b"one")
    marker = store.write(operations.delete_object("b", "k"))
    removed = store.write(operations.delete_object("b", "k", marker.s3_version_id))
    assert removed.delete_marker and removed.s3_version_id == marker.s3_version_id
    assert store.engine.get_version("b", "k").version_id == v1.version_id
    assert store.write(operations.delete_object("b", "k", "0" * 16)).s3_version_id is None
    with pytest.raises(InvalidArgument):
        store.write(operations.delete_object("b", "k", "garbage"))
    store.write(operations.delete_object("b", "k", v1.version_id))
    with pytest.raises(NoSuchKey):
        store.engine.get_version("b", "k")
    assert store.engine.entry_counts()["chunks"] == 0


def test_unversioned_overwrite_frees_the_old_chunks(store: Store) -> None:
    store.put("b", "k", b"1" * (3 * CHUNK))
    assert store.engine.entry_counts()["chunks"] == 3
    version = store.put("b", "k", b"2" * (CHUNK + 1))
    counts = store.engine.entry_counts()
    assert (counts["versions"], counts["chunks"]) == (1, 2)
    assert version.s3_version_id == "null"
    assert store.write(operations.delete_object("b", "k")) == DeleteResult()
    counts = store.engine.entry_counts()
    assert (counts["versions"], counts["chunks"], counts["staging"]) == (0, 0, 0)


def test_suspended_bucket_replaces_only_the_null_version(store: Store) -> None:
    store.put("b", "k", b"n0" * CHUNK)  # null version from the unversioned era
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    real = store.put("b", "k", b"real")
    store.write(operations.set_bucket_versioning("b", "Suspended"))
    null_1 = store.put("b", "k", b"null-1")
    assert null_1.s3_version_id == "null"
    assert store.engine.entry_counts()["versions"] == 2  # the first null version is gone
    store.put("b", "k", b"null-2")
    assert store.engine.entry_counts()["versions"] == 2
    assert store.read(store.engine.get_version("b", "k", version_id="null")) == b"null-2"
    assert store.read(store.engine.get_version("b", "k", version_id=real.version_id)) == b"real"
    assert store.engine.entry_counts()["chunks"] == 2
    deleted = store.write(operations.delete_object("b", "k"))
    assert (deleted.delete_marker, deleted.s3_version_id) == (True, "null")
    latest = store.engine.get_version("b", "k")
    assert latest.is_delete_marker and latest.s3_version_id == "null"
    assert store.engine.entry_counts()["versions"] == 2  # real + null marker
    assert store.engine.entry_counts()["chunks"] == 1


def test_unversioned_delete_of_missing_key_succeeds(store: Store) -> None:
    assert not store.write(operations.delete_object("b", "nothing")).delete_marker


# --- conditions ----------------------------------------------------------------------------


def test_if_none_match_any(store: Store) -> None:
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    only_new = WriteConditions(if_none_match_any=True)
    store.put("b", "k", b"first", only_new)
    with pytest.raises(PreconditionFailed):
        store.put("b", "k", b"second", only_new)
    store.write(operations.delete_object("b", "k"))
    store.put("b", "k", b"third", only_new)  # a delete marker is "does not exist"


def test_if_match(store: Store) -> None:
    with pytest.raises(NoSuchKey):  # AWS: a conditional write on a missing key is 404
        store.put("b", "k", b"x", WriteConditions(if_match="abc"))
    first = store.put("b", "k", b"first" * CHUNK)
    with pytest.raises(PreconditionFailed):
        store.put("b", "k", b"x", WriteConditions(if_match="0" * 32))
    assert store.engine.get_version("b", "k").etag == first.etag
    store.put("b", "k", b"second", WriteConditions(if_match=first.etag))
    counts = store.engine.entry_counts()
    assert (counts["versions"], counts["chunks"], counts["staging"]) == (1, 1, 0)


def test_failed_commit_leaves_the_staged_body_for_abort(store: Store) -> None:
    store.put("b", "k", b"x")
    blob_id = store.engine.new_blob_id()
    store.write(operations.stage_chunk(blob_id, 0, b"y" * CHUNK))
    commit = operations.commit_version(
        "b",
        "k",
        blob_id=blob_id,
        size_bytes=CHUNK,
        spec=_spec(),
        conditions=WriteConditions(if_none_match_any=True),
    )
    with pytest.raises(PreconditionFailed):
        store.write(commit)
    assert store.engine.entry_counts()["staging"] == 1
    store.write(operations.abort_upload(blob_id))
    counts = store.engine.entry_counts()
    assert (counts["staging"], counts["chunks"]) == (0, 1)


def _spec() -> PutSpec:
    return PutSpec(etag="e")


def test_commit_refuses_an_incomplete_or_aborted_blob(store: Store) -> None:
    blob_id = store.engine.new_blob_id()
    store.write(operations.stage_chunk(blob_id, 0, b"y" * CHUNK))
    with pytest.raises(InvalidArgument):  # chunk 1 was never staged
        store.write(
            operations.commit_version(
                "b", "k", blob_id=blob_id, size_bytes=3 * CHUNK, spec=_spec()
            )
        )
    store.write(operations.abort_upload(blob_id))
    with pytest.raises(InvalidArgument):
        store.write(
            operations.commit_version("b", "k", blob_id=blob_id, size_bytes=CHUNK, spec=_spec())
        )


# --- staging garbage -----------------------------------------------------------------------


def test_staged_blobs_left_by_a_crash_are_collected_at_open(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        store.put("b", "kept", b"k" * (CHUNK + 1))
        for _ in range(3):
            blob_id = store.engine.new_blob_id()
            for index in range(2):
                store.write(operations.stage_chunk(blob_id, index, b"s" * CHUNK))
        assert store.engine.entry_counts()["staging"] == 3
    reopened = Engine(tmp_path, durable=False, now_ms=FakeClock())
    try:
        assert reopened.staging_blobs_collected == 3
        counts = reopened.entry_counts()
        assert (counts["staging"], counts["chunks"]) == (0, 2)
        kept = reopened.get_version("b", "kept")
        reader = reopened.open_body(kept)
        assert b"".join(bytes(p) for p in reader) == b"k" * (CHUNK + 1)
        reader.close()
    finally:
        reopened.close()


def test_clock_never_goes_back_across_reopen(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(start_ms=2_000_000_000_000)
    store = Store(tmp_path, clock)
    store.create_bucket("b")
    before = store.put("b", "k", b"x")
    store.close()
    store = Store(tmp_path, FakeClock(start_ms=1_000_000_000_000))  # wall clock went back
    try:
        after = store.put("b", "k2", b"x")
    finally:
        store.close()
    assert after.version_id > before.version_id


# --- group commit --------------------------------------------------------------------------


def _blocking_operation(started: threading.Event, release: threading.Event) -> WriteOperation:
    def apply(engine, txn):
        started.set()
        assert release.wait(timeout=30)

    return WriteOperation(apply, name="block")


def test_one_failing_operation_does_not_fail_its_group(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        store.put("b", "exists", b"x")
        started, release = threading.Event(), threading.Event()
        blocker = store.writer.submit(_blocking_operation(started, release))
        assert started.wait(timeout=30)
        groups_before = store.writer.stats.groups_committed
        only_new = WriteConditions(if_none_match_any=True)
        futures = [
            store.writer.submit(
                operations.commit_version(
                    "b", key, blob_id=None, size_bytes=0, spec=_spec(), conditions=only_new
                )
            )
            for key in ["new-1", "exists", "new-2"]
        ]
        futures.append(store.writer.submit(operations.create_bucket("b", "owner")))
        release.set()
        blocker.result(timeout=30)
        assert futures[0].result(timeout=30).key == "new-1"
        with pytest.raises(PreconditionFailed):
            futures[1].result(timeout=30)
        assert futures[2].result(timeout=30).key == "new-2"
        with pytest.raises(BucketAlreadyOwnedByYou):
            futures[3].result(timeout=30)
        # The blocker's own group, then ONE group for the four operations.
        assert store.writer.stats.groups_committed == groups_before + 2
        assert store.engine.get_version("b", "exists").size_bytes == 1
        assert [o.key for o in store.engine.list_objects("b").objects] == [
            "exists",
            "new-1",
            "new-2",
        ]


def test_full_write_queue_raises_overloaded(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path, queue_length_max=2) as store:
        started, release = threading.Event(), threading.Event()
        blocker = store.writer.submit(_blocking_operation(started, release))
        assert started.wait(timeout=30)
        queued = [store.writer.submit(operations.create_bucket(f"b{i}", "o")) for i in range(2)]
        with pytest.raises(Overloaded):
            store.writer.submit(operations.create_bucket("b9", "o"))
        release.set()
        blocker.result(timeout=30)
        assert [f.result(timeout=30).name for f in queued] == ["b0", "b1"]


def test_group_byte_bound_splits_groups(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path, group_bytes_max=2 * CHUNK) as store:
        started, release = threading.Event(), threading.Event()
        blocker = store.writer.submit(_blocking_operation(started, release))
        assert started.wait(timeout=30)
        groups_before = store.writer.stats.groups_committed
        blob_id = store.engine.new_blob_id()
        futures = [
            store.writer.submit(operations.stage_chunk(blob_id, i, b"x" * CHUNK))
            for i in range(5)
        ]
        release.set()
        blocker.result(timeout=30)
        for future in futures:
            future.result(timeout=30)
        # The blocker's group, then 2 + 2 + 1 chunks.
        assert store.writer.stats.groups_committed - groups_before == 4


def test_close_drains_queued_operations(tmp_path: pathlib.Path) -> None:
    store = Store(tmp_path, FakeClock())
    futures = [store.writer.submit(operations.create_bucket(f"b{i}", "o")) for i in range(50)]
    store.writer.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(store.engine.list_buckets("o")) == 50
    store.engine.close()


# --- get_version: what comes with a version from the same read ---------------------------


def test_get_version_carries_the_buckets_versioning_state(store: Store) -> None:
    committed = store.put("b", "k", b"x")
    version = store.engine.get_version("b", "k")
    assert version.bucket_versioning == ""
    assert version == committed  # the extra fields take no part in equality
    store.write(operations.set_bucket_versioning("b", "Suspended"))
    assert store.engine.get_version("b", "k").bucket_versioning == "Suspended"
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    assert store.engine.get_version("b", "k").bucket_versioning == "Enabled"


def test_get_version_inlines_a_small_body_only_when_asked(store: Store) -> None:
    small, large = b"s" * 4096, b"L" * (CHUNK + 5)
    store.put("b", "small", small)
    store.put("b", "large", large)
    store.put("b", "empty", b"")
    assert store.engine.get_version("b", "small").inline_body is None
    assert store.engine.get_version("b", "small", inline_body_bytes_max=4095).inline_body is None
    inlined = store.engine.get_version("b", "small", inline_body_bytes_max=4096).inline_body
    assert inlined == small and isinstance(inlined, bytes)
    assert store.engine.get_version("b", "empty", inline_body_bytes_max=10).inline_body == b""
    big = store.engine.get_version("b", "large", inline_body_bytes_max=2 * CHUNK)
    assert big.inline_body is None  # more than one chunk: streamed
    assert store.read(big) == large


def test_get_version_inlines_the_body_of_the_version_it_returns(store: Store) -> None:
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    first = store.put("b", "k", b"first")
    store.put("b", "k", b"second")
    latest = store.engine.get_version("b", "k", inline_body_bytes_max=100)
    old = store.engine.get_version("b", "k", first.version_id, inline_body_bytes_max=100)
    assert (latest.inline_body, old.inline_body) == (b"second", b"first")
    store.write(operations.delete_object("b", "k"))
    marker = store.engine.get_version("b", "k", inline_body_bytes_max=100)
    assert marker.is_delete_marker and marker.inline_body is None
