"""Unit tests of the membership decider and its agreed-state rule (storage/membership/
core.py): failure detection in ticks, the views it decides, the ready rule enforced by
``install``, confirmations, CaughtUp re-adds, and the Raft agreement applying the same
rule. The same code runs in the simulation (tests/unit/test_replication_sim.py) and in
the cluster nodes."""

from __future__ import annotations

import asyncio
import socket

import pytest

from storage.membership import core as mc
from storage.membership.agreement import AgreementSettings, ReadyRuleBroken, ViewAgreement
from storage.placement import View

HOLDERS = (("n1", "n2", "n3"),)
NODES = ("n1", "n2", "n3")
SUSPECT_TICKS = 3
Installed = tuple[int, tuple[tuple[str, ...], ...]]  # a view installed: epoch, shards


class Membership:
    """A decider plus the agreed state, as the simulation runs them (one copy of the
    state machine, every command applied in order)."""

    def __init__(self, members: tuple[str, ...] = NODES) -> None:
        self.decider = mc.Decider(NODES, HOLDERS, SUSPECT_TICKS)
        self.state = mc.Agreed.first(View(1, (members,)))

    def run(self, ticks: int, alive: tuple[str, ...]) -> list[Installed]:
        """``ticks`` ticks in which the ``alive`` nodes send a heartbeat each; the views
        installed."""
        views = []
        for _ in range(ticks):
            for node in alive:
                self.decider.heard(node)
            self.decider.tick()
            if (installed := self.decide()) is not None:
                views.append(installed)
        return views

    def decide(self) -> Installed | None:
        proposed = self.decider.next_view(self.state)
        if proposed is None:
            return None
        installed = mc.install(self.state, proposed)
        assert isinstance(installed, mc.Agreed), installed
        self.state = installed
        return installed.view.epoch, installed.view.shards

    def ready(self, shard: int, epoch: int, node: str) -> bool:
        confirmed = mc.confirm_ready(self.state, shard, epoch, node)
        if confirmed is None:
            return False
        self.state = confirmed
        return True

    def caught_up(self, shard: int, node: str, epoch: int) -> None:
        self.state = mc.report_caught_up(self.state, shard, node, epoch) or self.state


def test_a_silent_node_is_removed_after_suspect_ticks() -> None:
    m = Membership()
    assert m.run(SUSPECT_TICKS - 1, ("n1", "n2")) == []
    assert m.run(1, ("n1", "n2")) == [(2, (("n1", "n2"),))]
    assert m.decider.suspected("n3") and not m.decider.suspected("n2")


def test_when_the_leader_goes_the_first_healthy_member_leads() -> None:
    m = Membership()
    assert m.run(SUSPECT_TICKS, ("n2", "n3")) == [(2, (("n2", "n3"),))]


def test_ready_is_confirmed_only_for_the_current_view_and_its_leader() -> None:
    m = Membership()
    m.run(SUSPECT_TICKS, ("n1", "n2"))  # epoch 2: n1 n2
    assert not m.ready(0, 1, "n1")  # an older view
    assert not m.ready(0, 2, "n2")  # not its leader
    assert m.state.ready[0] == ("n1", "n2", "n3")
    assert m.ready(0, 2, "n1")
    assert m.state.ready[0] == ("n1", "n2")


def test_the_ready_rule_keeps_a_member_of_the_last_ready_view() -> None:
    m = Membership()
    m.run(SUSPECT_TICKS, ("n1", "n2"))  # epoch 2: n1 n2
    m.ready(0, 2, "n1")  # R = n1 n2
    m.run(1, ("n1", "n2", "n3"))  # n3 is heard from again
    m.caught_up(0, "n3", 2)
    assert m.run(1, ("n1", "n2", "n3")) == [(3, (("n1", "n2", "n3"),))]
    # Epoch 3 is never confirmed. n1 and n2 fall silent: n3 alone holds no member of R,
    # so they stay, and the shard waits.
    assert m.run(SUSPECT_TICKS + 5, ("n3",)) == []
    assert m.state.view.members(0) == ("n1", "n2", "n3")
    # n2 comes back: the view drops n1 and keeps n2 (of R) with n3; n2 leads.
    assert m.run(1, ("n2", "n3")) == [(4, (("n2", "n3"),))]


def test_a_healthy_member_of_the_last_ready_view_is_brought_back() -> None:
    m = Membership()
    m.run(SUSPECT_TICKS, ("n1", "n2", "n3"))
    m.ready(0, 1, "n1")  # R = n1 n2 n3
    m.run(SUSPECT_TICKS, ("n1", "n2"))  # epoch 2: n1 n2 (not confirmed)
    # n1 and n2 fall silent, n3 is back: no member of R is healthy in the view, n3 (of
    # R) is: it is brought back, without a CaughtUp.
    assert m.run(SUSPECT_TICKS, ("n3",))[-1] == (3, (("n3",),))


def test_caught_up_adds_a_node_back_only_in_the_current_epoch() -> None:
    m = Membership()
    m.run(SUSPECT_TICKS, ("n1", "n2"))  # epoch 2: n1 n2
    m.decider.heard("n3")
    m.caught_up(0, "n3", 1)  # an older epoch's report
    assert m.run(1, ("n1", "n2", "n3")) == []
    m.caught_up(0, "n3", 2)
    assert m.run(1, ("n1", "n2", "n3")) == [(3, (("n1", "n2", "n3"),))]
    assert m.state.caught_up == ()  # a new view clears the reports


def test_a_suspected_node_is_not_added_back() -> None:
    m = Membership()
    m.run(SUSPECT_TICKS, ("n1", "n2"))  # epoch 2: n1 n2
    m.caught_up(0, "n3", 2)
    assert m.run(1, ("n1", "n2")) == []


def test_epochs_increase_by_one_and_requests_go_into_the_next_view() -> None:
    m = Membership()
    m.run(SUSPECT_TICKS, ("n1", "n2"))
    m.decider.heard("n3")
    m.decider.move_leader(0, "n2")
    m.decider.add_member(0, "n3")
    assert m.decide() == (3, (("n2", "n1", "n3"),))
    assert m.decide() is None  # requests are used up


def test_only_holders_of_a_shard_may_join_it() -> None:
    m = Membership()
    with pytest.raises(AssertionError):
        m.decider.add_member(0, "n4")


def test_the_agreed_state_refuses_a_stale_epoch_and_a_view_breaking_the_ready_rule() -> None:
    state = mc.Agreed.first(View(1, (("n1", "n2"),)))
    assert mc.install(state, View(3, (("n1",),))) is mc.Refused.STALE
    assert mc.install(state, View(2, (("n3",),))) is mc.Refused.READY_RULE
    installed = mc.install(state, View(2, (("n2", "n3"),)))
    assert isinstance(installed, mc.Agreed) and installed.ready == (("n1", "n2"),)
    # Unconfirmed, epoch 2 narrowed nothing: n1 (of R) may lead alone.
    assert isinstance(mc.install(installed, View(3, (("n1",),))), mc.Agreed)
    confirmed = mc.confirm_ready(installed, 0, 2, "n2")
    assert confirmed is not None and confirmed.ready == (("n2", "n3"),)
    assert mc.install(confirmed, View(3, (("n1",),))) is mc.Refused.READY_RULE
    # A view with another shard count (resharding) starts R afresh.
    resharded = mc.install(confirmed, View(3, (("n1",), ("n2",))))
    assert isinstance(resharded, mc.Agreed) and resharded.ready == (("n1",), ("n2",))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_agreement_applies_the_same_rule_in_its_replicated_state() -> None:
    async def scenario() -> None:
        initial = View(0, (("a", "b", "c"),))
        settings = AgreementSettings(f"127.0.0.1:{_free_port()}", (), "secret",
                                     propose_timeout_ms=5000)
        agreement = ViewAgreement(settings, initial)
        try:
            await agreement.propose(View(1, (("c",),)))
            assert not await agreement.confirm_ready(0, 0, "a")  # not the current epoch
            assert not await agreement.confirm_ready(0, 1, "a")  # not its leader
            assert await agreement.confirm_ready(0, 1, "c")
            assert agreement.state.ready == (("c",),)
            with pytest.raises(ReadyRuleBroken):
                await agreement.propose(View(2, (("a",),)))
            assert agreement.view.epoch == 1
            await agreement.report_caught_up(0, "a", 1)
            assert agreement.state.caught_up == ((0, "a"),)
            await agreement.propose(View(2, (("c", "a"),)))
            assert agreement.state.caught_up == ()
            assert await agreement.confirm_ready(0, 2, "c")
            await agreement.propose(View(3, (("a",),)))
            assert agreement.state == mc.Agreed(View(3, (("a",),)), (("c", "a"),))
        finally:
            agreement.close()

    asyncio.run(scenario())
