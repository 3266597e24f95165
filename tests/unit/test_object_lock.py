"""S3 Object Lock: the pure rules (storage/engine/locks.py), the engine's enforcement with
an injected clock (delete by version id, lifecycle, retention changes, default retention,
record formats), and the gateway's document and header parsers (gateway/s3/object_lock.py)
including a hypothesis test that no input escapes as anything but an S3 error."""

from __future__ import annotations

import datetime

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import S3Error
from gateway.s3 import object_lock
from storage.api import (
    BucketInfo,
    DefaultRetention,
    InvalidArgument,
    InvalidBucketState,
    ObjectLocked,
    ObjectLockNotEnabled,
    ObjectLockUpdate,
    PutSpec,
    limits,
)
from storage.engine import keys, locks, operations
from storage.engine.expiry import ExpiryAction, ExpiryKind, expire
from storage.engine.records import pack_bucket, unpack_bucket
from tests.unit.engine_helpers import Store, open_store

DAY_MS = limits.object_lock_day_ms
NOW_MS = 1_700_000_000_000


# --- pure rules --------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "until_ms", "hold", "bypass", "removable"), [
    ("", 0, False, False, True),
    ("GOVERNANCE", NOW_MS + 1, False, False, False),
    ("GOVERNANCE", NOW_MS + 1, False, True, True),
    ("GOVERNANCE", NOW_MS, False, False, True),  # expired exactly now
    ("COMPLIANCE", NOW_MS + 1, False, True, False),
    ("COMPLIANCE", NOW_MS - 1, False, False, True),
    ("", 0, True, True, False),  # a legal hold ignores the bypass
    ("COMPLIANCE", NOW_MS - 1, True, False, False),
])
def test_check_removable(mode, until_ms, hold, bypass, removable) -> None:
    if removable:
        locks.check_removable(mode, until_ms, hold, NOW_MS, bypass)
    else:
        with pytest.raises(ObjectLocked):
            locks.check_removable(mode, until_ms, hold, NOW_MS, bypass)


LATER = NOW_MS + 2 * DAY_MS
SOONER = NOW_MS + DAY_MS


@pytest.mark.parametrize(("current", "wanted", "bypass", "allowed"), [
    (("GOVERNANCE", SOONER), ("GOVERNANCE", LATER), False, True),
    (("GOVERNANCE", SOONER), ("GOVERNANCE", SOONER), False, True),
    (("GOVERNANCE", LATER), ("GOVERNANCE", SOONER), False, False),
    (("GOVERNANCE", LATER), ("GOVERNANCE", SOONER), True, True),
    (("GOVERNANCE", LATER), ("", 0), False, False),
    (("GOVERNANCE", LATER), ("", 0), True, True),
    (("GOVERNANCE", SOONER), ("COMPLIANCE", LATER), False, False),
    (("GOVERNANCE", SOONER), ("COMPLIANCE", LATER), True, True),
    (("COMPLIANCE", SOONER), ("COMPLIANCE", LATER), True, True),
    (("COMPLIANCE", LATER), ("COMPLIANCE", SOONER), True, False),
    (("COMPLIANCE", SOONER), ("GOVERNANCE", LATER), True, False),
    (("COMPLIANCE", SOONER), ("", 0), True, False),
    (("COMPLIANCE", NOW_MS - 1), ("", 0), False, True),  # no longer in force
    (("", 0), ("GOVERNANCE", SOONER), False, True),
])
def test_check_retention_change(current, wanted, bypass, allowed) -> None:
    if allowed:
        locks.check_retention_change(current, wanted, NOW_MS, bypass)
    else:
        with pytest.raises(ObjectLocked):
            locks.check_retention_change(current, wanted, NOW_MS, bypass)


def test_default_retention_period() -> None:
    assert DefaultRetention("GOVERNANCE", days=2).retain_until_ms(NOW_MS) == NOW_MS + 2 * DAY_MS
    assert DefaultRetention("COMPLIANCE", years=1).retain_until_ms(NOW_MS) == (
        NOW_MS + 365 * DAY_MS)


# --- engine ------------------------------------------------------------------------------


def _lock_bucket(store: Store, name: str = "b") -> None:
    store.write(operations.create_bucket(name, "owner", object_lock_enabled=True))


def _lock(store: Store, version_id: str, **update: object) -> None:
    store.write(operations.update_object_lock("b", "k", version_id, ObjectLockUpdate(**update)))


def test_bucket_record_formats(tmp_path) -> None:
    info = BucketInfo("b", 5, "owner", "Enabled", object_lock_enabled=True,
                      default_retention=DefaultRetention("COMPLIANCE", years=3))
    assert unpack_bucket("b", pack_bucket(info)) == info
    format_1 = msgpack.packb([1, 5, "owner", "Suspended"])
    assert unpack_bucket("b", format_1) == BucketInfo("b", 5, "owner", "Suspended")
    with open_store(tmp_path) as store:
        store.create_bucket("old")
        with store.engine.env.begin(write=True) as txn:
            txn.put(keys.bucket_bytes("old"), format_1, db=store.engine.buckets)
        assert store.engine.get_bucket("old").object_lock_enabled is False
        store.write(operations.set_bucket_versioning("old", "Enabled"))
        store.write(operations.put_object_lock_configuration("old", None))
        assert store.engine.get_bucket("old").object_lock_enabled is True


def test_lock_bucket_versioning_and_configuration(tmp_path) -> None:
    with open_store(tmp_path) as store:
        _lock_bucket(store)
        assert store.engine.get_bucket("b").versioning == "Enabled"
        with pytest.raises(InvalidBucketState):
            store.write(operations.set_bucket_versioning("b", "Suspended"))
        store.create_bucket("plain")
        with pytest.raises(InvalidBucketState):
            store.write(operations.put_object_lock_configuration("plain", None))
        store.write(operations.set_bucket_versioning("plain", "Suspended"))
        with pytest.raises(InvalidBucketState):
            store.write(operations.put_object_lock_configuration("plain", None))


def test_default_retention_and_delete_by_version_id(tmp_path) -> None:
    with open_store(tmp_path) as store:
        _lock_bucket(store)
        store.write(operations.put_object_lock_configuration(
            "b", DefaultRetention("GOVERNANCE", days=1)))
        version = store.put("b", "k", b"x")
        # The fake clock stands still: the default runs from the commit's "now".
        assert (version.lock_mode, version.lock_retain_until_ms) == (
            "GOVERNANCE", store.clock.now_ms + DAY_MS)
        assert store.engine.get_version("b", "k") == version
        with pytest.raises(ObjectLocked):
            store.write(operations.delete_object("b", "k", version.version_id))
        # A delete marker is allowed, and the version stays.
        marker = store.write(operations.delete_object("b", "k"))
        assert marker.delete_marker
        assert store.engine.get_version("b", "k", version.version_id).etag == version.etag
        store.clock.advance(DAY_MS)  # the retention has passed
        store.write(operations.delete_object("b", "k", version.version_id))


def test_retention_changes_and_legal_hold_are_checked_at_commit(tmp_path) -> None:
    with open_store(tmp_path) as store:
        _lock_bucket(store)
        version = store.put("b", "k", b"x")
        until = store.clock.now_ms + DAY_MS
        _lock(store, version.version_id, retention=("COMPLIANCE", until))
        with pytest.raises(ObjectLocked):
            _lock(store, version.version_id, retention=("COMPLIANCE", until - 1),
                  bypass_governance=True)
        _lock(store, version.version_id, legal_hold=True)
        record = store.engine.get_version("b", "k")
        assert (record.lock_mode, record.lock_retain_until_ms, record.legal_hold) == (
            "COMPLIANCE", until, True)
        store.clock.advance(2 * DAY_MS)
        with pytest.raises(ObjectLocked):  # the legal hold still holds it
            store.write(operations.delete_object("b", "k", version.version_id))
        _lock(store, version.version_id, legal_hold=False)
        _lock(store, version.version_id, retention=("", 0))  # expired: removable
        store.write(operations.delete_object("b", "k", version.version_id))


def test_lock_state_needs_a_lock_bucket(tmp_path) -> None:
    with open_store(tmp_path) as store:
        store.create_bucket("b")
        version = store.put("b", "k", b"x")
        with pytest.raises(ObjectLockNotEnabled):
            _lock(store, version.version_id, legal_hold=True)
        with pytest.raises(ObjectLockNotEnabled):
            store.create_upload("b", "k", PutSpec(etag="", legal_hold=True))


def test_lifecycle_skips_locked_noncurrent_versions(tmp_path) -> None:
    with open_store(tmp_path) as store:
        _lock_bucket(store)
        held = store.put("b", "k", b"1")
        kept = store.put("b", "k", b"2")
        store.put("b", "k", b"3")
        _lock(store, held.version_id, legal_hold=True)
        _lock(store, kept.version_id, retention=("GOVERNANCE", store.clock.now_ms + DAY_MS))
        actions = tuple(ExpiryAction(ExpiryKind.REMOVE_NONCURRENT, "k", v.version_id)
                        for v in (held, kept))
        assert store.write(expire("b", actions)).applied == 0
        store.clock.advance(DAY_MS)
        assert store.write(expire("b", actions)).applied == 1  # the retention ended
        assert store.engine.get_version("b", "k", held.version_id).legal_hold


# --- gateway parsers ---------------------------------------------------------------------


def _code(call, *args) -> str:
    with pytest.raises(S3Error) as caught:
        call(*args)
    assert 400 <= caught.value.status < 500
    return caught.value.code


def _configuration(retention: str) -> bytes:
    return (b"<ObjectLockConfiguration xmlns='http://s3.amazonaws.com/doc/2006-03-01/'>"
            b"<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
            + retention.encode() + b"</DefaultRetention></Rule></ObjectLockConfiguration>")


def test_parse_lock_configuration() -> None:
    parse = object_lock.parse_lock_configuration
    assert parse(_configuration("<Mode>GOVERNANCE</Mode><Days>7</Days>")) == DefaultRetention(
        "GOVERNANCE", days=7)
    assert parse(_configuration("<Years>100</Years><Mode>COMPLIANCE</Mode>")) == (
        DefaultRetention("COMPLIANCE", years=100))
    assert parse(b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
                 b"</ObjectLockConfiguration>") is None
    cases = {
        "<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years>": "MalformedXML",
        "<Mode>GOVERNANCE</Mode>": "MalformedXML",
        "<Days>1</Days>": "MalformedXML",
        "<Mode>governance</Mode><Days>1</Days>": "MalformedXML",
        "<Mode>GOVERNANCE</Mode><Days>one</Days>": "MalformedXML",
        "<Mode>GOVERNANCE</Mode><Days>0</Days>": "InvalidArgument",
        "<Mode>GOVERNANCE</Mode><Years>-1</Years>": "InvalidArgument",
        "<Mode>GOVERNANCE</Mode><Days>36501</Days>": "InvalidArgument",
        "<Mode>GOVERNANCE</Mode><Years>101</Years>": "InvalidArgument",
    }
    for retention, code in cases.items():
        assert _code(parse, _configuration(retention)) == code, retention
    disabled = b"<ObjectLockConfiguration><ObjectLockEnabled>Disabled</ObjectLockEnabled>"
    assert _code(parse, disabled + b"</ObjectLockConfiguration>") == "MalformedXML"


def test_render_lock_configuration_golden() -> None:
    info = BucketInfo("b", 0, "o", "Enabled", True, DefaultRetention("COMPLIANCE", years=2))
    assert object_lock.render_lock_configuration(info) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
        b"<Mode>COMPLIANCE</Mode><Years>2</Years></DefaultRetention></Rule>"
        b"</ObjectLockConfiguration>")


def test_parse_retention_and_legal_hold() -> None:
    body = (b"<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>2030-01-01T00:00:00.000Z"
            b"</RetainUntilDate></Retention>")
    until_ms = int(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC).timestamp() * 1000)
    assert object_lock.parse_retention(body, NOW_MS) == ("COMPLIANCE", until_ms)
    assert object_lock.parse_retention(b"<Retention/>", NOW_MS) == ("", 0)
    assert _code(object_lock.parse_retention, body, until_ms) == "InvalidArgument"  # past
    bad = b"<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>x</RetainUntilDate></Retention>"
    assert _code(object_lock.parse_retention, bad, NOW_MS) == "MalformedXML"
    assert object_lock.parse_legal_hold(b"<LegalHold><Status>ON</Status></LegalHold>")
    assert not object_lock.parse_legal_hold(b"<LegalHold><Status>OFF</Status></LegalHold>")
    assert _code(object_lock.parse_legal_hold, b"<LegalHold><Status>on</Status></LegalHold>") == (
        "MalformedXML")


def test_requested_lock_headers() -> None:
    date = "2030-01-01T00:00:00Z"
    assert object_lock.requested_lock({}, NOW_MS) == ("", 0, False)
    mode, until_ms, hold = object_lock.requested_lock({
        object_lock.MODE_HEADER: "GOVERNANCE", object_lock.RETAIN_UNTIL_HEADER: date,
        object_lock.LEGAL_HOLD_HEADER: "ON"}, NOW_MS)
    assert (mode, hold) == ("GOVERNANCE", True) and until_ms > NOW_MS
    for headers in ({object_lock.MODE_HEADER: "GOVERNANCE"},
                    {object_lock.RETAIN_UNTIL_HEADER: date},
                    {object_lock.MODE_HEADER: "X", object_lock.RETAIN_UNTIL_HEADER: date},
                    {object_lock.MODE_HEADER: "GOVERNANCE", object_lock.RETAIN_UNTIL_HEADER: "x"},
                    {object_lock.LEGAL_HOLD_HEADER: "yes"}):
        assert _code(object_lock.requested_lock, headers, NOW_MS) == "InvalidArgument"


_TEXT = st.one_of(st.text(max_size=40), st.sampled_from([
    "GOVERNANCE", "COMPLIANCE", "ON", "OFF", "Enabled", "1", "0", "-5", "36500",
    "2030-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01", "2030-02-30", "1e9",
]))


def _document(root: str, fields: list[tuple[str, str]]) -> bytes:
    from xml.sax.saxutils import escape

    inner = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields)
    return f"<{root}>{inner}</{root}>".encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None)
@given(root=st.sampled_from(["Retention", "LegalHold", "ObjectLockConfiguration", "X"]),
       fields=st.lists(st.tuples(st.sampled_from(["Mode", "RetainUntilDate", "Status",
                                                  "ObjectLockEnabled", "Days", "Years"]),
                                 _TEXT), max_size=4),
       raw=st.binary(max_size=60))
def test_parsers_answer_only_s3_errors(root, fields, raw) -> None:
    """Whatever the body, a parser returns or raises a 4xx S3Error: never anything else
    (which the gateway would answer 500)."""
    for body in (_document(root, fields), raw):
        for parse in (lambda b: object_lock.parse_retention(b, NOW_MS),
                      object_lock.parse_legal_hold, object_lock.parse_lock_configuration):
            try:
                parse(body)
            except S3Error as error:
                assert 400 <= error.status < 500
    headers = {name: value for name, value in fields}
    renamed = {object_lock.MODE_HEADER: headers.get("Mode"),
               object_lock.RETAIN_UNTIL_HEADER: headers.get("RetainUntilDate"),
               object_lock.LEGAL_HOLD_HEADER: headers.get("Status")}
    try:
        object_lock.requested_lock({k: v for k, v in renamed.items() if v is not None}, NOW_MS)
    except S3Error as error:
        assert error.status == 400


def test_storage_refuses_malformed_retention(tmp_path) -> None:
    """Storage guards its records whatever a caller passes (the gateway validates first)."""
    with open_store(tmp_path) as store:
        _lock_bucket(store)
        version = store.put("b", "k", b"x")
        for retention in (("WORM", NOW_MS + DAY_MS), ("GOVERNANCE", 0), ("", 5)):
            with pytest.raises(InvalidArgument):
                _lock(store, version.version_id, retention=retention)
        assert store.engine.get_version("b", "k").lock_mode == ""
