"""Child process of test_replica_crash: a replica that persists and applies log entries
as fast as it can (durable mode, several operations queued at once so groups form), and
prints ``applied <index>`` once an entry's apply is durable. Killed with -9.

Entry i (from the recovered position on) PUTs key ``k<i>`` with a body derived from i;
every fifth is a no-op; entry 1 creates the bucket."""

from __future__ import annotations

import collections
import hashlib
import pathlib
import sys

from storage.api import PutSpec
from storage.engine import Engine, GroupCommitWriter
from storage.engine.entries import WriteEntry, make_entry
from storage.engine.replica import ReplicaState, StoredEntry

IN_FLIGHT = 16


def body_of(index: int) -> bytes:
    return hashlib.sha256(str(index).encode()).digest() * (1 + index % 50)


def entry_of(index: int) -> StoredEntry:
    entry: WriteEntry | None
    if index == 1:
        entry = make_entry("create_bucket", {"name": "b", "owner_id": "o"}, now_ms=1_000)
    elif index % 5 == 0:
        entry = None
    else:
        body = body_of(index)
        entry = make_entry("commit_version", {
            "bucket": "b", "key": f"k{index}", "blob_id": None, "size_bytes": len(body),
            "spec": PutSpec(etag=hashlib.md5(body).hexdigest())}, body, now_ms=1_000 + index)
    return StoredEntry(index, (1, 0), None if entry is None else index, entry)


def main(data_dir: pathlib.Path) -> None:
    engine = Engine(data_dir, durable=True, collect_staging_at_open=False)
    writer = GroupCommitWriter(engine)
    state = ReplicaState(engine)
    recovery = state.recover()
    index = recovery.trimmed_index + len(recovery.entries)
    applying = recovery.applied_index
    print("ready", flush=True)
    pending: collections.deque = collections.deque()
    while True:
        # Persist the next entry, then apply the oldest persisted-but-unapplied one.
        index += 1
        writer.submit(state.persist([entry_of(index)]))
        applying += 1
        pending.append((applying, writer.submit(state.apply(entry_of(applying)))))
        if applying % 200 == 0:
            pending.append((None, writer.submit(state.trim(applying - 100, (1, 0)))))
        while len(pending) > IN_FLIGHT:
            applied, future = pending.popleft()
            future.result()
            if applied is not None:
                print(f"applied {applied}", flush=True)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
