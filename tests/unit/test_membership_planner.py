"""Failure detection, view planning and the carrier-set rule (storage/membership/planner.py),
and the rule enforced inside the agreed state (agreement.py, one in-process Raft node)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from storage.membership.agreement import AgreementSettings, CarriersLost, ViewAgreement
from storage.membership.planner import (
    FailureDetector,
    carriers_after_ready,
    carriers_after_view,
    first_carriers,
    plan_next_view,
)
from storage.placement import View

HOME = {0: ("a", "b", "c"), 1: ("b", "c", "a")}
VIEW = View(1, (("a", "b", "c"), ("b", "c", "a")))


def test_a_node_is_suspected_after_n_silent_ticks_and_cleared_when_heard() -> None:
    detector = FailureDetector(("a", "b"), suspect_after_ticks=3)
    for _ in range(2):
        detector.tick()
        detector.heard("a")
    assert detector.suspected == frozenset()
    detector.tick()
    detector.heard("a")
    assert detector.suspected == {"b"}
    detector.heard("b")
    assert detector.suspected == frozenset()
    detector.heard("stranger")  # not a node of the cluster: ignored
    assert detector.silent_ticks("a") == 0


def test_a_suspected_member_is_removed_from_every_shard_its_leadership_passes_on() -> None:
    plan = plan_next_view(VIEW, first_carriers(VIEW), frozenset({"b"}), {}, HOME)
    assert plan.view == View(2, (("a", "c"), ("c", "a")))


def test_nothing_changes_without_a_reason() -> None:
    assert plan_next_view(VIEW, first_carriers(VIEW), frozenset(), {}, HOME).view is None


def test_a_removal_that_would_empty_the_carrier_set_waits() -> None:
    view = View(3, (("c",), ("b", "c", "a")))
    carriers = (frozenset({"c"}), frozenset({"a", "b", "c"}))
    plan = plan_next_view(view, carriers, frozenset({"c"}), {}, HOME)
    assert plan.view is not None and plan.view.shards[0] == ("c",)  # kept: waits for c
    assert plan.view.shards[1] == ("b", "a")
    assert "shard 0" in plan.waiting[0]
    # A shard whose carriers are all suspected while others are alive: kept as it is.
    view = View(3, (("a", "b"),))
    plan = plan_next_view(view, (frozenset({"a"}),), frozenset({"a"}), {}, {0: ("a", "b")})
    assert plan.view is None and plan.waiting


def test_a_caught_up_node_is_added_back_at_the_end_and_only_then() -> None:
    view = View(2, (("a", "c"), ("c", "a")))
    carriers = first_carriers(view)
    assert plan_next_view(view, carriers, frozenset(), {}, HOME).view is None
    plan = plan_next_view(view, carriers, frozenset(), {0: frozenset({"b"})}, HOME)
    assert plan.view == View(3, (("a", "c", "b"), ("c", "a")))
    # Suspected again: not added.
    plan = plan_next_view(view, carriers, frozenset({"b"}), {0: frozenset({"b"})}, HOME)
    assert plan.view is None


def test_carrier_sets_shrink_with_views_and_reset_on_ready() -> None:
    carriers = first_carriers(VIEW)
    after = carriers_after_view(carriers, View(2, (("a",), ("b", "c", "a"))))
    assert after == (frozenset({"a"}), frozenset({"a", "b", "c"}))
    assert carriers_after_view(after, View(3, (("b",), ("b",)))) is None
    grown = View(3, (("a", "b"), ("b", "c", "a")))
    after = carriers_after_view(after, grown)
    assert after is not None and after[0] == {"a"}
    assert carriers_after_ready(after, grown, 0)[0] == {"a", "b"}
    resharded = View(4, (("c",), ("a",), ("b",)))
    assert carriers_after_view(after, resharded) == first_carriers(resharded)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_agreement_refuses_a_view_that_loses_every_carrier() -> None:
    async def scenario() -> None:
        initial = View(0, (("a", "b", "c"),))
        settings = AgreementSettings(f"127.0.0.1:{_free_port()}", (), "secret",
                                     propose_timeout_ms=5000)
        agreement = ViewAgreement(settings, initial)
        try:
            await agreement.propose(View(1, (("c",),)))
            assert agreement.carriers == (frozenset({"c"}),)
            await agreement.propose(View(2, (("c", "a"),)))
            assert agreement.carriers == (frozenset({"c"}),)
            with pytest.raises(CarriersLost):
                await agreement.propose(View(3, (("a",),)))
            assert agreement.view.epoch == 2
            assert not await agreement.confirm_ready(0, 1)  # not the current epoch
            assert await agreement.confirm_ready(0, 2)
            assert agreement.carriers == (frozenset({"a", "c"}),)
            await agreement.propose(View(3, (("a",),)))
        finally:
            agreement.close()

    asyncio.run(scenario())
