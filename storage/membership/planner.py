"""Who is in the next view: failure detection and view planning, as code that does no I/O.

Rules and theory of operation:

* Time is ticks (``Tick`` is whatever the driver's period is:
  ``limits.membership_tick_ms``). A ``FailureDetector`` counts, per node, the ticks since
  it last heard from it (``heard``: a heartbeat answer, or any message); a node silent
  for ``suspect_after_ticks`` is *suspected*. Hearing from it again clears that at once.
  The detector draws no random numbers and reads no clock.
* The planner (``plan_next_view``) is a pure function of the current view, the shards'
  carrier sets, the suspected nodes and the caught-up reports. It proposes at most ONE
  change at a time, so each view differs from the last by a removal or by additions:
    - remove: every suspected member of every shard (its leader too: the next member
      leads), but never leave a shard without a member, and never leave a shard's
      carrier set empty (the carrier-set rule below): then that shard keeps its members
      (waits for a carrier to come back) and the planner says why in ``Plan.waiting``.
    - add back: a node that is not suspected, holds the shard (it is in the cluster's
      placement for it: ``home``) and was reported caught up (``CaughtUp`` of the
      replication core) for the CURRENT epoch; it joins at the end (never as leader).
* The carrier-set rule (``storage/replication/core.py``, "The membership layer's
  contract"): per shard, K starts as the first view's members; a new view makes K := K
  ∩ its members and must not make K empty; a shard's leader's ``ViewReady`` for the
  current epoch makes K := that view's members. ``carriers_after_view`` and
  ``carriers_after_ready`` compute it; the agreement applies them inside its replicated
  state (``agreement``), so every node holds the same K and no proposal can break it.
* Which node proposes is decided by the driver (the agreement's Raft leader); the epoch
  compare-and-set makes a concurrent proposal harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from storage.placement import View

NodeId = str
Carriers = tuple[frozenset[NodeId], ...]  # per shard


class FailureDetector:
    def __init__(self, nodes: Iterable[NodeId], suspect_after_ticks: int) -> None:
        assert suspect_after_ticks >= 1
        self._suspect_after_ticks = suspect_after_ticks
        self._silent_ticks: dict[NodeId, int] = {node: 0 for node in nodes}

    def tick(self) -> None:
        for node in self._silent_ticks:
            self._silent_ticks[node] += 1

    def heard(self, node: NodeId) -> None:
        if node in self._silent_ticks:
            self._silent_ticks[node] = 0

    def silent_ticks(self, node: NodeId) -> int:
        return self._silent_ticks[node]

    @property
    def suspected(self) -> frozenset[NodeId]:
        return frozenset(node for node, silent in self._silent_ticks.items()
                         if silent >= self._suspect_after_ticks)


def first_carriers(view: View) -> Carriers:
    return tuple(frozenset(members) for members in view.shards)


def carriers_after_view(carriers: Carriers, new_view: View) -> Carriers | None:
    """K ∩ members per shard; None if that would leave a shard's K empty (refuse).

    A view with another shard count (an operator resharding: no data moves with it, the
    replication contract does not cover it) starts the carrier sets afresh."""
    if len(carriers) != new_view.shard_count:
        return first_carriers(new_view)
    after = tuple(kept & frozenset(members) for kept, members in zip(carriers, new_view.shards,
                                                                      strict=True))
    return None if any(not kept for kept in after) else after


def carriers_after_ready(carriers: Carriers, view: View, shard: int) -> Carriers:
    """The leader of ``view`` (the current one) reported ViewReady for ``shard``."""
    return tuple(frozenset(view.members(shard)) if index == shard else kept
                 for index, kept in enumerate(carriers))


@dataclass(frozen=True, slots=True)
class Plan:
    view: View | None  # the next view to propose; None: nothing to change now
    waiting: tuple[str, ...] = field(default=())  # why a wanted change is held back


def plan_next_view(
    view: View,
    carriers: Carriers,
    suspected: frozenset[NodeId],
    caught_up: Mapping[int, frozenset[NodeId]],
    home: Mapping[int, tuple[NodeId, ...]],
) -> Plan:
    """The next view (module rules). ``caught_up[shard]``: nodes reported caught up for
    the current epoch; ``home[shard]``: every node that holds the shard."""
    waiting: list[str] = []
    shards: list[tuple[NodeId, ...]] = []
    for shard, members in enumerate(view.shards):
        kept = tuple(node for node in members if node not in suspected)
        if kept != members:
            if not kept or not (carriers[shard] & frozenset(kept)):
                waiting.append(f"shard {shard}: removing {sorted(set(members) - set(kept))} "
                               "would leave no member holding every acknowledged write")
                kept = members
        shards.append(kept)
    if tuple(shards) != view.shards:
        return Plan(View(view.epoch + 1, tuple(shards)), tuple(waiting))
    for shard, members in enumerate(view.shards):
        joining = tuple(node for node in home.get(shard, ())
                        if node not in members and node not in suspected
                        and node in caught_up.get(shard, frozenset()))
        shards[shard] = members + joining
    if tuple(shards) != view.shards:
        return Plan(View(view.epoch + 1, tuple(shards)), tuple(waiting))
    return Plan(None, tuple(waiting))
