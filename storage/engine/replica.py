"""The durable side of a shard replica: its log, its promise and its applied position, in
the shard's own LMDB environment (one environment per shard a node holds).

Rules and theory of operation (the replication core's "driver's contract",
``storage/replication/core.py``):

* The log is the sub-database ``replication_log``: key = the entry's index (u64
  big-endian, so LMDB keeps the log in order), value = ``u32 header length + header +
  payload``, the header being msgpack ``[epoch, round, write_id, entry control or
  None, has payload]`` (None: a leader's no-op) and the payload the entry's bytes, apart, as they
  came. The log holds the entries after ``(trimmed index, trimmed term)``, contiguous.
* ``meta`` holds the promised term, the applied position (index, term) and the trimmed
  position, each one record. The applied position is written in the SAME transaction as
  the entry's effect (``apply``): a crash leaves both or neither, so a restarted replica
  never applies an entry twice nor skips one. An effect that raises a typed
  ``StorageError`` (a PUT to a bucket that is gone) is rolled back alone and the
  position still advances: the error is the entry's deterministic outcome, the same on
  every replica (``Applied.error``).
* Every change is a writer operation (``save_term``, ``persist``, ``truncate``,
  ``trim``, ``apply``): the driver submits them to the shard's ONE writer, which keeps
  their order, and a resolved future means durable (durable mode). Reads
  (``recover``) are for start-up.
* Assertions guard the contract: persisted entries extend the log's end with contiguous
  indices, nothing applied is truncated, nothing unapplied is trimmed, entries are
  applied one after another, a promise never goes back.
* Snapshots: out, ``backup.Snapshot`` of the whole environment (one read transaction:
  the applied state and its position together). In, ``prepare_snapshot`` fixes a staged
  copy up in place (this replica's promise, the log reduced to this replica's own tail
  after the snapshot if asked), and ``install_snapshot`` renames it over the closed
  environment's data file: a crash before the rename leaves the old state, after it the
  new one, never a mix.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import struct
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import lmdb
import msgpack

from storage.api import StorageError
from storage.engine.backup import fsync_path
from storage.engine.entries import (
    WriteEntry,
    decode_write_entry,
    encode_write_entry,
    operation_for_entry,
)
from storage.engine.store import Engine
from storage.engine.writer import WriteOperation

LOG_DATABASE = b"replication_log"
_META_PROMISED = b"replica_promised_term"
_META_APPLIED = b"replica_applied"
_META_TRIMMED = b"replica_trimmed"
_INDEX = struct.Struct(">Q")
_POSITION = struct.Struct(">QQQ")  # index, epoch, round
_TERM = struct.Struct(">QQ")  # epoch, round
_HEADER_LENGTH = struct.Struct(">I")

TermPair = tuple[int, int]  # (epoch, round): the replication core's Term as plain ints


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One log entry as the engine keeps it (the core's ``LogEntry`` without its size)."""

    index: int
    term: TermPair
    write_id: Hashable
    entry: WriteEntry | None  # None: a leader's no-op


@dataclass(frozen=True, slots=True)
class ReplicaRecovery:
    """What a replica reads back at start (the core's ``Recovered``, in plain values)."""

    promised_term: TermPair
    applied_index: int
    applied_term: TermPair
    trimmed_index: int
    trimmed_term: TermPair
    entries: tuple[StoredEntry, ...]


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of applying one entry: the write's result, or the typed error it
    raised (rolled back; the position advanced all the same)."""

    index: int
    result: Any = None
    error: StorageError | None = None


def encode_stored(stored: StoredEntry) -> bytes:
    control, payload = (None, None) if stored.entry is None else encode_write_entry(stored.entry)
    header = msgpack.packb([stored.term[0], stored.term[1], stored.write_id, control,
                            payload is not None], use_bin_type=True)
    return b"".join((_HEADER_LENGTH.pack(len(header)), header, payload or b""))


def decode_stored(index: int, value: bytes | memoryview) -> StoredEntry:
    view = memoryview(value)
    (header_length,) = _HEADER_LENGTH.unpack_from(view)
    header_end = _HEADER_LENGTH.size + header_length
    epoch, round_, write_id, control, has_payload = msgpack.unpackb(
        view[_HEADER_LENGTH.size:header_end], raw=False, use_list=False)
    entry = None
    if control is not None:
        entry = decode_write_entry(control, bytes(view[header_end:]) if has_payload else None)
    return StoredEntry(index, (epoch, round_), write_id, entry)


class ReplicaState:
    """The durable replica state of the shard whose environment ``engine`` opened."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.log = engine.env.open_db(LOG_DATABASE)

    # --- start-up ------------------------------------------------------------------------

    def recover(self) -> ReplicaRecovery:
        with self.engine.env.begin() as txn:
            promised = _read_term(txn, self.engine.meta, _META_PROMISED)
            applied_index, applied_term = _read_position(txn, self.engine.meta, _META_APPLIED)
            trimmed_index, trimmed_term = _read_position(txn, self.engine.meta, _META_TRIMMED)
            entries = tuple(decode_stored(_INDEX.unpack(key)[0], value)
                            for key, value in txn.cursor(db=self.log))
        expected = trimmed_index + 1
        for stored in entries:
            assert stored.index == expected, ("log not contiguous", stored.index, expected)
            expected += 1
        assert trimmed_index <= applied_index <= trimmed_index + len(entries), \
            (trimmed_index, applied_index, len(entries))
        return ReplicaRecovery(promised, applied_index, applied_term, trimmed_index,
                               trimmed_term, entries)

    # --- writer operations ---------------------------------------------------------------

    def save_term(self, term: TermPair) -> WriteOperation:
        def apply(engine: Engine, txn: lmdb.Transaction) -> None:
            promised = _read_term(txn, engine.meta, _META_PROMISED)
            assert term >= promised, ("a promise never goes back", term, promised)
            txn.put(_META_PROMISED, _TERM.pack(*term), db=engine.meta)

        return WriteOperation(apply, name="save_term", changes=())

    def persist(self, entries: Sequence[StoredEntry]) -> WriteOperation:
        assert entries
        encoded = [(_INDEX.pack(s.index), encode_stored(s)) for s in entries]
        first_index = entries[0].index
        for offset, stored in enumerate(entries):
            assert stored.index == first_index + offset

        def apply(engine: Engine, txn: lmdb.Transaction) -> int:
            assert first_index == self._end(txn) + 1, ("persist past the log's end",
                                                       first_index, self._end(txn))
            for key, value in encoded:
                txn.put(key, value, db=self.log, append=True)
            return entries[-1].index

        return WriteOperation(apply, payload_bytes=sum(len(v) for _, v in encoded),
                              name="persist", changes=())

    def truncate(self, from_index: int) -> WriteOperation:
        def apply(engine: Engine, txn: lmdb.Transaction) -> None:
            applied_index, _ = _read_position(txn, engine.meta, _META_APPLIED)
            assert from_index > applied_index, ("truncating applied entries", from_index,
                                                applied_index)
            cursor = txn.cursor(db=self.log)
            if cursor.set_range(_INDEX.pack(from_index)):
                while cursor.delete():
                    pass

        return WriteOperation(apply, name="truncate_log", changes=())

    def trim(self, through_index: int, term: TermPair) -> WriteOperation:
        def apply(engine: Engine, txn: lmdb.Transaction) -> None:
            applied_index, _ = _read_position(txn, engine.meta, _META_APPLIED)
            trimmed_index, _ = _read_position(txn, engine.meta, _META_TRIMMED)
            assert through_index <= applied_index, ("trimming unapplied entries",
                                                    through_index, applied_index)
            if through_index <= trimmed_index:
                return
            cursor = txn.cursor(db=self.log)
            while cursor.first() and _INDEX.unpack(cursor.key())[0] <= through_index:
                cursor.delete()
            txn.put(_META_TRIMMED, _POSITION.pack(through_index, *term), db=engine.meta)

        return WriteOperation(apply, name="trim_log", changes=())

    def apply(self, stored: StoredEntry) -> WriteOperation:
        """The entry's effect and the applied position, in one transaction."""
        effect = None if stored.entry is None else operation_for_entry(stored.entry)

        def apply(engine: Engine, txn: lmdb.Transaction) -> Applied:
            applied_index, _ = _read_position(txn, engine.meta, _META_APPLIED)
            assert stored.index == applied_index + 1, ("applied out of order", stored.index,
                                                       applied_index)
            outcome = Applied(stored.index)
            if effect is not None:
                child = engine.env.begin(write=True, parent=txn)
                try:
                    result = effect.apply(engine, child)
                except StorageError as error:
                    child.abort()
                    outcome = Applied(stored.index, error=error)
                else:
                    child.commit()
                    outcome = Applied(stored.index, result)
            txn.put(_META_APPLIED, _POSITION.pack(stored.index, *stored.term), db=engine.meta)
            return outcome

        return WriteOperation(apply, payload_bytes=0 if effect is None else effect.payload_bytes,
                              name="apply" if effect is None else f"apply:{effect.name}",
                              changes=None if effect is None else effect.changes)

    def _end(self, txn: lmdb.Transaction) -> int:
        cursor = txn.cursor(db=self.log)
        if cursor.last():
            index: int = _INDEX.unpack(cursor.key())[0]
            return index
        trimmed_index, _ = _read_position(txn, self.engine.meta, _META_TRIMMED)
        return trimmed_index


def _read_term(txn: lmdb.Transaction, meta: Any, name: bytes) -> TermPair:
    packed = txn.get(name, db=meta)
    if packed is None:
        return (0, 0)
    epoch, round_ = _TERM.unpack(packed)
    return (epoch, round_)


def _read_position(txn: lmdb.Transaction, meta: Any, name: bytes) -> tuple[int, TermPair]:
    packed = txn.get(name, db=meta)
    if packed is None:
        return 0, (0, 0)
    index, epoch, round_ = _POSITION.unpack(packed)
    return index, (epoch, round_)


# --- snapshots in ------------------------------------------------------------------------


def snapshot_position(staged_dir: pathlib.Path) -> tuple[int, TermPair]:
    """The applied position a staged snapshot (a copy of a replica's environment) holds."""
    env = lmdb.open(str(staged_dir), max_dbs=16, readonly=True, lock=False)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            return _read_position(txn, meta, _META_APPLIED)
    finally:
        env.close()


def prepare_snapshot(staged_dir: pathlib.Path, local: ReplicaRecovery, keep_log_tail: bool
                     ) -> tuple[int, TermPair]:
    """Make the staged copy this replica's next state: its applied position stays the
    snapshot's; the promise is this replica's; the log is emptied and, with
    ``keep_log_tail``, given this replica's own entries after the snapshot's index."""
    env = lmdb.open(str(staged_dir), max_dbs=16, sync=True, metasync=True)
    try:
        meta = env.open_db(b"meta")
        log = env.open_db(LOG_DATABASE)
        with env.begin(write=True) as txn:
            index, term = _read_position(txn, meta, _META_APPLIED)
            txn.drop(log, delete=False)
            txn.put(_META_PROMISED, _TERM.pack(*local.promised_term), db=meta)
            txn.put(_META_TRIMMED, _POSITION.pack(index, *term), db=meta)
            if keep_log_tail:
                for stored in local.entries:
                    if stored.index > index:
                        txn.put(_INDEX.pack(stored.index), encode_stored(stored), db=log)
        env.sync(True)
    finally:
        env.close()
    return index, term


def install_snapshot(staged_dir: pathlib.Path, data_dir: pathlib.Path) -> None:
    """Rename the prepared copy over ``data_dir``'s data file (its environment closed)."""
    staged_file = staged_dir / "data.mdb"
    assert staged_file.exists()
    fsync_path(staged_file)
    os.replace(staged_file, data_dir / "data.mdb")
    fsync_path(data_dir)
    lock_file = data_dir / "lock.mdb"
    if lock_file.exists():
        lock_file.unlink()  # no reader can be left: the environment was closed
    shutil.rmtree(staged_dir, ignore_errors=True)
