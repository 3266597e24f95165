"""Replication messages on the wire (storage/replication/messages.py): every message kind
of the core round-trips, entries' payloads travel apart from the control part, and
malformed input is MessageError."""

from __future__ import annotations

import msgpack
import pytest

from storage.api import PutSpec
from storage.engine.entries import make_entry
from storage.replication import core
from storage.replication.core import LogEntry, Term
from storage.replication.messages import (
    MessageError,
    decode_message,
    encode_message,
    entry_size_bytes,
)

T = Term(3, 1)


def _entries() -> tuple[LogEntry, ...]:
    put = make_entry("commit_version", {"bucket": "b", "key": "k", "blob_id": None,
                                        "size_bytes": 5, "spec": PutSpec(etag="e")},
                     b"hello", now_ms=7)
    bucket = make_entry("create_bucket", {"name": "b", "owner_id": "o"}, now_ms=6)
    return (
        LogEntry(4, T, ("n1", 99, 1), bucket, entry_size_bytes(bucket)),
        LogEntry(5, T, None, None, 0),  # a leader's no-op
        LogEntry(6, T, ("n1", 99, 2), put, entry_size_bytes(put)),
    )


MESSAGES = [
    core.StateRequest(T),
    core.StateReply(T, 6, Term(2, 0), 3),
    core.FetchRequest(T, 2, Term(1, 0), 1),
    core.FetchReply(T, 3, Term(2, 0), _entries(), 6, T),
    core.Append(T, 3, Term(2, 0), _entries(), 5),
    core.Append(T, 6, T, (), 6),  # a heartbeat
    core.AppendReply(T, False, 0, 2, Term(1, 0), 1),
    core.SnapshotNeeded(T),
    core.CatchUpRequest(3, 10, Term(2, 5), 9),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: core.Message) -> None:
    control, payload = encode_message(message)
    assert decode_message(control, payload) == message
    carried = getattr(message, "entries", ())
    if any(entry.payload is not None and entry.payload.payload for entry in carried):
        assert payload == b"hello" and b"hello" not in control  # apart, not re-encoded


def test_malformed_messages_are_message_errors() -> None:
    control, payload = encode_message(core.Append(T, 3, Term(2, 0), _entries(), 5))
    for bad_control, bad_payload in [
        (b"\xc1", None),
        (msgpack.packb(["Pickle", 1]), None),
        (control, None),  # the entries' payload missing
        (control, b"hello and more"),  # longer than the entries say
        (msgpack.packb(["StateRequest"]), None),  # a field missing
    ]:
        with pytest.raises(MessageError):
            decode_message(bad_control, bad_payload)
