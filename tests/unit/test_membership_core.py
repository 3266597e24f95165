"""Unit tests of the membership core (storage/membership/core.py): failure detection in
ticks, the views it decides, the ready rule. It runs together with the replication cores
in the simulation (tests/unit/test_replication_sim.py)."""

from __future__ import annotations

import pytest

from storage.membership import core as mc
from storage.placement import View

HOLDERS = (("n1", "n2", "n3"),)
SUSPECT_TICKS = 3


def membership(members: tuple[str, ...] = ("n1", "n2", "n3")) -> mc.MembershipCore:
    return mc.MembershipCore(View(1, (members,)), HOLDERS, SUSPECT_TICKS)


def run(core: mc.MembershipCore, ticks: int, alive: tuple[str, ...]) -> list[mc.Action]:
    """``ticks`` ticks in which the ``alive`` nodes send a heartbeat each."""
    actions: list[mc.Action] = []
    for _ in range(ticks):
        for node in alive:
            actions += core.step(mc.Heartbeat(node))
        actions += core.step(mc.Tick())
    return actions


def views(actions: list[mc.Action]) -> list[tuple[int, tuple[tuple[str, ...], ...]]]:
    return [(a.view.epoch, a.view.shards) for a in actions if isinstance(a, mc.InstallView)]


def test_a_silent_node_is_removed_after_suspect_ticks() -> None:
    core = membership()
    assert views(run(core, SUSPECT_TICKS - 1, ("n1", "n2"))) == []
    assert views(run(core, 1, ("n1", "n2"))) == [(2, (("n1", "n2"),))]
    assert core.suspected("n3") and not core.suspected("n2")


def test_when_the_leader_goes_the_first_healthy_member_leads() -> None:
    core = membership()
    assert views(run(core, SUSPECT_TICKS, ("n2", "n3"))) == [(2, (("n2", "n3"),))]


def test_ready_is_confirmed_only_for_the_current_view_and_its_leader() -> None:
    core = membership()
    run(core, SUSPECT_TICKS, ("n1", "n2"))  # epoch 2: n1 n2
    assert core.step(mc.ViewReadyReported(0, 1, "n1")) == []  # an older view
    assert core.step(mc.ViewReadyReported(0, 2, "n2")) == []  # not its leader
    assert core.ready_members(0) == ("n1", "n2", "n3")
    assert core.step(mc.ViewReadyReported(0, 2, "n1")) == [mc.ConfirmReady("n1", 0, 2)]
    assert core.ready_members(0) == ("n1", "n2")


def test_the_ready_rule_keeps_a_member_of_the_last_ready_view() -> None:
    core = membership()
    run(core, SUSPECT_TICKS, ("n1", "n2"))  # epoch 2: n1 n2
    core.step(mc.ViewReadyReported(0, 2, "n1"))  # R = n1 n2
    run(core, 1, ("n1", "n2", "n3"))  # n3 is heard from again
    core.step(mc.CaughtUpReported(0, "n3", 2))
    assert views(run(core, 1, ("n1", "n2", "n3"))) == [(3, (("n1", "n2", "n3"),))]
    # Epoch 3 is never confirmed. n1 and n2 fall silent: n3 alone holds no member of R,
    # so they stay, and the shard waits.
    assert views(run(core, SUSPECT_TICKS + 5, ("n3",))) == []
    assert core.view.members(0) == ("n1", "n2", "n3")
    # n2 comes back: the view drops n1 and keeps n2 (of R) with n3; n2 leads.
    assert views(run(core, 1, ("n2", "n3"))) == [(4, (("n2", "n3"),))]


def test_a_healthy_member_of_the_last_ready_view_is_brought_back() -> None:
    core = membership()
    run(core, SUSPECT_TICKS, ("n1", "n2", "n3"))
    core.step(mc.ViewReadyReported(0, 1, "n1"))  # R = n1 n2 n3
    run(core, SUSPECT_TICKS, ("n1", "n2"))  # epoch 2: n1 n2 (not confirmed)
    # n1 and n2 fall silent, n3 is back: no member of R is healthy in the view, n3 (of
    # R) is: it is brought back, without a CaughtUp.
    assert views(run(core, SUSPECT_TICKS, ("n3",)))[-1] == (3, (("n3",),))


def test_caught_up_adds_a_node_back_only_in_the_current_epoch() -> None:
    core = membership()
    run(core, SUSPECT_TICKS, ("n1", "n2"))  # epoch 2: n1 n2
    core.step(mc.Heartbeat("n3"))
    core.step(mc.CaughtUpReported(0, "n3", 1))  # an older epoch's report
    assert views(run(core, 1, ("n1", "n2", "n3"))) == []
    core.step(mc.CaughtUpReported(0, "n3", 2))
    assert views(run(core, 1, ("n1", "n2", "n3"))) == [(3, (("n1", "n2", "n3"),))]


def test_epochs_increase_by_one_and_one_view_per_tick() -> None:
    core = membership()
    run(core, SUSPECT_TICKS, ("n1", "n2"))
    run(core, 1, ("n1", "n2", "n3"))
    core.move_leader(0, "n2")
    core.add_member(0, "n3")
    assert views(core.step(mc.Tick())) == [(3, (("n2", "n1", "n3"),))]


def test_only_holders_of_a_shard_may_join_it() -> None:
    with pytest.raises(AssertionError):
        mc.MembershipCore(View(1, (("n1", "n4"),)), HOLDERS, SUSPECT_TICKS)
    core = membership()
    with pytest.raises(AssertionError):
        core.add_member(0, "n4")
