"""kill -9 a process that is writing through the embedded store (durable mode), reopen
its data directory, and check every acknowledged object is there with the right bytes.

An object is acknowledged when the child printed its line: it prints only after
``commit`` returned, i.e. after the group's LMDB transaction was committed and fsynced.
"""

from __future__ import annotations

import hashlib
import pathlib
import random

import pytest

from storage.engine import Engine
from tests.integration.kill_harness import run_and_kill

WRITER_SCRIPT = pathlib.Path(__file__).with_name("crash_writer.py")


def _run_and_kill(data_dir: pathlib.Path, run_id: str, rng: random.Random) -> list[str]:
    return run_and_kill([str(WRITER_SCRIPT), str(data_dir), run_id, str(rng.randrange(2**32))],
                        rng, (0.2, 1.5))


def _check_acknowledged(data_dir: pathlib.Path, acknowledged: list[str]) -> None:
    engine = Engine(data_dir, durable=True)
    try:
        assert engine.entry_counts()["staging"] == 0
        for line in acknowledged:
            key, digest = line.split(" ")
            version = engine.get_version("crash", key)
            reader = engine.open_body(version)
            try:
                body = b"".join(bytes(piece) for piece in reader)
            finally:
                reader.close()
            assert hashlib.md5(body).hexdigest() == digest == version.etag, key
    finally:
        engine.close()


@pytest.mark.slow
def test_acknowledged_puts_survive_kill_9(tmp_path: pathlib.Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"seed={seed}")
    acknowledged: list[str] = []
    for round_index in range(2):
        acknowledged += _run_and_kill(tmp_path, f"run{round_index}", rng)
        assert acknowledged, "the writer acknowledged nothing before it was killed"
        _check_acknowledged(tmp_path, acknowledged)
    print(f"{len(acknowledged)} acknowledged objects verified")
