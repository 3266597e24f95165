"""The durable side of a shard replica (storage/engine/replica.py): log, promise, applied
position in the effect's transaction, trimming, truncation, snapshots out and in."""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import pytest

from storage.api import NoSuchBucket, PutSpec
from storage.engine import Engine, GroupCommitWriter
from storage.engine.backup import Snapshot, save
from storage.engine.entries import WriteEntry, make_entry
from storage.engine.replica import (
    Applied,
    ReplicaState,
    StoredEntry,
    decode_stored,
    encode_stored,
    install_snapshot,
    prepare_snapshot,
)
from storage.engine.store import SUB_DATABASES

START_MS = 1_700_000_000_000


def put_entry(key: str, body: bytes, now_ms: int, bucket: str = "b") -> WriteEntry:
    return make_entry("commit_version", {
        "bucket": bucket, "key": key, "blob_id": None, "size_bytes": len(body),
        "spec": PutSpec(etag=hashlib.md5(body).hexdigest()), "tail_chunk_index": 0,
    }, body, now_ms=now_ms)


def log_entries(first: int, count: int, term: tuple[int, int] = (1, 0)) -> list[StoredEntry]:
    entries = []
    for index in range(first, first + count):
        if index == 1:
            entry: WriteEntry | None = make_entry(
                "create_bucket", {"name": "b", "owner_id": "o"}, now_ms=START_MS)
        elif index % 5 == 0:
            entry = None  # a leader's no-op
        else:
            entry = put_entry(f"k{index}", f"body {index}".encode() * index, START_MS + index)
        entries.append(StoredEntry(index, term, None if entry is None else f"w{index}", entry))
    return entries


class Replica:
    def __init__(self, data_dir: pathlib.Path) -> None:
        self.data_dir = data_dir
        self.engine = Engine(data_dir, durable=True, collect_staging_at_open=False)
        self.writer = GroupCommitWriter(self.engine)
        self.state = ReplicaState(self.engine)

    def run(self, operation: Any) -> Any:
        return self.writer.submit(operation).result(timeout=30)

    def close(self) -> None:
        self.writer.close()
        self.engine.close()

    def reopen(self) -> Replica:
        self.close()
        return Replica(self.data_dir)

    def data(self) -> dict[bytes, list[tuple[bytes, bytes]]]:
        with self.engine.env.begin() as txn:
            return {name: [(bytes(k), bytes(v)) for k, v in txn.cursor(
                db=self.engine.env.open_db(name, txn=txn, create=False))]
                for name in SUB_DATABASES if name != b"meta"}


@pytest.fixture
def replica(tmp_path: pathlib.Path) -> Any:
    opened = [Replica(tmp_path / "r")]
    yield opened
    opened[0].close()


def test_stored_entries_round_trip() -> None:
    for stored in log_entries(1, 6) + [StoredEntry(9, (3, 2), ("node", 7), make_entry(
            "stage_chunk", {"blob_id": b"x" * 16, "chunk_index": 0}, b"", now_ms=1))]:
        assert decode_stored(stored.index, encode_stored(stored)) == stored


def test_a_fresh_replica_recovers_nothing(replica: list[Replica]) -> None:
    recovery = replica[0].state.recover()
    assert (recovery.promised_term, recovery.applied_index, recovery.trimmed_index,
            recovery.entries) == ((0, 0), 0, 0, ())


def test_log_promise_and_applied_position_survive_a_restart(replica: list[Replica]) -> None:
    r = replica[0]
    r.run(r.state.save_term((2, 1)))
    entries = log_entries(1, 9)
    assert r.run(r.state.persist(entries[:4])) == 4
    assert r.run(r.state.persist(entries[4:])) == 9
    outcomes = [r.run(r.state.apply(stored)) for stored in entries[:6]]
    assert outcomes[0].error is None and outcomes[0].result.name == "b"
    assert outcomes[1].result.key == "k2" and outcomes[4] == Applied(5)  # the no-op
    replica[0] = r = r.reopen()
    recovery = r.state.recover()
    assert recovery.promised_term == (2, 1)
    assert (recovery.applied_index, recovery.applied_term) == (6, (1, 0))
    assert recovery.entries == tuple(entries)
    assert r.engine.get_version("b", "k6").size_bytes == len(b"body 6" * 6)
    with pytest.raises(Exception, match="NoSuchKey|k7"):
        r.engine.get_version("b", "k7")  # persisted, not applied


def test_contract_violations_are_assertions(replica: list[Replica]) -> None:
    r = replica[0]
    entries = log_entries(1, 4)
    r.run(r.state.persist(entries[:2]))
    r.run(r.state.save_term((3, 0)))
    with pytest.raises(AssertionError, match="never goes back"):
        r.run(r.state.save_term((2, 5)))
    with pytest.raises(AssertionError, match="past the log's end"):
        r.run(r.state.persist(entries[3:]))
    with pytest.raises(AssertionError, match="out of order"):
        r.run(r.state.apply(entries[1]))
    r.run(r.state.apply(entries[0]))
    with pytest.raises(AssertionError, match="truncating applied"):
        r.run(r.state.truncate(1))
    with pytest.raises(AssertionError, match="trimming unapplied"):
        r.run(r.state.trim(2, (1, 0)))
    assert r.state.recover().applied_index == 1


def test_truncate_then_persist_a_new_suffix(replica: list[Replica]) -> None:
    r = replica[0]
    older = log_entries(1, 6)
    r.run(r.state.persist(older))
    r.run(r.state.apply(older[0]))
    r.run(r.state.truncate(4))
    newer = log_entries(4, 3, term=(2, 0))
    r.run(r.state.persist(newer))
    recovery = r.state.recover()
    assert recovery.entries == tuple(older[:3] + newer)


def test_an_entry_that_fails_still_advances_the_position(replica: list[Replica]) -> None:
    r = replica[0]
    failing = StoredEntry(1, (1, 0), "w1", put_entry("k", b"x", START_MS, bucket="gone"))
    r.run(r.state.persist([failing]))
    outcome = r.run(r.state.apply(failing))
    assert isinstance(outcome.error, NoSuchBucket) and outcome.result is None
    assert r.state.recover().applied_index == 1
    assert r.engine.entry_counts()["versions"] == 0


def test_trim_keeps_the_tail_and_the_trimmed_position(replica: list[Replica]) -> None:
    r = replica[0]
    entries = log_entries(1, 8)
    r.run(r.state.persist(entries))
    for stored in entries[:6]:
        r.run(r.state.apply(stored))
    r.run(r.state.trim(4, (1, 0)))
    r.run(r.state.trim(3, (1, 0)))  # already trimmed further: nothing
    replica[0] = r = r.reopen()
    recovery = r.state.recover()
    assert (recovery.trimmed_index, recovery.trimmed_term) == (4, (1, 0))
    assert recovery.entries == tuple(entries[4:])
    r.run(r.state.persist(log_entries(9, 1)))
    assert r.state.recover().entries[-1].index == 9


@pytest.mark.parametrize("keep_log_tail", [True, False])
def test_snapshot_out_and_in(tmp_path: pathlib.Path, keep_log_tail: bool) -> None:
    leader = Replica(tmp_path / "leader")
    follower = Replica(tmp_path / "follower")
    try:
        entries = log_entries(1, 12)
        leader.run(leader.state.save_term((4, 0)))
        leader.run(leader.state.persist(entries))
        for stored in entries[:10]:
            leader.run(leader.state.apply(stored))
        leader.run(leader.state.trim(8, (1, 0)))
        # The follower is behind, with a promise of its own and a log tail of its own.
        follower.run(follower.state.save_term((4, 1)))
        follower.run(follower.state.persist(entries[:11]))
        follower.run(follower.state.apply(entries[0]))
        local = follower.state.recover()

        staged = tmp_path / "staged"
        snapshot = Snapshot(leader.engine.env)
        try:
            save(staged, iter(snapshot.read, b""), snapshot.bound)
        finally:
            snapshot.close()
        assert prepare_snapshot(staged, local, keep_log_tail) == (10, (1, 0))
        follower.close()
        install_snapshot(staged, follower.data_dir)
        follower = Replica(follower.data_dir)
        recovery = follower.state.recover()
        assert recovery.promised_term == (4, 1)
        assert (recovery.applied_index, recovery.trimmed_index) == (10, 10)
        assert recovery.entries == (tuple(entries[10:11]) if keep_log_tail else ())
        assert follower.data() == leader.data()
        assert follower.engine.clock.last_hlc == leader.engine.clock.last_hlc
        # It goes on from there like any replica.
        follower.run(follower.state.persist(entries[10 + keep_log_tail:]))
        follower.run(follower.state.apply(entries[10]))
        assert follower.engine.get_version("b", "k11").size_bytes > 0
    finally:
        leader.close()
        follower.close()
