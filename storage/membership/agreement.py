"""The cluster's view, agreed through Raft (pysyncobj) among the storage nodes.

Rules and theory of operation:

* A ``View`` (``storage.placement``) is one epoch's membership: the ordered members of
  every shard, leader first. Every node runs one ``ViewAgreement``; together they keep
  ONE replicated value, the current view, in a Raft log (pysyncobj). A view is installed
  only when a majority of the agreement's nodes has logged it, so a minority partition
  can never install one: its proposals time out (``NoQuorum``) and its current view
  stays what it was.
* Installing is compare-and-set on the epoch: ``propose(view)`` succeeds only if
  ``view.epoch`` is the current epoch + 1 when the command is applied. Two nodes that
  propose concurrently (both saw a failure) cannot both win: the second finds the epoch
  moved and gets ``StaleView`` with the view that won, so epochs strictly increase and
  every node applies the same sequence of views.
* The replicated state also holds every shard's *carrier set* (``planner``: the members
  that hold every acknowledged write of the shard). A proposal that would leave a
  shard's carrier set empty is refused inside the state machine (``CarriersLost``), on
  every node alike, whoever proposed it; ``confirm_ready`` records a shard leader's
  ``ViewReady`` (the carrier set becomes the view's members) for the current epoch only.
* Who proposes what is decided elsewhere (a failure detector, an operator); this module
  only agrees. Listeners registered with ``on_view`` hear every installed view, in epoch
  order, on pysyncobj's thread (asyncio users hop with ``loop.call_soon_threadsafe``).
* Durability: with a ``journal_dir`` the Raft log, the term and the vote live in files
  there (pysyncobj's file journal), so a node that restarts keeps its promises and
  learns the views it missed from the others.
* Security: pysyncobj pickles its messages, so a peer that can reach the Raft port can
  run code. The cluster secret is therefore mandatory: pysyncobj encrypts and
  authenticates every connection with it (Fernet), and the port must stay inside the
  cluster's network.

Bounds: ``limits.membership_propose_timeout_ms`` per proposal; pysyncobj's command queue
(``limits.membership_commands_queued_max``) refuses more with ``NoQuorum`` instead of
growing.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated

from storage import limits
from storage.api import StorageError
from storage.membership.planner import (
    Carriers,
    carriers_after_ready,
    carriers_after_view,
    first_carriers,
)
from storage.placement import View


class NoQuorum(StorageError):
    """A proposal was not agreed in time: no leader, or no majority reachable."""


class CarriersLost(StorageError):
    """The proposed view would leave a shard with no member holding every acknowledged
    write: refused (wait for a carrier to come back)."""


class StaleView(StorageError):
    """Another view was installed first; ``current`` is the one that won."""

    def __init__(self, message: str, current: View) -> None:
        super().__init__(message)
        self.current = current


ViewListener = Callable[[View], None]

# The shape a view has inside the replicated log (plain tuples: cheap to pickle, and
# independent of the View class's layout).
_ViewTuple = tuple[int, tuple[tuple[str, ...], ...]]
_CarrierTuple = tuple[tuple[str, ...], ...]
# install's answer: the current view after the command, and whether the carrier-set
# rule refused the proposal.
_InstallResult = tuple[int, tuple[tuple[str, ...], ...], bool]


def _carrier_tuple(carriers: Carriers) -> _CarrierTuple:
    return tuple(tuple(sorted(kept)) for kept in carriers)


def _as_tuple(view: View) -> _ViewTuple:
    return view.epoch, tuple(tuple(members) for members in view.shards)


class _ViewLog(SyncObjConsumer):
    """The replicated state: the current view. Applied identically on every node."""

    def __init__(self, initial: View, listener: ViewListener) -> None:
        # Set before SyncObjConsumer.__init__: attributes that exist then are left out
        # of pysyncobj's snapshots (the listener is this process's, not replicated state).
        self._listener = listener
        super().__init__()
        self.epoch, self.shards = _as_tuple(initial)
        self.carriers = _carrier_tuple(first_carriers(initial))
        # (shard, node) pairs reported caught up in the current epoch (cleared by install).
        self.caught_up: tuple[tuple[int, str], ...] = ()

    @replicated
    def install(self, epoch: int, shards: tuple[tuple[str, ...], ...]) -> _InstallResult:
        """Compare-and-set: returns the current view after the command, which is the
        proposed one only if it was the next epoch and kept every shard's carriers."""
        refused = False
        if epoch == self.epoch + 1:
            carriers = carriers_after_view(self.current_carriers(), View(epoch, shards))
            if carriers is None:
                refused = True
            else:
                self.epoch, self.shards = epoch, shards
                self.carriers = _carrier_tuple(carriers)
                self.caught_up = ()
                self._listener(View(epoch, shards))
        return self.epoch, self.shards, refused

    @replicated
    def ready(self, epoch: int, shard: int) -> bool:
        """The leader of ``shard`` in ``epoch`` reported ViewReady: every member holds
        every committed entry. Only the current epoch counts."""
        if epoch != self.epoch or not 0 <= shard < len(self.shards):
            return False
        current = self.current()
        self.carriers = _carrier_tuple(carriers_after_ready(self.current_carriers(), current,
                                                            shard))
        return True

    @replicated
    def report_caught_up(self, epoch: int, shard: int, node: str) -> bool:
        """A shard leader's ``CaughtUp``: ``node`` holds what it committed in ``epoch``."""
        if epoch != self.epoch or (shard, node) in self.caught_up:
            return False
        if len(self.caught_up) < limits.membership_caught_up_reports_max:
            self.caught_up = (*self.caught_up, (shard, node))
        return True

    def current_carriers(self) -> Carriers:
        return tuple(frozenset(kept) for kept in self.carriers)

    def current(self) -> View:
        return View(self.epoch, self.shards)

    def _deserialize(self, data: dict[str, object]) -> None:
        """A snapshot from the leader (this node was far behind): the view jumps."""
        super()._deserialize(data)
        self._listener(self.current())


@dataclass(frozen=True, slots=True)
class AgreementSettings:
    self_address: str  # this node's Raft endpoint, "host:port"
    peer_addresses: tuple[str, ...]  # the other nodes' Raft endpoints
    secret: str  # the cluster secret: encrypts and authenticates Raft traffic
    journal_dir: pathlib.Path | None = None  # None: in memory (tests of a single run)
    # Where to listen, when not at self_address (e.g. "0.0.0.0:9200" behind a DNS name):
    # self_address stays this node's identity, the address the others know it by.
    bind_address: str | None = None
    propose_timeout_ms: int = limits.membership_propose_timeout_ms
    # Raft timing, seconds (pysyncobj's units): election timeouts and heartbeat period.
    election_timeout_min_s: float = 0.4
    election_timeout_max_s: float = 1.4
    heartbeat_period_s: float = 0.1

    def __post_init__(self) -> None:
        assert self.secret, "a cluster secret is required (pysyncobj pickles its messages)"
        assert self.self_address not in self.peer_addresses
        assert 0 < self.heartbeat_period_s < self.election_timeout_min_s
        assert self.election_timeout_min_s <= self.election_timeout_max_s
        assert self.propose_timeout_ms > 0


class ViewAgreement:
    def __init__(self, settings: AgreementSettings, initial: View) -> None:
        """``initial`` must be the same on every node: it is epoch ``initial.epoch``'s view,
        which no command installs."""
        self._settings = settings
        self._listeners: list[ViewListener] = []
        self._listeners_lock = threading.Lock()
        self._log = _ViewLog(initial, self._installed)
        journal = fulldump = None
        if settings.journal_dir is not None:
            settings.journal_dir.mkdir(parents=True, exist_ok=True)
            journal = str(settings.journal_dir / "raft.journal")
            fulldump = str(settings.journal_dir / "raft.dump")
        conf = SyncObjConf(
            password=settings.secret,
            journalFile=journal,
            fullDumpFile=fulldump,
            raftMinTimeout=settings.election_timeout_min_s,
            raftMaxTimeout=settings.election_timeout_max_s,
            appendEntriesPeriod=settings.heartbeat_period_s,
            commandsQueueSize=limits.membership_commands_queued_max,
            dynamicMembershipChange=False,
            bindAddress=settings.bind_address,
        )
        self._raft = SyncObj(settings.self_address, list(settings.peer_addresses), conf,
                             consumers=[self._log])

    @property
    def view(self) -> View:
        """The newest view this node has applied (a follower may lag the leader by the
        commands still in flight to it)."""
        return self._log.current()

    @property
    def carriers(self) -> Carriers:
        return self._log.current_carriers()

    @property
    def leader(self) -> str | None:
        """The Raft leader's address as this node knows it (None: an election runs)."""
        leader = self._raft._getLeader()  # pysyncobj has no public accessor but getStatus()
        return None if leader is None else str(leader.address)

    @property
    def ready(self) -> bool:
        """Whether this node has caught up with the Raft log (pysyncobj's ``isReady``)."""
        return bool(self._raft.isReady())

    def on_view(self, listener: ViewListener) -> None:
        """Call ``listener(view)`` for every view installed from now on (on pysyncobj's
        thread; it must be quick and must not raise)."""
        with self._listeners_lock:
            self._listeners.append(listener)

    def _installed(self, view: View) -> None:
        with self._listeners_lock:
            listeners = tuple(self._listeners)
        for listener in listeners:
            listener(view)

    async def propose(self, view: View) -> View:
        """Install ``view`` if its epoch is the next one when the cluster agrees.

        Raises ``StaleView`` (carrying the winner) if another view took that epoch, and
        ``NoQuorum`` if no majority agreed within the proposal timeout."""
        epoch, shards = _as_tuple(view)
        current_epoch, current_shards, refused = await self._agree(
            self._log.install, f"view epoch {view.epoch}", epoch, shards)
        current = View(current_epoch, current_shards)
        if refused:
            raise CarriersLost(f"epoch {view.epoch} would leave a shard with no member that "
                               "holds every acknowledged write; the view stays at epoch "
                               f"{current.epoch}")
        if current != view:
            raise StaleView(f"epoch {view.epoch} was not next: the cluster is at "
                            f"epoch {current.epoch}", current)
        return current

    async def confirm_ready(self, shard: int, epoch: int) -> bool:
        """Record a shard leader's ViewReady; False if ``epoch`` is no longer current."""
        confirmed: bool = await self._agree(self._log.ready, f"ready of shard {shard}",
                                            epoch, shard)
        return confirmed

    async def report_caught_up(self, shard: int, node: str, epoch: int) -> None:
        await self._agree(self._log.report_caught_up, f"caught-up report of {node}", epoch,
                          shard, node)

    def caught_up(self) -> dict[int, frozenset[str]]:
        """Per shard, the nodes reported caught up in the current epoch."""
        reports: dict[int, set[str]] = {}
        for shard, node in self._log.caught_up:
            reports.setdefault(shard, set()).add(node)
        return {shard: frozenset(nodes) for shard, nodes in reports.items()}

    async def _agree(self, command: Callable[..., object], what: str, *arguments: object
                     ) -> Any:
        loop = asyncio.get_running_loop()
        decided: asyncio.Future[Any] = loop.create_future()

        def settle(result: object, error: int) -> None:  # pysyncobj's thread
            loop.call_soon_threadsafe(_settle, decided, result, error)

        command(*arguments, callback=settle)
        try:
            async with asyncio.timeout(self._settings.propose_timeout_ms / 1000):
                return await decided
        except TimeoutError:
            raise NoQuorum(f"{what} was not agreed within "
                           f"{self._settings.propose_timeout_ms} ms (no majority "
                           "reachable?)") from None

    async def wait_for_epoch(self, epoch: int, timeout_ms: int) -> View:
        """The first view of at least ``epoch`` this node applies (already applied: now)."""
        loop = asyncio.get_running_loop()
        reached: asyncio.Future[View] = loop.create_future()

        def heard(view: View) -> None:
            if view.epoch >= epoch:
                loop.call_soon_threadsafe(_resolve, reached, view)

        self.on_view(heard)
        try:
            if self.view.epoch >= epoch:
                return self.view
            async with asyncio.timeout(timeout_ms / 1000):
                return await reached
        except TimeoutError:
            raise NoQuorum(f"epoch {epoch} was not reached within {timeout_ms} ms") from None
        finally:
            with self._listeners_lock:
                self._listeners.remove(heard)

    def close(self) -> None:
        """Stop Raft: its thread, its sockets and its journal (synchronously)."""
        self._raft.destroy_synchronous()


def _settle(decided: asyncio.Future[Any], result: object, error: int) -> None:
    if decided.done():  # the proposal timed out first
        return
    if error == FAIL_REASON.SUCCESS and result is not None:
        decided.set_result(result)
    else:
        decided.set_exception(NoQuorum(f"the proposal failed in Raft ({_reason(error)})"))


def _resolve(reached: asyncio.Future[View], view: View) -> None:
    if not reached.done():
        reached.set_result(view)


def _reason(error: int) -> str:
    names: Sequence[str] = [name for name in vars(FAIL_REASON) if not name.startswith("_")]
    return next((name.lower() for name in names if getattr(FAIL_REASON, name) == error),
                str(error))
