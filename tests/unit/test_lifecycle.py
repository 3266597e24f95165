"""Lifecycle: the pure rule decisions, and the sweeper against a real engine.

Time is injected: the engine runs on a fake clock, the sweeper on another that the tests
move days ahead, so nothing waits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import pathlib
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from storage.api import (
    LIFECYCLE_RULES_CONFIG,
    CompletedPart,
    LifecycleConfiguration,
    LifecycleRule,
    NoSuchUpload,
    ObjectVersion,
    PutSpec,
    current_version_expiry,
    limits,
)
from storage.client import open_embedded
from storage.engine import WriteOperation, multipart, operations
from storage.engine.expiry import (
    ExpiryAction,
    ExpiryKind,
    UploadAbort,
    abort_uploads,
    apply_expiry_actions,
    expire,
    scan_versions,
)
from storage.lifecycle import (
    DAY_MS,
    LifecycleSweeper,
    SweeperSettings,
    aborts_upload,
    due_ms,
    plan_key,
    rule_matches,
)
from tests.unit.engine_helpers import FakeClock, Store, open_store

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z, the engine's fake clock start


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@dataclasses.dataclass(frozen=True)
class Version:
    """A stand-in for api.ObjectVersion, with the ``tags`` the tagging branch adds."""

    key: str
    version_id: str
    last_modified_ms: int
    size_bytes: int = 10
    is_delete_marker: bool = False
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)


def rule(**fields) -> LifecycleRule:
    return LifecycleRule(rule_id=fields.pop("rule_id", "r"), enabled=fields.pop("enabled", True),
                         **fields)


# --- pure decisions ---------------------------------------------------------------------


def test_due_time_rounds_up_to_the_next_midnight_utc() -> None:
    # AWS's example: created 2014-01-15 10:30 UTC, 3 days -> expires 2014-01-19 00:00 UTC.
    assert due_ms(ms("2014-01-15T10:30:00"), 3) == ms("2014-01-19T00:00:00")
    assert due_ms(ms("2014-01-15T00:00:00"), 1) == ms("2014-01-16T00:00:00")


def test_filter_is_the_conjunction_of_prefix_tags_and_size_bounds() -> None:
    logs = rule(prefix="logs/", tags={"class": "tmp"}, object_size_greater_than_bytes=10,
                object_size_less_than_bytes=100)
    assert rule_matches(logs, "logs/a", 50, {"class": "tmp", "other": "x"})
    assert not rule_matches(logs, "data/a", 50, {"class": "tmp"})
    assert not rule_matches(logs, "logs/a", 50, {"class": "keep"})
    assert not rule_matches(logs, "logs/a", 50, {})
    assert not rule_matches(logs, "logs/a", 10, {"class": "tmp"})  # strictly greater
    assert not rule_matches(logs, "logs/a", 100, {"class": "tmp"})  # strictly less
    assert rule_matches(rule(), "anything", 0, {})


def test_current_version_expires_days_after_creation() -> None:
    created = ms("2024-03-01T12:00:00")
    versions = [Version("k", "v1", created)]
    rules = [rule(expiration_days=2)]
    assert plan_key(rules, versions, ms("2024-03-03T23:59:59")) == []
    assert plan_key(rules, versions, ms("2024-03-04T00:00:00")) == [
        ExpiryAction(ExpiryKind.EXPIRE_CURRENT, "k", "v1")
    ]


def test_current_version_expiry_is_what_the_sweeper_acts_on() -> None:
    # What x-amz-expiration tells (api.current_version_expiry) is the earliest enabled
    # matching rule's due time, the very instant plan_key starts expiring the version.
    created = ms("2024-03-01T12:00:00")
    version = ObjectVersion(bucket="b", key="logs/a", version_id="v1",
                            last_modified_ms=created, size_bytes=10, etag="e",
                            tags={"class": "tmp"})
    rules = [rule(rule_id="late", expiration_days=30),
             rule(rule_id="soon", prefix="logs/", expiration_days=2),
             rule(rule_id="off", enabled=False, expiration_days=1),
             rule(rule_id="other", prefix="data/", expiration_days=1),
             rule(rule_id="dated", expiration_date_ms=ms("2024-03-05T00:00:00"))]
    assert current_version_expiry(rules, version) == (ms("2024-03-04T00:00:00"), "soon")
    assert plan_key(rules, [version], ms("2024-03-04T00:00:00") - 1) == []
    assert plan_key(rules, [version], ms("2024-03-04T00:00:00"))[0].kind is (
        ExpiryKind.EXPIRE_CURRENT)
    # A noncurrent-only rule, a delete marker, or a shorter day.
    assert current_version_expiry([rule(noncurrent_days=1)], version) is None
    marker = dataclasses.replace(version, is_delete_marker=True)
    assert current_version_expiry(rules, marker) is None
    assert current_version_expiry([rule(expiration_days=1)], version, day_ms=10_000) == (
        created + 10_000, "r")


def test_expiration_date_expires_every_matching_current_version() -> None:
    rules = [rule(expiration_date_ms=ms("2024-06-01T00:00:00"))]
    versions = [Version("k", "v1", ms("2024-07-01T00:00:00"))]  # created after the date
    assert plan_key(rules, versions, ms("2024-05-31T00:00:00")) == []
    assert plan_key(rules, versions, ms("2024-07-02T00:00:00"))[0].kind is ExpiryKind.EXPIRE_CURRENT


def test_disabled_rules_and_other_prefixes_do_nothing() -> None:
    versions = [Version("k", "v1", T0)]
    late = T0 + 400 * DAY_MS
    assert plan_key([rule(expiration_days=1, enabled=False)], versions, late) == []
    assert plan_key([rule(expiration_days=1, prefix="other/")], versions, late) == []


def test_a_delete_marker_is_never_expired_as_a_current_version() -> None:
    versions = [Version("k", "m", T0, is_delete_marker=True), Version("k", "v1", T0 - 1)]
    assert plan_key([rule(expiration_days=1)], versions, T0 + 10 * DAY_MS) == []


def test_noncurrent_days_count_from_the_next_newer_version() -> None:
    versions = [
        Version("k", "v3", ms("2024-03-10T12:00:00")),
        Version("k", "v2", ms("2024-03-05T12:00:00")),  # noncurrent since 03-10
        Version("k", "v1", ms("2024-03-01T12:00:00")),  # noncurrent since 03-05
    ]
    rules = [rule(noncurrent_days=3)]
    assert [a.version_id for a in plan_key(rules, versions, ms("2024-03-09T00:00:00"))] == ["v1"]
    assert [a.version_id for a in plan_key(rules, versions, ms("2024-03-14T00:00:00"))] == [
        "v2",
        "v1",
    ]


def test_newer_noncurrent_versions_are_kept() -> None:
    versions = [Version("k", f"v{i}", T0 - i * DAY_MS) for i in range(6)]  # v0 current
    actions = plan_key([rule(noncurrent_days=1, newer_noncurrent_versions=2)], versions,
                       T0 + 30 * DAY_MS)
    # v1, v2 are the two newest noncurrent versions: kept. v3..v5 go.
    assert [a.version_id for a in actions] == ["v3", "v4", "v5"]
    assert {a.kind for a in actions} == {ExpiryKind.REMOVE_NONCURRENT}


def test_only_a_lone_delete_marker_is_an_expired_one() -> None:
    rules = [rule(expired_object_delete_marker=True)]
    lone = [Version("k", "m", T0, is_delete_marker=True)]
    assert plan_key(rules, lone, T0) == [
        ExpiryAction(ExpiryKind.REMOVE_EXPIRED_DELETE_MARKER, "k", "m")
    ]
    with_history = [*lone, Version("k", "v1", T0 - 1)]
    assert plan_key(rules, with_history, T0 + 100 * DAY_MS) == []


def test_tag_filters_see_the_tags_of_each_version() -> None:
    rules = [rule(tags={"tmp": "yes"}, noncurrent_days=1, expiration_days=1)]
    late = T0 + 10 * DAY_MS
    versions = [
        Version("k", "v3", T0, tags={"tmp": "yes"}),
        Version("k", "v2", T0 - 1, tags={"tmp": "no"}),
        Version("k", "v1", T0 - 2, tags={"tmp": "yes"}),
    ]
    assert [a.version_id for a in plan_key(rules, versions, late)] == ["v3", "v1"]


def test_rules_round_trip_through_their_storage_document() -> None:
    configuration = LifecycleConfiguration((
        rule(rule_id="a", prefix="logs/", tags={"x": "y"}, expiration_days=3),
        rule(rule_id="b", enabled=False, noncurrent_days=7, newer_noncurrent_versions=2,
             expired_object_delete_marker=True, abort_incomplete_multipart_days=1,
             object_size_greater_than_bytes=5, expiration_date_ms=ms("2030-01-01T00:00:00")),
    ))
    assert LifecycleConfiguration.from_document(configuration.to_document()) == configuration


# --- against the engine -----------------------------------------------------------------


def set_rules(store: Store, bucket: str, *rules: LifecycleRule) -> None:
    document = LifecycleConfiguration(tuple(rules)).to_document()
    store.write(operations.put_bucket_config(bucket, LIFECYCLE_RULES_CONFIG, document))


def sweeper_for(store: Store, clock: FakeClock, **settings) -> LifecycleSweeper:
    async def write(operation):
        return await asyncio.wrap_future(store.writer.submit(operation))

    settings.setdefault("deletes_per_second_max", 1_000_000)
    return LifecycleSweeper(store.engine, write, SweeperSettings(now_ms=clock, **settings))


def sweep(store: Store, clock: FakeClock, **settings) -> int:
    return asyncio.run(sweeper_for(store, clock, **settings).sweep_once())


def all_versions(store: Store, bucket: str) -> list[tuple[str, bool]]:
    page = scan_versions(store.engine, bucket, None, 10_000)
    return [(v.key, v.is_delete_marker) for v in page.versions]


def test_sweeper_deletes_expired_objects_of_an_unversioned_bucket(tmp_path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        store.put("b", "logs/1", b"old")
        store.put("b", "keep/1", b"old")
        set_rules(store, "b", rule(prefix="logs/", expiration_days=1))
        sweeper_clock = FakeClock(store.clock.now_ms)
        assert sweep(store, sweeper_clock) == 0  # not due yet
        sweeper_clock.advance(2 * DAY_MS)
        assert sweep(store, sweeper_clock) == 1
        assert all_versions(store, "b") == [("keep/1", False)]
        counts = store.engine.entry_counts()
        assert counts["chunks"] == 1  # the expired body's chunk is freed too


def test_sweeper_in_a_versioned_bucket_marks_then_reclaims(tmp_path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        store.write(operations.set_bucket_versioning("b", "Enabled"))
        store.put("b", "k", b"one")
        store.clock.advance(1000)
        store.put("b", "k", b"two")
        set_rules(store, "b", rule(expiration_days=1, noncurrent_days=1),
                  rule(rule_id="markers", expired_object_delete_marker=True))
        clock = FakeClock(store.clock.now_ms + 3 * DAY_MS)
        # Pass 1: the current version gets a delete marker (as DELETE), 'one' goes.
        assert sweep(store, clock) == 2
        assert all_versions(store, "b") == [("k", True), ("k", False)]
        assert store.engine.get_version("b", "k").is_delete_marker
        # Pass 2 (days later): 'two' is noncurrent long enough; pass 3: the lone marker.
        clock.advance(3 * DAY_MS)
        assert sweep(store, clock) == 1
        assert all_versions(store, "b") == [("k", True)]
        assert sweep(store, clock) == 1
        assert all_versions(store, "b") == []
        assert store.engine.entry_counts()["chunks"] == 0


def test_actions_recheck_their_reason_at_the_commit_point(tmp_path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        store.write(operations.set_bucket_versioning("b", "Enabled"))
        first = store.put("b", "k", b"one")
        stale_expire = ExpiryAction(ExpiryKind.EXPIRE_CURRENT, "k", first.version_id)
        stale_marker = ExpiryAction(ExpiryKind.REMOVE_EXPIRED_DELETE_MARKER, "k",
                                    first.version_id)
        current_as_noncurrent = ExpiryAction(ExpiryKind.REMOVE_NONCURRENT, "k",
                                             first.version_id)
        assert store.write(expire("b", (current_as_noncurrent, stale_marker))).applied == 0
        store.put("b", "k", b"two")  # overwritten after the decision
        assert store.write(expire("b", (stale_expire,))).applied == 0
        assert [v.version_id for v in scan_versions(store.engine, "b", None, 10).versions][1:] == [
            first.version_id
        ]
        # Applying twice is harmless.
        remove_first = ExpiryAction(ExpiryKind.REMOVE_NONCURRENT, "k", first.version_id)
        assert store.write(expire("b", (remove_first, remove_first))).applied == 1

        def apply_directly(engine, txn):
            return apply_expiry_actions(engine, txn, "b", (remove_first,))

        assert store.write(WriteOperation(apply_directly)).applied == 0


def test_sweep_pages_through_keys_with_more_versions_than_a_page(tmp_path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        store.write(operations.set_bucket_versioning("b", "Enabled"))
        for key in ("a", "b", "c"):
            for index in range(7):
                store.put("b", key, f"{key}{index}".encode())
                store.clock.advance(DAY_MS)
        set_rules(store, "b", rule(noncurrent_days=1, newer_noncurrent_versions=2))
        clock = FakeClock(store.clock.now_ms + 10 * DAY_MS)
        sweeper = sweeper_for(store, clock, scan_versions_per_page_max=3, deletes_per_txn_max=2)
        assert asyncio.run(sweeper.sweep_once()) == 3 * 4  # 7 = current + 2 kept + 4 removed
        assert sweeper.stats.versions_scanned == 21
        remaining = all_versions(store, "b")
        assert [key for key, _ in remaining] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_sweeper_task_logs_a_failing_pass_and_keeps_going(tmp_path, caplog) -> None:
    async def scenario() -> None:
        with open_store(tmp_path) as store:
            store.create_bucket("b")
            store.write(operations.put_bucket_config("b", LIFECYCLE_RULES_CONFIG, b"not json"))
            sweeper = sweeper_for(store, FakeClock(), period_seconds=0.01)
            sweeper.start()
            for _ in range(500):
                if sweeper.stats.passes_failed >= 2:
                    break
                await asyncio.sleep(0.01)
            await sweeper.close()
            assert sweeper.stats.passes_failed >= 2
            await sweeper.close()  # idempotent

    with caplog.at_level(logging.ERROR, logger="storage.lifecycle"):
        asyncio.run(scenario())
    assert "lifecycle sweep pass failed" in caplog.text
    assert "JSONDecodeError" in caplog.text


def test_the_embedded_store_runs_the_sweeper_until_closed(tmp_path: pathlib.Path) -> None:
    far_future = FakeClock(T0 + 10_000 * DAY_MS)

    async def scenario() -> None:
        settings = SweeperSettings(period_seconds=0.02, now_ms=far_future)
        client = await open_embedded(tmp_path, durable=False, lifecycle=settings)
        try:
            await client.create_bucket("b", "owner")
            async with client.open_upload("b", "tmp/x") as upload:
                await upload.write(b"data")
                await upload.commit(PutSpec(etag="8d777f385d3dfec8815d20f7496026dc"))
            rules = LifecycleConfiguration((rule(prefix="tmp/", expiration_days=1),))
            await client.put_bucket_config("b", LIFECYCLE_RULES_CONFIG, rules.to_document())
            for _ in range(500):
                page = await client.list_objects("b")
                if not page.objects:
                    break
                await asyncio.sleep(0.01)
            assert not page.objects
        finally:
            await client.close()

    asyncio.run(scenario())


# --- AbortIncompleteMultipartUpload ------------------------------------------------------


def upload_counts(store: Store) -> tuple[int, int, int]:
    counts = store.engine.entry_counts()
    return counts["uploads"], counts["parts"], counts["chunks"]


def start_upload(store: Store, key: str, part_bodies: list[bytes]) -> str:
    upload_id = store.create_upload("b", key)
    for number, body in enumerate(part_bodies, start=1):
        store.upload_part("b", key, upload_id, number, body)
    return upload_id


def test_upload_due_time_rounds_up_to_midnight_after_initiation() -> None:
    initiated = ms("2024-03-01T10:30:00")
    rules = [rule(prefix="tmp/", abort_incomplete_multipart_days=2)]
    assert not aborts_upload(rules, "tmp/a", initiated, ms("2024-03-03T23:59:59"))
    assert aborts_upload(rules, "tmp/a", initiated, ms("2024-03-04T00:00:00"))
    assert not aborts_upload(rules, "data/a", initiated, ms("2024-04-01T00:00:00"))
    disabled = [rule(abort_incomplete_multipart_days=1, enabled=False)]
    assert not aborts_upload(disabled, "tmp/a", initiated, ms("2024-04-01T00:00:00"))
    assert not aborts_upload([rule(expiration_days=1)], "tmp/a", initiated,
                             ms("2024-04-01T00:00:00"))


def test_sweeper_aborts_old_uploads_and_frees_their_parts(tmp_path) -> None:
    chunk = limits.chunk_size_bytes
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        old_upload = start_upload(store, "tmp/old", [b"x" * (chunk + 1), b"y" * 10])
        other_prefix = start_upload(store, "keep/old", [b"z" * 10])
        store.clock.advance(DAY_MS)  # a day later: the young upload
        young = start_upload(store, "tmp/young", [b"w" * 10])
        set_rules(store, "b", rule(prefix="tmp/", abort_incomplete_multipart_days=1))
        assert upload_counts(store) == (3, 4, 5)
        # Initiated 2023-11-14T22:13:20Z: due 2023-11-16T00:00Z, the young one a day later.
        clock = FakeClock(ms("2023-11-15T23:59:59"))
        assert sweep(store, clock) == 0
        assert upload_counts(store) == (3, 4, 5)
        clock.now_ms = ms("2023-11-16T00:00:00")
        assert sweep(store, clock) == 1
        assert upload_counts(store) == (2, 2, 2)  # its two parts' three chunks are freed
        remaining = multipart.list_uploads(store.engine, "b").uploads
        assert [(u.key, u.upload_id) for u in remaining] == [
            ("keep/old", other_prefix), ("tmp/young", young)]  # fmt: skip
        with pytest.raises(NoSuchUpload):
            multipart.list_parts(store.engine, "b", "tmp/old", old_upload)
        clock.advance(DAY_MS)
        assert sweep(store, clock) == 1
        assert upload_counts(store) == (1, 1, 1)  # only keep/old is left


def test_upload_aborts_are_batched_and_recheck_the_upload(tmp_path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        ids = [start_upload(store, f"k{index}", [b"p"]) for index in range(5)]
        set_rules(store, "b", rule(abort_incomplete_multipart_days=1))
        writes: list[str] = []

        async def write(operation):
            writes.append(operation.name)
            return await asyncio.wrap_future(store.writer.submit(operation))

        settings = SweeperSettings(now_ms=FakeClock(T0 + 3 * DAY_MS), deletes_per_txn_max=2,
                                   scan_uploads_per_page_max=2, deletes_per_second_max=1_000_000)
        sweeper = LifecycleSweeper(store.engine, write, settings)
        assert asyncio.run(sweeper.sweep_once()) == 5
        assert writes == ["lifecycle_abort_uploads"] * 3  # 2 + 2 + 1
        assert sweeper.stats.uploads_scanned == 5
        assert upload_counts(store) == (0, 0, 0)
        # Decided before a Complete or an Abort got there: nothing happens, no error.
        stale = (UploadAbort("k0", ids[0]),)
        assert store.write(abort_uploads("b", stale)).applied == 0


def test_completed_uploads_are_not_touched(tmp_path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        upload_id = start_upload(store, "k", [b"body"])
        store.write(operations.complete_multipart_upload(
            "b", "k", upload_id, [CompletedPart(1, hashlib.md5(b"body").hexdigest())],
            etag="e-1", checksums={}))  # fmt: skip
        set_rules(store, "b", rule(abort_incomplete_multipart_days=1))
        assert sweep(store, FakeClock(T0 + 10 * DAY_MS)) == 0
        version = store.engine.get_version("b", "k")
        assert store.read(version) == b"body"


# --- expired data is really reclaimed ---------------------------------------------------


def overwrite_rounds(store: Store, rounds: int, sweeper: LifecycleSweeper | None) -> list[int]:
    """Overwrite every key once per round; the LMDB data file's last page after each."""
    body = bytes(range(256)) * 512  # 128 KiB: its own overflow pages in LMDB
    last_pages: list[int] = []
    for _ in range(rounds):
        for key_index in range(8):
            store.put("b", f"key-{key_index}", body)
        store.clock.advance(60_000)
        if sweeper is not None:
            asyncio.run(sweeper.sweep_once())
        last_pages.append(store.engine.env.info()["last_pgno"])
    return last_pages


@pytest.mark.parametrize("with_rule", [True, False], ids=["expiring", "no-rule"])
def test_a_steady_overwrite_workload_under_noncurrent_expiry_stops_growing(
    tmp_path, with_rule: bool
) -> None:
    rounds = 24
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        store.write(operations.set_bucket_versioning("b", "Enabled"))
        sweeper = None
        if with_rule:
            set_rules(store, "b", rule(noncurrent_days=1))
            # The sweeper lives days ahead: every noncurrent version is due at once.
            sweeper = sweeper_for(store, FakeClock(store.clock.now_ms + 1000 * DAY_MS))
        last_pages = overwrite_rounds(store, rounds, sweeper)
        print(f"with_rule={with_rule} last_pgno per round: {last_pages}")
        data_file_bytes = (tmp_path / "data.mdb").stat().st_size
        print(f"with_rule={with_rule} data.mdb: {data_file_bytes} bytes")
    one_round_pages = 8 * 128 * 1024 // 4096
    if with_rule:
        # After a few rounds of warm-up the file stops growing: freed pages are reused.
        assert last_pages[-1] - last_pages[rounds // 3] <= one_round_pages // 4
        assert last_pages[-1] < 4 * one_round_pages
    else:
        # The control: without the rule every round adds a round's worth of pages.
        assert last_pages[-1] - last_pages[rounds // 3] >= (rounds - rounds // 3 - 1) * (
            one_round_pages
        )
