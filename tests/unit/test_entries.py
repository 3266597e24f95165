"""Replicable write entries (storage/engine/entries.py): one sequence of entries applied to
two fresh engines leaves both with the same state, byte for byte in every sub-database
(buckets, every version record with its version id, tags, uploads, parts, staging, the
outbox, the persisted HLC), whatever the entries' times (clock skew included), however
the writers group them, and after the entries crossed the replication log's encoding."""

from __future__ import annotations

import hashlib
import pathlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.api import (
    NOTIFICATION_CONFIG,
    CompletedPart,
    EventOrigin,
    InvalidArgument,
    NotificationConfiguration,
    NotificationRule,
    ObjectLockUpdate,
    PutSpec,
    StorageError,
    WriteConditions,
    limits,
)
from storage.engine import Engine, GroupCommitWriter
from storage.engine.entries import (
    EntryCodecError,
    WriteEntry,
    decode_write_entry,
    encode_write_entry,
    lifecycle_entries,
    make_entry,
    new_entry_blob_id,
    operation_for_entry,
)
from storage.engine.expiry import ExpiryAction, ExpiryKind
from storage.engine.store import SUB_DATABASES

BUCKETS = ("alpha", "beta")
KEYS = ("k1", "k2", "dir/k3")
START_MS = 1_700_000_000_000
NOTIFICATION = NotificationConfiguration((NotificationRule(
    "queue", "q", "arn:squall:webhook::hook", ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")),
)).to_json()


def _never_clock() -> int:
    raise AssertionError("an entry's apply read the engine's clock")


class Replica:
    def __init__(self, data_dir: pathlib.Path, group_writes_max: int) -> None:
        # The clock fails the test if anything but the entry's time is read.
        self.engine = Engine(data_dir, durable=False, now_ms=_never_clock,
                             collect_staging_at_open=False)
        self.writer = GroupCommitWriter(self.engine, group_writes_max=group_writes_max)

    def apply(self, entries: list[WriteEntry]) -> list[Any]:
        """Submit every entry at once (the writer groups them as it likes); outcomes."""
        futures = [self.writer.submit(operation_for_entry(entry)) for entry in entries]
        outcomes: list[Any] = []
        for future in futures:
            try:
                outcomes.append(future.result(timeout=30))
            except StorageError as error:
                outcomes.append((type(error).__name__, str(error)))
        return outcomes

    def dump(self) -> dict[bytes, list[tuple[bytes, bytes]]]:
        with self.engine.env.begin() as txn:
            return {
                name: [(bytes(k), bytes(v)) for k, v in txn.cursor(db=self.engine.env.open_db(
                    name, txn=txn, create=False))]
                for name in SUB_DATABASES
            }

    def close(self) -> None:
        self.writer.close()
        self.engine.close()


@contextmanager
def two_replicas(groups: tuple[int, int]) -> Iterator[tuple[Replica, Replica]]:
    with tempfile.TemporaryDirectory() as directory:
        first = Replica(pathlib.Path(directory, "a"), groups[0])
        second = Replica(pathlib.Path(directory, "b"), groups[1])
        try:
            yield first, second
        finally:
            first.close()
            second.close()


def lifecycle_at(now_ms: int, bucket: str, actions: tuple[ExpiryAction, ...]) -> WriteEntry:
    entry = lifecycle_entries(bucket, actions)
    return WriteEntry(entry.operation, entry.arguments, entry.payload, now_ms)


class Scenario:
    """Draws entries that make sense against the state so far (version ids, upload ids
    and blob ids returned by the first replica, which the second must then make too)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.now_ms = START_MS
        self.versions: list[tuple[str, str, str]] = []
        self.uploads: list[tuple[str, str, str]] = []
        self.parts: dict[str, list[CompletedPart]] = {}

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def tick(self) -> int:
        # Mostly forward, sometimes standing still or going back (a skewed leader clock).
        self.now_ms += self.draw(st.sampled_from((0, 1, 7, 1000, -3, -2000)))
        return self.now_ms

    def origin(self) -> EventOrigin | None:
        return self.draw(st.sampled_from((None, EventOrigin("user-1", "10.0.0.1", "req-1"))))

    def body(self) -> bytes:
        return self.draw(st.binary(min_size=0, max_size=40))

    def entries(self) -> list[WriteEntry]:
        """One or more entries of one client action."""
        kind = self.draw(st.sampled_from((
            "bucket", "versioning", "notify", "put", "put", "staged_put", "delete",
            "delete_version", "tags", "acl", "lock", "upload", "part", "part", "complete",
            "abort", "outbox_ack", "expire", "expire", "collect")))
        if kind == "collect":
            age_ms = self.draw(st.sampled_from((0, 5, 2000)))
            return [self.entry("collect_staging", staged_before_ms=self.now_ms - age_ms)]
        if self.draw(st.integers(0, 30)) == 0:
            return [self.entry("delete_bucket", name=self.draw(st.sampled_from(BUCKETS)))]
        bucket, key = self.draw(st.sampled_from(BUCKETS)), self.draw(st.sampled_from(KEYS))
        if kind == "bucket":
            return [self.entry("create_bucket", name=bucket, owner_id="owner",
                               object_lock_enabled=self.draw(st.booleans()))]
        if kind == "versioning":
            state = self.draw(st.sampled_from(("Enabled", "Suspended")))
            return [self.entry("set_bucket_versioning", name=bucket, versioning=state)]
        if kind == "notify":
            return [self.entry("put_bucket_config", bucket=bucket, name=NOTIFICATION_CONFIG,
                               document=NOTIFICATION, origin=self.origin())]
        if kind in ("put", "staged_put"):
            return self.put(bucket, key, staged=kind == "staged_put")
        if kind == "delete":
            return [self.entry("delete_object", bucket=bucket, key=key, origin=self.origin())]
        if kind == "outbox_ack":
            sequences = self.draw(st.lists(st.integers(0, 20), max_size=3))
            return [self.entry("outbox_ack", sequences=sequences)]
        if kind == "expire" and self.versions:
            bucket, key, version_id = self.draw(st.sampled_from(self.versions))
            kinds = self.draw(st.lists(st.sampled_from(list(ExpiryKind)), min_size=1,
                                       max_size=2))
            return [lifecycle_at(self.tick(), bucket, tuple(
                ExpiryAction(kind, key, version_id) for kind in kinds))]
        if kind in ("delete_version", "tags", "acl", "lock") and self.versions:
            bucket, key, version_id = self.draw(st.sampled_from(self.versions))
            if kind == "delete_version":
                return [self.entry("delete_object", bucket=bucket, key=key,
                                   version_id=version_id, origin=self.origin())]
            if kind == "tags":
                tags = self.draw(st.dictionaries(st.sampled_from("xyz"), st.text(max_size=3)))
                return [self.entry("replace_tags", bucket=bucket, key=key,
                                   version_id=version_id, tags=tags, origin=self.origin())]
            if kind == "acl":
                return [self.entry("replace_acl", bucket=bucket, key=key, version_id=version_id,
                                   acl=self.draw(st.sampled_from((None, b"<acl/>"))),
                                   origin=self.origin())]
            update = ObjectLockUpdate(retention=("GOVERNANCE", self.now_ms + 5000),
                                      legal_hold=self.draw(st.booleans()))
            return [self.entry("update_object_lock", bucket=bucket, key=key,
                               version_id=version_id, update=update)]
        if kind == "upload":
            return [self.entry("create_multipart_upload", bucket=bucket, key=key,
                               spec=PutSpec(etag="", user_metadata={"m": "1"}))]
        if kind in ("part", "complete", "abort") and self.uploads:
            bucket, key, upload_id = self.draw(st.sampled_from(self.uploads))
            if kind == "part":
                body = self.body()
                return [self.entry("commit_part", payload=body, bucket=bucket, key=key,
                                   upload_id=upload_id, part_number=self.draw(st.integers(1, 3)),
                                   blob_id=None, size_bytes=len(body),
                                   etag=hashlib.md5(body).hexdigest(), checksum="",
                                   tail_chunk_index=0)]
            if kind == "complete":
                parts = sorted({p.part_number: p for p in self.parts.get(upload_id, [])}.values(),
                               key=lambda p: p.part_number)
                return [self.entry("complete_multipart_upload", bucket=bucket, key=key,
                                   upload_id=upload_id, parts=parts, etag="e-1", checksums={},
                                   origin=self.origin())]
            return [self.entry("abort_multipart_upload", bucket=bucket, key=key,
                               upload_id=upload_id)]
        return self.put(bucket, key, staged=False)

    def put(self, bucket: str, key: str, staged: bool) -> list[WriteEntry]:
        body = self.body()
        spec = PutSpec(etag=hashlib.md5(body).hexdigest(), user_metadata={"a": "b"},
                       tags=self.draw(st.sampled_from(({}, {"t": "1"}))))
        conditions = self.draw(st.sampled_from((None, WriteConditions(if_none_match_any=True))))
        if not staged:
            return [self.entry("commit_version", payload=body, bucket=bucket, key=key,
                               blob_id=None, size_bytes=len(body), spec=spec,
                               conditions=conditions, tail_chunk_index=0,
                               origin=self.origin())]
        # A body staged in two "chunks" of the blob, then a commit with a tail: the blob
        # id is drawn before the entries are made, as a leader does.
        blob_id = new_entry_blob_id(self.now_ms)
        first = self.entry("stage_chunk", payload=body, blob_id=blob_id, chunk_index=0)
        commit = self.entry("commit_version", payload=b"tail", bucket=bucket, key=key,
                            blob_id=blob_id, size_bytes=len(body) + 4, spec=spec,
                            conditions=conditions, tail_chunk_index=1, origin=self.origin())
        return [first, commit]

    def entry(self, operation: str, payload: bytes | None = None, **arguments: Any) -> WriteEntry:
        return make_entry(operation, arguments, payload, now_ms=self.tick())

    def learn(self, entry: WriteEntry, outcome: Any) -> None:
        version_id = getattr(outcome, "version_id", None)
        if entry.operation == "commit_version" and version_id:
            self.versions.append((outcome.bucket, outcome.key, version_id))
        elif entry.operation == "create_multipart_upload" and not isinstance(outcome, tuple):
            self.uploads.append((outcome.bucket, outcome.key, outcome.upload_id))
        elif entry.operation == "commit_part" and not isinstance(outcome, tuple):
            upload_id = entry.arguments["upload_id"]
            self.parts.setdefault(upload_id, []).append(
                CompletedPart(outcome.part_number, outcome.etag))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), groups=st.tuples(st.integers(1, 4), st.integers(1, 64)))
def test_one_sequence_of_entries_makes_equal_engines(data: st.DataObject,
                                                    groups: tuple[int, int]) -> None:
    scenario = Scenario(data)
    with two_replicas(groups) as (first, second):
        batch_count = data.draw(st.integers(1, 25))
        batch = [scenario.entry("create_bucket", name=BUCKETS[0], owner_id="owner")]
        for _ in range(batch_count):
            outcomes = first.apply(batch)
            for entry, outcome in zip(batch, outcomes, strict=True):
                scenario.learn(entry, outcome)
            copies = [decode_write_entry(*encode_write_entry(entry)) for entry in batch]
            assert copies == batch
            assert second.apply(copies) == outcomes
            # Drawn after the batch before it is applied: later entries name versions,
            # uploads and parts that earlier ones made.
            batch = scenario.entries()
        assert first.engine.clock.last_hlc == second.engine.clock.last_hlc
        first_state, second_state = first.dump(), second.dump()
    assert first_state == second_state


def test_the_entry_time_is_the_engines_time(tmp_path: pathlib.Path) -> None:
    """Control for the property above: the same entries with OTHER times make other
    version ids, so equal dumps are not equal by accident."""
    dumps = []
    for run, start_ms in enumerate((START_MS, START_MS + 1)):
        replica = Replica(tmp_path / str(run), 8)
        try:
            replica.apply([
                make_entry("create_bucket", {"name": "b", "owner_id": "o"}, now_ms=start_ms),
                make_entry("commit_version", {"bucket": "b", "key": "k", "blob_id": None,
                                              "size_bytes": 1, "spec": PutSpec(etag="x")},
                           b"x", now_ms=start_ms),
            ])
            dumps.append(replica.dump())
        finally:
            replica.close()
    assert dumps[0][b"versions"] != dumps[1][b"versions"]
    assert dumps[0][b"buckets"] != dumps[1][b"buckets"]


def test_entries_refuse_what_cannot_be_replicated() -> None:
    from storage.api import CustomerKey

    key = CustomerKey.of(b"k" * 32)
    with pytest.raises(InvalidArgument, match="SSE-C"):
        make_entry("stage_chunk", {"blob_id": b"b" * 16, "chunk_index": 0,
                                   "customer_key": key}, b"x")
    with pytest.raises(InvalidArgument, match="not a replicable write"):
        make_entry("get_version", {"bucket": "b", "key": "k"})


def test_the_entry_codec_refuses_what_is_not_an_entry() -> None:
    import msgpack

    entry = make_entry("delete_object", {"bucket": "b", "key": "k"}, now_ms=5)
    control, payload = encode_write_entry(entry)
    assert payload is None and decode_write_entry(control, None) == entry
    with pytest.raises(EntryCodecError, match="cannot hold a builtin_function"):
        encode_write_entry(WriteEntry("delete_object", {"bucket": len}, None, 5))
    for garbage in (b"", b"\xc1", msgpack.packb([2, "delete_object", 5, {}]),
                    msgpack.packb([1, "get_version", 5, {}]),
                    msgpack.packb([1, "delete_object", -1, {}]),
                    msgpack.packb([1, "delete_object", 5, {"spec": msgpack.ExtType(1, msgpack.packb(
                        ["Verdict", "allow"]))}])):
        with pytest.raises(EntryCodecError):
            decode_write_entry(garbage, None)


def test_a_commit_applied_twice_cannot_take_a_committed_blob(tmp_path: pathlib.Path) -> None:
    """A retried commit whose first attempt was stored (a failover lost its answer): the
    second must fail, not make a second version owning the first one's chunks."""
    replica = Replica(tmp_path / "r", 8)
    try:
        blob_id = new_entry_blob_id(START_MS)
        spec = PutSpec(etag="e")
        first = b"a" * limits.chunk_size_bytes
        size_bytes = len(first) + 4
        commit = make_entry("commit_version", {
            "bucket": "b", "key": "k", "blob_id": blob_id, "size_bytes": size_bytes,
            "spec": spec, "tail_chunk_index": 1}, b"tail", now_ms=START_MS + 2)
        outcomes = replica.apply([
            make_entry("create_bucket", {"name": "b", "owner_id": "o"}, now_ms=START_MS),
            make_entry("stage_chunk", {"blob_id": blob_id, "chunk_index": 0}, first,
                       now_ms=START_MS + 1),
            commit, commit])
        assert outcomes[2].size_bytes == size_bytes
        assert outcomes[3] == ("InvalidArgument", "the upload was aborted or never staged")
        assert replica.engine.entry_counts()["versions"] == 1
    finally:
        replica.close()


def test_collect_staging_drops_only_bodies_staged_long_enough_ago(tmp_path: pathlib.Path
                                                                  ) -> None:
    replica = Replica(tmp_path / "r", 8)
    try:
        old, young = new_entry_blob_id(START_MS), new_entry_blob_id(START_MS + 1)
        outcomes = replica.apply([
            make_entry("stage_chunk", {"blob_id": old, "chunk_index": 0}, b"abandoned",
                       now_ms=START_MS),
            make_entry("stage_chunk", {"blob_id": old, "chunk_index": 1}, b"too",
                       now_ms=START_MS + 5),
            make_entry("stage_chunk", {"blob_id": young, "chunk_index": 0}, b"in flight",
                       now_ms=START_MS + 1000),
            make_entry("collect_staging", {"staged_before_ms": START_MS + 500},
                       now_ms=START_MS + 2000),
        ])
        assert outcomes[3] == 1
        counts = replica.engine.entry_counts()
        assert (counts["staging"], counts["chunks"]) == (1, 1)
        with replica.engine.env.begin() as txn:
            assert txn.get(young, db=replica.engine.staging) is not None
    finally:
        replica.close()
