"""Engine: per-version tag sets and their atomic replacement."""

from __future__ import annotations

import hashlib
import pathlib

import msgpack
import pytest

from storage.api import InvalidArgument, NoSuchBucket, NoSuchVersion, PutSpec, limits
from storage.engine import StagedTail, operations
from storage.engine.keys import version_key
from storage.engine.records import unpack_version
from storage.engine.store import Engine
from tests.unit.engine_helpers import FakeClock, Store, open_store


@pytest.fixture
def store(tmp_path: pathlib.Path):
    with open_store(tmp_path) as opened:
        opened.create_bucket("b")
        yield opened


def _put_tagged(store: Store, key: str, body: bytes, tags: dict[str, str]):
    spec = PutSpec(etag=hashlib.md5(body).hexdigest(), tags=tags)
    operation = operations.commit_version(
        "b", key, blob_id=None, size_bytes=len(body), spec=spec,
        tail=None if not body else StagedTail(0, body),
    )
    return store.write(operation)


def test_tags_are_committed_with_the_version(store: Store) -> None:
    version = _put_tagged(store, "k", b"body", {"a": "1"})
    assert version.tags == {"a": "1"}
    assert store.engine.get_version("b", "k").tags == {"a": "1"}
    assert store.put("b", "k", b"new").tags == {}


def test_replace_tags_changes_one_version_in_place(store: Store) -> None:
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    old = _put_tagged(store, "k", b"old", {"era": "old"})
    store.clock.advance()
    new = _put_tagged(store, "k", b"new", {"era": "new"})
    counts_before = store.engine.entry_counts()

    replaced = store.write(operations.replace_tags("b", "k", old.version_id, {"x": "y"}))

    assert (replaced.version_id, replaced.tags, replaced.is_latest) == (old.version_id,
                                                                        {"x": "y"}, False)
    assert store.engine.get_version("b", "k", old.version_id).tags == {"x": "y"}
    assert store.engine.get_version("b", "k").tags == {"era": "new"}
    # Same version: bytes, etag, time and id unchanged; no entry added anywhere.
    reread = store.engine.get_version("b", "k", old.version_id)
    assert (reread.etag, reread.last_modified_ms, reread.size_bytes) == (
        old.etag, old.last_modified_ms, old.size_bytes)
    assert store.read(reread) == b"old"
    assert store.engine.entry_counts() == counts_before
    latest = store.write(operations.replace_tags("b", "k", new.version_id, {}))
    assert (latest.tags, latest.is_latest) == ({}, True)


def test_as_of_reads_see_current_tags(store: Store) -> None:
    version = _put_tagged(store, "k", b"x", {"a": "1"})
    store.clock.advance()
    store.write(operations.replace_tags("b", "k", version.version_id, {"a": "2"}))
    as_of = store.engine.get_version("b", "k", as_of_ms=version.last_modified_ms)
    assert as_of.tags == {"a": "2"}


def test_replace_tags_of_a_missing_version(store: Store) -> None:
    version = store.put("b", "k", b"x")
    store.clock.advance()
    store.put("b", "k", b"y")  # unversioned: the first version is gone
    with pytest.raises(NoSuchVersion):
        store.write(operations.replace_tags("b", "k", version.version_id, {"a": "1"}))
    with pytest.raises(NoSuchVersion):
        store.write(operations.replace_tags("b", "never", version.version_id, {"a": "1"}))
    with pytest.raises(NoSuchBucket):
        store.write(operations.replace_tags("nope", "k", version.version_id, {}))
    with pytest.raises(InvalidArgument):
        store.write(operations.replace_tags("b", "k", "not-an-id", {}))


def test_delete_markers_have_no_tag_set(store: Store) -> None:
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    store.put("b", "k", b"x")
    store.clock.advance()
    store.write(operations.delete_object("b", "k"))
    marker = store.engine.get_version("b", "k")
    assert marker.is_delete_marker
    with pytest.raises(InvalidArgument):
        store.write(operations.replace_tags("b", "k", marker.version_id, {"a": "1"}))


def test_tag_count_is_bounded_in_the_engine_too(store: Store) -> None:
    version = store.put("b", "k", b"x")
    too_many = {f"k{i}": "v" for i in range(limits.object_tags_max + 1)}
    with pytest.raises(InvalidArgument):
        store.write(operations.replace_tags("b", "k", version.version_id, too_many))
    with pytest.raises(InvalidArgument):
        _put_tagged(store, "k2", b"x", too_many)
    assert store.engine.get_version("b", "k").tags == {}


def test_failed_replace_in_a_group_leaves_the_others(store: Store) -> None:
    version = store.put("b", "k", b"x")
    futures = [
        store.writer.submit(operations.replace_tags("b", "k", version.version_id, {"a": "1"})),
        store.writer.submit(operations.replace_tags("b", "missing", version.version_id, {})),
    ]
    assert futures[0].result(timeout=30).tags == {"a": "1"}
    with pytest.raises(NoSuchVersion):
        futures[1].result(timeout=30)
    assert store.engine.get_version("b", "k").tags == {"a": "1"}


def test_format_1_records_are_read_without_tags(tmp_path: pathlib.Path) -> None:
    """A record written before tags existed (format 1: 12 fields) still reads."""
    clock = FakeClock()
    engine = Engine(tmp_path, durable=False, now_ms=clock)
    try:
        hlc = 1_700_000_000_000 << 16
        legacy = msgpack.packb([1, 3, "etag", False, True, None, 0, "text/plain", {}, {"m": "v"},
                                {}, "STANDARD"], use_bin_type=True)
        record = unpack_version(hlc, legacy)
        assert (record.tags, record.user_metadata, record.content_type) == (
            {}, {"m": "v"}, "text/plain")
        with engine.env.begin(write=True) as txn:
            txn.put(b"b", msgpack.packb([1, 0, "owner", ""], use_bin_type=True),
                    db=engine.buckets)
            txn.put(version_key(b"b", b"k", hlc), legacy, db=engine.versions)
        version = engine.get_version("b", "k")
        assert (version.tags, version.size_bytes) == ({}, 3)
    finally:
        engine.close()
