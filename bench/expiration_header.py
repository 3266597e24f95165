"""CPU time of the x-amz-expiration lookup on every GET/HEAD/PUT, and of its counter read.

``LifecycleRulesCache.expiration_headers`` runs on every GetObject, HeadObject and
PutObject (``gateway/s3/expiration.py``); for a bucket without lifecycle rules it is a
read of ``StorageClient.change_count`` and a dict lookup. This measures both in process
against a real embedded storage (best of 3 rounds of 100,000 calls, ``time.process_time``)
and prints one JSON line. It imports the tree in the current directory, so two trees can
be compared side by side::

    (cd /work/main && .venv/bin/python /path/to/bench/expiration_header.py)
    (cd /work/wt-x && /work/main/.venv/bin/python bench/expiration_header.py)
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path.cwd()))  # the tree being measured, not this file's

from storage import api  # noqa: E402 (after choosing the tree)
from storage.client import open_embedded  # noqa: E402

CALLS_PER_ROUND = 100_000
ROUNDS = 3


async def _best_ns(call: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(CALLS_PER_ROUND):
            result = call()
            if isinstance(result, Awaitable):
                await result
        best = min(best, (time.process_time() - started) / CALLS_PER_ROUND * 1e9)
    return best


async def main() -> None:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        storage = await open_embedded(pathlib.Path(directory), durable=False, lifecycle=None)
        try:
            await storage.create_bucket("b", "owner")
            async with storage.open_upload("b", "k") as upload:
                version = await upload.commit(api.PutSpec(etag="0" * 32), None)
            results["change_count_ns"] = await _best_ns(
                lambda: storage.change_count("b", api.CHANGES_CONFIGURATION))
            try:
                from gateway.s3.expiration import LifecycleRulesCache
            except ImportError:  # a tree without the header
                pass
            else:
                cache = LifecycleRulesCache()
                results["expiration_headers_no_rules_ns"] = await _best_ns(
                    lambda: cache.expiration_headers(storage, version, api.LIFECYCLE_DAY_MS))
        finally:
            await storage.close()
    print(json.dumps({name: round(value) for name, value in results.items()}))


if __name__ == "__main__":
    asyncio.run(main())
