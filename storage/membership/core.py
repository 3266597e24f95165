"""Membership decisions, as a state machine that does no I/O: who is alive, and which
view (epoch + members of every shard, leader first) the store runs in.

This is the deciding logic of the membership group. DESIGN.md has the group agree on its
decisions through Raft (pysyncobj), so that a minority partition can never install a
view; that replication of the decisions is the driver's work and is NOT built yet. Here
one ``MembershipCore`` decides, and ``storage/replication/sim.py`` runs it against the
shards' replication cores (``storage/replication/core.py``) through crashes and
partitions.

Rules
-----

1. **Failure detection in ticks.** Every node sends heartbeats (``Heartbeat(node)``);
   a node not heard from for ``suspect_ticks`` is suspected. A heartbeat ends the
   suspicion.
2. **Epochs strictly increase**; each decided view is announced (``InstallView``).
3. **Removing.** A suspected member is removed from every shard's view, except as the
   ready rule (5) forbids. A shard's leader stays if it is kept; if not, the first
   healthy member (in view order) leads.
4. **Adding back.** A node holding a shard (one of its ``holders``) that the shard's
   leader reports ``CaughtUp`` in the current epoch, and that is not suspected, is
   appended to the shard's members. ``add_member`` and ``move_leader`` let an operator
   (or a test) do the same at any time: safety never depends on when a node is added.
5. **The ready rule** (what keeps acknowledged writes, ``storage/replication/core.py``):
   per shard, R is the members of the last view whose ``ViewReady`` was confirmed. A
   ``ViewReady(shard, epoch)`` from the leader of the CURRENT view is recorded (R := its
   members) and only then confirmed (``ConfirmReady``). No view is decided whose members
   for a shard include no member of R: if no member of R is healthy in the view, healthy
   members of R outside it are brought back; if there are none, the suspected members
   of R are kept and the shard waits for one of them.
6. **Bounds.** At most one new view per tick (views are decided on ``Tick``; changes
   gather meanwhile); at most ``limits.membership_nodes_max`` nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from storage import limits
from storage.placement import View

NodeId: TypeAlias = str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    node: NodeId


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class ViewReadyReported:
    """A shard leader's ``ViewReady(shard, epoch)`` (storage/replication/core.py)."""

    shard: int
    epoch: int
    node: NodeId


@dataclass(frozen=True, slots=True)
class CaughtUpReported:
    """A shard leader's ``CaughtUp(shard, node, epoch, index)``."""

    shard: int
    node: NodeId
    epoch: int


Event: TypeAlias = Heartbeat | Tick | ViewReadyReported | CaughtUpReported


@dataclass(frozen=True, slots=True)
class InstallView:
    """Announce ``view`` to every node (each installs it as ``ViewInstalled``)."""

    view: View


@dataclass(frozen=True, slots=True)
class ConfirmReady:
    """Tell ``node`` its ``ViewReady`` is recorded (``ReadyConfirmed(shard, epoch)``)."""

    node: NodeId
    shard: int
    epoch: int


Action: TypeAlias = InstallView | ConfirmReady


class MembershipCore:
    def __init__(self, first_view: View, holders: Sequence[Sequence[NodeId]],
                 suspect_ticks: int = limits.membership_suspect_ticks) -> None:
        """``holders[shard]``: the nodes that may hold the shard (its placement)."""
        assert suspect_ticks >= 1 and len(holders) == first_view.shard_count
        nodes = {n for members in holders for n in members}
        assert len(nodes) <= limits.membership_nodes_max
        assert all(set(m) <= set(h) for m, h in zip(first_view.shards, holders, strict=True))
        self.suspect_ticks = suspect_ticks
        self.holders = tuple(tuple(h) for h in holders)
        self._nodes = sorted(nodes)
        self._view = first_view
        self._ready: list[tuple[NodeId, ...]] = list(first_view.shards)  # R per shard
        self._now = 0
        self._heard: dict[NodeId, int] = dict.fromkeys(self._nodes, 0)
        self._wanted: list[tuple[NodeId, ...]] = list(first_view.shards)  # the next view
        self._actions: list[Action] = []

    @property
    def view(self) -> View:
        return self._view

    @property
    def nodes(self) -> tuple[NodeId, ...]:
        """Every node that holds a shard: the ones whose heartbeats count."""
        return tuple(self._nodes)

    def ready_members(self, shard: int) -> tuple[NodeId, ...]:
        return self._ready[shard]

    def suspected(self, node: NodeId) -> bool:
        return self._now - self._heard[node] >= self.suspect_ticks

    def step(self, event: Event) -> list[Action]:
        match event:
            case Heartbeat():
                assert event.node in self._heard, f"unknown node {event.node}"
                self._heard[event.node] = self._now
            case Tick():
                self._now += 1
                self._decide()
            case ViewReadyReported():
                self._on_view_ready(event)
            case CaughtUpReported():
                view = self._view
                if (event.epoch == view.epoch and event.node not in view.members(event.shard)
                        and event.node in self.holders[event.shard]
                        and not self.suspected(event.node)):
                    self.add_member(event.shard, event.node)
        self._check_invariants()
        actions, self._actions = self._actions, []
        return actions

    def add_member(self, shard: int, node: NodeId) -> None:
        """Append ``node`` to the shard's members in the next view."""
        assert node in self.holders[shard]
        if node not in self._wanted[shard]:
            self._wanted[shard] = (*self._wanted[shard], node)

    def move_leader(self, shard: int, node: NodeId) -> None:
        """Make ``node`` (a member) the shard's leader in the next view."""
        members = self._wanted[shard]
        assert node in members
        self._wanted[shard] = (node, *[m for m in members if m != node])

    def _on_view_ready(self, event: ViewReadyReported) -> None:
        view = self._view
        if event.epoch != view.epoch or event.node != view.leader(event.shard):
            return  # an older view's report: the leader will hear of the new view
        self._ready[event.shard] = view.members(event.shard)
        self._actions.append(ConfirmReady(event.node, event.shard, event.epoch))

    def _decide(self) -> None:
        wanted = [self._without_suspects(s, m) for s, m in enumerate(self._wanted)]
        self._wanted = wanted
        if tuple(wanted) == self._view.shards:
            return
        self._view = View(self._view.epoch + 1, tuple(wanted))
        self._actions.append(InstallView(self._view))

    def _without_suspects(self, shard: int, members: tuple[NodeId, ...]) -> tuple[NodeId, ...]:
        ready = self._ready[shard]
        keep = [m for m in members if not self.suspected(m)]
        if not any(m in ready for m in keep):
            returning = [m for m in ready if not self.suspected(m) and m not in keep]
            keep = keep + returning if returning else [
                m for m in members if not self.suspected(m) or m in ready]
        if not keep:
            return members
        if keep[0] != members[0]:  # the leader goes: the first healthy member leads
            healthy = [m for m in keep if not self.suspected(m)] or keep
            keep = [healthy[0], *[m for m in keep if m != healthy[0]]]
        return tuple(keep)

    def _check_invariants(self) -> None:
        for shard, members in enumerate(self._view.shards):
            assert members and any(m in self._ready[shard] for m in members), "the ready rule"
            assert len(set(members)) == len(members) and set(members) <= set(self.holders[shard])
