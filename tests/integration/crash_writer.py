"""Child process of test_engine_crash: PUTs objects in a loop through the embedded store
(durable mode) and prints ``<key> <md5>`` after each commit returns. Killed with -9."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import random
import sys

from storage.api import BucketAlreadyOwnedByYou, PutSpec, limits
from storage.client import open_embedded

CONCURRENT_PUTS = 4


async def put_one(client, key: str, body: bytes) -> None:
    digest = hashlib.md5(body).hexdigest()
    async with client.open_upload("crash", key) as upload:
        for offset in range(0, len(body), 100_000):
            await upload.write(body[offset : offset + 100_000])
        await upload.commit(PutSpec(etag=digest))
    print(f"{key} {digest}", flush=True)


async def main(data_dir: pathlib.Path, run_id: str, seed: int) -> None:
    rng = random.Random(seed)
    client = await open_embedded(data_dir, durable=True)
    try:
        try:
            await client.create_bucket("crash", "tester")
        except BucketAlreadyOwnedByYou:
            pass  # a previous run made it: expected on the second round
        print("ready", flush=True)
        for batch in range(1_000_000):
            puts = []
            for slot in range(CONCURRENT_PUTS):
                size = rng.choice([0, 1, 4096, limits.chunk_size_bytes + rng.randint(1, 5000)])
                key = f"{run_id}/{batch:07d}-{slot}"
                puts.append(put_one(client, key, rng.randbytes(size)))
            await asyncio.gather(*puts)
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
