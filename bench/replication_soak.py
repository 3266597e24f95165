"""``python -m bench.replication_soak``: run the replication simulation over many seeds.

The CI tests (tests/unit/test_replication_sim.py) run a fixed list of seeds and a few
fresh ones; this runs as many as you give it, reports every failure with its seed and
property, and sums up what the runs did (writes and their answers, faults, protocol
paths taken). Exit status 1 if any seed failed.

    python -m bench.replication_soak --seeds 20000              # from a random start
    python -m bench.replication_soak --start 0 --seeds 1000     # the same runs every time
    python -m bench.replication_soak --start 391 --seeds 1 --trace   # one failure, traced
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter

from storage.replication.sim import SimulationFailure, run_simulation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replication_soak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="how many runs")
    parser.add_argument("--start", type=int, help="first seed (default: random)")
    parser.add_argument("--trace", action="store_true", help="print a failure's trace")
    args = parser.parse_args(argv)
    start = args.start if args.start is not None else random.SystemRandom().randrange(2**32)
    began = time.perf_counter()
    failures = 0
    totals: Counter[str] = Counter()
    for seed in range(start, start + args.seeds):
        try:
            result = run_simulation(seed)
        except SimulationFailure as failure:
            failures += 1
            print(str(failure) if args.trace else f"FAILED seed={seed}: {failure.problem}",
                  flush=True)
            continue
        totals.update({f"write.{k}": v for k, v in result.outcomes.items()})
        totals.update({f"fault.{k}": v for k, v in result.faults.items()})
        totals.update({f"action.{k}": v for k, v in result.actions.items()})
        totals["views"] += result.views
    seconds = time.perf_counter() - began
    print(f"seeds {start}..{start + args.seeds - 1}: {args.seeds - failures} passed,"
          f" {failures} failed, {seconds:.1f} s")
    for key, value in sorted(totals.items()):
        print(f"  {key} {value}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
