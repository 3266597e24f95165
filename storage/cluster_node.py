"""A storage node of a replicated cluster (``squall node``): its shards, their replication
drivers, the membership agreement and decider, and the transport server.

Rules and theory of operation:

* The node holds every shard whose home (``ClusterConfig.home``) names it, each in its
  own LMDB environment ``DATA_DIR/shard-N`` with its own writer (a ``StorageNode``
  without pre-commit hook) and its own ``ShardDriver``. The Raft journal of the view
  agreement is ``DATA_DIR/raft``.
* Every request names its shard (argument ``shard``, added by the gateway's
  ``ClusterTransport``). Writes become entries (``entries.make_entry``: ids drawn here,
  the time is this node's clock) and go through the shard's driver: the answer comes
  once every replica of the view holds the entry and this node applied it. A node that
  does not lead the shard (or leads it but is not READY) answers ``NotShardLeader``
  naming the leader it knows, for writes and for reads alike: reads are served by the
  shard's leader only, from its applied state, so a client reads what it was told is
  written, and only while it holds a read lease (``ShardDriver.serves_reads``: it heard
  from every member lately), so a leader cut off from its members stops serving reads
  before a newer view can exist.
* ``REPLICATE`` carries one replication message to a shard's driver; ``PING`` answers
  the failure detector of whichever node asks; ``GET_VIEW`` tells the gateway the view
  this node knows; ``SNAPSHOT`` (with a shard) streams a consistent copy of the shard's
  applied state to a replica that needs one.
* Membership (``storage.membership.core``, the one decider, the one the seeded
  simulation checks): every node pings every other node each
  ``limits.membership_tick_ms`` and feeds the answers to its ``Decider``; the node that
  leads the Raft agreement decides the next view from what ITS decider suspects and
  from the agreed state (last ready views, caught-up reports), and proposes it
  (compare-and-set on the epoch; the ready rule is enforced inside the agreement by
  ``core.install``). A minority side has no Raft leader able to commit, so it installs
  nothing.
* Not in a cluster (refused or absent, see docs/architecture.md "Cluster"): SSE-C
  (``InvalidArgument``), pre-commit functions and notifications (no hook; the gateway
  refuses the configurations), the outbox operations but ``OUTBOX_STATUS`` (the
  gateway's health probe asks it of every shard leader).
* Staged bodies: a replica never drops them on its own (``Engine(collect_staging_at_open=
  False)``); the shard's leader drops those staged more than ``limits.staging_age_ms_max``
  ago with a ``collect_staging`` entry every ``limits.staging_collect_period_seconds``.
* Lifecycle (``squall node --lifecycle-period-seconds``): each shard has a sweeper that
  runs only while this node is the shard's READY leader; it decides by its own clock
  and its removals are entries of the shard's log (``entries.lifecycle_entries``), which
  re-check their reason at the commit point on every replica alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from storage import limits
from storage.api import InvalidArgument, NotShardLeader, StorageError
from storage.cluster_config import ClusterConfig, split_address
from storage.engine import Engine
from storage.engine.entries import (
    lifecycle_entries,
    make_entry,
    new_entry_blob_id,
    wall_clock_ms,
)
from storage.engine.writer import WriteOperation
from storage.lifecycle import LifecycleSweeper, SweeperSettings
from storage.membership.agreement import (
    AgreementSettings,
    NoQuorum,
    ReadyRuleBroken,
    StaleView,
    ViewAgreement,
)
from storage.membership.core import Decider
from storage.node import StorageNode
from storage.placement import View
from storage.replication import core
from storage.replication.driver import ReplicaFailed, ShardDriver
from storage.replication.messages import decode_message, encode_message
from storage.transport.base import Operation, Request
from storage.transport.tcp import TcpNodeServer, TcpTransport

_log = logging.getLogger(__name__)

_WRITES = frozenset({
    Operation.CREATE_BUCKET, Operation.DELETE_BUCKET, Operation.SET_BUCKET_VERSIONING,
    Operation.PUT_OBJECT_LOCK_CONFIGURATION, Operation.PUT_BUCKET_CONFIG,
    Operation.STAGE_CHUNK, Operation.ABORT_UPLOAD, Operation.COMMIT_VERSION,
    Operation.DELETE_OBJECT, Operation.REPLACE_TAGS, Operation.REPLACE_ACL,
    Operation.UPDATE_OBJECT_LOCK, Operation.CREATE_MULTIPART_UPLOAD, Operation.COMMIT_PART,
    Operation.COMPLETE_MULTIPART_UPLOAD, Operation.ABORT_MULTIPART_UPLOAD,
})
_READS = frozenset({
    Operation.GET_BUCKET, Operation.LIST_BUCKETS, Operation.GET_BUCKET_CONFIG,
    Operation.GET_VERSION, Operation.LIST_OBJECTS, Operation.LIST_OBJECT_VERSIONS,
    Operation.LIST_PARTS, Operation.LIST_MULTIPART_UPLOADS,
    Operation.OUTBOX_STATUS,  # the gateway's health probe: every shard leader answers
})


class ShardHolder:
    """One shard's engine and writer on this node (``driver.ShardStore``)."""

    def __init__(self, node_id: str, data_dir: pathlib.Path, durable: bool) -> None:
        self._node_id = node_id
        self._data_dir = data_dir
        self._durable = durable
        self._node = self._open()

    def _open(self) -> StorageNode:
        engine = Engine(self._data_dir, durable=self._durable, collect_staging_at_open=False)
        return StorageNode(self._node_id, engine)

    @property
    def node(self) -> StorageNode:
        return self._node

    @property
    def data_dir(self) -> pathlib.Path:
        return self._data_dir

    async def reopen(self, replace: Callable[[], None]) -> StorageNode:
        await self._node.close()
        await asyncio.to_thread(replace)
        self._node = self._open()
        return self._node

    async def close(self) -> None:
        await self._node.close()


class ClusterPeers:
    """``driver.Peers`` over the TCP transport: best-effort sends, snapshot fetches."""

    def __init__(self, node_id: str, transport: TcpTransport) -> None:
        self._node_id = node_id
        self._transport = transport
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def send(self, to: str, shard: int, message: core.Message) -> None:
        if self._in_flight.get(to, 0) >= limits.replication_sends_in_flight_max:
            return  # dropped: the core retransmits
        control, payload = encode_message(message)
        request = Request(Operation.REPLICATE, {"shard": shard, "sender": self._node_id,
                                                "message": control}, payload)
        self._in_flight[to] = self._in_flight.get(to, 0) + 1
        task = asyncio.ensure_future(self._send(to, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, to: str, request: Request) -> None:
        try:
            await self._transport.call(to, request)
        except StorageError as error:  # unreachable or refused: best effort
            _log.debug("replication message to %s lost: %s", to, error)
        finally:
            self._in_flight[to] -= 1

    async def fetch_snapshot(self, source: str, shard: int, staged_dir: pathlib.Path) -> None:
        staged_dir.mkdir(parents=True)
        stream = self._transport.open_stream(source, Request(Operation.SNAPSHOT,
                                                             {"shard": shard}))
        with open(staged_dir / "data.mdb", "xb") as out:
            async for piece in stream:
                await asyncio.to_thread(out.write, piece)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class ClusterNode:
    def __init__(self, config: ClusterConfig, node_id: str, data_dir: pathlib.Path, *,
                 listen: tuple[str, int] | None = None, raft: str | None = None,
                 durable: bool = True,
                 write_timeout_ms: int = limits.replication_write_timeout_ms,
                 log_entries_max: int = limits.replication_log_entries_max,
                 lifecycle: SweeperSettings | None = None) -> None:
        self.config = config
        self.node_id = node_id
        self.me = config.node(node_id)
        self._data_dir = data_dir
        self._listen = listen or split_address(self.me.address)
        # The Raft identity is always the file's address (the others know this node by it);
        # ``raft`` only says where to listen (e.g. 0.0.0.0 behind a DNS name).
        self._raft_address = self.me.raft
        self._raft_bind = raft
        self._durable = durable
        self._write_timeout_ms = write_timeout_ms
        self._settings = core.Settings(log_entries_max=log_entries_max)
        self._lifecycle = lifecycle
        self.sweepers: list[LifecycleSweeper] = []
        self.shards: dict[int, ShardHolder] = {}
        self.drivers: dict[int, ShardDriver] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._decider = Decider([n.node_id for n in config.nodes],
                                tuple(config.home(s) for s in range(config.shard_count)),
                                limits.membership_suspect_after_ticks)
        self.agreement: ViewAgreement | None = None
        self.server: TcpNodeServer | None = None
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None

    # --- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        others = [n for n in self.config.nodes if n.node_id != self.node_id]
        self.transport = TcpTransport({n.node_id: split_address(n.address) for n in others})
        self.peers = ClusterPeers(self.node_id, self.transport)
        for shard in self.config.shards_of(self.node_id):
            holder = ShardHolder(self.node_id, self._data_dir / f"shard-{shard}", self._durable)
            self.shards[shard] = holder
            self.drivers[shard] = ShardDriver(self.node_id, shard, holder, self.peers, self,
                                              settings=self._settings,
                                              write_timeout_ms=self._write_timeout_ms)
        settings = AgreementSettings(self._raft_address, tuple(n.raft for n in others),
                                     self.config.secret, self._data_dir / "raft",
                                     bind_address=self._raft_bind)
        self.agreement = ViewAgreement(settings, self.config.first_view())
        loop = asyncio.get_running_loop()

        def heard(view: View) -> None:  # pysyncobj's thread
            loop.call_soon_threadsafe(self._view_installed, view)

        self.agreement.on_view(heard)
        view = self.agreement.view
        for shard, driver in self.drivers.items():
            self._tasks.append(asyncio.create_task(self._run_driver(driver, view),
                                                   name=f"shard-{shard}"))
        self.server = TcpNodeServer(self, *self._listen)  # type: ignore[arg-type]
        await self.server.start()
        if self._lifecycle is not None:
            for shard, driver in self.drivers.items():
                self._start_sweeper(self.shards[shard], driver, self._lifecycle)
        for shard, driver in self.drivers.items():
            self._tasks.append(asyncio.create_task(self._collect_staging_forever(driver),
                                                   name=f"staging-{shard}"))
        self._tasks.append(asyncio.create_task(self._membership_forever(), name="membership"))

    async def _run_driver(self, driver: ShardDriver, view: View) -> None:
        try:
            await driver.run(view)
        except asyncio.CancelledError:
            raise
        except BaseException as failure:  # ReplicaFailed, or a bug (an assertion)
            # The shard's replica cannot go on: the node stops (restarting recovers from
            # what is durable), rather than serve with a dead shard.
            _log.critical("shard %d stopped", driver.shard, exc_info=failure)
            self.failure = failure
            self.failed.set()

    def _start_sweeper(self, holder: ShardHolder, driver: ShardDriver,
                       settings: SweeperSettings) -> None:
        """The shard's lifecycle sweeper: it sweeps while this node is the shard's ready
        leader, deciding by its clock, and its removals go through the shard's log as
        entries (every replica applies them alike)."""
        async def apply_batch(bucket: str, actions: tuple[Any, ...]) -> Any:
            return await driver.write(lifecycle_entries(bucket, actions))

        async def refuse_direct_write(operation: WriteOperation) -> Any:
            raise AssertionError("a replica's sweeper writes through its log only")

        sweeper = LifecycleSweeper(holder.node.engine, refuse_direct_write, settings,
                                   apply_batch=apply_batch,
                                   active=lambda: driver.is_ready_leader,
                                   engine_of=lambda: holder.node.engine)
        sweeper.start()
        self.sweepers.append(sweeper)

    async def _collect_staging_forever(self, driver: ShardDriver) -> None:
        """On the shard's leader: drop bodies staged longer than
        ``limits.staging_age_ms_max`` ago (uploads abandoned by a crashed gateway), through
        the log, so that every replica drops the same ones."""
        while True:
            await asyncio.sleep(limits.staging_collect_period_seconds)
            if not driver.is_ready_leader:
                continue
            before_ms = wall_clock_ms() - limits.staging_age_ms_max
            try:
                collected = await driver.write(make_entry(
                    "collect_staging", {"staged_before_ms": before_ms}))
            except StorageError as error:  # not the leader any more, or too slow: later
                _log.info("shard %d: staging not collected: %s", driver.shard, error)
                continue
            if collected:
                _log.info("shard %d: %d abandoned staged bodies dropped", driver.shard,
                          collected)

    def _view_installed(self, view: View) -> None:
        _log.info("view %d installed: %s", view.epoch, view.shards)
        for driver in self.drivers.values():
            driver.view_installed(view)

    async def close(self) -> None:
        for sweeper in self.sweepers:
            await sweeper.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ReplicaFailed):
                await task
        if self.server is not None:
            await self.server.close()
        await self.peers.close()
        await self.transport.close()
        if self.agreement is not None:
            await asyncio.to_thread(self.agreement.close)
        for holder in self.shards.values():
            await holder.close()

    # --- membership ----------------------------------------------------------------------

    async def confirm_ready(self, shard: int, epoch: int) -> bool:
        assert self.agreement is not None
        return await self.agreement.confirm_ready(shard, epoch, self.node_id)

    async def report_caught_up(self, shard: int, node: str, epoch: int) -> None:
        assert self.agreement is not None
        await self.agreement.report_caught_up(shard, node, epoch)

    async def _membership_forever(self) -> None:
        while True:
            await asyncio.sleep(limits.membership_tick_ms / 1000)
            await self._ping_all()
            self._decider.heard(self.node_id)  # a node is never silent to itself
            self._decider.tick()
            if self._leads_agreement():
                await self._plan_and_propose()

    async def _ping_all(self) -> None:
        async def ping(node_id: str) -> None:
            try:
                async with asyncio.timeout(limits.membership_ping_timeout_ms / 1000):
                    await self.transport.call(node_id, Request(Operation.PING))
            except (TimeoutError, StorageError):
                return
            self._decider.heard(node_id)

        await asyncio.gather(*(ping(n.node_id) for n in self.config.nodes
                               if n.node_id != self.node_id))

    def _leads_agreement(self) -> bool:
        assert self.agreement is not None
        return self.agreement.leader == self._raft_address and self.agreement.ready

    async def _plan_and_propose(self) -> None:
        assert self.agreement is not None
        proposed = self._decider.next_view(self.agreement.state)
        if proposed is None:
            return
        try:
            await self.agreement.propose(proposed)
            _log.info("proposed and installed view %d: %s", proposed.epoch, proposed.shards)
        except (StaleView, NoQuorum, ReadyRuleBroken) as error:
            _log.info("view %d not installed: %s", proposed.epoch, error)

    # --- the transport's entry points ----------------------------------------------------

    async def handle(self, request: Request) -> Any:
        operation = request.operation
        arguments = dict(request.arguments)
        if operation is Operation.PING:
            return self.node_id
        if operation is Operation.GET_VIEW:
            assert self.agreement is not None
            view = self.agreement.view
            return [view.epoch, [list(members) for members in view.shards]]
        shard = arguments.pop("shard", None)
        driver = self.drivers.get(shard) if isinstance(shard, int) else None
        if driver is None:
            raise InvalidArgument(f"node {self.node_id} does not hold shard {shard!r}")
        if operation is Operation.REPLICATE:
            driver.received(arguments["sender"],
                            decode_message(arguments["message"], request.payload))
            return None
        if operation in _READS:
            if not driver.serves_reads():
                raise NotShardLeader(f"node {self.node_id} does not lead shard {driver.shard}, "
                                     "or has not heard from its members lately", driver.leader)
            return await self.shards[driver.shard].node.handle(Request(operation, arguments))
        self._check_leader(driver)
        if operation is Operation.NEW_BLOB_ID:
            return new_entry_blob_id(wall_clock_ms())
        if operation in _WRITES:
            payload = None if request.payload is None else bytes(request.payload)
            return await driver.write(make_entry(operation.value, arguments, payload))
        raise InvalidArgument(f"{operation.value} is not served by a cluster node")

    def open_stream(self, request: Request) -> AsyncIterator[bytes | memoryview]:
        arguments = dict(request.arguments)
        shard = arguments.pop("shard", None)
        driver = self.drivers.get(shard) if isinstance(shard, int) else None
        if driver is None:
            raise InvalidArgument(f"node {self.node_id} does not hold shard {shard!r}")
        holder = self.shards[driver.shard]
        if request.operation is Operation.SNAPSHOT:
            return holder.node.snapshot_chunks()  # the shard's applied state and position
        if request.operation is not Operation.READ_BODY:
            raise InvalidArgument(f"not a stream operation: {request.operation}")
        if not driver.serves_reads():
            raise NotShardLeader(f"node {self.node_id} does not serve reads of shard "
                                 f"{driver.shard}", driver.leader)
        return holder.node.read_body(**arguments)

    def _check_leader(self, driver: ShardDriver) -> None:
        if not driver.is_ready_leader:
            raise NotShardLeader(f"node {self.node_id} does not lead shard {driver.shard} "
                                 f"(or is not ready yet)", driver.leader)
