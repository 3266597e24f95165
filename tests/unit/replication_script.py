"""A scripted driver for replication cores (etcd-raft's datadriven tests, in miniature).

A script is a text file of commands (``> command``) each followed by what it made the
cores do, one line per event and one indented line per action (``storage/replication/
trace.py``). The test re-runs the commands and compares the whole text with the file, so
any change of protocol behaviour shows up as a diff; ``SQUALL_REWRITE_SCRIPTS=1`` writes
the new text instead (then read the diff before committing it).

Nothing happens by itself: messages wait in flight until ``deliver``, disk writes wait
until ``persist``, time moves only with ``tick``, and membership speaks only through
``view`` and ``confirm``. Commands:

    nodes N...                  cores with empty disks
    view EPOCH M... [only N...] membership decides a view (one shard, leader first) and
                                installs it on every live node (or only on N...)
    install N                   install membership's current view on N
    confirm N                   membership records N's ViewReady (ReadyConfirmed)
    write N ID                  a client write to N
    deliver [FROM|*] [TO|*]     deliver the messages in flight (from, to), in order
    drop [FROM|*] [TO|*]        lose them
    hold FROM TO / release      set messages aside / put them back in flight
    persist [N...]              N's disk writes land, in order (Persisted events)
    tick N [COUNT]
    snapshot N                  N's snapshot fetch completes (from its source's state)
    crash N / restart N         lose volatile state and unconfirmed disk writes / start
                                again from disk with membership's current view
    stabilize                   persist and deliver until nothing is left
    status / replies            each core's position / the clients' answers so far
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field

from storage.placement import View
from storage.replication import core as rc
from storage.replication import trace
from storage.replication.sim import Disk, DiskOp

SCRIPT_SETTINGS = rc.Settings(
    entries_in_flight_max=4,
    entries_per_message_max=2,
    message_bytes_max=1000,
    log_entries_max=4,
    pending_writes_max=4,
    pending_bytes_max=1000,
    learners_max=1,
    retransmit_ticks=4,
    heartbeat_ticks=2,
    learner_idle_ticks_max=20,
    caught_up_report_ticks=10,
    snapshot_wait_ticks=10,
)
STABILIZE_ROUNDS_MAX = 50

CoreFactory = Callable[[str, int, rc.Recovered, rc.Settings], rc.ReplicaCore]


@dataclass
class _Node:
    node_id: str
    core: rc.ReplicaCore
    disk: Disk = field(default_factory=Disk)
    queue: list[DiskOp] = field(default_factory=list)  # not yet confirmed
    snapshot_request: tuple[str, int] | None = None  # (source, epoch)
    staged: list[tuple[int, rc.Term, object]] | None = None
    alive: bool = True


class Script:
    def __init__(self, settings: rc.Settings = SCRIPT_SETTINGS,
                 core_factory: CoreFactory = rc.ReplicaCore) -> None:
        self.settings = settings
        self.core_factory = core_factory
        self.nodes: dict[str, _Node] = {}
        self.in_flight: list[tuple[str, str, rc.Message]] = []
        self.held: list[tuple[str, str, rc.Message]] = []
        self.view: View | None = None
        self.replies: dict[object, rc.Outcome] = {}
        self.lines: list[str] = []

    # --- running a script file ----------------------------------------------------------

    def run_text(self, text: str) -> str:
        """Re-run the commands of ``text``; the same text with fresh outputs."""
        out: list[str] = []
        for line in text.splitlines():
            if not line.startswith(("> ", "#")):
                continue  # an old output line (or a blank one): made again below
            if out and out[-1] and not out[-1].startswith("#"):
                out.append("")
            out.append(line)
            if line.startswith("> "):
                out.extend(self.run(line[2:]))
        return "\n".join(out) + "\n"

    def run(self, command: str) -> list[str]:
        self.lines = []
        name, *args = command.split()
        handler = getattr(self, "_cmd_" + name.replace("-", "_"), None)
        assert handler is not None, f"unknown command: {command}"
        handler(*args)
        return self.lines

    # --- commands -----------------------------------------------------------------------

    def _cmd_nodes(self, *node_ids: str) -> None:
        for node_id in node_ids:
            self.nodes[node_id] = _Node(node_id, self._new_core(node_id, rc.Recovered()))

    def _cmd_view(self, epoch: str, *rest: str) -> None:
        members, only = (rest[: rest.index("only")], rest[rest.index("only") + 1 :]) \
            if "only" in rest else (rest, tuple(self.nodes))
        self.view = View(int(epoch), (tuple(members),))
        for node_id in only:
            if self.nodes[node_id].alive:
                self._step(node_id, rc.ViewInstalled(self.view))

    def _cmd_install(self, node_id: str) -> None:
        assert self.view is not None
        self._step(node_id, rc.ViewInstalled(self.view))

    def _cmd_confirm(self, node_id: str) -> None:
        core = self.nodes[node_id].core
        self._step(node_id, rc.ReadyConfirmed(core.shard, core.epoch))

    def _cmd_write(self, node_id: str, write_id: str) -> None:
        self._step(node_id, rc.ClientWrite(write_id, write_id, 10))

    def _matching(self, sender: str, to: str) -> list[tuple[str, str, rc.Message]]:
        return [m for m in self.in_flight
                if sender in ("*", m[0]) and to in ("*", m[1])]

    def _cmd_deliver(self, sender: str = "*", to: str = "*") -> None:
        chosen = self._matching(sender, to)
        self.in_flight = [m for m in self.in_flight if m not in chosen]
        for source, target, message in chosen:
            if self.nodes[target].alive:
                self._step(target, rc.Received(source, message))

    def _cmd_drop(self, sender: str = "*", to: str = "*") -> None:
        chosen = self._matching(sender, to)
        self.in_flight = [m for m in self.in_flight if m not in chosen]
        self.lines.extend(f"dropped {s} -> {t} {trace.message(m)}" for s, t, m in chosen)

    def _cmd_hold(self, sender: str, to: str) -> None:
        chosen = self._matching(sender, to)
        self.in_flight = [m for m in self.in_flight if m not in chosen]
        self.held.extend(chosen)
        self.lines.extend(f"held {s} -> {t} {trace.message(m)}" for s, t, m in chosen)

    def _cmd_release(self) -> None:
        self.in_flight.extend(self.held)
        self.held = []

    def _cmd_persist(self, *node_ids: str) -> None:
        for node_id in node_ids or tuple(self.nodes):
            node = self.nodes[node_id]
            while node.alive and node.queue:
                op = node.queue.pop(0)
                if not op.on_disk:
                    problem = node.disk.write(op)
                    assert problem is None, problem
                if op.kind == "persist":
                    self._step(node_id, rc.Persisted(op.entries[-1].index))

    def _cmd_tick(self, node_id: str, count: str = "1") -> None:
        for _ in range(int(count)):
            self._step(node_id, rc.Tick())

    def _cmd_snapshot(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert node.snapshot_request is not None, f"{node_id} asked for no snapshot"
        source, epoch = node.snapshot_request
        node.snapshot_request = None
        node.staged = list(self.nodes[source].disk.applied)
        term = node.staged[-1][1] if node.staged else rc.NO_TERM
        self._step(node_id, rc.SnapshotFetched(epoch, len(node.staged), term))

    def _cmd_crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.alive = False
        node.queue = []
        node.snapshot_request = node.staged = None
        self.lines.append(f"{node_id} crashed")

    def _cmd_restart(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.alive = True
        node.core = self._new_core(node_id, node.disk.recovered())
        self.lines.append(f"{node_id} restarted")
        assert self.view is not None
        self._step(node_id, rc.ViewInstalled(self.view))

    def _cmd_stabilize(self) -> None:
        for _ in range(STABILIZE_ROUNDS_MAX):
            if not self.in_flight and not any(n.queue for n in self.nodes.values() if n.alive):
                return
            self._cmd_persist()
            self._cmd_deliver()
        raise AssertionError("stabilize: still busy")

    def _cmd_status(self) -> None:
        for node_id, node in self.nodes.items():
            if not node.alive:
                self.lines.append(f"{node_id}: down")
                continue
            core = node.core
            self.lines.append(
                f"{node_id}: {core.role.value} epoch={core.epoch} term={trace.term(core.term)}"
                f" last={trace.position(core.last_index, core.last_term)}"
                f" durable={core.durable_index} commit={core.commit_index}"
                f" applied={core.applied_index}")

    def _cmd_replies(self) -> None:
        for write_id, outcome in self.replies.items():
            self.lines.append(f"{write_id}: {trace.outcome(outcome)}")

    # --- the driver ---------------------------------------------------------------------

    def _new_core(self, node_id: str, recovered: rc.Recovered) -> rc.ReplicaCore:
        return self.core_factory(node_id, 0, recovered, self.settings)

    def _step(self, node_id: str, event: rc.Event) -> None:
        node = self.nodes[node_id]
        actions = node.core.step(event)
        if actions or not isinstance(event, rc.Tick):
            self.lines.append(f"{node_id}: {trace.event(event)}")
            self.lines.extend(f"  {trace.action(a)}" for a in actions)
        for action in actions:
            self._perform(node, action)

    def _perform(self, node: _Node, action: rc.Action) -> None:
        match action:
            case rc.Send():
                self.in_flight.append((node.node_id, action.to, action.message))
            case rc.SaveTerm():
                node.disk.promised = action.term
            case rc.Persist():
                node.queue.append(DiskOp("persist", 0, entries=action.entries))
            case rc.TruncateLog():
                node.queue.append(DiskOp("truncate", 0, index=action.from_index))
            case rc.TrimLog():
                node.queue.append(DiskOp("trim", 0, index=action.through_index, term=action.term))
            case rc.Apply():
                entry = action.entry
                assert entry.index == len(node.disk.applied) + 1
                node.disk.applied.append((entry.index, entry.term, entry.write_id))
            case rc.Reply():
                self.replies[action.write_id] = action.outcome
            case rc.FetchSnapshot():
                node.snapshot_request = (action.source, action.epoch)
            case rc.InstallSnapshot():
                self._install_snapshot(node, action)
            case rc.DiscardSnapshot():
                node.staged = None

    def _install_snapshot(self, node: _Node, action: rc.InstallSnapshot) -> None:
        disk, content = node.disk, node.staged
        assert content is not None and len(content) == action.index
        for op in node.queue:  # synchronous: what was queued before reaches the disk
            if not op.on_disk:
                problem = disk.write(op)
                assert problem is None, problem
        disk.applied = list(content)
        if action.keep_log_tail:
            del disk.log[: action.index - disk.trimmed_index]
        else:
            disk.log.clear()
        disk.trimmed_index, disk.trimmed_term = action.index, action.term
        node.staged = None


def check_script(path: pathlib.Path, rewrite: bool,
                 core_factory: CoreFactory = rc.ReplicaCore) -> tuple[str, str]:
    """(expected, actual) text of one script file; with ``rewrite``, actual is written."""
    expected = path.read_text()
    actual = Script(core_factory=core_factory).run_text(expected)
    if rewrite and actual != expected:
        path.write_text(actual)
    return expected, actual
