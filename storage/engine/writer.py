"""Group commit: ONE writer thread owns every LMDB write transaction.

Rules and theory of operation:

* Callers ``submit`` an operation and get a ``concurrent.futures.Future``. The queue is
  bounded (``limits.write_queue_length_max``); a full queue raises ``Overloaded`` at once
  instead of growing.
* The writer takes up to ``group_commit_writes_max`` operations and
  ``group_commit_bytes_max`` payload bytes (at least one operation) and applies them, in
  submission order, inside ONE write transaction. Each operation runs in its own child
  (nested) transaction: one that raises is rolled back alone and the others still commit.
* Only after the group's transaction commits (durable mode: fsynced by LMDB before
  ``commit`` returns) are the futures resolved, so a resolved future means "on disk".
  If the commit itself fails, every operation of the group fails with that error.
* ``close`` stops accepting, lets the writer drain what was queued, and joins it.
* A future the caller cancelled before the writer reached it is skipped (never applied).
* Change counters (``ChangeCounters``): each operation says which (bucket, scope) it may
  change (``WriteOperation.changes``; None: it cannot say, so it changes everything).
  After the group's transaction commits and BEFORE any future of the group is resolved,
  the writer bumps those counters. So once a write is acknowledged, a reader on any
  thread sees a counter value it never saw before the write was visible: a cache that
  reads the counter BEFORE its lookup and keeps (counter, result) can reuse the result
  while the counter is unchanged and never serve what an acknowledged write replaced.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import lmdb

from storage.api import Overloaded, StorageError, limits
from storage.engine.store import Engine

# What an operation may change: (bucket, scope), scope one of ``api.CHANGE_SCOPES``.
Change = tuple[str, str]

# An operation is applied as ``apply(engine, child_txn)``; its return value resolves the
# future. ``payload_bytes`` counts towards the group's byte bound.
ApplyFunction = Callable[[Engine, lmdb.Transaction], Any]


@dataclass(frozen=True, slots=True)
class WriteOperation:
    apply: ApplyFunction
    payload_bytes: int = 0
    name: str = "write"
    # What it may change, for ``ChangeCounters``: () nothing a reader can see (staging);
    # None: anything (the safe default for an operation that does not say).
    changes: tuple[Change, ...] | None = None


class ChangeCounters:
    """Per (bucket, scope) numbers that grow when a committed write may have changed it.

    Every bump takes a fresh value of one node-wide sequence, so a value is never seen
    twice for different states. Counters live in a dict bounded by
    ``limits.change_counters_max``: when it is full (or an operation cannot say what it
    changes), the dict is replaced by an empty one whose default (``floor``) is a fresh
    sequence value, which changes every counter at once. The writer thread bumps; any
    thread reads. The (floor, counts) pair is replaced as ONE reference, so a reader never
    pairs a new dict with an old floor.
    """

    def __init__(self, counters_max: int = limits.change_counters_max) -> None:
        assert counters_max >= 1
        self._counters_max = counters_max
        self._sequence = 0
        self._state: tuple[int, dict[Change, int]] = (0, {})

    def count(self, bucket: str, scope: str) -> int:
        floor, counts = self._state
        return counts.get((bucket, scope), floor)

    def bump(self, changes: tuple[Change, ...] | None) -> None:
        """From the writer thread, after a commit and before its futures resolve."""
        self._sequence += 1
        floor, counts = self._state
        if changes is None or len(counts) + len(changes) > self._counters_max:
            self._state = (self._sequence, {})
            return
        for change in changes:
            counts[change] = self._sequence


@dataclass(slots=True)
class _Pending:
    operation: WriteOperation
    future: Future[Any] = field(default_factory=Future)


class WriterClosed(StorageError):
    """The writer no longer accepts operations (the node is shutting down)."""


@dataclass(slots=True)
class WriterStats:
    groups_committed: int = 0
    operations_applied: int = 0
    operations_failed: int = 0


class GroupCommitWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        queue_length_max: int = limits.write_queue_length_max,
        group_writes_max: int = limits.group_commit_writes_max,
        group_bytes_max: int = limits.group_commit_bytes_max,
    ) -> None:
        assert queue_length_max > 0 and group_writes_max > 0 and group_bytes_max > 0
        self._engine = engine
        self._queue_length_max = queue_length_max
        self._group_writes_max = group_writes_max
        self._group_bytes_max = group_bytes_max
        self._queue: collections.deque[_Pending] = collections.deque()
        self._condition = threading.Condition()
        self._closing = False
        self.stats = WriterStats()
        self.changes = ChangeCounters()
        self._thread = threading.Thread(target=self._run, name="squall-writer", daemon=True)
        self._thread.start()

    def submit(self, operation: WriteOperation, bounded: bool = True) -> Future[Any]:
        """``bounded=False``: past the queue's bound too, for a caller that bounds what it
        has in flight itself and must not be refused (a replica's log and applies)."""
        pending = _Pending(operation)
        with self._condition:
            if self._closing:
                raise WriterClosed("the storage writer is closed")
            if bounded and len(self._queue) >= self._queue_length_max:
                raise Overloaded(f"write queue full ({self._queue_length_max} operations)")
            self._queue.append(pending)
            self._condition.notify()
        return pending.future

    def close(self) -> None:
        """Stop accepting, apply everything already queued, and join the thread."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join()

    # --- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            self._apply_group(group)

    def _next_group(self) -> list[_Pending] | None:
        with self._condition:
            while not self._queue and not self._closing:
                self._condition.wait()
            if not self._queue:
                return None
            group = [self._queue.popleft()]
            group_bytes = group[0].operation.payload_bytes
            while self._queue and len(group) < self._group_writes_max:
                next_bytes = self._queue[0].operation.payload_bytes
                if group_bytes + next_bytes > self._group_bytes_max:
                    break
                group.append(self._queue.popleft())
                group_bytes += next_bytes
            return group

    def _apply_group(self, group: list[_Pending]) -> None:
        running = [p for p in group if p.future.set_running_or_notify_cancel()]
        if not running:
            return
        outcomes: list[tuple[_Pending, Any, BaseException | None]] = []
        try:
            with self._engine.env.begin(write=True) as txn:
                for pending in running:
                    outcomes.append(self._apply_one(txn, pending))
                self._engine.record_clock(txn)
        except Exception as group_error:
            # The group's transaction did not commit (an LMDB error such as MapFullError,
            # or a bug): nothing of it is on disk, so every operation of it fails.
            outcomes = [(pending, None, group_error) for pending in running]
        # Before any future resolves (see the module's rules); failed operations bump too
        # (harmless: a cache only looks up once more).
        for pending in running:
            if pending.operation.changes != ():
                self.changes.bump(pending.operation.changes)
        self.stats.groups_committed += 1
        for pending, result, error in outcomes:
            if error is None:
                self.stats.operations_applied += 1
                pending.future.set_result(result)
            else:
                self.stats.operations_failed += 1
                pending.future.set_exception(error)

    def _apply_one(
        self, txn: lmdb.Transaction, pending: _Pending
    ) -> tuple[_Pending, Any, BaseException | None]:
        child = self._engine.env.begin(write=True, parent=txn)
        try:
            result = pending.operation.apply(self._engine, child)
        except Exception as error:
            # A typed StorageError, or a bug / LMDB error: either way it is rolled back
            # alone and surfaces to the caller that submitted it.
            child.abort()
            return pending, None, error
        child.commit()
        return pending, result, None
