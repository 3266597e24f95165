"""The notification events beyond object created/removed: tagging, ACL, lifecycle
expiration and the test event. Each is written to the outbox in the transaction of the
change it reports (checked by entry counts), follows the rules' filters, and respects the
outbox bound; their messages carry the fields AWS's do (golden records)."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from storage.api import (
    LIFECYCLE_RULES_CONFIG,
    NOTIFICATION_CONFIG,
    TEST_EVENT,
    EventOrigin,
    InvalidArgument,
    LifecycleConfiguration,
    LifecycleRule,
    NoSuchVersion,
    NotificationConfiguration,
    NotificationRule,
    OutboxEvent,
    Overloaded,
)
from storage.engine import operations
from storage.engine.expiry import LIFECYCLE_PRINCIPAL_ID
from storage.lifecycle import DAY_MS, LifecycleSweeper, SweeperSettings
from tests.unit.engine_helpers import FakeClock
from tests.unit.test_outbox import ORIGIN, QUEUE, TOPIC, OutboxStore
from triggers.events import event_message

EVERYTHING = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectTagging:*",
              "s3:ObjectAcl:Put", "s3:LifecycleExpiration:*")


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[OutboxStore]:
    opened = OutboxStore(tmp_path)
    opened.write(operations.create_bucket("b", "owner-1"))
    yield opened
    opened.close()


def configure(store: OutboxStore, *events: str, filters: tuple[tuple[str, str], ...] = ()
              ) -> None:
    store.configure(NotificationRule("queue", "q1", QUEUE, events or EVERYTHING, filters))


def names(store: OutboxStore) -> list[tuple[str, str]]:
    return [(event.key, event.event_name) for event in store.events()]


def ack_all(store: OutboxStore) -> None:
    store.write(operations.outbox_ack([event.sequence for event in store.events()]))


# --- tagging ------------------------------------------------------------------------------


def test_tag_replacement_writes_its_event_in_the_same_transaction(store: OutboxStore) -> None:
    configure(store)
    version = store.put("photo.jpg", b"hello")
    ack_all(store)
    before = store.engine.entry_counts()
    tagged = store.write(operations.replace_tags("b", "photo.jpg", version.version_id,
                                                 {"kind": "cat"}, origin=ORIGIN))
    after = store.engine.entry_counts()
    # One LMDB transaction: the version record is rewritten in place (same count) and the
    # outbox gains exactly the one event.
    assert {name: after[name] - before[name] for name in after} == {
        name: 1 if name == "outbox" else 0 for name in after}
    [event] = store.events()
    assert (event.key, event.event_name, event.etag, event.s3_version_id, event.size_bytes,
            event.origin) == ("photo.jpg", "s3:ObjectTagging:Put", version.etag, "null", None,
                              ORIGIN)
    assert tagged.tags == {"kind": "cat"}
    assert event.sequencer > f"{version.version_id}".upper()  # after the version's write
    store.write(operations.replace_tags("b", "photo.jpg", version.version_id, {},
                                        "s3:ObjectTagging:Delete"))
    assert names(store)[-1] == ("photo.jpg", "s3:ObjectTagging:Delete")


def test_tagging_an_older_version_names_that_version(store: OutboxStore) -> None:
    configure(store, "s3:ObjectTagging:Put")
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    old = store.put("k", b"one")
    store.put("k", b"two")
    store.write(operations.replace_tags("b", "k", old.version_id, {"a": "1"}))
    [event] = store.events()  # the config takes tagging only: no ObjectCreated events
    assert (event.s3_version_id, event.etag) == (old.s3_version_id, old.etag)


def test_failed_tag_replacements_write_no_event(store: OutboxStore) -> None:
    configure(store)
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    version = store.put("k")
    marker = store.write(operations.delete_object("b", "k"))
    ack_all(store)
    with pytest.raises(NoSuchVersion):
        store.write(operations.replace_tags("b", "k", "0000000000000001", {"a": "1"}))
    with pytest.raises(InvalidArgument):
        store.write(operations.replace_tags("b", "k", marker.s3_version_id, {"a": "1"}))
    assert store.events() == []
    assert store.engine.get_version("b", "k", version.version_id).tags == {}


def test_filters_apply_to_tagging_events(store: OutboxStore) -> None:
    configure(store, "s3:ObjectTagging:*", filters=(("prefix", "in/"), ("suffix", ".jpg")))
    inside, outside = store.put("in/a.jpg"), store.put("in/a.png")
    for version in (inside, outside):
        store.write(operations.replace_tags("b", version.key, version.version_id, {"t": "v"}))
        store.write(operations.replace_tags("b", version.key, version.version_id, {},
                                            "s3:ObjectTagging:Delete"))
    assert names(store) == [("in/a.jpg", "s3:ObjectTagging:Put"),
                            ("in/a.jpg", "s3:ObjectTagging:Delete")]


def test_a_full_outbox_refuses_a_tag_replacement_and_keeps_the_old_tags(
    tmp_path: pathlib.Path,
) -> None:
    store = OutboxStore(tmp_path, entries_max=1)
    try:
        store.write(operations.create_bucket("b", "o"))
        configure(store, "s3:ObjectTagging:*")
        version = store.put("k")
        store.write(operations.replace_tags("b", "k", version.version_id, {"first": "1"}))
        with pytest.raises(Overloaded, match="outbox is full"):
            store.write(operations.replace_tags("b", "k", version.version_id, {"second": "2"}))
        assert store.engine.get_version("b", "k").tags == {"first": "1"}
        assert len(store.events()) == 1
    finally:
        store.close()


# --- the test event -----------------------------------------------------------------------


def test_a_configuration_put_by_a_request_writes_one_test_event_per_destination(
    store: OutboxStore,
) -> None:
    rules = (
        NotificationRule("queue", "a", QUEUE, ("s3:ObjectCreated:*",)),
        NotificationRule("queue", "b", QUEUE, ("s3:ObjectRemoved:*",)),  # same destination
        NotificationRule("topic", "c", TOPIC, ("s3:ObjectCreated:Put",), (("prefix", "x/"),)),
        NotificationRule("function", "f", "arn:squall:function:f", ("s3:ObjectCreated:*",)),
        NotificationRule("queue", "aws", "arn:aws:sqs:us-east-1:1:q", ("s3:ObjectCreated:*",)),
    )
    document = NotificationConfiguration(rules).to_json()
    before = store.engine.entry_counts()
    store.write(operations.put_bucket_config("b", NOTIFICATION_CONFIG, document, ORIGIN))
    after = store.engine.entry_counts()
    assert (after["bucket_configs"] - before["bucket_configs"],
            after["outbox"] - before["outbox"]) == (1, 2)
    events = store.events()
    assert [(e.target_arn, e.event_name, e.key, e.bucket) for e in events] == [
        (QUEUE, TEST_EVENT, "", "b"), (TOPIC, TEST_EVENT, "", "b")]
    assert all(e.origin == ORIGIN for e in events)
    # Without an origin (an internal write, or x-amz-skip-destination-validation): none.
    store.write(operations.put_bucket_config("b", NOTIFICATION_CONFIG, document))
    assert len(store.events()) == 2


def test_a_full_outbox_refuses_a_configuration_that_would_send_test_events(
    tmp_path: pathlib.Path,
) -> None:
    store = OutboxStore(tmp_path, entries_max=1)
    try:
        store.write(operations.create_bucket("b", "o"))
        one = NotificationConfiguration((NotificationRule("queue", "q", QUEUE, EVERYTHING),))
        store.write(operations.put_bucket_config("b", NOTIFICATION_CONFIG, one.to_json(),
                                                 ORIGIN))
        two = NotificationConfiguration((NotificationRule("topic", "t", TOPIC, EVERYTHING),))
        with pytest.raises(Overloaded):
            store.write(operations.put_bucket_config("b", NOTIFICATION_CONFIG, two.to_json(),
                                                     ORIGIN))
        assert store.engine.get_bucket_config("b", NOTIFICATION_CONFIG) == one.to_json()
    finally:
        store.close()


# --- lifecycle ----------------------------------------------------------------------------


def set_rules(store: OutboxStore, *rules: LifecycleRule) -> None:
    document = LifecycleConfiguration(rules).to_document()
    store.write(operations.put_bucket_config("b", LIFECYCLE_RULES_CONFIG, document))


def sweeper(store: OutboxStore, days_ahead: int, **settings: Any) -> LifecycleSweeper:
    async def write(operation: Any) -> Any:
        return await asyncio.wrap_future(store.writer.submit(operation))

    clock = FakeClock(store.clock.now_ms + days_ahead * DAY_MS)
    return LifecycleSweeper(store.engine, write, SweeperSettings(
        now_ms=clock, deletes_per_second_max=1_000_000, **settings))


def sweep(store: OutboxStore, days_ahead: int) -> int:
    return asyncio.run(sweeper(store, days_ahead).sweep_once())


def test_lifecycle_expiration_events_and_never_object_removed(store: OutboxStore) -> None:
    store.configure(
        NotificationRule("queue", "lifecycle", QUEUE, ("s3:LifecycleExpiration:*",)),
        NotificationRule("topic", "removed", TOPIC, ("s3:ObjectRemoved:*",)),
    )
    store.write(operations.set_bucket_versioning("b", "Enabled"))
    first = store.put("k", b"one")
    store.clock.advance(1000)
    second = store.put("k", b"two")
    set_rules(store,
              LifecycleRule("r", True, expiration_days=1, noncurrent_days=1),
              LifecycleRule("markers", True, expired_object_delete_marker=True))
    assert sweep(store, 3) == 2  # a marker for 'two' (current), 'one' removed for good
    marker = store.engine.get_version("b", "k")
    assert sweep(store, 6) == 1  # 'two', noncurrent for long enough
    assert sweep(store, 6) == 1  # the lone expired delete marker
    events = store.events()
    assert [e.target_arn for e in events] == [QUEUE] * 4  # ObjectRemoved:* gets none
    assert sorted((e.event_name, e.s3_version_id) for e in events) == sorted([
        ("s3:LifecycleExpiration:DeleteMarkerCreated", marker.s3_version_id),
        ("s3:LifecycleExpiration:Delete", first.s3_version_id),
        ("s3:LifecycleExpiration:Delete", second.s3_version_id),
        ("s3:LifecycleExpiration:Delete", marker.s3_version_id),
    ])
    for event in events:
        assert event.origin.principal_id == LIFECYCLE_PRINCIPAL_ID == event.origin.source_ip
        assert len(event.origin.request_id) == 16 and event.size_bytes is None
    assert len({e.origin.request_id for e in events}) == 4  # one request id per action
    assert store.engine.entry_counts()["versions"] == 0


def test_lifecycle_in_an_unversioned_bucket_and_its_filters(store: OutboxStore) -> None:
    configure(store, "s3:LifecycleExpiration:Delete", filters=(("suffix", ".log"),))
    store.put("logs/a.log")
    store.put("logs/b.txt")
    ack_all(store)
    set_rules(store, LifecycleRule("r", True, prefix="logs/", expiration_days=1))
    assert sweep(store, 3) == 2
    assert [(e.key, e.event_name, e.s3_version_id) for e in store.events()] == [
        ("logs/a.log", "s3:LifecycleExpiration:Delete", "null")]


def test_a_full_outbox_pauses_the_sweep_until_events_are_delivered(
    tmp_path: pathlib.Path,
) -> None:
    """Eight expirations, room for three events: the sweep applies what fits, waits, and
    goes on as the outbox drains. No event is dropped and the pass does not fail."""
    store = OutboxStore(tmp_path, entries_max=3)

    async def scenario() -> LifecycleSweeper:
        sweeping = sweeper(store, 3, overloaded_retry_delay_ms_min=1,
                           overloaded_retry_delay_ms_max=5)
        task = asyncio.ensure_future(sweeping.sweep_once())
        delivered: list[OutboxEvent] = []
        for _ in range(2000):
            await asyncio.sleep(0.005)
            if task.done():
                break
            events = store.events()
            assert len(events) <= 3
            if len(events) == 3 and sweeping.stats.overloaded_pauses:
                # Paused on a full outbox, with the rest of the keys still there.
                left = store.engine.list_objects("b").objects
                assert len(left) == 8 - len(delivered) - 3
                delivered += events
                await asyncio.wrap_future(store.writer.submit(
                    operations.outbox_ack([e.sequence for e in events])))
        assert await asyncio.wait_for(task, 30) == 8
        delivered += store.events()
        assert sorted(e.key for e in delivered) == [f"k{i}" for i in range(8)]
        return sweeping

    try:
        store.write(operations.create_bucket("b", "o"))
        configure(store, "s3:LifecycleExpiration:*")
        for index in range(8):
            store.put(f"k{index}")
        set_rules(store, LifecycleRule("r", True, expiration_days=1))
        stats = asyncio.run(scenario()).stats
        assert stats.overloaded_pauses >= 2 and stats.passes_failed == 0
        assert (stats.actions_planned, stats.actions_applied) == (8, 8)
        assert store.engine.list_objects("b").objects == ()
    finally:
        store.close()


# --- the messages, as AWS writes them -----------------------------------------------------


def _event(event_name: str, **fields: Any) -> OutboxEvent:
    values: dict[str, Any] = dict(
        sequence=5, target_arn=QUEUE, configuration_id="to-hooks", event_name=event_name,
        event_time_ms=1_700_000_000_123, bucket="photos", bucket_owner_id="owner-1",
        key="a b.jpg", size_bytes=None, etag="", s3_version_id="null",
        sequencer="0000000000000005", origin=EventOrigin("owner-7", "192.0.2.3", "R1", "H1"))
    values.update(fields)
    return OutboxEvent(**values)


def _record(event: OutboxEvent) -> dict[str, Any]:
    [record] = json.loads(event_message(event, "us-east-1"))["Records"]
    return record


def test_tagging_records_carry_the_version_and_etag_but_no_size() -> None:
    for name in ("s3:ObjectTagging:Put", "s3:ObjectTagging:Delete"):
        record = _record(_event(name, etag="d41d8cd98f00b204e9800998ecf8427e",
                                s3_version_id="018BCFE568000001"))
        assert (record["eventVersion"], record["eventName"]) == ("2.3", name[3:])
        assert record["s3"]["object"] == {"key": "a+b.jpg",
                                          "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                                          "versionId": "018BCFE568000001"}


def test_lifecycle_records_name_s3_as_the_requester() -> None:
    origin = EventOrigin(LIFECYCLE_PRINCIPAL_ID, LIFECYCLE_PRINCIPAL_ID, "R2", "R2")
    record = _record(_event("s3:LifecycleExpiration:Delete", origin=origin))
    assert record["eventVersion"] == "2.3"
    assert record["eventName"] == "LifecycleExpiration:Delete"
    assert record["userIdentity"] == {"principalId": "s3.amazonaws.com"}
    assert record["requestParameters"] == {"sourceIPAddress": "s3.amazonaws.com"}
    assert record["s3"]["object"] == {"key": "a+b.jpg", "sequencer": "0000000000000005"}


def test_the_test_event_is_aws_flat_test_message() -> None:
    event = _event(TEST_EVENT, key="", configuration_id="")
    assert event_message(event, "us-east-1") == (
        b'{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2023-11-14T22:13:20.123Z",'
        b'"Bucket":"photos","RequestId":"R1","HostId":"H1"}')


def test_object_created_records_are_unchanged() -> None:
    record = _record(_event("s3:ObjectCreated:Put", size_bytes=3, etag="e"))
    assert record["eventVersion"] == "2.1"
    assert record["s3"]["object"] == {"key": "a+b.jpg", "size": 3, "eTag": "e",
                                      "sequencer": "0000000000000005"}
