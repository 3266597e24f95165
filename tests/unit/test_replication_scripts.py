"""Tier 2: scripted protocol tests of the replication core with checked-in expected
output (tests/unit/data/replication/*.txt; the commands are described in
tests/unit/replication_script.py). A protocol change shows up as a diff here; rewrite the
files with SQUALL_REWRITE_SCRIPTS=1 and read the diff before committing it."""

from __future__ import annotations

import difflib
import os
import pathlib

import pytest

from tests.unit.replication_broken import NoNoop
from tests.unit.replication_script import Script, check_script

SCRIPTS_DIR = pathlib.Path(__file__).parent / "data" / "replication"
SCRIPTS = sorted(SCRIPTS_DIR.glob("*.txt"))
REWRITE = os.environ.get("SQUALL_REWRITE_SCRIPTS") == "1"


def test_the_scripts_are_there() -> None:
    assert {p.stem for p in SCRIPTS} >= {
        "normal_write", "replica_down_view_change", "leader_crash_partial_write",
        "rejoin_catch_up", "stale_epoch_refused", "noop_stamps_the_term",
        "leader_fetches_a_snapshot",
    }


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.stem)
def test_script(path: pathlib.Path) -> None:
    expected, actual = check_script(path, REWRITE)
    if actual != expected and not REWRITE:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            fromfile=f"{path.name} (checked in)", tofile=f"{path.name} (now)"))
        pytest.fail(f"the protocol's behaviour changed:\n{diff}")


def test_a_changed_behaviour_shows_as_a_diff() -> None:
    """The comparison is not vacuous: a script whose expected output is edited differs."""
    text = (SCRIPTS_DIR / "normal_write.txt").read_text()
    edited = text.replace("Reply w1 Committed(2)", "Reply w1 Committed(3)")
    assert edited != text
    assert Script().run_text(edited) == text


def test_without_the_noop_a_committed_entry_is_lost() -> None:
    """noop_stamps_the_term.txt, run by a core that has no no-op and commits entries of
    older terms by counting: the new leader's log lacks the committed w1, and the member
    holding it is told to drop it (its core's assertion fires)."""
    text = (SCRIPTS_DIR / "noop_stamps_the_term.txt").read_text()
    with pytest.raises(AssertionError, match="a committed entry differs from the leader's"):
        Script(core_factory=NoNoop).run_text(text)
