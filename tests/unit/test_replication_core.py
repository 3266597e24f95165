"""Tier 1: unit tests of the replication core (storage/replication/core.py): its tables,
its log, its bounds, fencing and the driver contract's assertions. The protocol flows are
in test_replication_scripts.py; the fault-tolerance claims in test_replication_sim.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import limits
from storage.placement import View
from storage.replication import core as rc
from tests.unit.replication_script import SCRIPT_SETTINGS, Script


def ready_cluster(*node_ids: str) -> Script:
    """A script whose first view (leader first) is synced and confirmed, with no writes."""
    script = Script()
    for command in (f"nodes {' '.join(node_ids)}", f"view 1 {' '.join(node_ids)}", "stabilize",
                    f"confirm {node_ids[0]}", "stabilize"):
        script.run(command)
    return script


def core(script: Script, node_id: str) -> rc.ReplicaCore:
    return script.nodes[node_id].core


# --- the tables ---------------------------------------------------------------------------


def test_every_table_entry_names_a_handler() -> None:
    for role, accepted in rc.ACCEPTS.items():
        for message_type, name in accepted.items():
            assert callable(getattr(rc.ReplicaCore, name)), (role, message_type)
    for event_type, name in rc._EVENT_HANDLERS.items():
        assert callable(getattr(rc.ReplicaCore, name)), event_type
    assert set(rc.TRANSITIONS) == set(rc.Role) == set(rc.ACCEPTS)


def test_only_leader_roles_take_replies_and_only_others_take_leader_messages() -> None:
    for role, accepted in rc.ACCEPTS.items():
        leader_side = {rc.StateReply, rc.FetchReply, rc.AppendReply, rc.CatchUpRequest}
        if role in rc.LEADER_ROLES:
            assert set(accepted) <= leader_side
        else:
            assert not set(accepted) & leader_side


def test_a_role_change_outside_the_table_is_a_bug() -> None:
    replica = rc.ReplicaCore("n1", 0)
    with pytest.raises(AssertionError):
        replica._become(rc.Role.READY)  # WAITING -> READY skips the sync


def test_default_settings_come_from_limits() -> None:
    assert rc.DEFAULT_SETTINGS.pending_writes_max == limits.replication_pending_writes_max
    assert rc.DEFAULT_SETTINGS.retransmit_ticks == limits.replication_retransmit_ticks
    with pytest.raises(AssertionError):
        rc.Settings(heartbeat_ticks=5, retransmit_ticks=5)


# --- the log --------------------------------------------------------------------------------


def entry(index: int, term: rc.Term) -> rc.LogEntry:
    return rc.LogEntry(index, term, f"w{index}", None, 1)


@given(st.lists(st.tuples(st.sampled_from(["append", "truncate", "trim"]),
                          st.integers(0, 30)), max_size=60))
@settings(max_examples=200, deadline=None)
def test_the_log_matches_a_naive_model(operations: list[tuple[str, int]]) -> None:
    log = rc._Log(0, rc.NO_TERM)
    model: dict[int, rc.Term] = {0: rc.NO_TERM}  # index -> term, from the trim point on
    epoch = 1
    for operation, number in operations:
        last = max(model)
        if operation == "append":
            epoch += number % 2  # terms never decrease
            log.append(entry(last + 1, rc.Term(epoch, 1)))
            model[last + 1] = rc.Term(epoch, 1)
        elif operation == "truncate" and last > min(model):
            cut = min(model) + 1 + number % (last - min(model))
            log.truncate_from(cut)
            model = {i: t for i, t in model.items() if i < cut}
        elif operation == "trim":
            through = min(model) + number % (last - min(model) + 1)
            log.trim_through(through)
            model = {i: t for i, t in model.items() if i >= through}
        assert log.trimmed_index == min(model) and log.last_index == max(model)
        assert log.last_term == model[max(model)]
        for index in range(min(model) - 1, max(model) + 2):
            assert log.term_at(index) == model.get(index)


def test_log_appends_must_be_contiguous_with_non_decreasing_terms() -> None:
    log = rc._Log(0, rc.NO_TERM)
    log.append(entry(1, rc.Term(2, 1)))
    with pytest.raises(AssertionError, match="contiguous"):
        log.append(entry(3, rc.Term(2, 1)))
    with pytest.raises(AssertionError, match="never decrease"):
        log.append(entry(2, rc.Term(1, 1)))


def test_a_slice_is_cut_at_the_byte_bound_but_holds_one_entry() -> None:
    log = rc._Log(0, rc.NO_TERM)
    for index in range(1, 5):
        log.append(rc.LogEntry(index, rc.Term(1, 1), f"w{index}", None, 40))
    assert [e.index for e in log.slice(1, 4, 100)] == [1, 2]
    assert [e.index for e in log.slice(3, 4, 10)] == [3]


# --- writes, bounds, outcomes ---------------------------------------------------------------


def test_a_write_to_a_follower_names_the_leader() -> None:
    script = ready_cluster("n1", "n2")
    actions = core(script, "n2").step(rc.ClientWrite("w1", b"x", 1))
    assert actions == [rc.Reply("w1", rc.NotLeader("n1"))]


def test_pending_writes_are_bounded() -> None:
    script = ready_cluster("n1", "n2")
    leader = core(script, "n1")
    for number in range(SCRIPT_SETTINGS.pending_writes_max):
        assert not any(isinstance(a, rc.Reply) for a in
                       leader.step(rc.ClientWrite(f"w{number}", None, 1)))
    assert leader.step(rc.ClientWrite("one-more", None, 1)) == [
        rc.Reply("one-more", rc.Overloaded())]
    assert leader.pending_write_count == SCRIPT_SETTINGS.pending_writes_max


def test_pending_bytes_are_bounded_but_one_large_write_may_go_alone() -> None:
    script = ready_cluster("n1", "n2")
    leader = core(script, "n1")
    big = SCRIPT_SETTINGS.pending_bytes_max + 1
    assert not any(isinstance(a, rc.Reply) for a in leader.step(rc.ClientWrite("big", None, big)))
    assert leader.step(rc.ClientWrite("small", None, 1)) == [rc.Reply("small", rc.Overloaded())]


def test_writes_during_a_sync_wait_and_follow_the_noop_in_order() -> None:
    script = ready_cluster("n1", "n2")
    script.run("view 2 n1 n2")
    leader = core(script, "n1")
    assert leader.role is rc.Role.COLLECTING
    for write_id in ("a", "b"):
        assert leader.step(rc.ClientWrite(write_id, None, 1)) == []
    script.run("stabilize")
    lines = script.run("confirm n1")
    assert "  Persist [2@2.1:noop 3@2.1:a 4@2.1:b]" in lines
    script.run("stabilize")
    assert script.replies == {"a": rc.Committed(3), "b": rc.Committed(4)}


def test_a_leader_that_loses_the_lead_answers_every_pending_write() -> None:
    script = ready_cluster("n1", "n2")
    script.run("write n1 logged")
    script.run("view 2 n2 n1 only n2")  # n1 hears of it later
    script.run("view 3 n2 n1 only n2")
    script.run("install n1")
    assert script.replies == {"logged": rc.Indeterminate("the shard's leader changed")}
    script = ready_cluster("n1", "n2")
    script.run("view 2 n1 n2")
    script.run("write n1 waiting")  # not logged yet: the view is syncing
    script.run("view 3 n2 n1")
    assert script.replies == {
        "waiting": rc.NotCommitted("the shard's leader changed before it was logged")}


# --- fencing ---------------------------------------------------------------------------------


def test_messages_of_other_epochs_are_refused() -> None:
    script = ready_cluster("n1", "n2")
    follower = core(script, "n2")
    old = rc.Append(rc.Term(0, 1), 1, rc.Term(1, 1), (), 1)
    new = rc.Append(rc.Term(2, 1), 1, rc.Term(1, 1), (), 1)
    assert follower.step(rc.Received("n1", old)) == [
        rc.Refused("n1", "Append", "older epoch")]
    assert follower.step(rc.Received("n1", new)) == [
        rc.Refused("n1", "Append", "newer epoch (view not installed here yet)")]


def test_only_the_views_leader_is_followed() -> None:
    script = ready_cluster("n1", "n2", "n3")
    message = rc.Append(rc.Term(1, 1), 1, rc.Term(1, 1), (), 1)
    assert core(script, "n2").step(rc.Received("n3", message)) == [
        rc.Refused("n3", "Append", "not the view's leader")]


def test_a_restarted_leader_leads_a_new_round_and_the_old_round_is_refused() -> None:
    script = ready_cluster("n1", "n2")
    script.run("crash n1")
    lines = script.run("restart n1")
    assert "  SaveTerm 1.2" in lines and core(script, "n1").role is rc.Role.COLLECTING
    script.run("stabilize")
    assert core(script, "n2").promised_term == rc.Term(1, 2)
    stale = rc.Append(rc.Term(1, 1), 1, rc.Term(1, 1), (), 1)
    assert core(script, "n2").step(rc.Received("n1", stale)) == [
        rc.Refused("n1", "Append", "an older round of the leader")]


def test_an_older_view_is_refused() -> None:
    script = ready_cluster("n1", "n2")
    actions = core(script, "n2").step(rc.ViewInstalled(View(1, (("n2", "n1"),))))
    assert actions == [rc.Refused(None, "view 1", "not newer than the view held")]


def test_a_malformed_append_is_refused() -> None:
    script = ready_cluster("n1", "n2")
    gap = rc.Append(rc.Term(1, 1), 1, rc.Term(1, 1), (entry(3, rc.Term(1, 1)),), 1)
    future = rc.Append(rc.Term(1, 1), 1, rc.Term(1, 1), (entry(2, rc.Term(5, 1)),), 1)
    for message in (gap, future):
        assert core(script, "n2").step(rc.Received("n1", message)) == [
            rc.Refused("n1", "Append", "malformed")]


# --- the driver contract --------------------------------------------------------------------


def test_recovered_state_must_be_consistent() -> None:
    later = rc.Recovered(promised_term=rc.Term(1, 1), applied_index=0,
                         entries=(entry(1, rc.Term(2, 1)),))
    with pytest.raises(AssertionError, match="after a promise"):
        rc.ReplicaCore("n1", 0, later)
    beyond = rc.Recovered(promised_term=rc.Term(1, 1), applied_index=2, applied_term=rc.Term(1, 1),
                          entries=(entry(1, rc.Term(1, 1)),))
    with pytest.raises(AssertionError):
        rc.ReplicaCore("n1", 0, beyond)


def test_persisted_must_confirm_persists_in_order() -> None:
    script = ready_cluster("n1", "n2")
    leader = core(script, "n1")
    leader.step(rc.ClientWrite("a", None, 1))
    leader.step(rc.ClientWrite("b", None, 1))
    with pytest.raises(AssertionError, match="in order"):
        leader.step(rc.Persisted(3))


def test_a_started_core_waits_for_its_view() -> None:
    replica = rc.ReplicaCore("n1", 0)
    assert replica.role is rc.Role.WAITING
    assert replica.step(rc.ClientWrite("w", None, 1)) == [rc.Reply("w", rc.NotLeader(None))]
    assert replica.step(rc.Received("n2", rc.StateRequest(rc.Term(1, 1)))) == [
        rc.Refused("n2", "StateRequest", "no view yet")]


def test_a_single_member_shard_needs_only_its_own_disk() -> None:
    script = Script()
    script.run("nodes n1")
    script.run("view 1 n1")
    script.run("confirm n1")
    script.run("write n1 w1")
    script.run("persist n1")
    assert script.replies == {"w1": rc.Committed(2)}
