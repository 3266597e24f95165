"""Deliberately broken replication cores: each drops one rule of storage/replication/
core.py. The tests run them to show that the simulation's checkers and the scripted
tests DO fail when a rule is missing (a check that cannot fail is a defect)."""

from __future__ import annotations

from storage.membership import core as membership
from storage.placement import View
from storage.replication import core as rc


class CommitOnLeaderDisk(rc.ReplicaCore):
    """Acknowledges a write once the leader's own disk has it, ignoring the members."""

    def _commit_and_answer(self) -> None:
        peers = self._peers
        self._peers = {}
        try:
            super()._commit_and_answer()
        finally:
            self._peers = peers


class OwnLogAsBase(rc.ReplicaCore):
    """A new leader syncs the members to its own log instead of the longest one."""

    def _end_collecting_if_complete(self) -> None:
        if len(self._states) == len(self._members):
            self._begin_sync()


class NoNoop(rc.ReplicaCore):
    """No no-op at READY, and entries of older terms committed by counting (Raft's
    "Figure 8" mistake)."""

    def _on_ready_confirmed(self, event: rc.ReadyConfirmed) -> None:
        if self._role is not rc.Role.CONFIRMING or event.epoch != self._epoch:
            return
        self._become(rc.Role.READY)
        log = self._log
        kept: list[rc.LogEntry] = []
        for entry in [*self._pending.values(), *self._orphans]:
            if entry.index <= self._base_index and log.term_at(entry.index) == entry.term:
                kept.append(entry)
            else:
                self._finish(entry.write_id, entry.size_bytes, rc.NotCommitted("orphan"))
        self._orphans = []
        self._pending = {e.index: e for e in sorted(kept, key=lambda e: e.index)}
        entries = [self._log_write(write) for write in self._waiting]
        self._waiting.clear()
        if entries:
            self._persist(entries)
        self._send_to_all()
        self._commit_and_answer()

    def _commit_and_answer(self) -> None:
        own_term = self._term
        commit = min([self._durable_index, *(p.match_index for p in self._peers.values())])
        self._term = self._log.term_at(commit) or own_term  # any term counts
        try:
            super()._commit_and_answer()
        finally:
            self._term = own_term


class AvailabilityFirstMembership(membership.Decider):
    """A decider without the ready rule: it removes every suspected member, and when a
    shard would be left empty it takes whichever of the shard's holders are up. Run with
    ``install_without_ready_rule`` (an agreed state that does not enforce it either)."""

    def next_view(self, state: membership.Agreed) -> View | None:
        view = state.view
        shards = []
        for shard, members in enumerate(view.shards):
            keep = [m for m in members if not self.suspected(m)]
            keep = keep or [m for m in self.holders[shard] if not self.suspected(m)]
            keep = keep + [n for s, n in state.caught_up
                           if s == shard and n not in keep and not self.suspected(n)]
            shards.append(tuple(keep) if keep else members)
        self._adds, self._moves = [], []
        return None if tuple(shards) == view.shards else View(view.epoch + 1, tuple(shards))


def install_without_ready_rule(state: membership.Agreed, view: View
                               ) -> membership.Agreed | membership.Refused:
    """The agreed state's compare-and-set without the ready rule."""
    if view.epoch != state.view.epoch + 1:
        return membership.Refused.STALE
    return membership.Agreed(view, state.ready)
