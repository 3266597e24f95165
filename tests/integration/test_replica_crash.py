"""kill -9 a replica that persists, applies and trims log entries (durable mode); its
recovered state must be exactly "the effects of entries 1..applied_index": every
acknowledged apply is there, no entry's effect is there without its position (nor the
position without the effect), and the log is contiguous after the trimmed position."""

from __future__ import annotations

import hashlib
import pathlib
import random

import pytest

from storage.api import NoSuchKey
from storage.engine import Engine
from storage.engine.replica import ReplicaState
from tests.integration.crash_replica import body_of
from tests.integration.kill_harness import run_and_kill

CHILD = pathlib.Path(__file__).with_name("crash_replica.py")


def _run_and_kill(data_dir: pathlib.Path, rng: random.Random) -> int:
    lines = run_and_kill([str(CHILD), str(data_dir)], rng, (0.3, 1.2))
    acknowledged = [int(line.split()[1]) for line in lines]
    assert acknowledged, "the replica acknowledged nothing before it was killed"
    return max(acknowledged)


def _check(data_dir: pathlib.Path, acknowledged: int) -> int:
    engine = Engine(data_dir, durable=True, collect_staging_at_open=False)
    try:
        recovery = ReplicaState(engine).recover()  # asserts the log is contiguous
        applied = recovery.applied_index
        assert applied >= acknowledged
        assert recovery.trimmed_index + len(recovery.entries) >= applied
        # Exactly entries 1..applied took effect: the puts among them, and the next
        # entries' puts did not (their effect would be there without their position).
        puts = [i for i in range(2, applied + 1) if i % 5]
        assert engine.entry_counts()["versions"] == len(puts)
        for index in (*puts[-20:], *puts[:5]):
            version = engine.get_version("b", f"k{index}")
            reader = engine.open_body(version)
            try:
                body = b"".join(bytes(piece) for piece in reader)
            finally:
                reader.close()
            assert hashlib.md5(body).hexdigest() == hashlib.md5(body_of(index)).hexdigest()
        for index in range(applied + 1, applied + 5):
            with pytest.raises(NoSuchKey):
                engine.get_version("b", f"k{index}")
        return applied
    finally:
        engine.close()


@pytest.mark.slow
def test_applied_position_and_effects_survive_kill_9_together(tmp_path: pathlib.Path) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    applied = 0
    for _ in range(3):
        acknowledged = _run_and_kill(tmp_path, rng)
        assert acknowledged > applied
        applied = _check(tmp_path, acknowledged)
