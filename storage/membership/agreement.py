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
* The replicated state is the membership decider's agreed state (``core.Agreed``: the
  view, per shard the members of the last view whose ``ViewReady`` was confirmed, the
  current epoch's ``CaughtUp`` reports), and every command is applied by the pure
  functions of ``core`` (``install``, ``confirm_ready``, ``report_caught_up``), the same
  ones the seeded simulation runs. So a proposal that breaks the ready rule is refused
  inside the state machine (``ReadyRuleBroken``), on every node alike, whoever proposed
  it; ``confirm_ready`` records the current view's shard leader's ``ViewReady`` only.
* Who proposes what is decided elsewhere (the ``core.Decider`` of the node that leads
  the agreement, an operator); this module only agrees. Listeners registered with
  ``on_view`` hear every installed view, in epoch order, on pysyncobj's thread (asyncio
  users hop with ``loop.call_soon_threadsafe``).
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
from storage.membership import core
from storage.placement import View


class NoQuorum(StorageError):
    """A proposal was not agreed in time: no leader, or no majority reachable."""


class ReadyRuleBroken(StorageError):
    """The proposed view would keep no member of a shard's last ready view (the members
    that hold every acknowledged write): refused (wait for one to come back)."""


class StaleView(StorageError):
    """Another view was installed first; ``current`` is the one that won."""

    def __init__(self, message: str, current: View) -> None:
        super().__init__(message)
        self.current = current


ViewListener = Callable[[View], None]

# The shape a view has inside the replicated log (plain tuples: cheap to pickle, and
# independent of the View class's layout).
_ViewTuple = tuple[int, tuple[tuple[str, ...], ...]]
_ReadyTuple = tuple[tuple[str, ...], ...]
# install's answer: the current view after the command, and whether the ready rule
# refused the proposal.
_InstallResult = tuple[int, tuple[tuple[str, ...], ...], bool]


def _as_tuple(view: View) -> _ViewTuple:
    return view.epoch, tuple(tuple(members) for members in view.shards)


class _ViewLog(SyncObjConsumer):
    """The replicated state: the current view. Applied identically on every node."""

    def __init__(self, initial: View, listener: ViewListener) -> None:
        # Set before SyncObjConsumer.__init__: attributes that exist then are left out
        # of pysyncobj's snapshots (the listener is this process's, not replicated state).
        self._listener = listener
        super().__init__()
        self._set(core.Agreed.first(initial))

    def _set(self, state: core.Agreed) -> None:
        # Plain tuples in the replicated state: cheap to pickle, independent of classes.
        self.epoch, self.shards = _as_tuple(state.view)
        self.ready_members: _ReadyTuple = state.ready
        self.caught_up: tuple[tuple[int, str], ...] = state.caught_up

    def state(self) -> core.Agreed:
        return core.Agreed(self.current(), self.ready_members, self.caught_up)

    @replicated
    def install(self, epoch: int, shards: tuple[tuple[str, ...], ...]) -> _InstallResult:
        """Compare-and-set (``core.install``): returns the current view after the command,
        which is the proposed one only if it was the next epoch and kept the ready rule."""
        installed = core.install(self.state(), View(epoch, shards))
        if isinstance(installed, core.Refused):
            return self.epoch, self.shards, installed is core.Refused.READY_RULE
        self._set(installed)
        self._listener(installed.view)
        return self.epoch, self.shards, False

    @replicated
    def ready(self, epoch: int, shard: int, node: str) -> bool:
        """The leader of ``shard`` in ``epoch`` reported ViewReady (``core.confirm_ready``):
        every member holds every committed entry. Only the current view's leader counts."""
        confirmed = core.confirm_ready(self.state(), shard, epoch, node)
        if confirmed is None:
            return False
        self._set(confirmed)
        return True

    @replicated
    def report_caught_up(self, epoch: int, shard: int, node: str) -> bool:
        """A shard leader's ``CaughtUp``: ``node`` holds what it committed in ``epoch``."""
        reported = core.report_caught_up(self.state(), shard, node, epoch)
        if reported is None:
            return False
        self._set(reported)
        return True

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
    def state(self) -> core.Agreed:
        """The agreed membership state this node has applied (the decider plans from it)."""
        return self._log.state()

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
            raise ReadyRuleBroken(f"epoch {view.epoch} would keep no member of a shard's last "
                                  "ready view (holding every acknowledged write); the view "
                                  f"stays at epoch {current.epoch}")
        if current != view:
            raise StaleView(f"epoch {view.epoch} was not next: the cluster is at "
                            f"epoch {current.epoch}", current)
        return current

    async def confirm_ready(self, shard: int, epoch: int, node: str) -> bool:
        """Record the ViewReady of ``node``, leader of ``shard``; False if ``epoch`` is no
        longer current (or ``node`` does not lead the shard in it)."""
        confirmed: bool = await self._agree(self._log.ready, f"ready of shard {shard}",
                                            epoch, shard, node)
        return confirmed

    async def report_caught_up(self, shard: int, node: str, epoch: int) -> None:
        await self._agree(self._log.report_caught_up, f"caught-up report of {node}", epoch,
                          shard, node)

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
