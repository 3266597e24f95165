"""Small measurement (not a test): 4 KiB PUTs/s through the embedded client, one at a
time (each PUT is its own LMDB transaction) vs many concurrent (group commit).

Run: .venv/bin/python tests/integration/bench_group_commit.py [puts]
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import sys
import tempfile
import time

from storage.api import PutSpec
from storage.client import open_embedded

BODY = b"x" * 4096
SPEC = PutSpec(etag=hashlib.md5(BODY).hexdigest())


async def put(client, key: str) -> None:
    async with client.open_upload("bench", key) as upload:
        await upload.write(BODY)
        await upload.commit(SPEC)


async def measure(durable: bool, concurrency: int, puts: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        client = await open_embedded(pathlib.Path(data_dir), durable=durable)
        try:
            await client.create_bucket("bench", "me")
            writer = client._owned_nodes[0].writer
            groups_before = writer.stats.groups_committed
            started_s = time.perf_counter()
            for batch_start in range(0, puts, concurrency):
                await asyncio.gather(
                    *(put(client, f"k{batch_start + i}") for i in range(concurrency))
                )
            elapsed_s = time.perf_counter() - started_s
            groups = writer.stats.groups_committed - groups_before
        finally:
            await client.close()
    return puts / elapsed_s, puts / max(groups, 1)


async def main(puts: int) -> None:
    for durable in (True, False):
        for concurrency in (1, 64, 512):
            rate, per_group = await measure(durable, concurrency, puts)
            mode = "durable " if durable else "volatile"
            print(
                f"{mode} concurrency={concurrency:4d}: {rate:9.0f} puts/s"
                f"  ({per_group:6.1f} puts per LMDB transaction)"
            )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4096))
