"""Listing against a naive model: random histories of puts and deletes in unversioned,
Enabled and Suspended buckets, then random queries (prefix, delimiter, start_after,
max_keys, as_of), each compared with a brute-force answer; plus full pagination and a
seek-count check that a big common prefix is skipped, not scanned."""

from __future__ import annotations

import pathlib
import random
from dataclasses import dataclass, field

import msgpack
import pytest

from storage.api import ListedVersion, ListPage, ObjectVersion, PutSpec
from storage.engine import keys, listing, operations
from storage.versions import hlc_to_ms
from tests.unit.engine_helpers import Store, open_store

ALPHABET = ["a", "b", "/", "\x00", "é", "z", "ab/"]


def _random_key(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 4)))


@dataclass
class ModelVersion:
    hlc: int
    body: bytes | None  # None: delete marker
    null_version: bool


@dataclass
class Model:
    """S3 semantics, written as plainly as possible: key -> versions, newest last."""

    versioning: str = ""
    keys: dict[str, list[ModelVersion]] = field(default_factory=dict)

    def _drop_null(self, key: str) -> None:
        self.keys[key] = [v for v in self.keys.get(key, []) if not v.null_version]

    def put(self, key: str, hlc: int, body: bytes) -> None:
        null_version = self.versioning != "Enabled"
        if null_version:
            self._drop_null(key)
        self.keys.setdefault(key, []).append(ModelVersion(hlc, body, null_version))

    def delete(self, key: str, marker_hlc: int | None) -> None:
        if self.versioning != "Enabled":
            self._drop_null(key)
        if marker_hlc is not None:
            null_version = self.versioning == "Suspended"
            self.keys.setdefault(key, []).append(ModelVersion(marker_hlc, None, null_version))
        if not self.keys.get(key):
            self.keys.pop(key, None)

    def current(self, key: str, as_of_ms: int | None) -> ModelVersion | None:
        versions = self.keys.get(key, [])
        if as_of_ms is not None:
            versions = [v for v in versions if hlc_to_ms(v.hlc) <= as_of_ms]
        return versions[-1] if versions else None

    def list(
        self, prefix: str, delimiter: str, start_after: str, max_keys: int, as_of_ms: int | None
    ) -> tuple[list[tuple[str, bool]], bool]:
        items: list[tuple[str, bool]] = []  # (name, is_common_prefix)
        for key in sorted(self.keys, key=lambda k: k.encode()):
            current = self.current(key, as_of_ms)
            if current is None or current.body is None or not key.startswith(prefix):
                continue
            name, is_prefix = key, False
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                name, is_prefix = prefix + rest[: rest.index(delimiter) + len(delimiter)], True
            if name.encode() <= start_after.encode() or (items and items[-1][0] == name):
                continue
            items.append((name, is_prefix))
        if max_keys == 0:
            return [], False  # as the engine: an empty page, not truncated
        return items[:max_keys], len(items) > max_keys


def _page_items(page: ListPage) -> list[tuple[str, bool]]:
    items = [(o.key, False) for o in page.objects] + [(p, True) for p in page.common_prefixes]
    return sorted(items, key=lambda item: item[0].encode())


def _apply_random_history(store: Store, model: Model, rng: random.Random, steps: int) -> list[int]:
    times_ms = []
    for _ in range(steps):
        store.clock.advance(rng.choice([0, 1, 5]))
        times_ms.append(store.clock.now_ms)
        roll = rng.random()
        key = _random_key(rng)
        if roll < 0.05:
            model.versioning = rng.choice(["Enabled", "Suspended"])
            store.write(operations.set_bucket_versioning("b", model.versioning))
        elif roll < 0.7:
            body = rng.randbytes(rng.randint(0, 20))
            version = store.put("b", key, body)
            model.put(key, int(version.version_id, 16), body)
        else:
            result = store.write(operations.delete_object("b", key))
            marker = int(store.engine.get_version("b", key).version_id, 16) if (
                result.delete_marker
            ) else None
            model.delete(key, marker)
    return times_ms


def _check_bodies(store: Store, model: Model) -> None:
    for key in model.keys:
        current = model.current(key, None)
        assert current is not None
        version = store.engine.get_version("b", key)
        assert int(version.version_id, 16) == current.hlc
        if current.body is not None:
            assert store.read(version) == current.body
    all_versions = [v for versions in model.keys.values() for v in versions]
    counts = store.engine.entry_counts()
    assert counts["versions"] == len(all_versions)
    # Bodies here are under one chunk: one chunk per non-empty body, none leaked.
    assert counts["chunks"] == sum(1 for v in all_versions if v.body)
    assert counts["staging"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_list_objects_matches_the_model(tmp_path: pathlib.Path, seed: int) -> None:
    rng = random.Random(seed)
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        model = Model()
        times_ms = _apply_random_history(store, model, rng, steps=250)
        _check_bodies(store, model)
        for _ in range(300):
            prefix = rng.choice(["", "a", "a/", "ab", "\x00", "é"])
            delimiter = rng.choice(["", "", "/", "b", "\x00"])
            start_after = rng.choice(["", "", _random_key(rng)])
            max_keys = rng.choice([0, 1, 2, 3, 7, 1000])
            as_of_ms = rng.choice([None, None, rng.choice(times_ms)])
            page = store.engine.list_objects(
                "b", prefix, delimiter, start_after, max_keys, as_of_ms
            )
            expected, truncated = model.list(prefix, delimiter, start_after, max_keys, as_of_ms)
            query = (prefix, delimiter, start_after, max_keys, as_of_ms)
            assert _page_items(page) == expected, query
            assert page.is_truncated == truncated, query
            if truncated:
                assert page.next_marker == expected[-1][0]
            else:
                assert page.next_marker is None


@pytest.mark.parametrize("seed", range(3))
def test_pagination_covers_every_item_once(tmp_path: pathlib.Path, seed: int) -> None:
    rng = random.Random(100 + seed)
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        model = Model()
        _apply_random_history(store, model, rng, steps=200)
        for delimiter in ["", "/", "\x00"]:
            for max_keys in [1, 2, 5]:
                collected: list[tuple[str, bool]] = []
                marker = ""
                while True:
                    page = store.engine.list_objects("b", "", delimiter, marker, max_keys)
                    collected.extend(_page_items(page))
                    if not page.is_truncated:
                        break
                    assert page.next_marker is not None
                    marker = page.next_marker
                expected, _ = model.list("", delimiter, "", 10**6, None)
                assert collected == expected


def test_list_object_versions_matches_the_model(tmp_path: pathlib.Path) -> None:
    rng = random.Random(7)
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        model = Model()
        _apply_random_history(store, model, rng, steps=200)
        expected = [
            (key, version.hlc, version.body is None, index == len(versions) - 1)
            for key, versions in sorted(model.keys.items(), key=lambda item: item[0].encode())
            for index, version in reversed(list(enumerate(versions)))
        ]
        for max_keys in [1, 3, 1000]:
            collected = []
            key_marker, version_marker = "", ""
            while True:
                page = store.engine.list_object_versions(
                    "b", key_marker=key_marker, version_id_marker=version_marker, max_keys=max_keys
                )
                collected.extend(
                    (v.key, int(v.version_id, 16), v.is_delete_marker, v.is_latest)
                    for v in page.versions
                )
                if not page.is_truncated:
                    break
                key_marker = page.next_key_marker or ""
                version_marker = page.next_version_id_marker or ""
            assert collected == expected


def test_list_object_versions_groups_common_prefixes(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        store.write(operations.set_bucket_versioning("b", "Enabled"))
        for key in ["a/1", "a/2", "b", "c/1"]:
            store.put("b", key, b"x")
            store.put("b", key, b"y")
        page = store.engine.list_object_versions("b", delimiter="/")
        assert page.common_prefixes == ("a/", "c/")
        assert [(v.key, v.is_latest) for v in page.versions] == [("b", True), ("b", False)]


class _CountingCursor:
    def __init__(self, cursor) -> None:
        self._cursor = cursor
        self.seeks = 0

    def set_range(self, key: bytes) -> bool:
        self.seeks += 1
        return self._cursor.set_range(key)

    def __getattr__(self, name: str):
        return getattr(self._cursor, name)


def test_a_big_common_prefix_costs_one_seek(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        futures = [
            store.writer.submit(
                operations.commit_version(
                    "b", f"a/{i:05d}", blob_id=None, size_bytes=0, spec=_spec()
                )
            )
            for i in range(3000)
        ]
        for future in futures:
            future.result(timeout=60)
        store.put("b", "b", b"x")
        with store.engine.env.begin(buffers=True) as txn:
            cursor = _CountingCursor(txn.cursor(db=store.engine.versions))
            page = listing.list_objects(cursor, "b", listing.ListQuery("", "/", "", 1000), None)
        assert (page.common_prefixes, [o.key for o in page.objects]) == (("a/",), ["b"])
        assert cursor.seeks <= 4


def _spec() -> PutSpec:
    return PutSpec(etag="e")


def _shown(version: ObjectVersion) -> tuple[object, ...]:
    """What a listing shows of a version, from the full record."""
    return (version.key, version.version_id, version.s3_version_id, version.last_modified_ms,
            version.size_bytes, version.etag, version.storage_class,
            tuple(version.checksums), version.is_delete_marker, version.owner_id)


def _without_latest(entry: ListedVersion) -> tuple[object, ...]:
    return tuple(value for name, value in entry._asdict().items() if name != "is_latest")


def test_a_listed_version_shows_what_get_version_reads(tmp_path: pathlib.Path) -> None:
    """The listing decoder reads records of every format as the full decoder does."""
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        spec = PutSpec(etag="e1", content_type="text/plain", user_metadata={"m": "v"},
                       checksums={"CRC32": "AAAAAA==", "SHA256": "x"}, storage_class="GLACIER",
                       tags={"t": "1"}, owner_id="owner-1", acl=b"{}")
        store.write(operations.commit_version("b", "a\x00b", blob_id=None, size_bytes=0,
                                              spec=spec))
        store.put("b", "plain", b"abc")
        store.write(operations.set_bucket_versioning("b", "Enabled"))
        store.put("b", "versioned", b"one")
        store.write(operations.delete_object("b", "versioned"))  # a delete marker on top
        hlc = (store.clock.now_ms + 1000) << 16
        legacy = {  # records as formats 1 and 2 wrote them, read by every decoder since
            "format-1": [1, 3, "e3", False, True, None, 0, "text/plain", {}, {"m": "v"},
                         {"CRC32C": "c"}, "STANDARD"],
            "format-2": [2, 4, "e4-2", False, False, None, 0, "", {}, {}, {}, "STANDARD",
                         [[b"\x01" * 16, 2], [b"\x02" * 16, 2]]],
            "format-3": [3, 0, "e5", False, False, None, 0, "", {}, {}, {}, "STANDARD",
                         {"t": "v"}, []],
        }
        with store.engine.env.begin(write=True) as txn:
            for key, fields in legacy.items():
                txn.put(keys.version_key(b"b", key.encode(), hlc),
                        msgpack.packb(fields, use_bin_type=True), db=store.engine.versions)
        listed = store.engine.list_object_versions("b").versions
        assert len(listed) == 7
        for entry in listed:
            full = store.engine.get_version("b", entry.key, entry.version_id)
            assert _without_latest(entry) == _shown(full)
        newest = [_without_latest(entry) for entry in listed
                  if entry.is_latest and not entry.is_delete_marker]
        listed_objects = store.engine.list_objects("b").objects
        assert [_without_latest(entry) for entry in listed_objects] == newest
        assert [entry.key for entry in store.engine.list_objects("b").objects] == [
            "a\x00b", "format-1", "format-2", "format-3", "plain"]
