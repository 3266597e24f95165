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

Cost: a page of 1000 keys is ONE read transaction and, per key, one cursor step in C
(``keys.iterate_versions`` over ``iternext``), one msgpack decode of the record (C) and
one ``api.ListedVersion`` (a named tuple of what a listing shows): no ``VersionRecord``
or ``ObjectVersion`` is built. ListObjects now and ListObjectVersions step through
consecutive entries and seek only to skip (a key's older versions, a common prefix);
ListObjects as of a time seeks once per key into its history (``_list_as_of``). About
5 µs per key on the benchmark machine (``bench/list_path.py``), a fifth of it msgpack.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lmdb

from storage.api import ListedVersion, ListPage, ListVersionsPage, limits
from storage.engine import keys
from storage.engine.records import listed_version
from storage.versions import hlc_upper_bound_for_ms

_U64 = struct.Struct(">Q")

# A ``versions`` entry under the cursor: (object key raw bytes, hlc). A plain tuple, not
# a dataclass: one is made per entry walked.
_Position = tuple[bytes, int]


@dataclass(frozen=True, slots=True)
class ListQuery:
    prefix: str
    delimiter: str
    marker: str  # start_after (objects) or key_marker (versions)
    max_keys: int


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
        lmdb_key = bytes(self.cursor.key())  # no copy when the transaction gives bytes
        if not lmdb_key.startswith(self.scope):
            return None
        return keys.split_version_key(self.bucket_raw, lmdb_key)

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
            if current is None or current[0] != key_raw:
                return current
        found = self.step()
        if found is None or found[0] != key_raw:
            return found
        return self.seek(self.past_key(key_raw))


def list_objects(
    cursor: lmdb.Cursor, bucket: str, query: ListQuery, as_of_ms: int | None
) -> ListPage:
    walk = _Walk(cursor, bucket, query)
    if walk.max_keys == 0:
        return ListPage((), (), is_truncated=False, next_marker=None)
    if as_of_ms is None:
        return _list_latest(walk)
    return _list_as_of(walk, as_of_ms)


def _list_latest(walk: _Walk) -> ListPage:
    """Each key's newest version: the cursor steps over consecutive keys in C
    (``iternext``); a key's older versions, and the keys of a common prefix, are
    skipped with one seek each."""
    cursor = walk.cursor
    objects: list[ListedVersion] = []
    prefixes: list[str] = []
    last_item = b""
    seek_to = walk.first_position()
    while cursor.set_range(seek_to):
        seen_key_raw = None
        for key_raw, hlc, record in keys.iterate_versions(cursor, walk.bucket_raw, walk.scope):
            if key_raw == seen_key_raw:  # an older version of the key just looked at
                seek_to = walk.past_key(key_raw)
                break
            seen_key_raw = key_raw
            common_prefix = walk.common_prefix(key_raw) if walk.delimiter_raw else None
            if common_prefix is not None and common_prefix <= walk.marker_raw:
                seek_to = walk.past_prefix(common_prefix)
                break
            entry = listed_version(key_raw.decode("utf-8"), hlc, record, True)
            if entry.is_delete_marker:
                continue  # not visible; a common prefix needs a visible key under it
            if len(objects) + len(prefixes) == walk.max_keys:
                return ListPage(tuple(objects), tuple(prefixes), True, last_item.decode("utf-8"))
            if common_prefix is not None:
                prefixes.append(common_prefix.decode("utf-8"))
                last_item = common_prefix
                seek_to = walk.past_prefix(common_prefix)
                break
            objects.append(entry)
            last_item = key_raw
        else:
            break  # the end of the scope
    return ListPage(tuple(objects), tuple(prefixes), False, None)


def _list_as_of(walk: _Walk, as_of_ms: int) -> ListPage:
    """Each key's version current at ``as_of_ms``: one seek per key, into its history."""
    objects: list[ListedVersion] = []
    prefixes: list[str] = []
    last_item = b""
    position = walk.seek(walk.first_position())
    while position is not None:
        key_raw, _ = position
        common_prefix = walk.common_prefix(key_raw)
        if common_prefix is not None and common_prefix <= walk.marker_raw:
            position = walk.seek(walk.past_prefix(common_prefix))
            continue
        entry = _entry_as_of(walk, key_raw, as_of_ms)
        if entry is None or entry.is_delete_marker:
            position = walk.next_key(key_raw, cursor_on_key=False)
            continue
        if len(objects) + len(prefixes) == walk.max_keys:
            return ListPage(tuple(objects), tuple(prefixes), True, last_item.decode("utf-8"))
        if common_prefix is not None:
            prefixes.append(common_prefix.decode("utf-8"))
            last_item = common_prefix
            position = walk.seek(walk.past_prefix(common_prefix))
        else:
            objects.append(entry)
            last_item = key_raw
            position = walk.next_key(key_raw, cursor_on_key=False)
    return ListPage(tuple(objects), tuple(prefixes), is_truncated=False, next_marker=None)


def _entry_as_of(walk: _Walk, key_raw: bytes, as_of_ms: int) -> ListedVersion | None:
    """The key's version current at ``as_of_ms``; None if it had none then. Moves the
    cursor."""
    if as_of_ms < 0:
        return None
    seek = keys.version_key(walk.bucket_raw, key_raw, hlc_upper_bound_for_ms(as_of_ms))
    found = walk.seek(seek)
    if found is None or found[0] != key_raw:
        return None
    return listed_version(key_raw.decode("utf-8"), found[1], walk.cursor.value(), False)


def list_object_versions(
    cursor: lmdb.Cursor,
    latest_cursor: lmdb.Cursor,
    bucket: str,
    query: ListQuery,
    marker_hlc: int | None,
) -> ListVersionsPage:
    """Every version after (key_marker, marker_hlc), newest first per key: the cursor
    steps in C (``iternext``) and seeks only past common prefixes.

    ``latest_cursor`` is a second cursor on the same transaction, used only to tell
    whether the first version listed is its key's newest when the page starts mid-key.
    """
    walk = _Walk(cursor, bucket, query)
    versions: list[ListedVersion] = []
    prefixes: list[str] = []
    if walk.max_keys == 0:
        return ListVersionsPage((), (), False, None, None)
    if marker_hlc is not None:
        # Just past the marker's own entry: its older versions, then the next keys.
        start = keys.version_key(walk.bucket_raw, walk.marker_raw, marker_hlc) + b"\x00"
        position = walk.seek(max(walk.scope, start))
    else:
        position = walk.seek(walk.first_position())
    if position is None:
        return ListVersionsPage((), (), False, None, None)
    previous_key_raw = _key_before(latest_cursor, walk, position)
    key, key_decoded_raw = "", b""
    while True:  # the cursor stands on the next entry to look at
        for key_raw, hlc, record in keys.iterate_versions(cursor, walk.bucket_raw, walk.scope):
            common_prefix = walk.common_prefix(key_raw) if walk.delimiter_raw else None
            if common_prefix is not None and common_prefix <= walk.marker_raw:
                break
            if len(versions) + len(prefixes) == walk.max_keys:
                return _truncated_versions_page(versions, prefixes)
            if common_prefix is not None:
                prefixes.append(common_prefix.decode("utf-8"))
                break
            if key_raw != key_decoded_raw:  # a key's versions are adjacent: decode it once
                key, key_decoded_raw = key_raw.decode("utf-8"), key_raw
            versions.append(listed_version(key, hlc, record, previous_key_raw != key_raw))
            previous_key_raw = key_raw
        else:  # the end of the scope
            return ListVersionsPage(tuple(versions), tuple(prefixes), False, None, None)
        # Past every key under the common prefix just met (listed, or before the marker).
        assert common_prefix is not None
        previous_key_raw = None
        if not cursor.set_range(walk.past_prefix(common_prefix)):
            return ListVersionsPage(tuple(versions), tuple(prefixes), False, None, None)


def _key_before(latest_cursor: lmdb.Cursor, walk: _Walk, position: _Position) -> bytes | None:
    """The position's key if the entry at ``position`` is not its key's newest."""
    key_raw, hlc = position
    prefix = keys.key_prefix(walk.bucket_raw, key_raw)
    found = latest_cursor.set_range(prefix)
    assert found
    newest_hlc = keys.HLC_MASK - _U64.unpack_from(bytes(latest_cursor.key()), len(prefix))[0]
    return None if newest_hlc == hlc else key_raw


def _truncated_versions_page(
    versions: list[ListedVersion], prefixes: list[str]
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
