"""The outbox: post-commit events, written in the SAME transaction as the write.

Rules and theory of operation:

* The ``outbox`` sub-database maps a sequence number (u64 big-endian) to one event for
  one target (a msgpack record, below). Sequences are handed out by the writer thread in
  commit order, strictly increasing and never reused: the next one is persisted in
  ``meta`` with every group and, at open, is also past the last entry. Reading in key
  order is therefore reading in commit order, and a reader that has seen sequence S
  never later finds a new entry below S (a group commits atomically, and groups commit
  one after the other), so a dispatcher can keep a cursor.
* Which events a write makes is decided inside its transaction, from the bucket's
  notification document (``api.NOTIFICATION_CONFIG``): a configuration change and a
  write are ordered like any two writes. Only queue/topic rules whose ARN names a
  webhook (``api.webhook_target_id``) make events; function rules are pre-commit
  triggers, and foreign ARNs are kept in the document but never delivered. A rule's
  prefix/suffix filter and event list apply to every event type alike.
* An event is written by the same child transaction as the change it reports: a
  version, a delete, a tag set, an accepted ACL, a lifecycle expiration, or (for the
  test event) the notification document itself. If the change fails, no event exists;
  if it commits, its events are on disk with it.
* The producers: PUT/COPY/CompleteMultipartUpload (ObjectCreated:*), DELETE
  (ObjectRemoved:*), tag replacement (ObjectTagging:Put/Delete), the lifecycle sweeper (LifecycleExpiration:*), and a notification
  configuration put by a request (``api.TEST_EVENT``, one per destination, no key).
* Bounded: a write that would take the outbox past ``entries_max`` raises ``Overloaded``
  (SlowDown) and writes nothing. An event is never dropped to make room.
* Entries leave only through ``apply_ack`` (the dispatcher acks after a 2xx).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Sequence
from typing import Any

import lmdb
import msgpack

from storage.api import (
    NOTIFICATION_CONFIG,
    NOTIFICATION_DELIVERY_KINDS,
    TEST_EVENT,
    BucketInfo,
    EventOrigin,
    NotificationConfiguration,
    NotificationRule,
    OutboxEvent,
    OutboxPage,
    Overloaded,
    limits,
    webhook_target_id,
)
from storage.engine import keys
from storage.versions import hlc_to_ms

OUTBOX_RECORD_FORMAT = 1
_U64 = struct.Struct(">Q")
_META_OUTBOX_NEXT = b"outbox_next_sequence"


def sequencer(hlc: int) -> str:
    """The S3 event ``sequencer`` of a write: its HLC in 16 upper-case hex digits. Every
    write of one key gets a larger HLC than the one before, so sequencers of one key
    compare (as strings of equal length) in commit order."""
    return f"{hlc:016X}"


def pack_event(event: OutboxEvent) -> bytes:
    origin = event.origin
    fields = [
        OUTBOX_RECORD_FORMAT, event.target_arn, event.configuration_id, event.event_name,
        event.event_time_ms, event.bucket, event.bucket_owner_id, event.key, event.size_bytes,
        event.etag, event.s3_version_id, event.sequencer, origin.principal_id,
        origin.source_ip, origin.request_id, origin.host_id,
    ]  # fmt: skip
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def unpack_event(sequence: int, packed: bytes | memoryview) -> OutboxEvent:
    fields: list[Any] = msgpack.unpackb(packed, raw=False)
    assert fields[0] == OUTBOX_RECORD_FORMAT, f"unknown outbox record format {fields[0]}"
    (_, target_arn, configuration_id, event_name, time_ms, bucket, owner_id, key, size_bytes,
     etag, s3_version_id, event_sequencer, principal_id, source_ip, request_id,
     host_id) = fields  # fmt: skip
    return OutboxEvent(
        sequence, target_arn, configuration_id, event_name, time_ms, bucket, owner_id, key,
        size_bytes, etag, s3_version_id, event_sequencer,
        EventOrigin(principal_id, source_ip, request_id, host_id),
    )  # fmt: skip


class Outbox:
    """The outbox of one engine. ``add_events``/``apply_ack``/``record_sequence`` run in
    the writer thread only; ``read``/``status`` on any thread (own read transaction)."""

    def __init__(
        self,
        env: lmdb.Environment,
        db: Any,
        meta_db: Any,
        bucket_configs_db: Any,
        entries_max: int,
    ) -> None:
        assert entries_max > 0
        self._env = env
        self.db = db
        self._meta_db = meta_db
        self._bucket_configs_db = bucket_configs_db
        self.entries_max = entries_max
        # bucket -> (raw notification document, its delivery rules): parsed once per
        # distinct document. Writer thread only.
        self._rules_cache: dict[str, tuple[bytes, tuple[NotificationRule, ...]]] = {}
        self.next_sequence = self._recover_next_sequence()

    def _recover_next_sequence(self) -> int:
        with self._env.begin() as txn:
            packed = txn.get(_META_OUTBOX_NEXT, db=self._meta_db)
            recorded = 1 if packed is None else _U64.unpack(packed)[0]
            cursor = txn.cursor(db=self.db)
            last = _U64.unpack(cursor.key())[0] if cursor.last() else 0
        return max(recorded, last + 1, 1)

    def record_sequence(self, txn: lmdb.Transaction) -> None:
        """Called by the writer once per group, with the clock: persist the next sequence."""
        txn.put(_META_OUTBOX_NEXT, _U64.pack(self.next_sequence), db=self._meta_db)

    # --- writes (writer thread) --------------------------------------------------------

    def _delivery_rules(self, txn: lmdb.Transaction, bucket: str) -> tuple[NotificationRule, ...]:
        config_key = keys.bucket_config_key(bucket, NOTIFICATION_CONFIG)
        raw = txn.get(config_key, db=self._bucket_configs_db)
        if raw is None:
            self._rules_cache.pop(bucket, None)
            return ()
        raw = bytes(raw)
        cached = self._rules_cache.get(bucket)
        if cached is not None and cached[0] == raw:
            return cached[1]
        rules = tuple(
            rule
            for rule in NotificationConfiguration.from_json(raw).rules
            if rule.kind in NOTIFICATION_DELIVERY_KINDS and webhook_target_id(rule.arn)
        )
        self._rules_cache[bucket] = (raw, rules)
        return rules

    def add_events(
        self,
        txn: lmdb.Transaction,
        bucket: BucketInfo,
        key: str,
        event_name: str,
        *,
        hlc: int,
        size_bytes: int | None,
        etag: str,
        s3_version_id: str,
        origin: EventOrigin | None,
    ) -> int:
        """Write the events the bucket's configuration asks for; returns how many."""
        rules = [r for r in self._delivery_rules(txn, bucket.name) if r.matches(key, event_name)]
        self._check_room(txn, len(rules))
        for rule in rules:
            self._append(txn, OutboxEvent(
                sequence=self.next_sequence,
                target_arn=rule.arn,
                configuration_id=rule.id,
                event_name=event_name,
                event_time_ms=hlc_to_ms(hlc),
                bucket=bucket.name,
                bucket_owner_id=bucket.owner_id,
                key=key,
                size_bytes=size_bytes,
                etag=etag,
                s3_version_id=s3_version_id,
                sequencer=sequencer(hlc),
                origin=origin or EventOrigin(),
            ))  # fmt: skip
        return len(rules)

    def add_test_events(
        self,
        txn: lmdb.Transaction,
        bucket: BucketInfo,
        document: bytes | memoryview,
        *,
        hlc: int,
        origin: EventOrigin,
    ) -> int:
        """AWS's ``s3:TestEvent``: one per distinct webhook destination (queue/topic ARN)
        that the notification ``document`` names, written in the transaction that stores
        it; returns how many. Filters and event lists do not apply: the test is of the
        destination, not of an object."""
        configuration = NotificationConfiguration.from_json(document)
        destinations = dict.fromkeys(
            rule.arn for rule in configuration.rules
            if rule.kind in NOTIFICATION_DELIVERY_KINDS and webhook_target_id(rule.arn)
        )  # fmt: skip
        self._check_room(txn, len(destinations))
        for arn in destinations:
            self._append(txn, OutboxEvent(
                sequence=self.next_sequence, target_arn=arn, configuration_id="",
                event_name=TEST_EVENT, event_time_ms=hlc_to_ms(hlc), bucket=bucket.name,
                bucket_owner_id=bucket.owner_id, key="", size_bytes=None, etag="",
                s3_version_id="null", sequencer=sequencer(hlc), origin=origin,
            ))  # fmt: skip
        return len(destinations)

    def has_room_for_changes(self, txn: lmdb.Transaction, bucket: str, changes_count: int) -> bool:
        """Whether the events of any ``changes_count`` changes of objects of ``bucket`` fit:
        a change makes at most one event per delivery rule."""
        rules_count = len(self._delivery_rules(txn, bucket))
        return txn.stat(self.db)["entries"] + rules_count * changes_count <= self.entries_max

    def _check_room(self, txn: lmdb.Transaction, events_count: int) -> None:
        """Refuse (Overloaded, nothing written) a change whose events would not fit."""
        if not events_count:
            return
        depth = txn.stat(self.db)["entries"]
        if depth + events_count > self.entries_max:
            raise Overloaded(
                f"the notification outbox is full ({depth} of {self.entries_max} events "
                "undelivered); retry when the targets have caught up"
            )

    def _append(self, txn: lmdb.Transaction, event: OutboxEvent) -> None:
        assert event.sequence == self.next_sequence
        written = txn.put(_U64.pack(event.sequence), pack_event(event), db=self.db,
                          overwrite=False)
        assert written, "an outbox sequence was handed out twice"
        self.next_sequence += 1

    def apply_ack(self, txn: lmdb.Transaction, sequences: Sequence[int]) -> int:
        """Remove delivered events; returns how many were still there."""
        if len(sequences) > limits.outbox_ack_events_max:
            raise Overloaded(f"at most {limits.outbox_ack_events_max} events per ack")
        return sum(1 for s in sequences if txn.delete(_U64.pack(s), db=self.db))

    # --- reads (any thread) ------------------------------------------------------------

    def read(
        self, after_sequence: int, limit: int, target_arns: Collection[str] | None = None
    ) -> OutboxPage:
        limit = min(max(limit, 0), limits.outbox_read_events_max)
        wanted = None if target_arns is None else frozenset(target_arns)
        events: list[OutboxEvent] = []
        scanned_through = after_sequence
        with self._env.begin(buffers=True) as txn:
            cursor = txn.cursor(db=self.db)
            found = cursor.set_range(_U64.pack(after_sequence + 1))
            scanned = 0
            while found and len(events) < limit and scanned < limits.outbox_scan_entries_max:
                sequence = _U64.unpack(cursor.key())[0]
                event = unpack_event(sequence, cursor.value())
                if wanted is None or event.target_arn in wanted:
                    events.append(event)
                scanned_through = sequence
                scanned += 1
                found = cursor.next()
        return OutboxPage(tuple(events), scanned_through)

    def depth(self) -> int:
        with self._env.begin() as txn:
            entries: int = txn.stat(self.db)["entries"]
            return entries

    def last_sequence(self) -> int | None:
        """The sequence of the newest event still in the outbox (None when empty).

        Not ``next_sequence - 1``: a sequence handed out inside a write that then
        failed is never written (and never reused)."""
        with self._env.begin(buffers=True) as txn:
            cursor = txn.cursor(db=self.db)
            if not cursor.last():
                return None
            sequence: int = _U64.unpack(cursor.key())[0]
            return sequence

    def oldest_event_time_ms(self) -> int | None:
        with self._env.begin(buffers=True) as txn:
            cursor = txn.cursor(db=self.db)
            if not cursor.first():
                return None
            return unpack_event(_U64.unpack(cursor.key())[0], cursor.value()).event_time_ms
