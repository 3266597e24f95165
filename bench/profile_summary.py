"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the server's
time goes, by function (self time) and by module group (inclusive time).

Run: ``python -m bench.profile_summary bench/results/<run>-profile-squall-get_4k.txt``
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Inclusive time is charged to the FIRST group (from the leaf upwards) whose pattern a
# frame matches, so "sigv4" means time spent in or under the SigV4 verifier.
groups: list[tuple[str, str]] = [
    ("SigV4 verification (gateway/auth)", r"gateway/auth/"),
    ("LMDB engine + writer (storage/engine)", r"storage/engine/"),
    ("storage client/node/transport", r"storage/(client|node|transport)"),
    (
        "S3 handlers, XML, errors (gateway/s3, xml)",
        r"gateway/(s3|xml|errors|router|body|checksums)",
    ),
    ("gateway app (gateway/app.py)", r"gateway/app\.py"),
    ("Starlette", r"starlette/"),
    ("uvicorn + httptools", r"uvicorn/|httptools"),
    ("asyncio / uvloop event loop", r"asyncio/|uvloop"),
]


def parse(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def summarise(stacks: Counter[tuple[str, ...]], top: int = 15) -> str:
    total = sum(stacks.values()) or 1
    self_time: Counter[str] = Counter()
    group_time: Counter[str] = Counter()
    for stack, count in stacks.items():
        self_time[re.sub(r":\d+\)$", ")", stack[-1])] += count
        for frame in reversed(stack):
            group = next((name for name, pattern in groups if re.search(pattern, frame)), None)
            if group is not None:
                group_time[group] += count
                break
        else:
            group_time["other (idle, threads, interpreter)"] += count
    lines = [f"{total} samples", "", "by area (innermost matching frame):"]
    lines += [f"  {100 * c / total:5.1f} %  {name}" for name, c in group_time.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {100 * c / total:5.1f} %  {name}" for name, c in self_time.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for path in args.profiles:
        print(f"== {path.name}")
        print(summarise(parse(path), args.top))
        print()


if __name__ == "__main__":
    main()
