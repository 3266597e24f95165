"""The engine's notification outbox: events written in the same transaction as the write."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from storage.api import (
    NOTIFICATION_CONFIG,
    CompletedPart,
    EventOrigin,
    NoSuchKey,
    NotificationConfiguration,
    NotificationRule,
    Overloaded,
    PreconditionFailed,
    PutSpec,
    WriteConditions,
)
from storage.engine import Engine, GroupCommitWriter, StagedTail, operations
from storage.engine.outbox import sequencer
from storage.engine.writer import WriteOperation
from tests.unit.engine_helpers import FakeClock

QUEUE = "arn:squall:sqs::hooks:webhook"
TOPIC = "arn:squall:sns::other:webhook"
ORIGIN = EventOrigin("principal", "10.0.0.1", "REQ1", "HOST1")


class OutboxStore:
    def __init__(self, data_dir: pathlib.Path, entries_max: int = 100) -> None:
        self.data_dir = data_dir
        self.entries_max = entries_max
        self.clock = FakeClock()
        self._open()

    def _open(self) -> None:
        self.engine = Engine(self.data_dir, durable=False, now_ms=self.clock,
                             outbox_entries_max=self.entries_max)
        self.writer = GroupCommitWriter(self.engine)

    def reopen(self) -> None:
        self.close()
        self._open()

    def write(self, operation: WriteOperation) -> Any:
        return self.writer.submit(operation).result(timeout=30)

    def put(self, key: str, body: bytes = b"data", *, event_name: str = "s3:ObjectCreated:Put",
            conditions: WriteConditions | None = None, bucket: str = "b") -> Any:
        self.clock.advance()
        return self.write(operations.commit_version(
            bucket, key, blob_id=None, size_bytes=len(body),
            spec=PutSpec(etag=hashlib.md5(body).hexdigest()), conditions=conditions,
            tail=StagedTail(0, body) if body else None, event_name=event_name, origin=ORIGIN))

    def configure(self, *rules: NotificationRule, bucket: str = "b") -> None:
        document = NotificationConfiguration(tuple(rules)).to_json()
        self.write(operations.put_bucket_config(bucket, NOTIFICATION_CONFIG, document))

    def events(self, **query: Any) -> list[Any]:
        return list(self.engine.outbox.read(0, 1000, **query).events)

    def close(self) -> None:
        self.writer.close()
        self.engine.close()


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[OutboxStore]:
    opened = OutboxStore(tmp_path)
    opened.write(operations.create_bucket("b", "owner-1"))
    opened.configure(NotificationRule("queue", "q1", QUEUE, ("s3:ObjectCreated:*",
                                                             "s3:ObjectRemoved:*")))
    yield opened
    opened.close()


def test_a_put_writes_its_event_with_the_version(store: OutboxStore) -> None:
    version = store.put("photos/red flower.jpg", b"hello")
    [event] = store.events()
    assert event.sequence == 1
    assert (event.target_arn, event.configuration_id, event.event_name) == (
        QUEUE, "q1", "s3:ObjectCreated:Put")
    assert (event.bucket, event.bucket_owner_id, event.key) == ("b", "owner-1",
                                                                "photos/red flower.jpg")
    assert (event.size_bytes, event.etag, event.s3_version_id) == (5, version.etag, "null")
    assert event.event_time_ms == version.last_modified_ms
    assert event.origin == ORIGIN
    assert store.engine.outbox.depth() == 1


def test_sequencers_order_the_events_of_one_key(store: OutboxStore) -> None:
    for _ in range(5):
        store.put("k")
    store.write(operations.delete_object("b", "k"))
    events = store.events()
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6]
    sequencers = [e.sequencer for e in events]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == 6
    assert all(len(s) == 16 for s in sequencers)
    assert sequencer(0xAB) == "00000000000000AB"


def test_a_failed_write_writes_no_event(store: OutboxStore) -> None:
    store.put("k", b"one")
    with pytest.raises(PreconditionFailed):
        store.put("k", b"two", conditions=WriteConditions(if_none_match_any=True))
    assert len(store.events()) == 1
    assert store.engine.get_version("b", "k").size_bytes == 3


def test_a_failed_operation_in_a_group_rolls_back_its_events_alone(store: OutboxStore) -> None:
    """Each operation is a child transaction: the one that raises after its event was
    written takes the event with it; its neighbours in the group keep theirs."""

    def put_then_fail(engine: Engine, txn: Any) -> None:
        engine.apply_commit(txn, "b", "doomed", blob_id=None, size_bytes=0,
                            spec=PutSpec(etag="e"))
        # Written in its own (uncommitted) transaction, with the one before it, if grouped.
        assert txn.stat(engine.outbox.db)["entries"] in (1, 2)
        raise PreconditionFailed("after the event was written")

    futures = [store.writer.submit(operations.commit_version(
        "b", "before", blob_id=None, size_bytes=0, spec=PutSpec(etag="e"))),
        store.writer.submit(WriteOperation(put_then_fail)),
        store.writer.submit(operations.commit_version(
            "b", "after", blob_id=None, size_bytes=0, spec=PutSpec(etag="e")))]
    futures[0].result(timeout=30)
    with pytest.raises(PreconditionFailed):
        futures[1].result(timeout=30)
    futures[2].result(timeout=30)
    assert [e.key for e in store.events()] == ["before", "after"]


def test_rules_filter_by_event_prefix_and_suffix(store: OutboxStore) -> None:
    store.configure(
        NotificationRule("queue", "jpg", QUEUE, ("s3:ObjectCreated:Put",),
                         (("suffix", ".jpg"),)),
        NotificationRule("topic", "all", TOPIC, ("s3:ObjectCreated:*",), (("prefix", "a/"),)),
        NotificationRule("function", "fn", "arn:squall:function:f", ("s3:ObjectCreated:*",)),
        NotificationRule("queue", "aws", "arn:aws:sqs:us-east-1:1:q", ("s3:ObjectCreated:*",)),
    )
    store.put("a/x.jpg")
    store.put("b/x.jpg", event_name="s3:ObjectCreated:Copy")
    store.put("a/x.png", event_name="s3:ObjectCreated:Copy")
    got = [(e.key, e.configuration_id, e.event_name) for e in store.events()]
    assert got == [("a/x.jpg", "jpg", "s3:ObjectCreated:Put"),
                   ("a/x.jpg", "all", "s3:ObjectCreated:Put"),
                   ("a/x.png", "all", "s3:ObjectCreated:Copy")]
    assert [e.key for e in store.events(target_arns=[TOPIC])] == ["a/x.jpg", "a/x.png"]


def test_delete_events(store: OutboxStore) -> None:
    store.put("plain")
    store.write(operations.delete_object("b", "plain", origin=ORIGIN))
    store.write(operations.delete_object("b", "never-existed"))
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    kept = store.put("versioned")
    marker = store.write(operations.delete_object("b", "versioned"))
    store.write(operations.delete_object("b", "versioned", kept.version_id))
    got = [(e.key, e.event_name, e.s3_version_id, e.size_bytes) for e in store.events()]
    assert got == [
        ("plain", "s3:ObjectCreated:Put", "null", 4),
        ("plain", "s3:ObjectRemoved:Delete", "null", None),
        ("versioned", "s3:ObjectCreated:Put", kept.s3_version_id, 4),
        ("versioned", "s3:ObjectRemoved:DeleteMarkerCreated", marker.s3_version_id, None),
        ("versioned", "s3:ObjectRemoved:Delete", kept.s3_version_id, None),
    ]


def test_complete_multipart_upload_event(store: OutboxStore) -> None:
    info = store.write(operations.create_multipart_upload("b", "big", PutSpec(etag=""), "", ""))
    store.write(operations.commit_part("b", "big", info.upload_id, 1, blob_id=None,
                                       size_bytes=3, etag="p1", checksum="",
                                       tail=StagedTail(0, b"abc")))
    store.write(operations.complete_multipart_upload(
        "b", "big", info.upload_id, [CompletedPart(1, "p1")], etag="m-1", checksums={},
        origin=ORIGIN))
    [event] = store.events()
    assert (event.event_name, event.size_bytes, event.etag, event.origin) == (
        "s3:ObjectCreated:CompleteMultipartUpload", 3, "m-1", ORIGIN)


def test_a_full_outbox_refuses_writes_that_add_events(tmp_path: pathlib.Path) -> None:
    store = OutboxStore(tmp_path, entries_max=3)
    try:
        store.write(operations.create_bucket("b", "o"))
        store.configure(NotificationRule("queue", "q", QUEUE, ("s3:ObjectCreated:*",),
                                         (("prefix", "watched/"),)))
        for index in range(3):
            store.put(f"watched/{index}")
        with pytest.raises(Overloaded, match="outbox is full"):
            store.put("watched/3")
        with pytest.raises(NoSuchKey):
            store.engine.get_version("b", "watched/3")
        store.put("unwatched")  # a write that makes no event is not held back
        acked = store.write(operations.outbox_ack([e.sequence for e in store.events()][:1]))
        assert acked == 1
        store.put("watched/3")
        assert store.engine.outbox.depth() == 3
    finally:
        store.close()


def test_sequences_are_never_reused_across_restarts(store: OutboxStore) -> None:
    store.put("k")
    store.put("k")
    store.write(operations.outbox_ack([1, 2, 99]))  # 99: never existed, ignored
    assert store.engine.outbox.depth() == 0
    store.reopen()
    store.put("k")
    [event] = store.events()
    assert event.sequence == 3
    assert store.engine.outbox.oldest_event_time_ms() == event.event_time_ms


def test_read_pages_in_commit_order(store: OutboxStore) -> None:
    for index in range(10):
        store.put(f"k{index}")
    page = store.engine.outbox.read(0, 4)
    assert [e.sequence for e in page.events] == [1, 2, 3, 4] and page.scanned_through == 4
    page = store.engine.outbox.read(4, 100, target_arns=[TOPIC])
    assert page.events == () and page.scanned_through == 10
    assert store.engine.outbox.read(10, 100).scanned_through == 10


def test_outbox_wait_is_woken_by_the_commit_that_adds_an_event(tmp_path: pathlib.Path) -> None:
    """A dispatcher waits for new events instead of polling: the commit wakes it; a
    commit that adds no event (or a failed one, whose sequence is skipped) does not."""
    import asyncio
    import time

    from storage.client import open_embedded

    async def scenario() -> None:
        client = await open_embedded(tmp_path, durable=False, lifecycle=None)
        try:
            await client.create_bucket("b", "owner-1")
            rule = NotificationRule("queue", "q1", QUEUE, ("s3:ObjectCreated:*",),
                                    filter_rules=(("prefix", "in/"),))
            await client.put_bucket_config("b", NOTIFICATION_CONFIG,
                                           NotificationConfiguration((rule,)).to_json())
            assert await client.outbox_wait(0, -1, 50) is False  # empty: times out

            async def put(key: str, conditions: WriteConditions | None = None) -> None:
                async with client.open_upload("b", key) as upload:
                    await upload.write(b"x")
                    await upload.commit(PutSpec(etag=hashlib.md5(b"x").hexdigest()),
                                        conditions)

            await put("out/no-event")  # no rule matches: no event, no wake-up
            assert await client.outbox_wait(0, -1, 50) is False
            waiter = asyncio.ensure_future(client.outbox_wait(0, -1, 10_000))
            await asyncio.sleep(0.01)
            began = time.monotonic()
            await put("in/event")
            assert await waiter is True
            assert time.monotonic() - began < 5  # woken by the commit, not the timeout
            last = (await client.outbox_read(0, -1, 100)).scanned_through
            assert await client.outbox_wait(0, -1, 10_000) is True  # already there
            with pytest.raises(PreconditionFailed):
                await put("in/event", WriteConditions(if_none_match_any=True))
            assert await client.outbox_wait(0, last, 50) is False  # nothing new was written
        finally:
            await client.close()

    asyncio.run(scenario())
