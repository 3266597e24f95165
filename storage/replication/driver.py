"""The replication driver: runs one shard's ``ReplicaCore`` on a node, doing its I/O.

Rules and theory of operation (the core's "driver's contract", ``core``):

* One asyncio task per shard (``run``) takes events one at a time, steps the core and
  performs the actions it returns, in order, before it takes the next event. Events
  come from two queues: *internal* ones the driver made itself (``Persisted``,
  ``SnapshotFetched`` / ``SnapshotFetchFailed``, ``ReadyConfirmed``), which are never
  dropped and are bounded by what the driver has in flight, go first; *external* ones
  (``Tick``, peers' messages, client writes) wait in a queue bounded by
  ``limits.replication_driver_events_max``: a message that finds it full is dropped
  (the core retransmits), a client write that finds it full is ``Overloaded``, a tick
  that finds it full is skipped (the queue is not idle).
* Disk: ``SaveTerm`` and ``InstallSnapshot`` are awaited before the next action.
  ``Persist``, ``TruncateLog``, ``TrimLog`` and ``Apply`` go to the shard's ONE writer
  (``GroupCommitWriter``: one ordered queue) without waiting; each ``Persist``'s future
  feeds back ``Persisted(last index)`` through the internal queue, in order (the writer
  resolves futures in submission order and ``call_soon_threadsafe`` keeps it). A writer
  operation that FAILS stops the driver (``ReplicaFailed``): the replica's disk no
  longer follows its log, so it must not go on (the process exits; restarting recovers
  from what is durable).
* Client writes: ``write(entry)`` gives the entry a write id (node id, incarnation,
  counter: unique across restarts), enqueues ``ClientWrite`` and waits, at most
  ``limits.replication_write_timeout_ms``, for the core's ``Reply``. ``Committed``: the
  entry's ``Apply`` was submitted before the reply, so its outcome (the write's result,
  or its typed error) is awaited and returned or raised. ``NotLeader`` is
  ``NotShardLeader`` (the client goes to ``leader``); ``NotCommitted``, ``Indeterminate``,
  ``Overloaded`` and a timeout are ``ReplicationUnavailable`` (503 SlowDown; the message
  says whether a retry may store the write twice).
* Messages are sent best effort (``send`` hands them to the node's peer link, which
  bounds what it has in flight). Snapshots are fetched by a task of their own
  (``fetch_snapshot``), staged beside the shard's environment and installed
  synchronously: the shard's engine is closed, the staged copy prepared and renamed
  over it, and the engine reopened (``ShardStore.reopen``).
* Membership: ``ViewReady`` is confirmed through the agreement by one task at a time
  (repeated actions while one is in flight are dropped; the core repeats);
  ``CaughtUp`` is reported to it the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pathlib
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from storage import limits
from storage.api import NotShardLeader, Overloaded, ReplicationUnavailable, StorageError
from storage.engine.entries import WriteEntry
from storage.engine.replica import (
    Applied,
    ReplicaRecovery,
    ReplicaState,
    StoredEntry,
    install_snapshot,
    prepare_snapshot,
)
from storage.node import StorageNode
from storage.placement import View
from storage.replication import core
from storage.replication.core import LogEntry, Term
from storage.replication.messages import entry_size_bytes

_log = logging.getLogger(__name__)


class ReplicaFailed(RuntimeError):
    """A replica's disk operation failed: the node must stop (a bug or a full disk)."""


class Membership(Protocol):
    async def confirm_ready(self, shard: int, epoch: int) -> bool: ...

    async def report_caught_up(self, shard: int, node: str, epoch: int) -> None: ...


class Peers(Protocol):
    def send(self, to: str, shard: int, message: core.Message) -> None: ...

    async def fetch_snapshot(self, source: str, shard: int, staged_dir: pathlib.Path) -> None: ...


class ShardStore(Protocol):
    """The shard's engine and writer (a ``StorageNode``), reopened after a snapshot."""

    @property
    def node(self) -> StorageNode: ...

    @property
    def data_dir(self) -> pathlib.Path: ...

    async def reopen(self, replace: Callable[[], None]) -> StorageNode: ...


def recovered_of(recovery: ReplicaRecovery) -> core.Recovered:
    return core.Recovered(
        promised_term=Term(*recovery.promised_term),
        applied_index=recovery.applied_index,
        applied_term=Term(*recovery.applied_term),
        log_trimmed_index=recovery.trimmed_index,
        log_trimmed_term=Term(*recovery.trimmed_term),
        entries=tuple(_log_entry(stored) for stored in recovery.entries),
    )


def _log_entry(stored: StoredEntry) -> LogEntry:
    size = 0 if stored.entry is None else entry_size_bytes(stored.entry)
    return LogEntry(stored.index, Term(*stored.term), stored.write_id, stored.entry, size)


def _stored(entry: LogEntry) -> StoredEntry:
    assert entry.payload is None or isinstance(entry.payload, WriteEntry)
    return StoredEntry(entry.index, (entry.term.epoch, entry.term.round), entry.write_id,
                       entry.payload)


@dataclass(slots=True)
class _ClientWait:
    outcome: asyncio.Future[core.Outcome]
    applying: Future[Applied] | None = None


class ShardDriver:
    def __init__(
        self,
        node_id: str,
        shard: int,
        store: ShardStore,
        peers: Peers,
        membership: Membership,
        *,
        settings: core.Settings = core.DEFAULT_SETTINGS,
        tick_ms: int = limits.replication_tick_ms,
        events_max: int = limits.replication_driver_events_max,
        write_timeout_ms: int = limits.replication_write_timeout_ms,
        read_lease_ms: int = limits.replication_read_lease_ms,
    ) -> None:
        assert write_timeout_ms > 0 and tick_ms > 0 and read_lease_ms > 0
        self.node_id = node_id
        self.shard = shard
        self._store = store
        self._peers = peers
        self._membership = membership
        self._settings = settings
        self._tick_ms = tick_ms
        self._write_timeout_ms = write_timeout_ms
        self._read_lease_ms = read_lease_ms
        self._last_heard: dict[str, float] = {}  # peer -> loop time of its last message
        self._state = ReplicaState(store.node.engine)
        self.core = core.ReplicaCore(node_id, shard, recovered_of(self._state.recover()),
                                     settings)
        self._external: asyncio.Queue[core.Event] = asyncio.Queue(events_max)
        self._internal: deque[core.Event] = deque()
        self._wake = asyncio.Event()
        self._waits: dict[Any, _ClientWait] = {}
        self._incarnation = time.time_ns()
        self._write_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready_in_flight = False
        self._reporting: set[tuple[str, int]] = set()
        self._failure: BaseException | None = None
        self.view: View | None = None
        self._loop = asyncio.get_running_loop()  # constructed on the loop it runs on
        self.staged_dir = pathlib.Path(f"{store.data_dir}.staged")

    # --- what the node calls -------------------------------------------------------------

    @property
    def is_ready_leader(self) -> bool:
        return self.core.role is core.Role.READY

    def serves_reads(self) -> bool:
        """A READY leader that heard from every member of its view within
        ``read_lease_ms`` (members answer every heartbeat). A leader cut off from them
        stops serving reads before the others can have suspected it and agreed a view
        without it (``limits.replication_read_lease_ms`` < the suspicion time), so it
        never serves a read older than a write acknowledged by a newer leader."""
        if not self.is_ready_leader or self.view is None:
            return False
        now = asyncio.get_running_loop().time()
        lease_s = self._read_lease_ms / 1000
        return all(now - self._last_heard.get(member, -lease_s - 1) <= lease_s
                   for member in self.view.members(self.shard) if member != self.node_id)

    @property
    def leader(self) -> str | None:
        return None if self.view is None else self.view.leader(self.shard)

    def view_installed(self, view: View) -> None:
        self.view = view
        self._push_internal(core.ViewInstalled(view))

    def received(self, sender: str, message: core.Message) -> None:
        self._last_heard[sender] = asyncio.get_running_loop().time()
        try:
            self._external.put_nowait(core.Received(sender, message))
        except asyncio.QueueFull:
            pass  # best effort: the sender retransmits

    async def write(self, entry: WriteEntry) -> Any:
        """Replicate ``entry`` and return its outcome on this node (module rules)."""
        if self._failure is not None:
            raise ReplicationUnavailable(f"shard {self.shard} replica stopped") from None
        write_id = (self.node_id, self._incarnation, next(self._write_ids))
        loop = asyncio.get_running_loop()
        wait = _ClientWait(loop.create_future())
        try:
            self._external.put_nowait(core.ClientWrite(write_id, entry, entry_size_bytes(entry)))
        except asyncio.QueueFull:
            raise Overloaded(f"shard {self.shard}: replication queue full") from None
        self._waits[write_id] = wait
        try:
            async with asyncio.timeout(self._write_timeout_ms / 1000):
                outcome = await wait.outcome
        except TimeoutError:
            raise ReplicationUnavailable(
                f"shard {self.shard}: the write was not acknowledged by every replica within "
                f"{self._write_timeout_ms} ms; it may still be stored") from None
        finally:
            self._waits.pop(write_id, None)
        if isinstance(outcome, core.Committed):
            assert wait.applying is not None, "the core replies Committed after Apply"
            applied = await asyncio.wrap_future(wait.applying)
            if applied.error is not None:
                raise applied.error
            return applied.result
        if isinstance(outcome, core.NotLeader):
            raise NotShardLeader(f"node {self.node_id} does not lead shard {self.shard}",
                                 outcome.leader)
        if isinstance(outcome, core.Overloaded):
            raise Overloaded(f"shard {self.shard}: too many writes pending")
        if isinstance(outcome, core.NotCommitted):
            raise ReplicationUnavailable(f"shard {self.shard}: not stored ({outcome.reason})")
        raise ReplicationUnavailable(
            f"shard {self.shard}: the leader changed under the write ({outcome.reason}); it "
            "may still be stored")

    async def run(self, view: View) -> None:
        """Feed the current view first, then events until cancelled; raises
        ``ReplicaFailed`` if a disk operation failed."""
        self.view_installed(view)
        ticker = asyncio.create_task(self._tick_forever())
        try:
            while True:
                event = await self._next_event()
                await self._perform(self.core.step(event))
        finally:
            ticker.cancel()
            for task in list(self._tasks):
                task.cancel()
            for wait in self._waits.values():
                if not wait.outcome.done():
                    wait.outcome.set_result(core.Indeterminate("the replica stopped"))

    # --- events --------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_ms / 1000)
            if self._external.qsize() < self._external.maxsize // 2:
                self._external.put_nowait(core.Tick())

    def _push_internal(self, event: core.Event) -> None:
        self._internal.append(event)
        self._wake.set()

    async def _next_event(self) -> core.Event:
        while True:
            if self._failure is not None:  # set by a writer thread's callback (_check_disk)
                raise ReplicaFailed(f"shard {self.shard}: {self._failure!r}") \
                    from self._failure
            if self._internal:
                return self._internal.popleft()
            if not self._external.empty():
                return self._external.get_nowait()
            self._wake.clear()
            getter = asyncio.ensure_future(self._external.get())
            waker = asyncio.ensure_future(self._wake.wait())
            done, _ = await asyncio.wait({getter, waker}, return_when=asyncio.FIRST_COMPLETED)
            waker.cancel()
            if getter in done:
                event = getter.result()
                if self._internal:
                    self._internal.append(event)  # internal ones first, this one after
                    continue
                return event
            getter.cancel()

    # --- actions -------------------------------------------------------------------------

    async def _perform(self, actions: list[core.Action]) -> None:
        for action in actions:
            handler = getattr(self, f"_do_{type(action).__name__}")
            result = handler(action)
            if isinstance(result, Awaitable):
                await result

    def _do_Send(self, action: core.Send) -> None:
        self._peers.send(action.to, self.shard, action.message)

    async def _do_SaveTerm(self, action: core.SaveTerm) -> None:
        await asyncio.wrap_future(self._submit(self._state.save_term(
            (action.term.epoch, action.term.round))))

    def _do_Persist(self, action: core.Persist) -> None:
        last_index = action.entries[-1].index
        future = self._submit(self._state.persist([_stored(e) for e in action.entries]))
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda done: loop.call_soon_threadsafe(
            self._persisted, last_index, done))

    def _persisted(self, last_index: int, done: Future[Any]) -> None:
        if done.exception() is None:
            self._push_internal(core.Persisted(last_index))

    def _do_TruncateLog(self, action: core.TruncateLog) -> None:
        self._submit(self._state.truncate(action.from_index))

    def _do_TrimLog(self, action: core.TrimLog) -> None:
        self._submit(self._state.trim(action.through_index,
                                      (action.term.epoch, action.term.round)))

    def _do_Apply(self, action: core.Apply) -> None:
        future = self._submit(self._state.apply(_stored(action.entry)))
        wait = self._waits.get(action.entry.write_id)
        if wait is not None:
            wait.applying = future

    def _do_Reply(self, action: core.Reply) -> None:
        wait = self._waits.get(action.write_id)
        if wait is not None and not wait.outcome.done():
            wait.outcome.set_result(action.outcome)

    def _do_FetchSnapshot(self, action: core.FetchSnapshot) -> None:
        self._spawn(self._fetch_snapshot(action.source, action.epoch))

    async def _fetch_snapshot(self, source: str, epoch: int) -> None:
        staged = self.staged_dir
        shutil.rmtree(staged, ignore_errors=True)
        try:
            await self._peers.fetch_snapshot(source, self.shard, staged)
            index, term = await asyncio.to_thread(_staged_position, staged)
        except (StorageError, OSError) as error:
            _log.warning("shard %d: snapshot from %s failed: %s", self.shard, source, error)
            shutil.rmtree(staged, ignore_errors=True)
            self._push_internal(core.SnapshotFetchFailed(epoch))
            return
        self._push_internal(core.SnapshotFetched(epoch, index, Term(*term)))

    async def _do_InstallSnapshot(self, action: core.InstallSnapshot) -> None:
        staged = self.staged_dir
        local = self._state.recover()

        def replace() -> None:
            position = prepare_snapshot(staged, local, action.keep_log_tail)
            assert position == (action.index, (action.term.epoch, action.term.round)), \
                (position, action)
            install_snapshot(staged, self._store.data_dir)

        node = await self._store.reopen(replace)
        self._state = ReplicaState(node.engine)
        recovered = self._state.recover()
        assert recovered.applied_index == action.index
        _log.info("shard %d: installed a snapshot up to index %d (term %s)", self.shard,
                  action.index, action.term)

    def _do_DiscardSnapshot(self, action: core.DiscardSnapshot) -> None:
        shutil.rmtree(self.staged_dir, ignore_errors=True)

    def _do_ViewReady(self, action: core.ViewReady) -> None:
        if not self._ready_in_flight:
            self._ready_in_flight = True
            self._spawn(self._confirm_ready(action.shard, action.epoch))

    async def _confirm_ready(self, shard: int, epoch: int) -> None:
        try:
            if await self._membership.confirm_ready(shard, epoch):
                self._push_internal(core.ReadyConfirmed(shard, epoch))
        except StorageError as error:  # NoQuorum: the core repeats ViewReady
            _log.info("shard %d: ready of epoch %d not recorded: %s", shard, epoch, error)
        finally:
            self._ready_in_flight = False

    def _do_CaughtUp(self, action: core.CaughtUp) -> None:
        key = (action.node, action.epoch)
        if key not in self._reporting:
            self._reporting.add(key)
            self._spawn(self._report_caught_up(action, key))

    async def _report_caught_up(self, action: core.CaughtUp, key: tuple[str, int]) -> None:
        try:
            await self._membership.report_caught_up(action.shard, action.node, action.epoch)
        except StorageError as error:
            _log.info("shard %d: caught-up report for %s failed: %s", action.shard,
                      action.node, error)
        finally:
            self._reporting.discard(key)

    def _do_Refused(self, action: core.Refused) -> None:
        _log.debug("shard %d: refused %s from %s: %s", self.shard, action.what, action.sender,
                   action.reason)

    # --- helpers -------------------------------------------------------------------------

    def _submit(self, operation: Any) -> Future[Any]:
        future: Future[Any] = self._store.node.writer.submit(operation, bounded=False)
        future.add_done_callback(self._check_disk)
        return future

    def _check_disk(self, done: Future[Any]) -> None:
        """On the writer's thread: a failed disk operation stops the driver."""
        error = done.exception()
        if error is not None and self._failure is None:
            self._failure = error
            self._loop.call_soon_threadsafe(self._wake.set)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _staged_position(staged: pathlib.Path) -> tuple[int, tuple[int, int]]:
    from storage.engine.replica import snapshot_position

    return snapshot_position(staged)
