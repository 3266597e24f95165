"""The S3 event message (golden) and a webhook worker against a fake outbox and target."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from storage.api import EventOrigin, OutboxEvent, OutboxPage, OutboxStatus, limits
from triggers.events import EventDispatcher, TargetWorker, event_message

ARN = "arn:squall:sqs::hooks:webhook"
ORIGIN = EventOrigin("owner-7", "192.0.2.3", "C3D13FE58DE4C810", "C3D13FE58DE4C810")


def _event(sequence: int, key: str = "k", event_name: str = "s3:ObjectCreated:Put",
           **fields: Any) -> OutboxEvent:
    values: dict[str, Any] = dict(
        sequence=sequence, target_arn=ARN, configuration_id="to-hooks",
        event_name=event_name, event_time_ms=1_700_000_000_123, bucket="photos",
        bucket_owner_id="owner-1", key=key, size_bytes=1024,
        etag="d41d8cd98f00b204e9800998ecf8427e", s3_version_id="null",
        sequencer=f"{sequence:016X}", origin=ORIGIN)
    values.update(fields)
    return OutboxEvent(**values)


GOLDEN_PUT = (
    b'{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1",'
    b'"eventTime":"2023-11-14T22:13:20.123Z","eventName":"ObjectCreated:Put",'
    b'"userIdentity":{"principalId":"owner-7"},'
    b'"requestParameters":{"sourceIPAddress":"192.0.2.3"},'
    b'"responseElements":{"x-amz-request-id":"C3D13FE58DE4C810",'
    b'"x-amz-id-2":"C3D13FE58DE4C810"},'
    b'"s3":{"s3SchemaVersion":"1.0","configurationId":"to-hooks",'
    b'"bucket":{"name":"photos","ownerIdentity":{"principalId":"owner-1"},'
    b'"arn":"arn:aws:s3:::photos"},'
    b'"object":{"key":"dir/red+flower%3D1.jpg","size":1024,'
    b'"eTag":"d41d8cd98f00b204e9800998ecf8427e","sequencer":"0000000000000007"}}}]}'
)


def test_event_message_is_the_s3_event_json() -> None:
    assert event_message(_event(7, key="dir/red flower=1.jpg"), "eu-west-1") == GOLDEN_PUT


def test_removal_and_versioned_events() -> None:
    marker = _event(8, event_name="s3:ObjectRemoved:DeleteMarkerCreated", size_bytes=None,
                    etag="", s3_version_id="01a222e5c20a0000")
    [record] = json.loads(event_message(marker, "us-east-1"))["Records"]
    assert record["eventName"] == "ObjectRemoved:DeleteMarkerCreated"
    assert record["s3"]["object"] == {"key": "k", "versionId": "01a222e5c20a0000",
                                      "sequencer": "0000000000000008"}


class FakeOutbox:
    """``outbox_read`` / ``outbox_ack`` / ``outbox_status`` over a list, as storage does."""

    def __init__(self, events: Sequence[OutboxEvent]) -> None:
        self.events = {event.sequence: event for event in events}
        self.acked: list[int] = []

    async def outbox_status(self) -> list[OutboxStatus]:
        return [OutboxStatus(0, len(self.events), 100, 1 + max(self.events, default=0), None)]

    async def outbox_read(self, shard: int, after_sequence: int, limit: int,
                          target_arns: Sequence[str] | None = None) -> OutboxPage:
        found = [e for s, e in sorted(self.events.items()) if s > after_sequence][:limit]
        return OutboxPage(tuple(found), found[-1].sequence if found else after_sequence)

    async def outbox_ack(self, shard: int, sequences: Sequence[int]) -> None:
        for sequence in sequences:
            self.events.pop(sequence, None)
        self.acked.extend(sequences)


class FlakyTarget:
    """Answers 500 to the first ``failures[key]`` POSTs of a key, then 200; records the
    sequence of every event it took, and checks nothing was acked before it took it."""

    def __init__(self, outbox: FakeOutbox, failures: Mapping[str, int]) -> None:
        self.outbox = outbox
        self.failures = dict(failures)
        self.taken: list[tuple[str, str]] = []  # (key, sequencer)
        self.attempt_times: list[float] = []

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.attempt_times.append(asyncio.get_running_loop().time())
        [record] = json.loads(body)["Records"]
        key, sequencer = record["s3"]["object"]["key"], record["s3"]["object"]["sequencer"]
        assert int(sequencer, 16) not in self.outbox.acked, "acked before delivery"
        await asyncio.sleep(0.001 * (hash(key) % 3))  # keys finish out of order
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            return 500
        self.taken.append((key, sequencer))
        return 204


@pytest.fixture(autouse=True)
def quick_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "event_retry_delay_ms_min", 2)
    monkeypatch.setattr(limits, "event_retry_delay_ms_max", 40)
    monkeypatch.setattr(limits, "event_outbox_poll_interval_ms", 2)


async def _run_until(worker_or_dispatcher: Any, done: Any, timeout_seconds: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while not done():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.005)


def test_per_key_order_holds_through_failures_and_only_delivered_events_are_acked() -> None:
    events = [_event(s, key=f"k{s % 3}") for s in range(1, 31)]
    outbox = FakeOutbox(events)
    target = FlakyTarget(outbox, {"k0": 4, "k1": 1})

    async def scenario() -> None:
        dispatcher = EventDispatcher(outbox, {"hooks": "http://target"}, "us-east-1",  # type: ignore[arg-type]
                                     post=target)
        await dispatcher.start()
        try:
            await _run_until(dispatcher, lambda: not outbox.events)
        finally:
            await dispatcher.close()
        [status] = dispatcher.delivery_status()["targets"]
        assert status["delivered"] == 30 and status["failed_attempts"] == 5

    asyncio.run(scenario())
    assert sorted(outbox.acked) == list(range(1, 31))
    assert len(target.taken) == 30
    for key in ("k0", "k1", "k2"):
        sequencers = [s for k, s in target.taken if k == key]
        assert sequencers == sorted(sequencers) and len(sequencers) == 10


def test_a_failing_target_is_retried_with_growing_bounded_backoff() -> None:
    outbox = FakeOutbox([_event(1)])
    target = FlakyTarget(outbox, {"k": 8})

    async def scenario() -> None:
        worker = TargetWorker(outbox, 0, "hooks", "http://target", "us-east-1",  # type: ignore[arg-type]
                              target)
        task = asyncio.ensure_future(worker.run())
        try:
            await _run_until(worker, lambda: outbox.acked)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert worker.failures_in_a_row == 0 and worker.delivered == 1

    asyncio.run(scenario())
    gaps = [b - a for a, b in zip(target.attempt_times, target.attempt_times[1:], strict=False)]
    assert len(gaps) == 8, gaps
    # The 6th and later retries wait at least half the 40 ms ceiling (jitter: x0.5..1);
    # upper bounds are checked without a clock below (a loaded machine only adds delay).
    assert min(gaps[5:]) >= 0.019, gaps


def test_backoff_doubles_per_failed_round_up_to_the_ceiling() -> None:
    clock = [100.0]
    worker = TargetWorker(FakeOutbox([]), 0, "hooks", "http://t", "us-east-1",  # type: ignore[arg-type]
                          FlakyTarget(FakeOutbox([]), {}), now=lambda: clock[0])
    delays = []
    for _ in range(8):
        worker._failed("HTTP 500")
        worker._failed("HTTP 500")  # a second failure of the same round adds no step
        delays.append(worker.retry_at - clock[0])
        clock[0] = worker.retry_at
    assert worker.failures_in_a_row == 8 and worker.failed_attempts == 16
    for step, delay in enumerate(delays):
        expected = min(0.002 * 2**step, 0.040)
        assert expected * 0.5 <= delay <= expected, (step, delay)


@pytest.mark.parametrize("protocol", ["HTTP/1.0", "HTTP/1.1"])
def test_h11_poster_against_a_real_http_server(protocol: str) -> None:
    """Kept-alive (1.1) and one-connection-per-request (1.0) servers both work; a body is
    read to its end; a refused connection is an OSError."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from squall.launcher import free_port
    from triggers.events import H11Poster

    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = protocol

        def do_POST(self) -> None:  # noqa: N802
            bodies.append(self.rfile.read(int(self.headers["content-length"])))
            answer = b"accepted" if len(bodies) % 2 else b""
            self.send_response(202 if len(bodies) < 3 else 503)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook?x=1"

    async def scenario() -> list[int]:
        poster = H11Poster(4)
        try:
            statuses = [await poster(url, f"event {i}".encode(), {"x-test": "1"})
                        for i in range(3)]
            with pytest.raises(OSError):
                await poster(f"http://127.0.0.1:{free_port()}/", b"", {})
            return statuses
        finally:
            await poster.close()

    try:
        assert asyncio.run(scenario()) == [202, 202, 503]
    finally:
        server.shutdown()
        server.server_close()
    assert bodies == [b"event 0", b"event 1", b"event 2"]
