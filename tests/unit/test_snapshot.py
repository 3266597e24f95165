"""A node's streamed snapshot (``StorageNode.snapshot``, the admin API's backup): one at a
time, released when its reader stops early, and whole when read to the end."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from storage.api import Overloaded, limits
from storage.client import open_embedded


def test_one_snapshot_at_a_time_and_an_early_stop_frees_it(tmp_path: pathlib.Path) -> None:
    async def scenario() -> None:
        storage = await open_embedded(tmp_path, durable=False, lifecycle=None)
        try:
            await storage.create_bucket("kept", "owner")
            first = storage.snapshot(0)
            assert len(await anext(first)) > 0
            assert limits.snapshots_concurrent_max == 1
            second = storage.snapshot(0)
            with pytest.raises(Overloaded):
                await anext(second)
            await first.aclose()  # stopped early: the copy is abandoned, the slot freed
            total = 0
            async for chunk in storage.snapshot(0):
                total += len(chunk)
            assert total > 0 and total % 4096 == 0  # whole LMDB pages
        finally:
            await storage.close()

    asyncio.run(scenario())
