"""Post-commit notifications: standard S3 event JSON, delivered from the durable outbox.

Rules and theory of operation:

* Storage writes one ``OutboxEvent`` per (write, matching queue/topic rule) into the
  shard's outbox in the same transaction as the write (``storage.engine.outbox``). This
  module only reads the outbox (``StorageClient.outbox_read``), POSTs, and removes what
  a target answered 2xx to (``outbox_ack``). Nothing is acked before a 2xx, so an event
  is delivered AT LEAST ONCE: a crash between the 2xx and the ack redelivers it, and a
  target that is down just makes the outbox deeper (bounded: a full outbox refuses
  writes with SlowDown, it never drops an event).
* One worker per (webhook, shard), each a task the dispatcher keeps and cancels on
  close (restarted after an unexpected error, which is logged). A worker keeps a cursor
  (the last outbox sequence it has read; 0 at start-up, so after a restart it re-reads
  everything not yet acked) and a window of at most ``limits.event_window_per_target_max``
  read-but-unacked events, in commit order.
* Per-key order: of the window's events for one (bucket, key), only the first may be in
  flight; the next starts only after it got its 2xx. Events of different keys go out
  concurrently (at most ``limits.event_deliveries_in_flight_per_target_max``).
* A failed POST (not 2xx, refused, timed out) puts the target in backoff: no new POST
  until ``retry_at``; the delay doubles per failed round from
  ``limits.event_retry_delay_ms_min`` up to ``limits.event_retry_delay_ms_max`` (with
  jitter) and resets at the first success. There is no retry count: an event is retried
  until its target takes it.
* Events for a webhook ID that is no longer configured are left in the outbox (they
  count in its depth) until a server starts with that webhook again.

The body of each POST is one S3 event message (``{"Records": [record]}``, as AWS sends to
SQS/SNS/Lambda), with the header ``x-squall-event-id: SHARD-SEQ`` (unique, stable across
redeliveries) so a receiver can drop duplicates. Which object fields a record carries,
and its ``eventVersion``, depend on the event type as in AWS's messages
(``MESSAGE_SHAPES``). The test event (``s3:TestEvent``, sent when a configuration is put)
is AWS's flat test message instead (``s3_test_message``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlsplit

import h11

from storage.api import TEST_EVENT, OutboxEvent, StorageClient, StorageError, limits

_log = logging.getLogger(__name__)

EVENT_VERSION = "2.1"
WEBHOOK_ARN_FORMATS = ("arn:squall:sqs::{}:webhook", "arn:squall:sns::{}:webhook")

# POST (url, body, headers) -> HTTP status; raises OSError (or the client's error) when no
# answer came. Injected so the worker can be tested without sockets.
Poster = Callable[[str, bytes, Mapping[str, str]], Awaitable[int]]


# --- the S3 event message ------------------------------------------------------------------


def _event_time(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class MessageShape:
    """What AWS's record of one event category carries besides the key (and versionId,
    which every record has for a version with a real id)."""

    event_version: str
    size: bool
    etag: bool
    sequencer: bool


# By event category (the name up to its last ':'), as AWS's messages are: version 2.1 for
# object created/removed; 2.3 for lifecycle, tagging and ACL events, whose records carry
# no size, and whose tagging and ACL records name the version's eTag but no sequencer.
MESSAGE_SHAPES = {
    "s3:ObjectCreated": MessageShape(EVENT_VERSION, size=True, etag=True, sequencer=True),
    "s3:ObjectRemoved": MessageShape(EVENT_VERSION, size=False, etag=False, sequencer=True),
    "s3:LifecycleExpiration": MessageShape("2.3", size=False, etag=False, sequencer=True),
    "s3:ObjectTagging": MessageShape("2.3", size=False, etag=True, sequencer=False),
    "s3:ObjectAcl": MessageShape("2.3", size=False, etag=True, sequencer=False),
}


def message_shape(event_name: str) -> MessageShape:
    # Every producer's category is in the table; an event written by a newer server
    # (after a downgrade) is still delivered, with every field it has.
    fallback = MESSAGE_SHAPES["s3:ObjectCreated"]
    return MESSAGE_SHAPES.get(event_name.rsplit(":", 1)[0], fallback)


def event_record(event: OutboxEvent, region: str) -> dict[str, Any]:
    """One ``Records[]`` entry, field for field as AWS writes it. The object key is
    URL-encoded as AWS does (form encoding: a space is '+', '/' is kept)."""
    shape = message_shape(event.event_name)
    s3_object: dict[str, Any] = {"key": quote_plus(event.key, safe="/")}
    if shape.size and event.size_bytes is not None:
        s3_object["size"] = event.size_bytes
    if shape.etag:
        s3_object["eTag"] = event.etag
    if event.s3_version_id != "null":
        s3_object["versionId"] = event.s3_version_id
    if shape.sequencer:
        s3_object["sequencer"] = event.sequencer
    origin = event.origin
    return {
        "eventVersion": shape.event_version,
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": _event_time(event.event_time_ms),
        "eventName": event.event_name.removeprefix("s3:"),
        "userIdentity": {"principalId": origin.principal_id},
        "requestParameters": {"sourceIPAddress": origin.source_ip},
        "responseElements": {
            "x-amz-request-id": origin.request_id,
            "x-amz-id-2": origin.host_id,
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": event.configuration_id,
            "bucket": {
                "name": event.bucket,
                "ownerIdentity": {"principalId": event.bucket_owner_id},
                "arn": f"arn:aws:s3:::{event.bucket}",
            },
            "object": s3_object,
        },
    }


def s3_test_message(event: OutboxEvent) -> dict[str, Any]:
    """AWS's test message: not a ``Records`` list, six flat fields."""
    return {
        "Service": "Amazon S3",
        "Event": TEST_EVENT,
        "Time": _event_time(event.event_time_ms),
        "Bucket": event.bucket,
        "RequestId": event.origin.request_id,
        "HostId": event.origin.host_id,
    }


def event_message(event: OutboxEvent, region: str) -> bytes:
    message = (s3_test_message(event) if event.event_name == TEST_EVENT
               else {"Records": [event_record(event, region)]})
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


# --- HTTP -----------------------------------------------------------------------------------


class _ConnectionLost(OSError):
    pass


class H11Poster:
    """POSTs over kept-alive HTTP/1.1 connections (h11, which uvicorn already brings),
    at most ``connections_per_origin_max`` idle ones kept per host:port. httpx was
    tried first: in a profile it spent ~75% of the server's CPU per event; this does
    the same work with a sans-I/O parser on asyncio streams, at ~3x the events/s of
    one key's serial deliveries in the drain benchmark."""

    def __init__(self, connections_per_origin_max: int) -> None:
        self._idle: dict[tuple[str, int], list[tuple[Any, Any, Any]]] = {}
        self._idle_max = connections_per_origin_max

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OSError(f"not an http(s) URL: {url}")
        tls = parts.scheme == "https"
        origin = (parts.hostname, parts.port or (443 if tls else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timeout_seconds = limits.event_delivery_timeout_ms / 1000
        for attempt in range(2):  # a kept-alive connection the server closed: once more
            reused = bool(self._idle.get(origin))
            try:
                return await asyncio.wait_for(
                    self._exchange(origin, tls, parts.netloc, target, body, headers),
                    timeout_seconds)
            except TimeoutError:
                raise OSError(f"no answer within {timeout_seconds} s") from None
            except _ConnectionLost:
                if not reused or attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, origin: tuple[str, int], tls: bool, host: str, target: str,
                        body: bytes, headers: Mapping[str, str]) -> int:
        idle = self._idle.setdefault(origin, [])
        if idle:
            reader, writer, connection = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(origin[0], origin[1],
                                                           ssl=True if tls else None)
            connection = h11.Connection(h11.CLIENT)
        try:
            request_headers = [("host", host), ("content-length", str(len(body))),
                               *headers.items()]
            writer.write(connection.send(h11.Request(method="POST", target=target,
                                                     headers=request_headers)))
            writer.write(connection.send(h11.Data(data=body)))
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()
            status = 0
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    if not data and status == 0:
                        raise _ConnectionLost("the connection closed before an answer")
                    connection.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise _ConnectionLost("the connection closed mid-answer")
        except (h11.ProtocolError, OSError) as error:
            writer.close()
            if isinstance(error, _ConnectionLost):
                raise
            raise OSError(f"{type(error).__name__}: {error}") from None
        except BaseException:
            writer.close()
            raise
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE \
                and len(idle) < self._idle_max:
            connection.start_next_cycle()
            idle.append((reader, writer, connection))
        else:
            writer.close()
        return status

    async def close(self) -> None:
        for idle in self._idle.values():
            for _, writer, _ in idle:
                writer.close()
        self._idle.clear()


# --- one webhook on one shard ---------------------------------------------------------------


class TargetWorker:
    def __init__(
        self,
        storage: StorageClient,
        shard: int,
        target_id: str,
        url: str,
        region: str,
        post: Poster,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.shard = shard
        self.target_id = target_id
        self.url = url
        self.region = region
        self._post = post
        self._now = now
        self._target_arns = tuple(form.format(target_id) for form in WEBHOOK_ARN_FORMATS)
        self.cursor = 0
        self.window: dict[int, OutboxEvent] = {}  # sequence -> event, in commit order
        self._in_flight: dict[asyncio.Task[str | None], int] = {}
        self._to_ack: list[int] = []
        self._outbox_drained = False  # the last read found nothing more
        self._next_read_at = 0.0  # when drained, the outbox is polled, not read every round
        self.failures_in_a_row = 0
        self.retry_at = 0.0
        self.delivered = 0
        self.failed_attempts = 0
        self.last_error = ""
        self._last_failure_log = -float("inf")

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                await self._refill()
                self._launch()
                await self.flush_acks()  # deliveries just launched proceed meanwhile
                await self._wait()
        finally:
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            self._in_flight.clear()

    async def _refill(self) -> None:
        room = limits.event_window_per_target_max - len(self.window)
        if room <= 0 or (self._outbox_drained and self._now() < self._next_read_at):
            return
        page = await self.storage.outbox_read(self.shard, self.cursor, room, self._target_arns)
        for event in page.events:
            self.window[event.sequence] = event
        self._outbox_drained = page.scanned_through == self.cursor
        self._next_read_at = self._now() + limits.event_outbox_poll_interval_ms / 1000
        self.cursor = page.scanned_through

    def _launch(self) -> None:
        if self._now() < self.retry_at:
            return
        in_flight = set(self._in_flight.values())
        keys_seen: set[tuple[str, str]] = set()
        for sequence, event in self.window.items():
            if len(self._in_flight) >= limits.event_deliveries_in_flight_per_target_max:
                return
            event_key = (event.bucket, event.key)
            if event_key in keys_seen:
                continue  # an earlier event of this key has not been delivered yet
            keys_seen.add(event_key)
            if sequence not in in_flight:
                self._in_flight[asyncio.ensure_future(self._deliver(event))] = sequence

    async def _deliver(self, event: OutboxEvent) -> str | None:
        """None when the target answered 2xx, else what went wrong."""
        headers = {"content-type": "application/json",
                   "x-squall-event-id": f"{self.shard}-{event.sequence}"}
        try:
            status = await self._post(self.url, event_message(event, self.region), headers)
        except OSError as error:
            return str(error) or type(error).__name__
        return None if 200 <= status < 300 else f"HTTP {status}"

    async def _wait(self) -> None:
        poll_seconds = limits.event_outbox_poll_interval_ms / 1000
        window_full = len(self.window) >= limits.event_window_per_target_max
        if not self._in_flight:
            if self.window and self._now() < self.retry_at:
                await asyncio.sleep(self.retry_at - self._now())
            elif self._outbox_drained and not window_full:
                # Woken by the commit that adds the next event, not by a timer.
                poll_ms = limits.event_outbox_poll_interval_ms
                if await self.storage.outbox_wait(self.shard, self.cursor, poll_ms):
                    self._next_read_at = 0.0
            elif window_full or not self.window:
                await asyncio.sleep(poll_seconds)
            return
        timeout = None if window_full else poll_seconds
        done, _ = await asyncio.wait(self._in_flight, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            sequence = self._in_flight.pop(task)
            error = task.result()
            if error is None:
                self._succeeded(sequence)
            else:
                self._failed(error)

    def _succeeded(self, sequence: int) -> None:
        del self.window[sequence]
        self._to_ack.append(sequence)
        self.delivered += 1
        if self.failures_in_a_row:
            _log.info("webhook %s (%s) is taking events again after %d failed rounds",
                      self.target_id, self.url, self.failures_in_a_row)
        self.failures_in_a_row = 0
        self.retry_at = 0.0

    def _failed(self, error: str) -> None:
        self.failed_attempts += 1
        self.last_error = error
        now = self._now()
        if now < self.retry_at:
            return  # another POST of the same round failed: one backoff step per round
        self.failures_in_a_row += 1
        delay_ms = min(limits.event_retry_delay_ms_min * 2 ** (self.failures_in_a_row - 1),
                       limits.event_retry_delay_ms_max)
        delay_ms *= random.uniform(0.5, 1.0)  # jitter: targets that fail together drift apart
        self.retry_at = now + delay_ms / 1000
        if now - self._last_failure_log >= limits.event_outbox_log_period_seconds:
            self._last_failure_log = now
            _log.warning("webhook %s (%s) failed (%s); %d events held, retry in %.1f s",
                         self.target_id, self.url, error, len(self.window), delay_ms / 1000)

    async def flush_acks(self) -> None:
        """Remove delivered events from the outbox. If storage refuses (Overloaded), they
        stay in ``_to_ack`` and are acked on a later round; they are not redelivered by
        this worker (its cursor is past them)."""
        while self._to_ack:
            batch = self._to_ack[: limits.outbox_ack_events_max]
            try:
                await self.storage.outbox_ack(self.shard, batch)
            except StorageError as error:
                _log.warning("outbox ack of %d events failed (%s); will retry", len(batch),
                             error)
                return
            del self._to_ack[: len(batch)]

    def status(self) -> dict[str, Any]:
        return {
            "webhook": self.target_id,
            "url": self.url,
            "shard": self.shard,
            "state": "backoff" if self.failures_in_a_row else "up",
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "failures_in_a_row": self.failures_in_a_row,
            "retry_in_seconds": round(max(self.retry_at - self._now(), 0.0), 3),
            "held": len(self.window),
            "in_flight": len(self._in_flight),
            "cursor": self.cursor,
            "last_error": self.last_error,
        }


# --- the dispatcher -----------------------------------------------------------------------


class EventDispatcher:
    """Every webhook's workers, started together and cancelled together."""

    def __init__(
        self,
        storage: StorageClient,
        webhooks: Mapping[str, str],
        region: str,
        post: Poster | None = None,
    ) -> None:
        assert 0 < len(webhooks) <= limits.webhooks_max
        self._storage = storage
        self._webhooks = dict(webhooks)
        self._region = region
        connections_max = limits.event_deliveries_in_flight_per_target_max
        self._poster = H11Poster(connections_max) if post is None else None
        self._post: Poster = post if post is not None else self._poster  # type: ignore[assignment]
        self.workers: list[TargetWorker] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        assert not self._tasks, "started twice"
        for status in await self._storage.outbox_status():
            for target_id, url in sorted(self._webhooks.items()):
                self.workers.append(TargetWorker(self._storage, status.shard, target_id, url,
                                                 self._region, self._post))
        name = "squall-events"
        self._tasks = [asyncio.create_task(self._supervise(w), name=name) for w in self.workers]
        self._tasks.append(asyncio.create_task(self._report(), name=f"{name}-report"))
        _log.info("delivering bucket notifications to %s",
                  ", ".join(f"{i}={u}" for i, u in sorted(self._webhooks.items())))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                _log.error("notification task ended with %r", result)
        self._tasks = []
        for worker in self.workers:  # fewer duplicates after a clean restart
            await worker.flush_acks()
        if self._poster is not None:
            await self._poster.close()

    async def _supervise(self, worker: TargetWorker) -> None:
        while True:
            try:
                await worker.run()
            except StorageError as error:
                _log.warning("webhook %s: storage error %r; retrying in 1 s", worker.target_id,
                             error)
            except Exception:
                _log.exception("webhook %s: worker failed; restarting in 1 s", worker.target_id)
            await asyncio.sleep(1.0)

    async def _report(self) -> None:
        """A log line with the outbox depth, while events are pending."""
        while True:
            await asyncio.sleep(limits.event_outbox_log_period_seconds)
            try:
                statuses = await self._storage.outbox_status()
            except StorageError as error:
                _log.warning("outbox status: %r", error)
                continue
            depth = sum(s.depth for s in statuses)
            if depth:
                backing_off = [w.target_id for w in self.workers if w.failures_in_a_row]
                _log.info("notification outbox: %d events pending (bound %d)%s", depth,
                          sum(s.depth_max for s in statuses),
                          f"; in backoff: {', '.join(backing_off)}" if backing_off else "")

    def delivery_status(self) -> dict[str, Any]:
        return {"targets": [worker.status() for worker in self.workers]}
