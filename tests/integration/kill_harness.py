"""Run a child that acknowledges work line by line, then kill -9 it at a random moment.

The crash tests (engine, replica) share this: the child prints "ready" once it is set
up, then one line per acknowledged operation; after a random delay it gets SIGKILL, no
clean-up of any kind, as in a crash. Only whole lines count: a line the kill cut (no
newline) was not fully acknowledged to the test.
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_and_kill(arguments: list[str], rng: random.Random, delay_s: tuple[float, float]) -> list[str]:
    """The lines ``python ARGUMENTS...`` acknowledged before it was killed, stripped."""
    child = subprocess.Popen([sys.executable, *arguments], cwd=REPO_ROOT,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stderr is not None
    stdout, stderr = child.stdout, child.stderr
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(stdout), daemon=True)
    try:
        first = stdout.readline()
        assert first == "ready\n", stderr.read() if child.poll() is not None else first
        reader.start()
        time.sleep(rng.uniform(*delay_s))
        assert child.poll() is None, stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        reader.join(timeout=30)
        stdout.close()
        stderr.close()
    return [line.strip() for line in lines if line.endswith("\n")]
