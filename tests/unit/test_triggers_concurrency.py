"""Concurrent batches (``triggers.batching``) and the storage change counters that the
triggers' caches rely on (``storage.engine.writer.ChangeCounters``), on real threads and
a real embedded store."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from storage import api
from storage.client import open_embedded
from storage.engine import Engine, GroupCommitWriter
from storage.engine.writer import ChangeCounters, WriteOperation
from triggers.batching import Batcher, InferencePool


class Overlap:
    """Counts the batches inside their worker thread at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside = 0
        self.inside_max = 0

    def __enter__(self) -> None:
        with self._lock:
            self.inside += 1
            self.inside_max = max(self.inside_max, self.inside)

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.inside -= 1


def test_batches_of_one_function_run_at_once_up_to_its_bound() -> None:
    """Two batches must be in their threads at the same time to pass the barrier; with one
    batch at a time the barrier breaks and the requests fail. Never more than two."""
    barrier = threading.Barrier(2, timeout=10)
    overlap = Overlap()
    pool = InferencePool(4)

    def work(items: Sequence[int]) -> list[int]:
        with overlap:
            barrier.wait()
            time.sleep(0.01)
        return [item * 10 for item in items]

    async def run_batch(items: Sequence[int]) -> list[int]:
        return await asyncio.get_running_loop().run_in_executor(pool.executor, work, items)

    async def scenario() -> None:
        batcher = Batcher("wide", run_batch, max_batch_size=1, max_queue_delay_ms=0,
                          queue_length_max=16, max_concurrent_batches=2, pool=pool)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(6)))
        assert [value for value, _ in results] == [0, 10, 20, 30, 40, 50]
        assert overlap.inside_max == 2
        assert batcher.stats.running_max == 2 and batcher.stats.batches == 6
        await batcher.close()

    try:
        asyncio.run(scenario())
    finally:
        pool.close()


def test_one_batch_at_a_time_when_the_bound_is_one() -> None:
    overlap = Overlap()
    pool = InferencePool(4)

    def work(items: Sequence[int]) -> list[int]:
        with overlap:
            time.sleep(0.01)
        return list(items)

    async def run_batch(items: Sequence[int]) -> list[int]:
        return await asyncio.get_running_loop().run_in_executor(pool.executor, work, items)

    async def scenario() -> None:
        batcher = Batcher("narrow", run_batch, max_batch_size=2, max_queue_delay_ms=0,
                          queue_length_max=16, max_concurrent_batches=1, pool=pool)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
        assert [value for value, _ in results] == list(range(8))
        assert overlap.inside_max == 1 and batcher.stats.running_max == 1
        # While the first batch ran, the rest queued and were taken two at a time.
        assert batcher.stats.largest_batch == 2
        await batcher.close()

    try:
        asyncio.run(scenario())
    finally:
        pool.close()


def test_the_pool_bounds_every_function_together() -> None:
    overlap = Overlap()
    pool = InferencePool(2)

    def work(items: Sequence[str]) -> list[str]:
        with overlap:
            time.sleep(0.01)
        return [item.upper() for item in items]

    async def run_batch(items: Sequence[str]) -> list[str]:
        return await asyncio.get_running_loop().run_in_executor(pool.executor, work, items)

    async def scenario() -> None:
        batchers = [Batcher(f"f{n}", run_batch, max_batch_size=1, max_queue_delay_ms=0,
                            queue_length_max=16, max_concurrent_batches=2, pool=pool)
                    for n in range(3)]
        results = await asyncio.gather(*(b.submit(f"{b.name}-{i}") for b in batchers
                                         for i in range(4)))
        assert [value for value, _ in results] == [f"F{n}-{i}" for n in range(3)
                                                   for i in range(4)]
        assert overlap.inside_max == 2 and pool.busy_max == 2 and pool.busy == 0
        for batcher in batchers:
            assert batcher.stats.requests == 4
            await batcher.close()

    try:
        asyncio.run(scenario())
    finally:
        pool.close()


def test_batches_start_in_arrival_order() -> None:
    started: list[int] = []

    async def run_batch(items: Sequence[int]) -> list[int]:
        started.extend(items)
        await asyncio.sleep(0.005 * (items[0] % 3))  # finish out of order
        return list(items)

    async def scenario() -> None:
        batcher = Batcher("order", run_batch, max_batch_size=2, max_queue_delay_ms=0,
                          queue_length_max=32, max_concurrent_batches=3)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        assert [value for value, _ in results] == list(range(20))
        assert started == list(range(20))
        await batcher.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_window_under_load_on_either_event_loop(loop: str) -> None:
    """Dense arrivals open the window and arm its timer (squall serve runs uvloop)."""
    sizes: list[int] = []

    async def run_batch(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.002)
        return list(items)

    async def scenario() -> None:
        batcher = Batcher("window", run_batch, max_batch_size=16, max_queue_delay_ms=20,
                          queue_length_max=64, max_concurrent_batches=2)

        async def client(n: int) -> None:
            for i in range(10):
                assert (await batcher.submit(n * 100 + i))[0] == n * 100 + i
                await asyncio.sleep(0.001)

        await asyncio.gather(*(client(n) for n in range(6)))
        assert sum(sizes) == 60 and max(sizes) > 1
        await batcher.close()

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(scenario())
    else:
        asyncio.run(scenario())


def test_a_lone_request_does_not_wait_for_the_window() -> None:
    async def run_batch(items: Sequence[int]) -> list[int]:
        return list(items)

    async def scenario() -> None:
        batcher = Batcher("lone", run_batch, max_batch_size=8, max_queue_delay_ms=500,
                          queue_length_max=8, max_concurrent_batches=2)
        for i in range(3):  # sequential: arrivals sparser than the window
            began = time.perf_counter()
            assert await batcher.submit(i) == (i, 1)
            assert time.perf_counter() - began < 0.25
            await asyncio.sleep(0.6)
        waits = batcher.stats.queue_wait
        assert waits.count == 3 and waits.sum_seconds < 0.25  # one wait per request
        # Dense arrivals open the window: the burst waits for company and shares batches.
        results = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
        assert max(size for _, size in results) > 1
        assert waits.count == 3 + 8
        await batcher.close()

    asyncio.run(scenario())


def test_close_fails_queued_requests_and_waits_for_running_batches() -> None:
    finished: list[int] = []

    async def run_batch(items: Sequence[int]) -> list[int]:
        await asyncio.sleep(0.05)
        finished.extend(items)
        return list(items)

    async def scenario() -> None:
        batcher = Batcher("closing", run_batch, max_batch_size=1, max_queue_delay_ms=0,
                          queue_length_max=8, max_concurrent_batches=1)
        submitted = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0.01)  # 0 is running, 1 and 2 are queued
        await batcher.close()
        assert finished == [0]
        outcomes = await asyncio.gather(*submitted, return_exceptions=True)
        assert outcomes[0] == (0, 1)
        assert all(isinstance(o, api.Overloaded) for o in outcomes[1:])

    asyncio.run(scenario())


def test_wait_idle_returns_once_queued_and_running_batches_have_ended() -> None:
    """What a retired function version waits for before it is closed: every queued and
    running request judged (none failed), and a request cancelled while queued does not
    hold it up."""
    finished: list[int] = []

    async def run_batch(items: Sequence[int]) -> list[int]:
        await asyncio.sleep(0.02)
        finished.extend(items)
        return list(items)

    async def scenario() -> None:
        batcher = Batcher("retiring", run_batch, max_batch_size=1, max_queue_delay_ms=0,
                          queue_length_max=8, max_concurrent_batches=1)
        await batcher.wait_idle()  # idle from the start: returns at once
        submitted = [asyncio.ensure_future(batcher.submit(i)) for i in range(4)]
        await asyncio.sleep(0.005)  # 0 is running, 1, 2 and 3 are queued
        submitted[3].cancel()
        assert not batcher.idle
        await asyncio.wait_for(batcher.wait_idle(), 5)
        assert batcher.idle and finished == [0, 1, 2]
        assert [await request for request in submitted[:3]] == [(0, 1), (1, 1), (2, 1)]
        assert submitted[3].cancelled()
        await batcher.close()

    asyncio.run(scenario())


# --- change counters ---------------------------------------------------------------------


def test_change_counters_never_repeat_a_value() -> None:
    counters = ChangeCounters(counters_max=2)
    seen = {("a", "objects"): counters.count("a", "objects")}
    counters.bump((("a", "objects"),))
    assert counters.count("a", "objects") != seen[("a", "objects")]
    before_b = counters.count("b", "objects")
    counters.bump((("a", "objects"),))
    assert counters.count("b", "objects") == before_b  # another bucket is untouched
    values = {counters.count("a", "objects"), before_b}
    counters.bump((("b", "objects"), ("c", "objects")))  # over the bound: all reset at once
    assert counters.count("a", "objects") not in values
    assert counters.count("b", "objects") not in values
    before = counters.count("a", "objects")
    counters.bump(None)  # an operation that cannot say what it changes
    assert counters.count("a", "objects") > before


def test_the_writer_bumps_before_it_acknowledges(tmp_path: Path) -> None:
    engine = Engine(tmp_path, durable=False)
    writer = GroupCommitWriter(engine)
    try:
        before = writer.changes.count("b", api.CHANGES_OBJECTS)
        seen_at_ack: list[int] = []
        gate = threading.Event()  # holds the write until the callback is in place
        operation = WriteOperation(lambda engine, txn: gate.wait(10), name="held",
                                   changes=(("b", api.CHANGES_OBJECTS),))
        future = writer.submit(operation)
        # Runs in the writer thread at set_result: the moment the write is acknowledged.
        future.add_done_callback(
            lambda _: seen_at_ack.append(writer.changes.count("b", api.CHANGES_OBJECTS)))
        gate.set()
        future.result(timeout=10)
        assert seen_at_ack and seen_at_ack[0] != before
        quiet = WriteOperation(lambda engine, txn: None, name="staging", changes=())
        writer.submit(quiet).result(timeout=10)
        assert writer.changes.count("b", api.CHANGES_OBJECTS) == seen_at_ack[0]
    finally:
        writer.close()
        engine.close()


def test_store_writes_change_their_bucket_and_scope(tmp_path: Path) -> None:
    async def scenario() -> None:
        client = await open_embedded(tmp_path, durable=False)
        try:
            def counts() -> dict[tuple[str, str], int | None]:
                return {(bucket, scope): client.change_count(bucket, scope)
                        for bucket in ("b", "other")
                        for scope in (api.CHANGES_OBJECTS, api.CHANGES_CONFIGURATION)}

            await client.create_bucket("b", "owner")
            await client.create_bucket("other", "owner")
            start = counts()
            async with client.open_upload("b", "k") as upload:
                await upload.write(b"x" * (api.limits.chunk_size_bytes + 1))  # a staged chunk
                await upload.commit(api.PutSpec(etag="e"))
            after_put = counts()
            assert [k for k in start if start[k] != after_put[k]] == [("b", "objects")]
            await client.put_bucket_config("b", "tagging", b"<Tagging/>")
            after_config = counts()
            assert [k for k in start if after_put[k] != after_config[k]] == [
                ("b", "configuration")]
            await client.delete_object("b", "k")
            assert client.change_count("b", api.CHANGES_OBJECTS) != after_config[
                ("b", "objects")]
        finally:
            await client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("scope", [api.CHANGES_OBJECTS, api.CHANGES_CONFIGURATION])
def test_a_client_without_its_nodes_cannot_tell(scope: str, tmp_path: Path) -> None:
    from storage.client import ShardedStorageClient
    from storage.placement import single_node_view
    from storage.transport.local import LocalTransport

    client = ShardedStorageClient(single_node_view("remote"), LocalTransport({}))
    assert client.change_count("b", scope) is None


# --- the trigger caches on a real embedded store ----------------------------------------------


def test_judged_writes_reuse_the_model_version_until_the_models_bucket_changes(
        tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import hashlib
    import json

    from tests.integration import tf_models
    from triggers.hook import TriggerHook

    hook = TriggerHook(inference_threads=1)

    async def put(client: api.StorageClient, bucket: str, key: str,
                  body: bytes) -> api.ObjectVersion:
        async with client.open_upload(bucket, key) as upload:
            await upload.write(body)
            return await upload.commit(api.PutSpec(etag=hashlib.md5(body).hexdigest()))

    async def scenario() -> None:
        client = await open_embedded(tmp_path, durable=False, pre_commit_hook=hook)
        try:
            for bucket in ("models", "b"):
                await client.create_bucket(bucket, "owner")
            await put(client, "models", "c.keras", tf_models.colour_model((0, 1, 2)))
            await hook.put_function("colours", json.dumps({
                "kind": "tensorflow", "model": "s3://models/c.keras",
                "input": {"format": "image", "scale": 1 / 255},
                "labels": ["red", "green", "blue"]}).encode())
            rule = api.NotificationRule("function", "c", "arn:squall:function:colours",
                                        ("s3:ObjectCreated:*",))
            await client.put_bucket_config("b", api.NOTIFICATION_CONFIG,
                                           api.NotificationConfiguration((rule,)).to_json())
            red = tf_models.png(tf_models.COLOURS["red"])
            assert hook.models is not None
            versions = hook.models.versions
            labels = []
            for n in range(5):
                version = await put(client, "b", f"k{n}", red)
                assert version.verdict is not None
                labels.append(version.verdict.label)
            assert labels == ["red"] * 5
            assert versions.lookups == 1  # the data bucket's writes did not invalidate it
            await put(client, "models", "c.keras", tf_models.colour_model((2, 1, 0)))
            flipped = await put(client, "b", "after", red)
            assert flipped.verdict is not None and flipped.verdict.label == "blue"
            assert versions.lookups == 2
        finally:
            await client.close()

    asyncio.run(scenario())
