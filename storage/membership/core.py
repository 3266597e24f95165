"""Membership decisions, as code that does no I/O: who is alive, which view (epoch +
members of every shard, leader first) comes next, and the rule the agreed state enforces.

This is the ONE membership decider. The cluster nodes run it (``storage/cluster_node.py``:
the node that leads the Raft agreement plans with its ``Decider`` and proposes through
``storage/membership/agreement.py``, whose replicated state applies ``install``,
``confirm_ready`` and ``report_caught_up`` below), and the seeded simulation
(``storage/replication/sim.py``) runs the very same ``Decider`` and the very same state
functions (the agreement's state machine, modelled deterministically: one copy, every
command applied in order) against the shards' replication cores through crashes and
partitions. So the rule whose safety the simulation checks is the rule the nodes apply.

Why this decider and not the former ``planner.py`` (the nodes' decider until then: a
carrier set K per shard, narrowed to K ∩ members at every view and reset by a
``ViewReady``): this one is the one the simulation had checked over thousands of seeds
(and against a deliberately broken variant), the other was checked by nothing but unit
tests; and its rule is the better one. K always lies inside the current view, so when
views change faster than leaders get ready, K can narrow to one member, and if that
member then dies the shard waits forever although other nodes (members of the last
ready view) hold every committed entry: the stranding the simulation found (seed 391)
in the first carrier-set design, which had no reset at all. (For the planner's variant
this is reasoning, not a reproduced run.) The ready rule remembers only the last
CONFIRMED view, which is exactly what the replication core's safety argument needs,
and may bring a healthy member of it back from outside the current view.

Rules
-----

1. **Failure detection in ticks** (``Decider``). ``heard(node)`` when a node answers (a
   heartbeat); a node not heard from for ``suspect_ticks`` is suspected; hearing from it
   ends the suspicion at once. The decider reads no clock and draws no random numbers.
2. **The agreed state** (``Agreed``): the current view; per shard R, the members of the
   last view whose ``ViewReady`` was confirmed (at first, the first view's); the
   ``CaughtUp`` reports of the current epoch. Every node applies the same commands to it
   in the same order (Raft), through the functions here:

   - ``install(state, view)``: compare-and-set; only the next epoch, and only if the view
     keeps the ready rule (``keeps_ready``); else ``Refused.STALE`` /
     ``Refused.READY_RULE`` and the state is unchanged. A view with another shard count
     (an operator resharding: no data moves with it, the replication contract does not
     cover it) starts R afresh as its members.
   - ``confirm_ready(state, shard, epoch, node)``: a ``ViewReady`` from the leader of the
     CURRENT view is recorded (R := its members); only then is it confirmed.
   - ``report_caught_up(state, shard, node, epoch)``: kept for the current epoch only
     (at most ``limits.membership_caught_up_reports_max``).
3. **The ready rule** (what keeps acknowledged writes, ``storage/replication/core.py``):
   no view is installed whose members for a shard include no member of R.
4. **Deciding the next view** (``Decider.next_view``), from the agreed state:
   - add back a node that holds the shard (``holders``), is not suspected and was
     reported ``CaughtUp`` in the current epoch; ``add_member`` and ``move_leader`` let
     an operator (or the simulation) ask for the same at any time: safety never depends
     on when a node is added;
   - remove every suspected member, except as the ready rule forbids: if no member of R
     is healthy in the view, healthy members of R outside it are brought back; if there
     are none, the suspected members of R are kept and the shard waits for one of them;
   - a shard's leader stays if it is kept; if not, the first healthy member leads;
   - one new view at a time (epoch + 1); the agreement's compare-and-set makes a
     concurrent proposal harmless.
5. **Bounds.** At most ``limits.membership_nodes_max`` nodes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeAlias

from storage import limits
from storage.placement import View

NodeId: TypeAlias = str
Ready: TypeAlias = tuple[tuple[NodeId, ...], ...]  # R per shard


@dataclass(frozen=True, slots=True)
class Agreed:
    """The membership group's replicated state (agreement.py holds it in Raft)."""

    view: View
    ready: Ready  # per shard, the members of the last view whose ViewReady was confirmed
    caught_up: tuple[tuple[int, NodeId], ...] = ()  # (shard, node) in the current epoch

    @classmethod
    def first(cls, view: View) -> Agreed:
        return cls(view, view.shards)


class Refused(enum.Enum):
    STALE = "stale"  # not the next epoch: another view won
    READY_RULE = "ready rule"  # a shard would keep no member of its last ready view


def keeps_ready(ready: Ready, view: View) -> bool:
    """The ready rule: every shard of ``view`` has a member of its last ready view."""
    if len(ready) != view.shard_count:
        return True  # resharding starts afresh (install)
    return all(any(m in kept for m in members)
               for kept, members in zip(ready, view.shards, strict=True))


def install(state: Agreed, view: View) -> Agreed | Refused:
    if view.epoch != state.view.epoch + 1:
        return Refused.STALE
    if not keeps_ready(state.ready, view):
        return Refused.READY_RULE
    ready = state.ready if len(state.ready) == view.shard_count else view.shards
    return Agreed(view, ready)


def confirm_ready(state: Agreed, shard: int, epoch: int, node: NodeId) -> Agreed | None:
    """None: not the current view's leader of ``shard`` (an older view's report)."""
    view = state.view
    if epoch != view.epoch or not 0 <= shard < view.shard_count or node != view.leader(shard):
        return None
    ready = tuple(view.members(shard) if index == shard else kept
                  for index, kept in enumerate(state.ready))
    return replace(state, ready=ready)


def report_caught_up(state: Agreed, shard: int, node: NodeId, epoch: int) -> Agreed | None:
    """None: not the current epoch, or already reported."""
    if epoch != state.view.epoch or (shard, node) in state.caught_up:
        return None
    if len(state.caught_up) >= limits.membership_caught_up_reports_max:
        return state
    return replace(state, caught_up=(*state.caught_up, (shard, node)))


class Decider:
    def __init__(self, nodes: Iterable[NodeId], holders: Sequence[Sequence[NodeId]],
                 suspect_ticks: int = limits.membership_suspect_after_ticks) -> None:
        """``nodes``: every node whose heartbeats count; ``holders[shard]``: the nodes
        that may hold the shard (its placement)."""
        assert suspect_ticks >= 1
        self.suspect_ticks = suspect_ticks
        self.holders = tuple(tuple(h) for h in holders)
        self._nodes = sorted(set(nodes) | {n for h in self.holders for n in h})
        assert len(self._nodes) <= limits.membership_nodes_max
        self._now = 0
        self._heard: dict[NodeId, int] = dict.fromkeys(self._nodes, 0)
        self._adds: list[tuple[int, NodeId]] = []  # operator requests for the next view
        self._moves: list[tuple[int, NodeId]] = []

    @property
    def nodes(self) -> tuple[NodeId, ...]:
        return tuple(self._nodes)

    def heard(self, node: NodeId) -> None:
        if node in self._heard:
            self._heard[node] = self._now

    def tick(self) -> None:
        self._now += 1

    def suspected(self, node: NodeId) -> bool:
        return self._now - self._heard[node] >= self.suspect_ticks

    def add_member(self, shard: int, node: NodeId) -> None:
        """Append ``node`` to the shard's members in the next view."""
        assert node in self.holders[shard]
        self._adds.append((shard, node))

    def move_leader(self, shard: int, node: NodeId) -> None:
        """Make ``node`` (a member then) the shard's leader in the next view."""
        self._moves.append((shard, node))

    def next_view(self, state: Agreed) -> View | None:
        """The view to propose next (module rule 4); None: nothing to change. Operator
        requests are used up by the call."""
        view = state.view
        assert view.shard_count == len(self.holders)
        wanted = [list(members) for members in view.shards]
        adds = [*((s, n) for s, n in state.caught_up if not self.suspected(n)), *self._adds]
        for shard, node in adds:
            if node in self.holders[shard] and node not in wanted[shard]:
                wanted[shard].append(node)
        for shard, node in self._moves:
            if node in wanted[shard]:
                wanted[shard] = [node, *[m for m in wanted[shard] if m != node]]
        self._adds, self._moves = [], []
        shards = tuple(self._without_suspects(state.ready[shard], tuple(members))
                       for shard, members in enumerate(wanted))
        if shards == view.shards:
            return None
        decided = View(view.epoch + 1, shards)
        assert keeps_ready(state.ready, decided), "the ready rule"
        return decided

    def _without_suspects(self, ready: tuple[NodeId, ...], members: tuple[NodeId, ...]
                          ) -> tuple[NodeId, ...]:
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
