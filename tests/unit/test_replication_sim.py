"""Tier 3: the seeded simulation of the replication core (storage/replication/sim.py):
crashes, lost disk writes, delays, drops, duplicates, reordering, partitions, view
changes. A failure names the property, the seed and the end of a trace; re-run one seed
with ``run_simulation(seed)``.

CI runs FIXED_SEEDS plus FRESH_SEED_COUNT new random seeds each time (a fresh failure
prints its seed: add it to FIXED_SEEDS once fixed). A longer soak is opt-in:
``SQUALL_SIM_SOAK_SEEDS=20000 pytest tests/unit/test_replication_sim.py -k soak`` or
``python -m bench.replication_soak``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from storage.replication import core as rc
from storage.replication.sim import Simulation, SimulationFailure, run_simulation
from tests.unit.replication_broken import (
    AvailabilityFirstMembership,
    CommitOnLeaderDisk,
    OwnLogAsBase,
    install_without_ready_rule,
)

# Seeds that once failed, with what they found (while the simulation draws its choices
# in the same order, each still replays that run).
REGRESSION_SEEDS = (
    104477,  # a leader's fetch asked for the same first entries forever (liveness)
)
FIXED_SEEDS = [*range(60), *REGRESSION_SEEDS]  # about 0.1 s each
FRESH_SEED_COUNT = 4
SOAK_SEEDS = int(os.environ.get("SQUALL_SIM_SOAK_SEEDS", "0"))
BROKEN_SEEDS_MAX = 30  # a broken core must be caught within this many seeds


def test_fixed_seeds() -> None:
    actions: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    for seed in FIXED_SEEDS:
        result = run_simulation(seed)
        actions += result.actions
        outcomes += result.outcomes
        faults += result.faults
    # The runs reach the paths the checks are about (else they would check little).
    for action in ("ViewReady", "CaughtUp", "TruncateLog", "TrimLog", "FetchSnapshot",
                   "InstallSnapshot", "Send.FetchRequest", "Send.SnapshotNeeded",
                   "Send.CatchUpRequest"):
        assert actions[action] > 0, action
    for outcome in ("Committed", "NotCommitted", "Indeterminate", "Overloaded", "NotLeader"):
        assert outcomes[outcome] > 0, outcome
    for fault in ("crashed", "killed", "isolated", "link_cut", "dropped"):
        assert faults[fault] > 0, fault


def test_fresh_seeds() -> None:
    seeds = [random.SystemRandom().randrange(2**32) for _ in range(FRESH_SEED_COUNT)]
    for seed in seeds:
        run_simulation(seed)  # a failure's message starts with its seed


def test_one_seed_reproduces_a_run() -> None:
    first, second = run_simulation(7), run_simulation(7)
    assert first.summary() == second.summary() and first.actions == second.actions


def test_one_seed_reproduces_a_run_in_another_process() -> None:
    """Nothing depends on string hashing (set order): two interpreters, two hash seeds."""
    code = ("from storage.replication.sim import run_simulation;"
            " r = run_simulation(11); print(r.summary(), sorted(r.actions.items()))")
    root = Path(__file__).resolve().parents[2]
    outputs = {
        subprocess.run([sys.executable, "-c", code], cwd=root, check=True, text=True,
                       capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout
        for hash_seed in ("1", "2")
    }
    assert len(outputs) == 1


@pytest.mark.skipif(not SOAK_SEEDS, reason="opt-in: SQUALL_SIM_SOAK_SEEDS=N")
def test_soak() -> None:
    start = random.SystemRandom().randrange(2**32)
    for seed in range(start, start + SOAK_SEEDS):
        run_simulation(seed)


# --- the checks can fail ------------------------------------------------------------------


def _first_failure(seeds: range, **kwargs: object) -> SimulationFailure:
    for seed in seeds:
        try:
            run_simulation(seed, **kwargs)  # type: ignore[arg-type]
        except SimulationFailure as failure:
            return failure
    raise AssertionError(f"no failure in seeds {seeds}")


def test_a_lost_acknowledged_write_is_caught_when_the_leader_acks_alone() -> None:
    """A leader that acknowledges once its own disk has the write (not every member's):
    the write is lost when the leader crashes, and check (a) says so."""
    failure = _first_failure(range(BROKEN_SEEDS_MAX), core_factory=CommitOnLeaderDisk)
    assert failure.problem.startswith("(a)") and "acknowledged write" in failure.problem
    assert f"seed={failure.seed}" in str(failure) and failure.trace_lines


def test_a_lost_acknowledged_write_is_caught_when_membership_breaks_the_ready_rule() -> None:
    """A membership that may install a view without any member of the last ready view
    (keeping the shard available with whoever is up) loses acknowledged writes."""
    failure = _first_failure(range(BROKEN_SEEDS_MAX),
                             membership_factory=AvailabilityFirstMembership,
                             install_rule=install_without_ready_rule)
    assert failure.problem.startswith(("(a)", "(b)")), failure.problem


def test_the_agreed_state_refuses_a_decider_that_breaks_the_ready_rule() -> None:
    """The same decider with the agreement's real rule (``membership.install``, what the
    Raft state applies on the nodes): its first view without the ready rule is refused,
    and the simulation fails on it."""
    failure = _first_failure(range(BROKEN_SEEDS_MAX),
                             membership_factory=AvailabilityFirstMembership)
    assert "refused" in failure.problem and "ready rule" in failure.problem, failure.problem


def test_a_leader_syncing_to_its_own_log_is_caught() -> None:
    """A new leader that syncs the members to its own log, not the longest: a member is
    told to drop a committed entry (its invariant fires) or replicas diverge."""
    failure = _first_failure(range(200), core_factory=OwnLogAsBase)
    assert "committed entry" in failure.problem or failure.problem.startswith(("(a)", "(b)"))


def test_the_final_check_sees_a_missing_acknowledged_write() -> None:
    """Check (a) at the end of a run, on a run whose state is then damaged by hand."""
    simulation = Simulation(3)
    simulation.run()
    write_id, (shard, index) = next(iter(simulation.acked.items()))
    member = simulation.oracle.view.members(shard)[-1]
    applied = simulation.nodes[member].disks[shard].applied
    applied[index - 1] = (index, applied[index - 1][1], "someone-else")
    with pytest.raises(SimulationFailure, match=rf"\(a\) acknowledged write {write_id} "):
        simulation._final_checks()


def test_a_core_assertion_becomes_a_failure_with_the_seed() -> None:
    class Exploding(rc.ReplicaCore):
        def _on_ready_confirmed(self, event: rc.ReadyConfirmed) -> None:
            raise AssertionError("boom")

    failure = _first_failure(range(1), core_factory=Exploding)
    assert "boom" in failure.problem and failure.seed == 0
