"""A seeded, deterministic simulation of replication cores under faults (TigerBeetle's VOPR
in miniature).

Rules of the simulation:

* One seed reproduces one run exactly: every random choice comes from one
  ``random.Random(seed)``, time is the simulation's tick counter, and iteration orders
  are fixed (lists and insertion-ordered dicts, never sets).
* N nodes (3-5) hold S shards (1-2), R replicas each (2-3), each node running one
  ``ReplicaCore`` per shard it holds, with small limits (``SIM_SETTINGS``) so that
  trimming, snapshots, overload and flow control happen in a short run.
* One node's clock may run slow (its ticks skipped at random) while faults are on.
* The network delays every message 1..d ticks (so it reorders them), and while faults
  are on it drops and duplicates some, cuts single directed links for a while, and
  isolates nodes (a partition of one node from everyone, membership included).
* Each node's disk is an ordered queue: an op (Persist, TruncateLog, TrimLog) reaches the
  disk after 0..k ticks and only then is confirmed; ``SaveTerm``, ``Apply`` and
  ``InstallSnapshot`` are synchronous. A crash loses the node's volatile state (its
  cores) and every queued op but a random prefix of them (what happened to reach the
  disk); the node restarts later from what is on disk. At most one node dies for good
  (a lost disk), and only while each of its shards keeps another member of its last
  ready view.
* Membership is the cluster nodes' own decider and agreed-state rule
  (``storage/membership/core.py``: ``Decider``, and ``install``/``confirm_ready``/
  ``report_caught_up`` on ``Agreed``, which agreement.py applies inside Raft); here the
  agreed state is one copy that applies every command in order, as Raft would. The
  decider hears a heartbeat per tick from every node that is up and not isolated (some
  are lost), suspects a node after ``suspect_ticks`` of silence and proposes a view
  without it, keeping the ready rule; it adds a node back when a leader reports
  ``CaughtUp``. A view the agreed state refuses fails the run. The simulation also
  moves a shard's leadership to a random member now and then, and adds nodes before
  they caught up: a new leader is often not the member with the longest log. Views
  reach each node after 1..v ticks.
* Clients write to membership's leader of a shard (sometimes to a stale or wrong one).

What it checks (``SimulationFailure`` names the property, the seed and a trace):

* (a) every write acknowledged ``Committed(index)`` is at ``index`` in the applied state
  of every member of the final view; and at acknowledgement time it is what was applied
  at that index; an acknowledged write replaced later is reported as lost;
* (b) all replicas apply the same write at each index, in index order (so their applied
  states are prefixes of one another);
* (c) no write is applied at two indexes;
* (d) liveness: after the faults stop (partitions heal, crashed nodes restart, no more
  drops), within ``settle_ticks_max`` every write has its answer, every surviving node is
  back in its shards' views and every member has applied the leader's whole log;
* (e) a write answered ``NotCommitted`` is never applied;
* and every assertion inside the cores (their invariants) and the driver contract (a
  Persist lands right after the disk log's end, Apply follows the applied index and is
  durable in the log first, a snapshot is what was fetched).
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from storage.membership import core as membership
from storage.placement import View
from storage.replication import core as rc
from storage.replication import trace

FAILURE_TRACE_LINES_MAX = 150  # the end of the trace a failure prints

CoreFactory = Callable[[str, int, rc.Recovered, rc.Settings], rc.ReplicaCore]
DeciderFactory = Callable[[list[str], tuple[tuple[str, ...], ...], int], membership.Decider]
InstallRule = Callable[[membership.Agreed, View], membership.Agreed | membership.Refused]

# Small bounds, so that a run of a thousand ticks trims logs, fetches snapshots, fills the
# pending queue and the send window.
SIM_SETTINGS = rc.Settings(
    entries_in_flight_max=8,
    entries_per_message_max=3,
    message_bytes_max=300,
    log_entries_max=24,
    pending_writes_max=10,
    pending_bytes_max=1500,
    learners_max=2,
    retransmit_ticks=8,
    heartbeat_ticks=3,
    learner_idle_ticks_max=40,
    caught_up_report_ticks=10,
    snapshot_wait_ticks=30,
)


@dataclass(frozen=True, slots=True)
class SimConfig:
    node_count: int = 3
    shard_count: int = 1
    replica_count: int = 3
    fault_ticks: int = 700
    settle_ticks_max: int = 800
    write_probability: float = 0.35  # per tick, one client write
    wrong_route_probability: float = 0.05  # a client writes to a random holder of the shard
    message_delay_ticks_max: int = 4
    drop_probability: float = 0.05
    duplicate_probability: float = 0.03
    disk_delay_ticks_max: int = 3
    crash_probability: float = 0.006  # per tick, one live node crashes
    restart_ticks_min: int = 3
    restart_ticks_max: int = 150
    kill_probability: float = 0.0005  # per tick, one node dies for good (at most one)
    isolate_probability: float = 0.004
    isolate_ticks_max: int = 120
    link_cut_probability: float = 0.006
    link_cut_ticks_max: int = 60
    leader_move_probability: float = 0.003
    early_add_probability: float = 0.002  # the oracle adds a node before it caught up
    slow_clock_probability: float = 0.0  # per node and tick: its Tick is skipped (a pause)
    suspect_ticks: int = 15
    view_delay_ticks_max: int = 6
    snapshot_delay_ticks_max: int = 10
    settings: rc.Settings = SIM_SETTINGS

    def __post_init__(self) -> None:
        assert 2 <= self.replica_count <= self.node_count and self.shard_count >= 1
        assert 0 < self.restart_ticks_min <= self.restart_ticks_max

    @classmethod
    def for_seed(cls, seed: int) -> SimConfig:
        """A cluster shape and fault mix drawn from the seed (apart from the run's own
        random stream, so a config change does not shift every later choice)."""
        rng = random.Random(f"config-{seed}")
        node_count = rng.randint(3, 5)
        return cls(
            node_count=node_count,
            shard_count=rng.randint(1, 2),
            replica_count=rng.randint(2, min(3, node_count)),
            drop_probability=rng.choice((0.0, 0.02, 0.08)),
            duplicate_probability=rng.choice((0.0, 0.03)),
            crash_probability=rng.choice((0.003, 0.006, 0.012)),
            isolate_probability=rng.choice((0.0, 0.004, 0.008)),
            link_cut_probability=rng.choice((0.0, 0.006)),
            message_delay_ticks_max=rng.randint(1, 6),
            disk_delay_ticks_max=rng.randint(0, 5),
            leader_move_probability=rng.choice((0.0, 0.003, 0.01, 0.02)),
            early_add_probability=rng.choice((0.0, 0.002, 0.01, 0.02)),
            slow_clock_probability=rng.choice((0.0, 0.0, 0.3)),
        )


class SimulationFailure(AssertionError):
    def __init__(self, seed: int, problem: str, trace_lines: list[str]) -> None:
        self.seed = seed
        self.problem = problem
        self.trace_lines = trace_lines
        text = "\n".join(trace_lines)
        super().__init__(
            f"replication simulation failed, seed={seed}: {problem}\n"
            f"reproduce: run_simulation({seed}) (storage/replication/sim.py)\n"
            f"last {len(trace_lines)} trace lines:\n{text}"
        )


@dataclass(slots=True)
class WriteRecord:
    shard: int
    node: str
    tick: int
    outcome: rc.Outcome | str | None = None  # str: the client never got an answer


@dataclass(slots=True)
class SimResult:
    seed: int
    config: SimConfig
    ticks: int
    settle_ticks: int
    views: int
    outcomes: Counter[str]
    actions: Counter[str]  # by action type; Send by message type ("Send.Append")
    faults: Counter[str]

    def summary(self) -> str:
        config = self.config
        outcomes = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        faults = " ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        return (f"seed={self.seed} nodes={config.node_count} shards={config.shard_count}"
                f" replicas={config.replica_count} ticks={self.ticks}"
                f" settled_in={self.settle_ticks} views={self.views}"
                f" writes: {outcomes} faults: {faults}")


@dataclass(slots=True)
class DiskOp:
    kind: str  # "persist" | "truncate" | "trim"
    confirm_tick: int
    entries: tuple[rc.LogEntry, ...] = ()
    index: int = 0
    term: rc.Term = rc.NO_TERM
    on_disk: bool = False


class Disk:
    """An in-memory disk of one shard on one node: what survives a crash. Ops reach it in
    order (``write``); ``recovered`` is what a restarting core reads back."""

    def __init__(self) -> None:
        self.promised = rc.NO_TERM
        self.trimmed_index = 0
        self.trimmed_term = rc.NO_TERM
        self.log: list[rc.LogEntry] = []
        # The applied state: (index, term, write_id) for index 1, 2, ... (a snapshot
        # copies it whole, so it always starts at 1).
        self.applied: list[tuple[int, rc.Term, object]] = []
        self.queue: deque[DiskOp] = deque()

    @property
    def last_index(self) -> int:
        return self.trimmed_index + len(self.log)

    def term_at(self, index: int) -> rc.Term | None:
        offset = index - self.trimmed_index
        if offset == 0:
            return self.trimmed_term
        if 0 < offset <= len(self.log):
            return self.log[offset - 1].term
        return None

    def write(self, op: DiskOp) -> str | None:
        """Put an op on disk; a broken driver contract comes back as a problem."""
        op.on_disk = True
        if op.kind == "persist":
            if op.entries[0].index != self.last_index + 1:
                return f"Persist of {op.entries[0].index} after a disk log ending at {self.last_index}"
            self.log.extend(op.entries)
        elif op.kind == "truncate":
            if not self.trimmed_index < op.index <= self.last_index + 1:
                return f"TruncateLog from {op.index} outside {self.trimmed_index}..{self.last_index}"
            del self.log[op.index - self.trimmed_index - 1 :]
        else:
            if self.term_at(op.index) != op.term or op.index > len(self.applied):
                return f"TrimLog through {op.index}@{op.term} not an applied entry on disk"
            del self.log[: op.index - self.trimmed_index]
            self.trimmed_index, self.trimmed_term = op.index, op.term
        return None

    def recovered(self) -> rc.Recovered:
        applied_index = len(self.applied)
        return rc.Recovered(
            promised_term=self.promised,
            applied_index=applied_index,
            applied_term=self.applied[-1][1] if self.applied else rc.NO_TERM,
            log_trimmed_index=self.trimmed_index,
            log_trimmed_term=self.trimmed_term,
            entries=tuple(self.log),
        )


@dataclass(slots=True)
class _Node:
    node_id: str
    shards: list[int]
    disks: dict[int, Disk]
    cores: dict[int, rc.ReplicaCore] = field(default_factory=dict)
    staged: dict[int, list[tuple[int, rc.Term, object]]] = field(default_factory=dict)
    alive: bool = True
    dead: bool = False  # for good
    slow: bool = False  # its clock runs slow while faults are on
    incarnation: int = 0


class _Oracle:
    """Membership for the simulation: the cluster nodes' decider (``Decider``,
    storage/membership/core.py) fed with the heartbeats of the nodes it can hear, and the
    agreement's replicated state machine (``Agreed`` with ``install``, ``confirm_ready``,
    ``report_caught_up``, as agreement.py applies them) modelled as one copy applying
    every command in order; plus the simulation's own meddling: moving leadership and
    adding nodes early (requests to the decider, checked by the agreed state as any)."""

    def __init__(self, sim: Simulation, home: tuple[tuple[str, ...], ...],
                 factory: DeciderFactory, install_rule: InstallRule) -> None:
        self.sim = sim
        self.home = home
        # The holders of some shard (the nodes whose heartbeats count), as before.
        self.decider = factory([], home, sim.config.suspect_ticks)
        self.install_rule = install_rule
        self.state = membership.Agreed.first(View(1, home))
        self.views = 1

    @property
    def view(self) -> View:
        return self.state.view

    def ready_members(self, shard: int) -> tuple[str, ...]:
        return self.state.ready[shard]

    def tick(self, faulty: bool) -> None:
        sim, decider, config = self.sim, self.decider, self.sim.config
        for node_id in decider.nodes:
            if not sim.down(node_id) and not (faulty and sim.rng.random() < config.drop_probability):
                decider.heard(node_id)
        if faulty and sim.rng.random() < config.early_add_probability:
            # Safety must not depend on adding only caught-up nodes: now and then add a
            # healthy holder straight away, whatever its log.
            shard = sim.rng.randrange(len(self.home))
            outside = [m for m in self.home[shard] if m not in self.view.members(shard)
                       and not sim.down(m)]
            if outside:
                decider.add_member(shard, sim.rng.choice(outside))
        if faulty and sim.rng.random() < config.leader_move_probability:
            shard = sim.rng.randrange(len(self.home))
            candidates = [m for m in self.view.members(shard)[1:] if not sim.down(m)]
            if candidates:
                decider.move_leader(shard, sim.rng.choice(candidates))
        decider.tick()
        proposed = decider.next_view(self.state)
        if proposed is None:
            return
        installed = self.install_rule(self.state, proposed)
        if isinstance(installed, membership.Refused):
            self.sim._fail(f"membership: the agreed state refused epoch {proposed.epoch}"
                          f" ({installed.value}): {proposed.shards}")
            return
        self.state = installed
        self.views += 1
        self.sim.announce_view(installed.view)

    def view_ready(self, shard: int, epoch: int, node_id: str) -> None:
        confirmed = membership.confirm_ready(self.state, shard, epoch, node_id)
        if confirmed is not None:  # else an older view's report: the leader hears of the new one
            self.state = confirmed
            self.sim.confirm_ready(node_id, shard, epoch)

    def caught_up(self, shard: int, node_id: str, epoch: int) -> None:
        self.state = membership.report_caught_up(self.state, shard, node_id, epoch) or self.state


class Simulation:
    def __init__(
        self,
        seed: int,
        config: SimConfig | None = None,
        core_factory: CoreFactory = rc.ReplicaCore,
        membership_factory: DeciderFactory = membership.Decider,
        install_rule: InstallRule = membership.install,
        trace_lines_max: int = 300,
    ) -> None:
        self.seed = seed
        self.config = config or SimConfig.for_seed(seed)
        self.rng = random.Random(seed)
        self.core_factory = core_factory
        self.now = 0
        self.faulty = True
        config = self.config
        self.node_ids = [f"n{i}" for i in range(1, config.node_count + 1)]
        home = tuple(
            tuple(self.node_ids[(shard + k) % config.node_count]
                  for k in range(config.replica_count))
            for shard in range(config.shard_count)
        )
        self.home = home
        self.nodes: dict[str, _Node] = {}
        for node_id in self.node_ids:
            shards = [s for s, members in enumerate(home) if node_id in members]
            self.nodes[node_id] = _Node(node_id, shards, {s: Disk() for s in shards})
        # (tick, node, shard, event or a note such as "crash", actions), the newest last.
        self.trace: deque[tuple[int, str, int, rc.Event | str, list[rc.Action]]] = deque(
            maxlen=trace_lines_max)
        self.messages: list[tuple[int, int, str, str, int, rc.Message]] = []
        self.view_deliveries: list[tuple[int, int, str, View]] = []
        self.confirmations: list[tuple[int, int, str, int, int]] = []
        self.snapshot_deliveries: list[tuple[int, int, str, int, str, int, int]] = []
        self.sequence = 0  # tie-breaker of the heaps: equal ticks keep their sending order
        self.isolated: dict[str, int] = {}  # node -> tick its isolation ends
        self.cut_links: dict[tuple[str, str], int] = {}  # (from, to) -> tick it heals
        self.restarts: dict[str, int] = {}  # node -> tick it restarts
        self.writes: dict[str, WriteRecord] = {}
        self.chosen: list[dict[int, tuple[rc.Term, object]]] = [{} for _ in home]
        self.applied_at: dict[object, int] = {}  # write id -> the index it was applied at
        self.acked: dict[object, tuple[int, int]] = {}  # write id -> (shard, index)
        self.actions: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.oracle = _Oracle(self, home, membership_factory, install_rule)
        self.nodes[self.rng.choice(self.node_ids)].slow = True
        for node_id in self.node_ids:
            self._start_cores(self.nodes[node_id])

    # --- running -------------------------------------------------------------------------

    def run(self) -> SimResult:
        try:
            for _ in range(self.config.fault_ticks):
                self._tick()
            self._stop_faults()
            settle_start = self.now
            while not self._converged():
                if self.now - settle_start >= self.config.settle_ticks_max:
                    self._fail(f"(d) liveness: not converged {self.config.settle_ticks_max}"
                               f" ticks after the faults stopped: {self._unconverged()}")
                self._tick()
            self._final_checks()
        except SimulationFailure:
            raise
        except AssertionError as error:  # a core's invariant, or the oracle's
            self._fail(f"assertion failed: {error!r}")
        outcomes = Counter(
            type(r.outcome).__name__ if not isinstance(r.outcome, str) else r.outcome
            for r in self.writes.values()
        )
        return SimResult(self.seed, self.config, self.now, self.now - settle_start,
                         self.oracle.views, outcomes, self.actions, self.faults)

    def _tick(self) -> None:
        self.now += 1
        self._deliver_views()
        self._deliver_confirmations()
        self._deliver_messages()
        self._complete_disk_ops()
        self._deliver_snapshots()
        for node_id in self.node_ids:
            node = self.nodes[node_id]
            if node.alive and not (self.faulty and node.slow
                                   and self.rng.random() < self.config.slow_clock_probability):
                for shard in node.shards:
                    self._step(node, shard, rc.Tick())
        if self.faulty:
            self._client_write()
            self._inject_faults()
        self._end_expired_faults()
        self.oracle.tick(self.faulty)

    def _step(self, node: _Node, shard: int, event: rc.Event) -> None:
        try:
            actions = node.cores[shard].step(event)
        except AssertionError:
            self.trace.append((self.now, node.node_id, shard, event, []))
            raise
        if actions or not isinstance(event, rc.Tick):
            self.trace.append((self.now, node.node_id, shard, event, actions))
        for action in actions:
            self._perform(node, shard, action)

    # --- the driver: performing actions ------------------------------------------------

    def _perform(self, node: _Node, shard: int, action: rc.Action) -> None:
        self.actions[type(action).__name__] += 1
        disk = node.disks[shard]
        if isinstance(action, rc.Send):
            self.actions["Send." + type(action.message).__name__] += 1
        elif isinstance(action, rc.InstallSnapshot) and action.keep_log_tail:
            self.actions["InstallSnapshot.keep_log_tail"] += 1
        match action:
            case rc.Send():
                self._send(node.node_id, action.to, shard, action.message)
            case rc.SaveTerm():
                if action.term <= disk.promised:
                    self._fail(f"{node.node_id} SaveTerm {action.term} not above {disk.promised}")
                disk.promised = action.term
            case rc.Persist():
                self._queue(disk, DiskOp("persist", 0, entries=action.entries))
            case rc.TruncateLog():
                self._queue(disk, DiskOp("truncate", 0, index=action.from_index))
            case rc.TrimLog():
                self._queue(disk, DiskOp("trim", 0, index=action.through_index,
                                          term=action.term))
            case rc.Apply():
                self._apply(node, shard, action.entry)
            case rc.Reply():
                self._answer(shard, action.write_id, action.outcome)
            case rc.FetchSnapshot():
                delay = self.rng.randint(1, self.config.snapshot_delay_ticks_max)
                self.sequence += 1
                heapq.heappush(self.snapshot_deliveries, (
                    self.now + delay, self.sequence, node.node_id, shard, action.source,
                    action.epoch, node.incarnation))
            case rc.InstallSnapshot():
                self._install_snapshot(node, shard, action)
            case rc.DiscardSnapshot():
                node.staged.pop(shard, None)
            case rc.ViewReady():
                self.oracle.view_ready(action.shard, action.epoch, node.node_id)
            case rc.CaughtUp():
                self.oracle.caught_up(action.shard, action.node, action.epoch)
            case rc.Refused():
                pass

    def _queue(self, disk: Disk, op: DiskOp) -> None:
        tick = self.now + self.rng.randint(0, self.config.disk_delay_ticks_max)
        if disk.queue:
            tick = max(tick, disk.queue[-1].confirm_tick)
        op.confirm_tick = tick
        disk.queue.append(op)

    def _complete_disk_ops(self) -> None:
        for node_id in self.node_ids:
            node = self.nodes[node_id]
            for shard in node.shards:
                disk = node.disks[shard]
                while node.alive and disk.queue and disk.queue[0].confirm_tick <= self.now:
                    op = disk.queue.popleft()
                    if not op.on_disk:
                        self._check(disk.write(op), node, shard)
                    if op.kind == "persist":
                        self._step(node, shard, rc.Persisted(op.entries[-1].index))

    def _apply(self, node: _Node, shard: int, entry: rc.LogEntry) -> None:
        disk = node.disks[shard]
        where = f"{node.node_id} shard {shard}"
        if entry.index != len(disk.applied) + 1:
            self._fail(f"(b) {where} applied index {entry.index} after {len(disk.applied)}")
        if disk.term_at(entry.index) != entry.term:
            self._fail(f"{where} applied {entry.index}@{entry.term}, not durable in its log")
        self._check_chosen(shard, where, entry.index, entry.term, entry.write_id)
        disk.applied.append((entry.index, entry.term, entry.write_id))

    def _check_chosen(self, shard: int, where: str, index: int, term: rc.Term,
                      write_id: object) -> None:
        chosen = self.chosen[shard].get(index)
        if chosen is None and write_id is None:  # a leader's no-op
            self.chosen[shard][index] = (term, write_id)
        elif chosen is None:
            if write_id in self.applied_at:
                self._fail(f"(c) {where}: write {write_id} applied at index {index} and at"
                           f" {self.applied_at[write_id]}")
            record = self.writes.get(str(write_id))
            if record is not None and isinstance(record.outcome, rc.NotCommitted):
                self._fail(f"(e) {where}: write {write_id} answered NotCommitted, applied at"
                           f" {index}")
            self.chosen[shard][index] = (term, write_id)
            self.applied_at[write_id] = index
        elif chosen != (term, write_id):
            earlier = chosen[1]
            if earlier in self.acked:
                self._fail(f"(a) {where}: acknowledged write {earlier} at index {index} lost:"
                           f" {write_id} applied there instead")
            self._fail(f"(b) {where}: applied {write_id} (term {term}) at index {index},"
                       f" where another replica applied {earlier} (term {chosen[0]})")

    def _answer(self, shard: int, write_id: object, outcome: rc.Outcome) -> None:
        record = self.writes.get(str(write_id))
        if record is None or record.outcome is not None:
            self._fail(f"write {write_id} answered twice, or never asked: {outcome}")
            return
        record.outcome = outcome
        if isinstance(outcome, rc.Committed):
            chosen = self.chosen[shard].get(outcome.index)
            if chosen is None or chosen[1] != write_id:
                self._fail(f"(a) write {write_id} acknowledged at index {outcome.index},"
                           f" which holds {chosen}")
            self.acked[write_id] = (shard, outcome.index)
        elif isinstance(outcome, rc.NotCommitted) and write_id in self.applied_at:
            self._fail(f"(e) write {write_id} answered NotCommitted, but it was applied")

    def _install_snapshot(self, node: _Node, shard: int, action: rc.InstallSnapshot) -> None:
        disk = node.disks[shard]
        where = f"{node.node_id} shard {shard}"
        content = node.staged.pop(shard, None)
        if content is None or len(content) != action.index or (
            content and content[-1][1] != action.term
        ):
            self._fail(f"{where}: InstallSnapshot {action.index}@{action.term} is not the"
                       f" staged snapshot")
            return
        for index, term, write_id in content:
            if self.chosen[shard].get(index) != (term, write_id):
                self._fail(f"(b) {where}: snapshot holds {write_id} at {index}")
        for op in disk.queue:  # synchronous: everything queued before it reaches the disk
            if not op.on_disk:
                self._check(disk.write(op), node, shard)
        disk.applied = list(content)
        if action.keep_log_tail:
            if disk.term_at(action.index) != action.term:
                self._fail(f"{where}: keep_log_tail, but the disk log lacks {action.index}")
            del disk.log[: action.index - disk.trimmed_index]
        else:
            disk.log.clear()
        disk.trimmed_index, disk.trimmed_term = action.index, action.term

    # --- the network, snapshots, views --------------------------------------------------

    def _send(self, sender: str, to: str, shard: int, message: rc.Message) -> None:
        config = self.config
        copies = 1
        if self.faulty:
            if self.rng.random() < config.drop_probability:
                self.faults["dropped"] += 1
                return
            if self.rng.random() < config.duplicate_probability:
                copies = 2
        for _ in range(copies):
            self.sequence += 1
            delay = self.rng.randint(1, config.message_delay_ticks_max)
            heapq.heappush(self.messages,
                           (self.now + delay, self.sequence, sender, to, shard, message))

    def reachable(self, sender: str, to: str) -> bool:
        return (sender not in self.isolated and to not in self.isolated
                and (sender, to) not in self.cut_links)

    def down(self, node_id: str) -> bool:
        """As membership sees it: crashed, dead or isolated."""
        return not self.nodes[node_id].alive or node_id in self.isolated

    def _deliver_messages(self) -> None:
        while self.messages and self.messages[0][0] <= self.now:
            _, _, sender, to, shard, message = heapq.heappop(self.messages)
            node = self.nodes[to]
            if node.alive and self.reachable(sender, to):
                self._step(node, shard, rc.Received(sender, message))

    def _deliver_snapshots(self) -> None:
        while self.snapshot_deliveries and self.snapshot_deliveries[0][0] <= self.now:
            _, _, node_id, shard, source, epoch, incarnation = heapq.heappop(
                self.snapshot_deliveries)
            node = self.nodes[node_id]
            if not node.alive or node.incarnation != incarnation:
                continue  # asked by an earlier life of the node
            source_node = self.nodes[source]
            if (source_node.alive and shard in source_node.disks
                    and self.reachable(source, node_id)):
                content = list(source_node.disks[shard].applied)
                node.staged[shard] = content
                term = content[-1][1] if content else rc.NO_TERM
                self._step(node, shard, rc.SnapshotFetched(epoch, len(content), term))
            else:
                self._step(node, shard, rc.SnapshotFetchFailed(epoch))

    def announce_view(self, view: View) -> None:
        for node_id in self.node_ids:
            if not self.down(node_id):
                self._schedule_view(node_id, view)

    def _schedule_view(self, node_id: str, view: View) -> None:
        self.sequence += 1
        delay = self.rng.randint(1, self.config.view_delay_ticks_max)
        heapq.heappush(self.view_deliveries, (self.now + delay, self.sequence, node_id, view))

    def confirm_ready(self, node_id: str, shard: int, epoch: int) -> None:
        self.sequence += 1
        delay = self.rng.randint(1, self.config.view_delay_ticks_max)
        heapq.heappush(self.confirmations, (self.now + delay, self.sequence, node_id, shard,
                                            epoch))

    def _deliver_confirmations(self) -> None:
        while self.confirmations and self.confirmations[0][0] <= self.now:
            _, _, node_id, shard, epoch = heapq.heappop(self.confirmations)
            if not self.down(node_id):
                self._step(self.nodes[node_id], shard, rc.ReadyConfirmed(shard, epoch))

    def _deliver_views(self) -> None:
        while self.view_deliveries and self.view_deliveries[0][0] <= self.now:
            _, _, node_id, view = heapq.heappop(self.view_deliveries)
            node = self.nodes[node_id]
            if not self.down(node_id):
                for shard in node.shards:
                    self._step(node, shard, rc.ViewInstalled(view))

    # --- clients and faults -----------------------------------------------------------

    def _client_write(self) -> None:
        rng, config = self.rng, self.config
        if rng.random() >= config.write_probability:
            return
        shard = rng.randrange(config.shard_count)
        if rng.random() < config.wrong_route_probability:
            target = rng.choice(self.home[shard])
        else:
            target = self.oracle.view.leader(shard)
        write_id = f"s{shard}w{len(self.writes) + 1}"
        record = self.writes[write_id] = WriteRecord(shard, target, self.now)
        node = self.nodes[target]
        if not node.alive:
            record.outcome = "unreachable"
            return
        self._step(node, shard, rc.ClientWrite(write_id, write_id, rng.randint(1, 120)))

    def _inject_faults(self) -> None:
        rng, config = self.rng, self.config
        alive = [n for n in self.node_ids if self.nodes[n].alive]
        if alive and rng.random() < config.crash_probability:
            node_id = rng.choice(alive)
            self._crash(self.nodes[node_id])
            self.restarts[node_id] = self.now + rng.randint(config.restart_ticks_min,
                                                            config.restart_ticks_max)
        if alive and rng.random() < config.kill_probability and not self.faults["killed"]:
            node_id = rng.choice(alive)
            if self._may_kill(node_id):
                self._crash(self.nodes[node_id])
                self.nodes[node_id].dead = True
                self.faults["killed"] += 1
        if rng.random() < config.isolate_probability:
            node_id = rng.choice(self.node_ids)
            self.isolated.setdefault(node_id, self.now + rng.randint(1, config.isolate_ticks_max))
            self.faults["isolated"] += 1
        if rng.random() < config.link_cut_probability:
            sender, to = rng.sample(self.node_ids, 2)
            self.cut_links.setdefault((sender, to),
                                      self.now + rng.randint(1, config.link_cut_ticks_max))
            self.faults["link_cut"] += 1

    def _may_kill(self, node_id: str) -> bool:
        """Only while each shard of the node keeps a replica: another member of its last
        ready view that is not dead (at most one node dies, so it stays)."""
        for shard in range(len(self.home)):
            ready = self.oracle.ready_members(shard)
            if node_id in self.home[shard] and not any(
                m != node_id and not self.nodes[m].dead for m in ready
            ):
                return False
        return True

    def _crash(self, node: _Node) -> None:
        self.faults["crashed"] += 1
        node.alive = False
        node.incarnation += 1
        self.trace.append((self.now, node.node_id, -1, "crash", []))
        for shard in node.shards:
            disk = node.disks[shard]
            queued = [op for op in disk.queue if not op.on_disk]
            for op in queued[: self.rng.randint(0, len(queued))]:  # what reached the disk
                self._check(disk.write(op), node, shard)
            disk.queue.clear()
        node.cores.clear()
        node.staged.clear()
        for record in self.writes.values():
            if record.node == node.node_id and record.outcome is None:
                record.outcome = "crashed"

    def _start_cores(self, node: _Node) -> None:
        node.alive = True
        for shard in node.shards:
            node.cores[shard] = self.core_factory(
                node.node_id, shard, node.disks[shard].recovered(), self.config.settings)
            # Membership hands a starting node the current view before anything else.
            self._step(node, shard, rc.ViewInstalled(self.oracle.view))

    def _end_expired_faults(self) -> None:
        for node_id, tick in list(self.restarts.items()):
            if tick <= self.now:
                del self.restarts[node_id]
                if not self.nodes[node_id].dead:
                    self.trace.append((self.now, node_id, -1, "restart", []))
                    self._start_cores(self.nodes[node_id])
        for node_id, tick in list(self.isolated.items()):
            if tick <= self.now:
                del self.isolated[node_id]
                if self.nodes[node_id].alive:
                    self._schedule_view(node_id, self.oracle.view)
        for link, tick in list(self.cut_links.items()):
            if tick <= self.now:
                del self.cut_links[link]

    def _stop_faults(self) -> None:
        self.faulty = False
        self.trace.append((self.now, "-", -1, "faults stop", []))
        for node_id in list(self.isolated):
            self.isolated[node_id] = self.now
        for link in list(self.cut_links):
            self.cut_links[link] = self.now
        for node_id in self.node_ids:
            if not self.nodes[node_id].alive and not self.nodes[node_id].dead:
                self.restarts[node_id] = self.now
        self._end_expired_faults()

    # --- checks -------------------------------------------------------------------------

    def _unconverged(self) -> list[str]:
        problems = []
        unanswered = [w for w, r in self.writes.items() if r.outcome is None]
        if unanswered:
            problems.append(f"unanswered writes {unanswered[:5]}")
        view = self.oracle.view
        for shard, home in enumerate(self.home):
            expected = sorted(n for n in home if not self.nodes[n].dead)
            members = view.members(shard)
            if sorted(members) != expected:
                problems.append(f"shard {shard} view {members}, expected {expected}")
                continue
            leader = self.nodes[members[0]].cores[shard]
            if leader.role is not rc.Role.READY or leader.epoch != view.epoch:
                problems.append(f"shard {shard} leader {members[0]} {leader.role.value}"
                                f" epoch {leader.epoch} (view {view.epoch})")
                continue
            for member in members:
                core = self.nodes[member].cores[shard]
                if core.epoch != view.epoch or core.applied_index != leader.last_index:
                    problems.append(f"shard {shard} {member} epoch {core.epoch} applied"
                                    f" {core.applied_index} of {leader.last_index}")
        return problems

    def _converged(self) -> bool:
        return not self._unconverged()

    def _final_checks(self) -> None:
        view = self.oracle.view
        for write_id, (shard, index) in self.acked.items():
            for member in view.members(shard):
                applied = self.nodes[member].disks[shard].applied
                if len(applied) < index or applied[index - 1][2] != write_id:
                    self._fail(f"(a) acknowledged write {write_id} (index {index}) missing"
                               f" on {member}, a member of the final view")
        for shard in range(self.config.shard_count):
            members = view.members(shard)
            reference = self.nodes[members[0]].disks[shard].applied
            for member in members[1:]:
                if self.nodes[member].disks[shard].applied != reference:
                    self._fail(f"(b) shard {shard}: {member}'s applied state differs from"
                               f" {members[0]}'s")
            write_ids = [w for _, _, w in reference if w is not None]
            if len(set(write_ids)) != len(write_ids):
                self._fail(f"(c) shard {shard}: a write applied twice")
        for write_id, record in self.writes.items():
            if isinstance(record.outcome, rc.NotCommitted) and write_id in self.applied_at:
                self._fail(f"(e) {write_id} answered NotCommitted, but applied")

    def _check(self, problem: str | None, node: _Node, shard: int) -> None:
        if problem is not None:
            self._fail(f"driver contract, {node.node_id} shard {shard}: {problem}")

    def _fail(self, problem: str) -> None:
        lines = []
        for tick, node_id, shard, event, actions in self.trace:
            if isinstance(event, str):
                lines.append(f"t={tick} {node_id} {event}")
                continue
            lines.append(f"t={tick} {node_id}/s{shard} {trace.event(event)}")
            lines.extend(f"    {trace.action(a)}" for a in actions)
        raise SimulationFailure(self.seed, problem, lines[-FAILURE_TRACE_LINES_MAX:])


def run_simulation(seed: int, config: SimConfig | None = None,
                   core_factory: CoreFactory = rc.ReplicaCore,
                   membership_factory: DeciderFactory = membership.Decider,
                   install_rule: InstallRule = membership.install,
                   ) -> SimResult:
    """One run; raises ``SimulationFailure`` (seed, property, trace) on any violation."""
    return Simulation(seed, config, core_factory, membership_factory, install_rule).run()
