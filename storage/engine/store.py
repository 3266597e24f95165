"""The LMDB versioned object store of ONE node: sync code, no networking, no asyncio.

Rules and theory of operation:

* One LMDB environment per node with named sub-databases: ``buckets`` (name ->
  record), ``versions`` (see ``keys``: one entry per version, newest first per key),
  ``chunks`` (blob id + chunk index -> at most ``limits.chunk_size_bytes`` of body),
  ``staging`` (blob id -> start time, for bodies uploaded but not yet committed),
  ``meta`` (the highest HLC handed out, so a restarted node never reuses a version id
  even if its wall clock went backwards), ``bucket_configs``, ``uploads`` /
  ``parts`` for multipart uploads (see ``multipart``), and ``outbox``: post-commit
  events written in the same transaction as the write that made them (see ``outbox``).
* A blob belongs to exactly one owner at a time: the staging table, one part record,
  or one version record (a multipart version owns all its parts' blobs). Whoever drops
  the owner frees the blob's chunks in the same transaction, so nothing leaks.
* Writes happen ONLY in the writer thread (``writer.GroupCommitWriter``), through the
  ``apply_*`` methods, each given a child transaction of the group's transaction: a
  method that raises writes nothing, and the others in its group still commit.
* Reads open their own read-only transaction with ``buffers=True`` (LMDB hands out views
  of its memory map) and may run on any thread: py-lmdb opens environments with
  MDB_NOTLS, so a read transaction is not tied to the thread that opened it.
* "Latest" is one seek to the key's prefix; "as of T" is one seek to the key's prefix +
  the inverted upper-bound HLC of T; "by version id" is one exact get.
* Versioning states: '' (never enabled) and 'Suspended' make *null versions*: a new
  write or delete replaces the key's previous null version, whose chunks are freed in
  the same transaction. 'Enabled' keeps every version.
* A bucket record is read from the transaction at hand every time; only its decoding is
  remembered (``_bucket``): the decoded ``BucketInfo`` is reused while the bytes read
  are equal to those it was decoded from, so a changed record (versioning state, a
  bucket deleted and made again) is decoded afresh in the very transaction that sees it.
* A read of a key's latest version (every plain GET and HEAD) builds its
  ``ObjectVersion`` straight from the record's msgpack array (``_read_latest``).
* A body is read from ONE read transaction (a snapshot) held for the whole stream, so a
  concurrent overwrite or garbage collection cannot tear it (see ``BodyReader``).
* With a ``cipher`` (``cipher.ChunkCipher``) every chunk is stored encrypted and every
  reader decrypts: see ``cipher`` for the rules, and ``_check_encryption`` for why a
  store opens only with the key it was created with.
* SSE-C: a write or read may carry a customer key (``api.CustomerKey``); the blobs of
  such a version are encrypted with it instead (``blob_cipher``), whether or not the
  store has a master key. The version keeps only the key's record
  (``api.CustomerKeyRecord``); every write checks that the key it was given opens the
  record it commits (``api.check_customer_key``), every body read that the key it is
  given opens the version's, and a GET's inline body is never read for such a version
  (it could not be decrypted without the key).
* A version is immutable except for its tag set, its Object Lock state (retention,
  legal hold) and its ACL, which ``apply_replace_tags``, ``apply_update_object_lock``
  and ``apply_replace_acl`` rewrite in place (same LMDB key, same HLC): none is a new
  version, as in S3, and as-of reads see a version's current tags, lock state and ACL.
  A version records its writer's canonical id (``owner_id``; a delete marker's is the
  requester's, from the event origin).
* Object Lock (rules in ``locks``) is checked here, at the commit point, against this
  engine's clock (``now_ms``: the wall clock in production): a removal of a protected
  version (``apply_delete_object`` with a version id, and the lifecycle's removals in
  ``expiry``) raises ObjectLocked or is skipped; a new version gets the lock state its
  write asked for, else the bucket's default retention. An Object Lock bucket's
  versioning stays Enabled, so no null version of it is ever replaced.
* Every change that S3 reports as a notification event writes its events (``outbox``)
  in its own transaction: commits, deletes (``RemovalEvents`` names them: a request's or
  the lifecycle's), tag replacements, and a notification configuration put by a request
  (test events), and ACL replacements that change the ACL (s3:ObjectAcl:Put).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import pathlib
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

import lmdb

from storage.api import (
    NOTIFICATION_CONFIG,
    OBJECT_ACL_PUT_EVENT,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketInfo,
    BucketNotEmpty,
    CustomerKey,
    DefaultRetention,
    DeleteResult,
    EventOrigin,
    InvalidArgument,
    InvalidBucketState,
    ListPage,
    ListVersionsPage,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    ObjectLockNotEnabled,
    ObjectLockUpdate,
    ObjectVersion,
    PreconditionFailed,
    PutSpec,
    StorageError,
    WriteConditions,
    check_customer_key,
    limits,
)
from storage.engine import keys, listing, locks, multipart
from storage.engine.cipher import ChunkCipher
from storage.engine.outbox import Outbox
from storage.engine.records import (
    VersionRecord,
    fields_customer_key,
    fields_object_version,
    fields_single_blob,
    pack_bucket,
    pack_staging,
    pack_version,
    unpack_bucket,
    unpack_staging,
    unpack_version,
    version_fields,
)
from storage.versions import (
    HybridLogicalClock,
    decode_version_id,
    hlc_to_ms,
    hlc_upper_bound_for_ms,
)

VERSIONING_STATES = ("", "Enabled", "Suspended")
_META_HLC_LAST = b"hlc_last"
# The id of the key the store's chunks are encrypted with, or b"" when they are not.
META_ENCRYPTION_KEY_ID = b"encryption_key_id"
_U64 = struct.Struct(">Q")
SUB_DATABASES = (
    b"buckets",
    b"versions",
    b"chunks",
    b"staging",
    b"meta",
    b"bucket_configs",
    b"uploads",
    b"parts",
    b"outbox",
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class RemovalEvents:
    """The event names a removal makes: a DELETE request's (``REQUEST_REMOVAL``) or, for
    the same removals done by the lifecycle sweeper, AWS's LifecycleExpiration ones."""

    version_removed: str
    delete_marker_created: str


REQUEST_REMOVAL = RemovalEvents("s3:ObjectRemoved:Delete", "s3:ObjectRemoved:DeleteMarkerCreated")
LIFECYCLE_REMOVAL = RemovalEvents(
    "s3:LifecycleExpiration:Delete", "s3:LifecycleExpiration:DeleteMarkerCreated"
)


@dataclass(frozen=True, slots=True)
class StagedTail:
    """The last (possibly only) chunk of a body, carried by the commit itself."""

    chunk_index: int
    data: bytes | bytearray | memoryview


class Engine:
    def __init__(
        self,
        data_dir: pathlib.Path,
        *,
        durable: bool = True,
        now_ms: Callable[[], int] = wall_clock_ms,
        map_size_bytes: int = limits.lmdb_map_size_bytes,
        outbox_entries_max: int = limits.outbox_entries_max,
        cipher: ChunkCipher | None = None,
        collect_staging_at_open: bool = True,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self.cipher = cipher
        self._clock_ms = now_ms
        # While the writer applies a replicated entry: the time the entry carries (the
        # leader's clock when it logged it), read instead of the clock (``_now_ms``).
        self._entry_time_ms: int | None = None
        self.env = lmdb.open(
            str(data_dir),
            map_size=map_size_bytes,
            max_dbs=len(SUB_DATABASES) + 1,  # + a replica's log (engine.replica)
            max_readers=limits.lmdb_readers_max,
            sync=durable,
            metasync=durable,
        )
        (
            self.buckets,
            self.versions,
            self.chunks,
            self.staging,
            self.meta,
            self.bucket_configs,
            self.uploads,
            self.parts,
            outbox_db,
        ) = (self.env.open_db(name) for name in SUB_DATABASES)
        self.outbox = Outbox(self.env, outbox_db, self.meta, self.bucket_configs,
                             outbox_entries_max)
        self.key_size_max = self.env.max_key_size()
        # Bucket name -> (record bytes, decoded): see ``_bucket``. Reads on any thread
        # only get and set whole entries, which the GIL keeps atomic.
        self._decoded_buckets: dict[str, tuple[bytes, BucketInfo]] = {}
        try:
            self._check_encryption(data_dir)
        except BaseException:
            self.env.close()
            raise
        self.clock = HybridLogicalClock(self._now_ms, self._read_last_hlc())
        # A replica must not drop staged blobs on its own (the others would keep them, and
        # a later commit of one would then succeed on them and fail here): see ``entries``.
        self.staging_blobs_collected = (
            self.collect_staging_garbage() if collect_staging_at_open else 0)

    def _now_ms(self) -> int:
        """The time every write reads (creation times, Object Lock checks, the HLC): the
        applied entry's while one is applied (``entries.apply_entry``), else the clock."""
        entry_time_ms = self._entry_time_ms
        return self._clock_ms() if entry_time_ms is None else entry_time_ms

    @contextlib.contextmanager
    def entry_time(self, now_ms: int) -> Iterator[None]:
        """Apply what runs inside at ``now_ms`` instead of the clock (writer thread only)."""
        assert self._entry_time_ms is None, "entries are applied one at a time"
        assert now_ms >= 0
        self._entry_time_ms = now_ms
        try:
            yield
        finally:
            self._entry_time_ms = None

    # --- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        if not self.durable:
            self.env.sync(True)
        self.env.close()

    def _check_encryption(self, data_dir: pathlib.Path) -> None:
        """Open only with the key the store's data is encrypted with (none: stored
        plain). The first open records it; a store from before encryption existed, with
        buckets, is plain. While the store holds no object data (no chunk at all), an
        open with another key, or none, records that instead: nothing needs rewriting."""
        wanted = b"" if self.cipher is None else self.cipher.key_id.encode()
        with self.env.begin(write=True) as txn:
            recorded = txn.get(META_ENCRYPTION_KEY_ID, db=self.meta)
            if recorded is None:
                empty = txn.stat(self.buckets)["entries"] == 0
                recorded = wanted if empty else b""
                txn.put(META_ENCRYPTION_KEY_ID, recorded, db=self.meta)
            recorded = bytes(recorded)
            if recorded != wanted and txn.stat(self.chunks)["entries"] == 0:
                txn.put(META_ENCRYPTION_KEY_ID, wanted, db=self.meta)
                recorded = wanted
        if recorded == wanted:
            return
        if not recorded:
            raise StorageError(f"{data_dir} was created without encryption at rest: it opens "
                               "only without a key (its data would have to be rewritten)")
        if not wanted:
            raise StorageError(f"{data_dir} is encrypted at rest (key id "
                               f"{recorded.decode()}): give its key (--encryption-key-file)")
        raise StorageError(f"{data_dir} is encrypted with key id {recorded.decode()}, not "
                           f"with the given key (id {wanted.decode()})")

    def _read_last_hlc(self) -> int:
        with self.env.begin(db=self.meta) as txn:
            packed = txn.get(_META_HLC_LAST)
        return 0 if packed is None else _U64.unpack(packed)[0]

    def record_clock(self, txn: lmdb.Transaction) -> None:
        """Called by the writer once per group: persist the highest HLC handed out (and
        the outbox's next sequence)."""
        txn.put(_META_HLC_LAST, _U64.pack(self.clock.last_hlc), db=self.meta)
        self.outbox.record_sequence(txn)

    def collect_staging_garbage(self) -> int:
        """Delete every staged blob (chunks + entry); returns how many blobs.

        Only safe when no upload is in flight: at open, every staged blob is garbage left
        by a crash. Work is bounded per transaction so a huge leftover cannot make one
        giant transaction.
        """
        blobs_collected = 0
        while True:
            with self.env.begin(write=True) as txn:
                cursor = txn.cursor(db=self.staging)
                if not cursor.first():
                    return blobs_collected
                blob_id = bytes(cursor.key())
                deletes_max = limits.staging_gc_deletes_per_txn_max
                if self._delete_blob_chunks(txn, blob_id, deletes_max):
                    txn.delete(blob_id, db=self.staging)
                    blobs_collected += 1

    def apply_collect_staging(self, txn: lmdb.Transaction, staged_before_ms: int,
                              deletes_max: int = limits.staging_gc_deletes_per_txn_max,
                              blobs_max: int = limits.staging_collect_blobs_max) -> int:
        """Delete the staged blobs (chunks + entry) whose staging began before
        ``staged_before_ms``: at most ``blobs_max`` blobs and ``deletes_max`` chunks in
        all (the next entry goes on); returns how many blobs.
        A replicated shard's leader makes this an entry (uploads abandoned by a crashed
        gateway): the staging times come from entries, so every replica drops the same."""
        collected = 0
        budget = deletes_max
        cursor = txn.cursor(db=self.staging)
        found = cursor.first()
        old: list[bytes] = []
        while found and len(old) < blobs_max:
            if unpack_staging(cursor.value()) < staged_before_ms:
                old.append(bytes(cursor.key()))
            found = cursor.next()
        for blob_id in old:
            chunks = self._count_blob_chunks(txn, blob_id)
            if chunks > budget:
                break
            budget -= chunks
            assert self._delete_blob_chunks(txn, blob_id, chunks)
            txn.delete(blob_id, db=self.staging)
            collected += 1
        return collected

    def _count_blob_chunks(self, txn: lmdb.Transaction, blob_id: bytes) -> int:
        cursor = txn.cursor(db=self.chunks)
        count = 0
        found = cursor.set_range(blob_id)
        while found and bytes(cursor.key()[: keys.BLOB_ID_BYTES]) == blob_id:
            count += 1
            found = cursor.next()
        return count

    def _delete_blob_chunks(self, txn: lmdb.Transaction, blob_id: bytes, deletes_max: int) -> bool:
        """Delete up to ``deletes_max`` chunks of a blob; True when none is left."""
        cursor = txn.cursor(db=self.chunks)
        deleted = 0
        if not cursor.set_range(blob_id):
            return True
        while bytes(cursor.key()[: keys.BLOB_ID_BYTES]) == blob_id:
            if deleted == deletes_max:
                return False
            # Cursor.delete moves to the next entry; False when it was the last one.
            deleted += 1
            if not cursor.delete() or not cursor.key():
                return True
        return True

    def free_blob(self, txn: lmdb.Transaction, blob_id: bytes, size_bytes: int) -> None:
        """Delete a committed blob's chunks (it has no staging entry)."""
        for chunk_index in range(-(-size_bytes // limits.chunk_size_bytes)):
            txn.delete(keys.chunk_key(blob_id, chunk_index), db=self.chunks)

    # --- buckets (reads) ---------------------------------------------------------------

    def get_bucket(self, name: str) -> BucketInfo:
        with self.env.begin(buffers=True) as txn:
            return self._bucket(txn, name)

    def _bucket(self, txn: lmdb.Transaction, name: str) -> BucketInfo:
        packed = txn.get(keys.bucket_bytes(name), db=self.buckets)
        if packed is None:
            raise NoSuchBucket(f"no such bucket: {name}")
        decoded = self._decoded_buckets.get(name)
        if decoded is not None and decoded[0] == packed:
            # The bytes it was decoded from: equal bytes decode to an equal record.
            return decoded[1]
        info = unpack_bucket(name, packed)
        if len(self._decoded_buckets) >= limits.bucket_records_decoded_max:
            self._decoded_buckets.clear()
        self._decoded_buckets[name] = (bytes(packed), info)
        return info

    def list_buckets(self, owner_id: str) -> list[BucketInfo]:
        with self.env.begin(buffers=True) as txn:
            infos = (
                unpack_bucket(bytes(name).decode("utf-8"), packed)
                for name, packed in txn.cursor(db=self.buckets)
            )
            return [info for info in infos if info.owner_id == owner_id]

    # --- buckets (writes: writer thread only) ------------------------------------------

    def apply_create_bucket(
        self, txn: lmdb.Transaction, name: str, owner_id: str, object_lock_enabled: bool = False
    ) -> BucketInfo:
        name_raw = keys.bucket_bytes(name)
        packed = txn.get(name_raw, db=self.buckets)
        if packed is not None:
            existing = unpack_bucket(name, packed)
            if existing.owner_id == owner_id:
                raise BucketAlreadyOwnedByYou(f"you already own bucket {name}")
            raise BucketAlreadyExists(f"bucket {name} exists")
        # Object Lock needs versioning, so a bucket created with it starts Enabled (AWS).
        info = BucketInfo(name=name, created_ms=self._now_ms(), owner_id=owner_id,
                          versioning="Enabled" if object_lock_enabled else "",
                          object_lock_enabled=object_lock_enabled)
        txn.put(name_raw, pack_bucket(info), db=self.buckets)
        return info

    def apply_delete_bucket(self, txn: lmdb.Transaction, name: str) -> None:
        self._bucket(txn, name)
        name_raw = keys.bucket_bytes(name)
        cursor = txn.cursor(db=self.versions)
        prefix = keys.bucket_prefix(name_raw)
        if cursor.set_range(prefix) and bytes(cursor.key()).startswith(prefix):
            raise BucketNotEmpty(f"bucket {name} is not empty")
        multipart.abort_bucket_uploads(self, txn, name_raw)
        txn.delete(name_raw, db=self.buckets)
        configs = txn.cursor(db=self.bucket_configs)
        if configs.set_range(prefix):
            while bytes(configs.key()).startswith(prefix):
                if not configs.delete() or not configs.key():
                    break

    def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        """A bucket's configuration document ``name`` (tagging, cors, ...), or None."""
        with self.env.begin() as txn:
            self._bucket(txn, bucket)
            return txn.get(keys.bucket_config_key(bucket, name), db=self.bucket_configs)

    def apply_put_bucket_config(
        self,
        txn: lmdb.Transaction,
        bucket: str,
        name: str,
        document: bytes | None,
        origin: EventOrigin | None = None,
    ) -> None:
        """Store (or with None, remove) a bucket's configuration document ``name``. A
        notification document put with an ``origin`` (a request) writes AWS's test event
        to each of its destinations in the same transaction."""
        info = self._bucket(txn, bucket)
        config_key = keys.bucket_config_key(bucket, name)
        if document is None:
            txn.delete(config_key, db=self.bucket_configs)
            return
        txn.put(config_key, document, db=self.bucket_configs)
        if name == NOTIFICATION_CONFIG and origin is not None:
            self.outbox.add_test_events(txn, info, document, hlc=self.clock.tick(),
                                        origin=origin)

    def apply_set_bucket_versioning(
        self, txn: lmdb.Transaction, name: str, versioning: str
    ) -> BucketInfo:
        if versioning not in ("Enabled", "Suspended"):
            raise InvalidArgument(f"versioning must be Enabled or Suspended: {versioning!r}")
        info = self._bucket(txn, name)
        if info.object_lock_enabled and versioning != "Enabled":
            raise InvalidBucketState("An Object Lock configuration is present on this bucket, "
                                     "so the versioning state cannot be changed.")
        updated = replace(info, versioning=versioning)
        txn.put(keys.bucket_bytes(name), pack_bucket(updated), db=self.buckets)
        return updated

    def apply_put_object_lock_configuration(
        self, txn: lmdb.Transaction, name: str, default_retention: DefaultRetention | None
    ) -> BucketInfo:
        """Enable Object Lock (for good) with ``default_retention``: AWS allows it on an
        existing bucket once its versioning is Enabled."""
        info = self._bucket(txn, name)
        if info.versioning != "Enabled":
            raise InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a "
                                     "Object Lock configuration")
        updated = replace(info, object_lock_enabled=True, default_retention=default_retention)
        txn.put(keys.bucket_bytes(name), pack_bucket(updated), db=self.buckets)
        return updated

    def new_version_lock(
        self, info: BucketInfo, mode: str, retain_until_ms: int, legal_hold: bool
    ) -> tuple[str, int, bool]:
        """The lock state of a new version of a bucket: what its write asked for (only in
        an Object Lock bucket), else the bucket's default retention from now."""
        if not info.object_lock_enabled:
            if mode or legal_hold:
                raise ObjectLockNotEnabled("Bucket is missing Object Lock Configuration")
            return "", 0, False
        locks.check_retention(mode, retain_until_ms)
        default = info.default_retention
        if not mode and default is not None:
            return default.mode, default.retain_until_ms(self._now_ms()), legal_hold
        return mode, retain_until_ms, legal_hold

    # --- object reads ------------------------------------------------------------------

    def get_version(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        as_of_ms: int | None = None,
        inline_body_bytes_max: int = 0,
    ) -> ObjectVersion:
        """See ``api.StorageClient.get_version``: one read transaction for the bucket's
        versioning state, the version and (when asked for and small enough) its body."""
        if version_id is not None and as_of_ms is not None:
            raise InvalidArgument("give a version id or a time, not both")
        with self.env.begin(buffers=True) as txn:
            info = self._bucket(txn, bucket)
            bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(key)
            cursor = txn.cursor(db=self.versions)
            if version_id is None and as_of_ms is None:
                return self._read_latest(txn, cursor, bucket, key, info.versioning,
                                         inline_body_bytes_max)
            latest = self._latest(cursor, bucket_raw, key_raw)
            if version_id is not None:
                found = self._named_version(txn, cursor, bucket_raw, key_raw, version_id)
                if found is None:
                    raise NoSuchVersion(f"no version {version_id} of {bucket}/{key}")
            elif as_of_ms is not None:
                found = self._version_as_of(cursor, bucket_raw, key_raw, as_of_ms)
                if found is None:
                    raise NoSuchKey(f"{bucket}/{key} did not exist at {as_of_ms} ms")
            else:
                found = latest
                if found is None:
                    raise NoSuchKey(f"no such key: {bucket}/{key}")
            assert latest is not None
            inline_body = None
            if (
                not found.is_delete_marker
                and found.customer_key is None
                and found.size_bytes <= inline_body_bytes_max
                and found.size_bytes <= limits.chunk_size_bytes
                and not found.segments
            ):
                inline_body = self._whole_chunk(txn, found)
            return found.to_object_version(
                bucket, key, is_latest=found.hlc == latest.hlc,
                bucket_versioning=info.versioning, inline_body=inline_body,
            )  # fmt: skip

    def _read_latest(
        self,
        txn: lmdb.Transaction,
        cursor: lmdb.Cursor,
        bucket: str,
        key: str,
        bucket_versioning: str,
        inline_body_bytes_max: int,
    ) -> ObjectVersion:
        """``get_version`` of the latest version: what the general path returns, from
        one decode of the record into the ``ObjectVersion`` (no ``VersionRecord``)."""
        prefix = keys.key_prefix(keys.bucket_bytes(bucket), keys.object_key_bytes(key))
        if not cursor.set_range(prefix):
            raise NoSuchKey(f"no such key: {bucket}/{key}")
        lmdb_key = bytes(cursor.key())
        if not lmdb_key.startswith(prefix) or len(lmdb_key) != len(prefix) + 8:
            raise NoSuchKey(f"no such key: {bucket}/{key}")
        hlc = keys.HLC_MASK - _U64.unpack_from(lmdb_key, len(prefix))[0]
        fields = version_fields(cursor.value())
        inline_body = None
        blob = fields_single_blob(fields)
        if blob is not None and fields_customer_key(fields) is None:
            blob_id, size_bytes = blob
            if size_bytes <= inline_body_bytes_max and size_bytes <= limits.chunk_size_bytes:
                inline_body = self._chunk_zero(txn, blob_id)
        return fields_object_version(bucket, key, hlc, fields, True, bucket_versioning,
                                     inline_body)

    def _whole_chunk(self, txn: lmdb.Transaction, record: VersionRecord) -> bytes:
        """The body of a single-blob version of at most one chunk, copied out."""
        return self._chunk_zero(txn, record.blob_id)

    def _chunk_zero(self, txn: lmdb.Transaction, blob_id: bytes | None) -> bytes:
        if blob_id is None:
            return b""
        chunk = txn.get(keys.chunk_key(blob_id, 0), db=self.chunks)
        assert chunk is not None, "a committed version is missing a chunk"
        return bytes(chunk) if self.cipher is None else self.cipher.apply(blob_id, 0, chunk)

    def _latest(
        self, cursor: lmdb.Cursor, bucket_raw: bytes, key_raw: bytes
    ) -> VersionRecord | None:
        prefix = keys.key_prefix(bucket_raw, key_raw)
        return self._record_at_or_after(cursor, prefix, prefix)

    def _version_as_of(
        self, cursor: lmdb.Cursor, bucket_raw: bytes, key_raw: bytes, as_of_ms: int
    ) -> VersionRecord | None:
        if as_of_ms < 0:
            return None
        seek = keys.version_key(bucket_raw, key_raw, hlc_upper_bound_for_ms(as_of_ms))
        return self._record_at_or_after(cursor, seek, keys.key_prefix(bucket_raw, key_raw))

    @staticmethod
    def _record_at_or_after(
        cursor: lmdb.Cursor, seek: bytes, prefix: bytes
    ) -> VersionRecord | None:
        if not cursor.set_range(seek):
            return None
        lmdb_key = bytes(cursor.key())
        if not lmdb_key.startswith(prefix) or len(lmdb_key) != len(prefix) + 8:
            return None
        hlc = keys.HLC_MASK - _U64.unpack_from(lmdb_key, len(prefix))[0]
        return unpack_version(hlc, cursor.value())

    def _named_version(
        self,
        txn: lmdb.Transaction,
        cursor: lmdb.Cursor,
        bucket_raw: bytes,
        key_raw: bytes,
        version_id: str,
    ) -> VersionRecord | None:
        if version_id == "null":
            return self._null_version(cursor, bucket_raw, key_raw)
        hlc = decode_version_id(version_id)
        packed = txn.get(keys.version_key(bucket_raw, key_raw, hlc), db=self.versions)
        return None if packed is None else unpack_version(hlc, packed)

    def _null_version(
        self, cursor: lmdb.Cursor, bucket_raw: bytes, key_raw: bytes
    ) -> VersionRecord | None:
        """The key's null version, if any: a scan of the key's versions (at most one is
        null; in a never-versioned bucket the key has only that one)."""
        for record in self._versions_of_key(cursor, bucket_raw, key_raw):
            if record.null_version:
                return record
        return None

    def _versions_of_key(
        self, cursor: lmdb.Cursor, bucket_raw: bytes, key_raw: bytes
    ) -> Iterator[VersionRecord]:
        prefix = keys.key_prefix(bucket_raw, key_raw)
        found = cursor.set_range(prefix)
        while found:
            lmdb_key = bytes(cursor.key())
            if not lmdb_key.startswith(prefix) or len(lmdb_key) != len(prefix) + 8:
                return
            hlc = keys.HLC_MASK - _U64.unpack_from(lmdb_key, len(prefix))[0]
            yield unpack_version(hlc, cursor.value())
            found = cursor.next()

    def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = limits.list_keys_max,
        as_of_ms: int | None = None,
    ) -> ListPage:
        # Without buffers: every key and value read is copied anyway (keys are split and
        # kept, values decoded), and bytes decode a little faster than memoryviews.
        with self.env.begin(buffers=False) as txn:
            self._bucket(txn, bucket)
            return listing.list_objects(
                txn.cursor(db=self.versions),
                bucket,
                listing.ListQuery(prefix, delimiter, start_after, max_keys),
                as_of_ms,
            )

    def list_object_versions(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = limits.list_keys_max,
    ) -> ListVersionsPage:
        with self.env.begin(buffers=False) as txn:  # as list_objects
            self._bucket(txn, bucket)
            cursor = txn.cursor(db=self.versions)
            marker_hlc = None
            if key_marker and version_id_marker:
                marker_hlc = self._marker_hlc(cursor, bucket, key_marker, version_id_marker)
            return listing.list_object_versions(
                cursor,
                txn.cursor(db=self.versions),
                bucket,
                listing.ListQuery(prefix, delimiter, key_marker, max_keys),
                marker_hlc,
            )

    def _marker_hlc(
        self, cursor: lmdb.Cursor, bucket: str, key_marker: str, version_id_marker: str
    ) -> int | None:
        """The HLC a version-id marker names; None (start after the key) if it is gone."""
        if version_id_marker != "null":
            return decode_version_id(version_id_marker)
        bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(key_marker)
        record = self._null_version(cursor, bucket_raw, key_raw)
        return None if record is None else record.hlc

    def open_body(
        self, version: ObjectVersion, start: int = 0, end_exclusive: int | None = None,
        customer_key: CustomerKey | None = None,
    ) -> BodyReader:
        return BodyReader(self, version, start, end_exclusive, customer_key)

    def blob_cipher(self, customer_key: CustomerKey | None) -> ChunkCipher | None:
        """The cipher of a blob written or read with ``customer_key`` (SSE-C: keys derived
        from it, instead of the master key's), else the store's (None: plain)."""
        if customer_key is None:
            return self.cipher
        return ChunkCipher.for_customer_key(customer_key.key)

    # --- object writes (writer thread only) --------------------------------------------

    def new_blob_id(self) -> bytes:
        assert self._entry_time_ms is None, "an entry's blob id is drawn when it is made"
        return keys.new_blob_id(self.clock.tick(), os.urandom(keys.BLOB_ID_BYTES - 8))

    def apply_stage_chunk(
        self,
        txn: lmdb.Transaction,
        blob_id: bytes,
        chunk_index: int,
        data: bytes | bytearray | memoryview,
        customer_key: CustomerKey | None = None,
    ) -> None:
        if not 0 < len(data) <= limits.chunk_size_bytes:
            raise InvalidArgument(f"a chunk must have 1..{limits.chunk_size_bytes} bytes")
        cipher = self.blob_cipher(customer_key)
        if cipher is not None:
            data = cipher.apply(blob_id, chunk_index, data)
        txn.put(blob_id, pack_staging(self._now_ms()), db=self.staging, overwrite=False)
        txn.put(keys.chunk_key(blob_id, chunk_index), data, db=self.chunks)

    def apply_abort(self, txn: lmdb.Transaction, blob_id: bytes) -> None:
        # Uploads are at most object_size_bytes_max / chunk_size_bytes chunks, so one
        # abort is bounded work.
        done = self._delete_blob_chunks(txn, blob_id, deletes_max=1 << 32)
        assert done
        txn.delete(blob_id, db=self.staging)

    def apply_commit(
        self,
        txn: lmdb.Transaction,
        bucket: str,
        key: str,
        *,
        blob_id: bytes | None,
        size_bytes: int,
        spec: PutSpec,
        conditions: WriteConditions | None = None,
        tail: StagedTail | None = None,
        event_name: str = "s3:ObjectCreated:Put",
        origin: EventOrigin | None = None,
        customer_key: CustomerKey | None = None,
    ) -> ObjectVersion:
        """Make a staged body (plus ``tail``) the key's new version, atomically, with the
        ``event_name`` events the bucket's notification configuration asks for.
        ``customer_key``: the SSE-C key the body was staged with, of which
        ``spec.customer_key`` must be a record."""
        check_customer_key(spec.customer_key, customer_key)
        info = self._bucket(txn, bucket)
        bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(key)
        keys.checked_version_key(bucket_raw, key_raw, 0, self.key_size_max)
        cursor = txn.cursor(db=self.versions)
        check_conditions(self._latest(cursor, bucket_raw, key_raw), conditions)
        chunk_count = -(-size_bytes // limits.chunk_size_bytes)
        if chunk_count and blob_id is None:
            blob_id = self.new_blob_id()
        if tail is not None:
            assert blob_id is not None
            self.check_still_staged(txn, blob_id, tail.chunk_index)
            self.apply_stage_chunk(txn, blob_id, tail.chunk_index, tail.data, customer_key)
        if blob_id is not None:
            self._take_staged_blob(txn, blob_id, chunk_count, size_bytes)
        lock_mode, lock_retain_until_ms, legal_hold = self.new_version_lock(
            info, spec.lock_mode, spec.lock_retain_until_ms, spec.legal_hold)
        null_version = info.versioning != "Enabled"
        if null_version:
            self._remove_null_version(txn, cursor, bucket_raw, key_raw)
        record = VersionRecord(
            hlc=self.clock.tick(),
            size_bytes=size_bytes,
            etag=spec.etag,
            is_delete_marker=False,
            null_version=null_version,
            blob_id=blob_id if chunk_count else None,
            chunk_count=chunk_count,
            content_type=spec.content_type,
            system_metadata=dict(spec.system_metadata),
            user_metadata=dict(spec.user_metadata),
            checksums=dict(spec.checksums),
            storage_class=spec.storage_class,
            tags=checked_tags(spec.tags),
            owner_id=spec.owner_id,
            acl=spec.acl,
            lock_mode=lock_mode,
            lock_retain_until_ms=lock_retain_until_ms,
            legal_hold=legal_hold,
            customer_key=spec.customer_key,
        )
        self._put_version(txn, bucket_raw, key_raw, record)
        self.outbox.add_events(
            txn, info, key, event_name, hlc=record.hlc, size_bytes=size_bytes, etag=spec.etag,
            s3_version_id=record.s3_version_id, origin=origin,
        )  # fmt: skip
        return record.to_object_version(bucket, key, is_latest=True)

    def apply_replace_tags(
        self,
        txn: lmdb.Transaction,
        bucket: str,
        key: str,
        version_id: str,
        tags: Mapping[str, str],
        event_name: str = "s3:ObjectTagging:Put",
        origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        """Replace the tag set of the version ``version_id`` (an internal id) in place,
        with its ``event_name`` (ObjectTagging:Put or :Delete) events."""
        info = self._bucket(txn, bucket)
        record, version_key = self._object_version(txn, bucket, key, version_id)
        updated = replace(record, tags=checked_tags(tags))
        txn.put(version_key, pack_version(updated), db=self.versions, overwrite=True)
        self._version_event(txn, info, key, updated, event_name, origin)
        return self._as_object_version(txn, bucket, key, updated)

    def apply_replace_acl(
        self, txn: lmdb.Transaction, bucket: str, key: str, version_id: str,
        acl: bytes | None, origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        """Replace the ACL document of the version ``version_id`` in place, with its
        s3:ObjectAcl:Put events; the same document again changes nothing and makes no
        event (AWS: none "when a request results in no change to an object's ACL")."""
        info = self._bucket(txn, bucket)
        record, version_key = self._object_version(txn, bucket, key, version_id)
        if record.acl == acl:
            return self._as_object_version(txn, bucket, key, record)
        updated = replace(record, acl=acl)
        txn.put(version_key, pack_version(updated), db=self.versions, overwrite=True)
        self._version_event(txn, info, key, updated, OBJECT_ACL_PUT_EVENT, origin)
        return self._as_object_version(txn, bucket, key, updated)

    def apply_update_object_lock(
        self, txn: lmdb.Transaction, bucket: str, key: str, version_id: str,
        update: ObjectLockUpdate,
    ) -> ObjectVersion:
        """Change the retention and/or legal hold of the version ``version_id`` (an
        internal id) in place, checked against the current state (``locks``). AWS
        sends no notification event for these changes."""
        info = self._bucket(txn, bucket)
        if not info.object_lock_enabled:
            raise ObjectLockNotEnabled("Bucket is missing Object Lock Configuration")
        record, version_key = self._object_version(txn, bucket, key, version_id)
        updated = record
        if update.retention is not None:
            locks.check_retention(*update.retention)
            locks.check_retention_change(
                (record.lock_mode, record.lock_retain_until_ms), update.retention,
                self._now_ms(), update.bypass_governance)
            mode, until_ms = update.retention
            updated = replace(updated, lock_mode=mode, lock_retain_until_ms=until_ms)
        if update.legal_hold is not None:
            updated = replace(updated, legal_hold=update.legal_hold)
        if updated != record:
            txn.put(version_key, pack_version(updated), db=self.versions, overwrite=True)
        return self._as_object_version(txn, bucket, key, updated)

    def check_removable(self, record: VersionRecord, bypass_governance: bool) -> None:
        """ObjectLocked when the version's lock state forbids removing it now."""
        locks.check_removable(record.lock_mode, record.lock_retain_until_ms, record.legal_hold,
                              self._now_ms(), bypass_governance)

    def _object_version(
        self, txn: lmdb.Transaction, bucket: str, key: str, version_id: str
    ) -> tuple[VersionRecord, bytes]:
        """The version ``version_id`` of a key and its LMDB key; NoSuchVersion when it is
        gone, InvalidArgument when it is a delete marker."""
        bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(key)
        hlc = decode_version_id(version_id)
        version_key = keys.version_key(bucket_raw, key_raw, hlc)
        packed = txn.get(version_key, db=self.versions)
        if packed is None:
            raise NoSuchVersion(f"no version {version_id} of {bucket}/{key}")
        record = unpack_version(hlc, packed)
        if record.is_delete_marker:
            raise InvalidArgument("a delete marker has no tag set and no ACL")
        return record, version_key

    def _as_object_version(
        self, txn: lmdb.Transaction, bucket: str, key: str, record: VersionRecord
    ) -> ObjectVersion:
        bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(key)
        latest = self._latest(txn.cursor(db=self.versions), bucket_raw, key_raw)
        assert latest is not None
        return record.to_object_version(bucket, key, is_latest=latest.hlc == record.hlc)

    def _version_event(
        self,
        txn: lmdb.Transaction,
        info: BucketInfo,
        key: str,
        record: VersionRecord,
        event_name: str,
        origin: EventOrigin | None,
    ) -> None:
        """The events of a change to an existing version (its tags): they name
        the version and its ETag, as AWS's do. The version keeps its HLC, so a fresh
        tick orders the event after every earlier event of the key."""
        self.outbox.add_events(
            txn, info, key, event_name, hlc=self.clock.tick(), size_bytes=None,
            etag=record.etag, s3_version_id=record.s3_version_id, origin=origin,
        )  # fmt: skip

    def check_still_staged(self, txn: lmdb.Transaction, blob_id: bytes,
                           tail_chunk_index: int) -> None:
        """Before a commit stages its tail after earlier chunks: those must still be
        staged. A commit sent twice (a retry whose first attempt was stored) would
        otherwise stage the tail afresh and take chunks a committed version owns."""
        if tail_chunk_index > 0 and txn.get(blob_id, db=self.staging) is None:
            raise InvalidArgument("the upload was aborted or never staged")

    def _take_staged_blob(
        self, txn: lmdb.Transaction, blob_id: bytes, chunk_count: int, size_bytes: int
    ) -> None:
        """Check the staged blob is whole and of ``size_bytes``; remove its staging entry."""
        if chunk_count == 0 or not txn.delete(blob_id, db=self.staging):
            raise InvalidArgument("the upload was aborted or never staged")
        cursor = txn.cursor(db=self.chunks)
        staged_bytes = 0
        found = cursor.set_range(blob_id)
        for expected_key in (keys.chunk_key(blob_id, i) for i in range(chunk_count)):
            if not found or bytes(cursor.key()) != expected_key:
                raise InvalidArgument("the staged body is missing chunks")
            staged_bytes += len(cursor.value())
            found = cursor.next()
        if staged_bytes != size_bytes:
            raise InvalidArgument(f"staged {staged_bytes} bytes, committing {size_bytes}")

    def apply_delete_object(
        self,
        txn: lmdb.Transaction,
        bucket: str,
        key: str,
        version_id: str | None = None,
        origin: EventOrigin | None = None,
        events: RemovalEvents = REQUEST_REMOVAL,
        bypass_governance: bool = False,
    ) -> DeleteResult:
        """Remove a version (by id, or the null version of an unversioned bucket) with an
        s3:ObjectRemoved:Delete event, or write a delete marker with an
        s3:ObjectRemoved:DeleteMarkerCreated event (``events`` names them: the lifecycle
        sweeper's expirations make LifecycleExpiration events instead). Removing
        nothing makes no event. A version under Object Lock is not removed
        (ObjectLocked; GOVERNANCE yields to ``bypass_governance``)."""
        info = self._bucket(txn, bucket)
        bucket_raw, key_raw = keys.bucket_bytes(bucket), keys.object_key_bytes(key)
        cursor = txn.cursor(db=self.versions)
        if version_id is not None:
            record = self._named_version(txn, cursor, bucket_raw, key_raw, version_id)
            if record is None:
                # As AWS: deleting a version that does not exist succeeds (204).
                return DeleteResult()
            self.check_removable(record, bypass_governance)
            self._remove_version(txn, bucket_raw, key_raw, record)
            self.removed_event(txn, info, key, record.s3_version_id, origin,
                               events.version_removed)
            return DeleteResult(record.is_delete_marker, record.s3_version_id)
        if info.versioning == "":
            removed = self._remove_null_version(txn, cursor, bucket_raw, key_raw)
            if removed is not None:
                self.removed_event(txn, info, key, removed.s3_version_id, origin,
                                   events.version_removed)
            return DeleteResult()
        null_version = info.versioning == "Suspended"
        if null_version:
            self._remove_null_version(txn, cursor, bucket_raw, key_raw)
        keys.checked_version_key(bucket_raw, key_raw, 0, self.key_size_max)
        marker = VersionRecord(
            hlc=self.clock.tick(),
            size_bytes=0,
            etag="",
            is_delete_marker=True,
            null_version=null_version,
            owner_id=origin.principal_id if origin is not None else "",
        )
        self._put_version(txn, bucket_raw, key_raw, marker)
        self.outbox.add_events(
            txn, info, key, events.delete_marker_created, hlc=marker.hlc, size_bytes=None,
            etag="", s3_version_id=marker.s3_version_id, origin=origin,
        )  # fmt: skip
        return DeleteResult(delete_marker=True, s3_version_id=marker.s3_version_id)

    def removed_event(
        self,
        txn: lmdb.Transaction,
        info: BucketInfo,
        key: str,
        s3_version_id: str,
        origin: EventOrigin | None,
        event_name: str = REQUEST_REMOVAL.version_removed,
    ) -> None:
        """The events of a version removed for good (by a request, or by lifecycle)."""
        # No new version carries this write's HLC, so tick one: it still orders this
        # event after every earlier write of the key (the clock only moves forward).
        self.outbox.add_events(
            txn, info, key, event_name, hlc=self.clock.tick(), size_bytes=None, etag="",
            s3_version_id=s3_version_id, origin=origin,
        )  # fmt: skip

    def _put_version(
        self, txn: lmdb.Transaction, bucket_raw: bytes, key_raw: bytes, record: VersionRecord
    ) -> None:
        lmdb_key = keys.checked_version_key(bucket_raw, key_raw, record.hlc, self.key_size_max)
        assert hlc_to_ms(record.hlc) >= 0
        written = txn.put(lmdb_key, pack_version(record), db=self.versions, overwrite=False)
        assert written, "a version hlc was handed out twice"

    def _remove_null_version(
        self, txn: lmdb.Transaction, cursor: lmdb.Cursor, bucket_raw: bytes, key_raw: bytes
    ) -> VersionRecord | None:
        """Remove the key's null version if it has one; returns what was removed."""
        record = self._null_version(cursor, bucket_raw, key_raw)
        if record is not None:
            self._remove_version(txn, bucket_raw, key_raw, record)
        return record

    def _remove_version(
        self, txn: lmdb.Transaction, bucket_raw: bytes, key_raw: bytes, record: VersionRecord
    ) -> None:
        deleted = txn.delete(keys.version_key(bucket_raw, key_raw, record.hlc), db=self.versions)
        assert deleted
        for blob_id, size_bytes in record.blobs():
            assert blob_id is not None
            self.free_blob(txn, blob_id, size_bytes)

    # --- introspection (tests, metrics) ------------------------------------------------

    def _sub_database(self, name: str) -> lmdb._Database:
        return self.outbox.db if name == "outbox" else getattr(self, name)

    def entry_counts(self) -> dict[str, int]:
        with self.env.begin() as txn:
            return {
                name.decode(): txn.stat(self._sub_database(name.decode()))["entries"]
                for name in SUB_DATABASES
            }


def checked_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``tags`` within S3's per-object bound (the gateway checks the rest)."""
    if len(tags) > limits.object_tags_max:
        raise InvalidArgument(f"an object has at most {limits.object_tags_max} tags")
    return dict(tags)


def check_conditions(latest: VersionRecord | None, conditions: WriteConditions | None) -> None:
    if conditions is None:
        return
    exists = latest is not None and not latest.is_delete_marker
    if conditions.if_none_match_any and exists:
        raise PreconditionFailed("If-None-Match: * and the key exists")
    if conditions.if_match is not None:
        if not exists:  # AWS answers a conditional write on a missing key with 404
            raise NoSuchKey("If-Match and the key does not exist")
        assert latest is not None
        if latest.etag != conditions.if_match:
            raise PreconditionFailed("If-Match: the current ETag differs")


class BodyReader:
    """Iterates one version's body ``[start, end_exclusive)`` from one snapshot.

    The read transaction is opened at construction, so a version removed (e.g. a null
    version overwritten) between the metadata read and this call raises NoSuchVersion
    here, before any byte is sent. Chunks are yielded as memoryviews of LMDB's memory
    map: no copy. A yielded view is valid until ``close`` (or exhaustion): a consumer that
    keeps bytes longer must copy them. Only the chunks overlapping the range are read; a
    multipart version's body is read across its segments (one blob per part). In an
    encrypted store, or for an SSE-C version (read with its ``customer_key``, checked
    here against the record before any byte), the chunks are decrypted copies.
    """

    def __init__(
        self, engine: Engine, version: ObjectVersion, start: int, end_exclusive: int | None,
        customer_key: CustomerKey | None = None,
    ) -> None:
        self._txn: lmdb.Transaction | None = engine.env.begin(buffers=True)
        try:
            self._record = self._find_record(engine, version)
            check_customer_key(self._record.customer_key, customer_key)
        except BaseException:
            self.close()
            raise
        end = self._record.size_bytes if end_exclusive is None else end_exclusive
        if start < 0 or end < start:
            self.close()
            raise InvalidArgument(f"invalid range [{start}, {end_exclusive})")
        self.start = start
        self.end_exclusive = min(end, self._record.size_bytes)
        self._chunks = engine.chunks
        self._cipher = engine.blob_cipher(customer_key)
        # The body as (blob, size) segments: one for a single-blob version, one per part
        # for a multipart one (empty parts have no blob and are skipped here).
        self._segments = [
            segment for segment in self._record.segments if segment[1] > 0
        ] or [(self._record.blob_id, self._record.size_bytes)]
        self._segment_starts = list(
            itertools.accumulate((size for _, size in self._segments[:-1]), initial=0)
        )

    def _find_record(self, engine: Engine, version: ObjectVersion) -> VersionRecord:
        assert self._txn is not None
        bucket_raw = keys.bucket_bytes(version.bucket)
        key_raw = keys.object_key_bytes(version.key)
        hlc = decode_version_id(version.version_id)
        packed = self._txn.get(keys.version_key(bucket_raw, key_raw, hlc), db=engine.versions)
        if packed is None:
            raise NoSuchVersion(f"version {version.version_id} of {version.key} is gone")
        record = unpack_version(hlc, packed)
        if record.is_delete_marker:
            raise InvalidArgument("a delete marker has no body")
        return record

    def __iter__(self) -> Iterator[bytes | memoryview]:
        chunk_size = limits.chunk_size_bytes
        position = self.start
        while position < self.end_exclusive:
            if self._txn is None:
                raise InvalidArgument("body stream is closed")
            segment = bisect.bisect_right(self._segment_starts, position) - 1
            blob_id, segment_size = self._segments[segment]
            segment_start = self._segment_starts[segment]
            chunk_index, offset = divmod(position - segment_start, chunk_size)
            assert blob_id is not None and position - segment_start < segment_size
            chunk = self._txn.get(keys.chunk_key(blob_id, chunk_index), db=self._chunks)
            assert chunk is not None, "a committed version is missing a chunk"
            piece_end = min(len(chunk), offset + self.end_exclusive - position)
            if self._cipher is None:
                yield chunk[offset:piece_end]
            else:  # a copy, decrypted
                yield self._cipher.apply(blob_id, chunk_index, chunk[offset:piece_end], offset)
            position += piece_end - offset

    def close(self) -> None:
        if self._txn is not None:
            self._txn.abort()
            self._txn = None

    @property
    def closed(self) -> bool:
        return self._txn is None
