"""Listing over the ``versions`` sub-database with a bounded number of seeks.

Theory: all versions of one key are adjacent (newest first) and keys are in UTF-8 byte
order (see ``keys``). ListObjects walks keys by seeking to ``after_key(K)`` from each key
K it has seen, so a key with many versions costs one seek. With a delimiter, a key that
rolls up into a common prefix CP makes the walk seek to ``after_prefix(CP)``: a million
keys under 'a/' cost O(1) seeks, not a scan. A common prefix is emitted only if some key
under it is visible (its current version is not a delete marker), so the walk checks
keys under CP until it finds one: usually the first.

Markers: an item (key or common prefix) is emitted only if it sorts after
``start_after``; so a page that ended on common prefix CP continues past every key under
CP. ``next_marker`` is the last item of a truncated page, None otherwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lmdb

from storage.api import ListPage, ListVersionsPage, ObjectVersion, limits
from storage.engine import keys
from storage.engine.records import VersionRecord, unpack_version
from storage.versions import hlc_upper_bound_for_ms

_U64 = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class ListQuery:
    prefix: str
    delimiter: str
    marker: str  # start_after (objects) or key_marker (versions)
    max_keys: int


@dataclass(frozen=True, slots=True)
class _Position:
    """A decoded ``versions`` entry under the cursor."""

    key_raw: bytes
    hlc: int


class _Walk:
    """Shared state of one listing: the bucket, the query in bytes, and the cursor."""

    def __init__(self, cursor: lmdb.Cursor, bucket: str, query: ListQuery) -> None:
        self.cursor = cursor
        self.bucket = bucket
        self.bucket_raw = keys.bucket_bytes(bucket)
        self.prefix_raw = query.prefix.encode("utf-8")
        self.delimiter_raw = query.delimiter.encode("utf-8")
        self.marker_raw = query.marker.encode("utf-8")
        self.max_keys = min(max(query.max_keys, 0), limits.list_keys_max)
        self.scope = self.bucket_raw + b"\x00" + keys.escape(self.prefix_raw)

    def first_position(self) -> bytes:
        if not self.marker_raw:
            return self.scope
        return max(self.scope, keys.after_key(self.bucket_raw, self.marker_raw))

    def seek(self, position: bytes) -> _Position | None:
        if not self.cursor.set_range(position):
            return None
        return self.here()

    def step(self) -> _Position | None:
        if not self.cursor.next():
            return None
        return self.here()

    def here(self) -> _Position | None:
        lmdb_key = bytes(self.cursor.key())
        if not lmdb_key.startswith(self.scope):
            return None
        key_raw, hlc = keys.split_version_key(self.bucket_raw, lmdb_key)
        return _Position(key_raw, hlc)

    def record(self, hlc: int) -> VersionRecord:
        return unpack_version(hlc, self.cursor.value())

    def common_prefix(self, key_raw: bytes) -> bytes | None:
        if not self.delimiter_raw:
            return None
        found = key_raw.find(self.delimiter_raw, len(self.prefix_raw))
        if found < 0:
            return None
        return key_raw[: found + len(self.delimiter_raw)]

    def past_prefix(self, common_prefix_raw: bytes) -> bytes:
        return keys.after_prefix(self.bucket_raw, common_prefix_raw)

    def past_key(self, key_raw: bytes) -> bytes:
        return keys.after_key(self.bucket_raw, key_raw)

    def next_key(self, key_raw: bytes, *, cursor_on_key: bool = True) -> _Position | None:
        """The first entry after every version of ``key_raw``: one step when the next
        entry is another key (a key with one version, the common case), else one seek
        past all of the key's versions. ``cursor_on_key=False`` when an as-of seek may
        have moved the cursor (then it may already stand on what follows the key)."""
        if not cursor_on_key:
            current = self.here()
            if current is None or current.key_raw != key_raw:
                return current
        found = self.step()
        if found is None or found.key_raw != key_raw:
            return found
        return self.seek(self.past_key(key_raw))


def _current_record(
    walk: _Walk, position: _Position, as_of_ms: int | None
) -> VersionRecord | None:
    """The key's version current now (the cursor is on its newest) or at ``as_of_ms``."""
    if as_of_ms is None:
        return walk.record(position.hlc)
    if as_of_ms < 0:
        return None
    seek = keys.version_key(walk.bucket_raw, position.key_raw, hlc_upper_bound_for_ms(as_of_ms))
    found = walk.seek(seek)
    if found is None or found.key_raw != position.key_raw:
        return None
    return walk.record(found.hlc)


def list_objects(
    cursor: lmdb.Cursor, bucket: str, query: ListQuery, as_of_ms: int | None
) -> ListPage:
    walk = _Walk(cursor, bucket, query)
    objects: list[ObjectVersion] = []
    prefixes: list[str] = []
    last_item = b""
    if walk.max_keys == 0:
        return ListPage((), (), is_truncated=False, next_marker=None)
    position = walk.seek(walk.first_position())
    while position is not None:
        common_prefix = walk.common_prefix(position.key_raw)
        if common_prefix is not None and common_prefix <= walk.marker_raw:
            position = walk.seek(walk.past_prefix(common_prefix))
            continue
        record = _current_record(walk, position, as_of_ms)
        if record is None or record.is_delete_marker:
            position = walk.next_key(position.key_raw, cursor_on_key=as_of_ms is None)
            continue
        if len(objects) + len(prefixes) == walk.max_keys:
            return ListPage(tuple(objects), tuple(prefixes), True, last_item.decode("utf-8"))
        if common_prefix is not None:
            prefixes.append(common_prefix.decode("utf-8"))
            last_item = common_prefix
            position = walk.seek(walk.past_prefix(common_prefix))
        else:
            key = position.key_raw.decode("utf-8")
            objects.append(record.to_object_version(bucket, key, is_latest=as_of_ms is None))
            last_item = position.key_raw
            position = walk.next_key(position.key_raw, cursor_on_key=as_of_ms is None)
    return ListPage(tuple(objects), tuple(prefixes), is_truncated=False, next_marker=None)


def list_object_versions(
    cursor: lmdb.Cursor,
    latest_cursor: lmdb.Cursor,
    bucket: str,
    query: ListQuery,
    marker_hlc: int | None,
) -> ListVersionsPage:
    """Every version after (key_marker, marker_hlc), newest first per key.

    ``latest_cursor`` is a second cursor on the same transaction, used only to tell
    whether the first version listed is its key's newest when the page starts mid-key.
    """
    walk = _Walk(cursor, bucket, query)
    versions: list[ObjectVersion] = []
    prefixes: list[str] = []
    if walk.max_keys == 0:
        return ListVersionsPage((), (), False, None, None)
    if marker_hlc is not None:
        # Just past the marker's own entry: its older versions, then the next keys.
        start = keys.version_key(walk.bucket_raw, walk.marker_raw, marker_hlc) + b"\x00"
        position = walk.seek(max(walk.scope, start))
    else:
        position = walk.seek(walk.first_position())
    previous_key_raw = None if position is None else _key_before(latest_cursor, walk, position)
    while position is not None:
        common_prefix = walk.common_prefix(position.key_raw)
        if common_prefix is not None and common_prefix <= walk.marker_raw:
            position = walk.seek(walk.past_prefix(common_prefix))
            previous_key_raw = None
            continue
        if len(versions) + len(prefixes) == walk.max_keys:
            return _truncated_versions_page(versions, prefixes)
        if common_prefix is not None:
            prefixes.append(common_prefix.decode("utf-8"))
            versions_or_prefix_end = walk.past_prefix(common_prefix)
            position = walk.seek(versions_or_prefix_end)
            previous_key_raw = None
            continue
        is_latest = previous_key_raw != position.key_raw
        record = walk.record(position.hlc)
        key = position.key_raw.decode("utf-8")
        versions.append(record.to_object_version(bucket, key, is_latest=is_latest))
        previous_key_raw = position.key_raw
        position = walk.step()
    return ListVersionsPage(tuple(versions), tuple(prefixes), False, None, None)


def _key_before(latest_cursor: lmdb.Cursor, walk: _Walk, position: _Position) -> bytes | None:
    """``position.key_raw`` if the entry at ``position`` is not its key's newest."""
    prefix = keys.key_prefix(walk.bucket_raw, position.key_raw)
    found = latest_cursor.set_range(prefix)
    assert found
    newest_hlc = keys.HLC_MASK - _U64.unpack_from(bytes(latest_cursor.key()), len(prefix))[0]
    return None if newest_hlc == position.hlc else position.key_raw


def _truncated_versions_page(
    versions: list[ObjectVersion], prefixes: list[str]
) -> ListVersionsPage:
    last_version = versions[-1] if versions else None
    last_prefix = prefixes[-1] if prefixes else None
    # The later of the two is the last item listed (everything is in key order).
    if last_prefix is not None and (
        last_version is None or last_prefix.encode("utf-8") > last_version.key.encode("utf-8")
    ):
        return ListVersionsPage(tuple(versions), tuple(prefixes), True, last_prefix, None)
    assert last_version is not None
    return ListVersionsPage(
        tuple(versions), tuple(prefixes), True, last_version.key, last_version.s3_version_id
    )
