"""Post-commit notifications end to end: a real ``squall serve`` child process, driven by
boto3, POSTing S3 events to a real webhook (a threaded ``http.server`` on 127.0.0.1 in
this process). The webhook is down, failing, up; the server is killed with SIGKILL; the
outbox fills up. Nothing may be lost, and the events of one key arrive in order."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from squall.admin_client import AdminClient
from squall.launcher import ServerProcess, free_port
from tests.integration import triggers_support as support

WEBHOOK_ID = "hooks"
QUEUE_ARN = f"arn:squall:sqs::{WEBHOOK_ID}:webhook"
EVENTS_ALL = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
WAIT_SECONDS = 30.0


class Webhook:
    """A webhook target: records every POSTed event message it answers 2xx to.

    ``status`` is what it answers (500 makes it a failing target); ``stop`` closes the
    socket (a target that is down: connection refused). The port is fixed at creation so
    the server can be told the URL before the webhook listens.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/events"
        self.status = 200
        self.deliveries: list[tuple[str, dict[str, Any]]] = []  # (x-squall-event-id, record)
        self.test_events: list[dict[str, Any]] = []  # AWS's s3:TestEvent messages, apart
        self.refused = 0
        self._condition = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Webhook:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real webhook server would

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["content-length"]))
                status = webhook.status
                with webhook._condition:
                    if 200 <= status < 300:
                        message = json.loads(body)
                        if message.get("Event") == "s3:TestEvent":
                            webhook.test_events.append(message)
                        else:
                            [record] = message["Records"]
                            webhook.deliveries.append((self.headers["x-squall-event-id"],
                                                       record))
                        webhook._condition.notify_all()
                    else:
                        webhook.refused += 1
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def records(self) -> list[dict[str, Any]]:
        with self._condition:
            return [record for _, record in self.deliveries]

    def wait_until(self, done: Callable[[list[dict[str, Any]]], bool],
                   timeout_seconds: float = WAIT_SECONDS) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_seconds
        with self._condition:
            while True:
                records = [record for _, record in self.deliveries]
                if done(records):
                    return records
                left = deadline - time.monotonic()
                assert left > 0, f"timed out with {len(records)} events: {records[-3:]}"
                self._condition.wait(left)

    def wait_for_test_events(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT_SECONDS
        with self._condition:
            while len(self.test_events) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"timed out with test events {self.test_events}"
                self._condition.wait(left)
            return list(self.test_events)


def _identity(record: dict[str, Any]) -> tuple[str, str, str]:
    """What makes an event unique: its key, name and sequencer."""
    return (record["s3"]["object"]["key"], record["eventName"],
            record["s3"]["object"]["sequencer"])


def _check_key_order(records: list[dict[str, Any]]) -> None:
    """Per key, sequencers arrive in increasing order (a redelivered duplicate may
    repeat the last one, never go back past it)."""
    last: dict[str, str] = {}
    for record in records:
        key, _, sequencer = _identity(record)
        assert sequencer >= last.get(key, ""), f"{key}: {sequencer} after {last[key]}"
        last[key] = sequencer


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.stop()


def _server(data_dir: Path, webhook: Webhook, *extra: str) -> ServerProcess:
    return ServerProcess(data_dir, access_key=support.ACCESS_KEY, secret_key=support.SECRET_KEY,
                         extra_args=("--webhook", f"{WEBHOOK_ID}={webhook.url}", *extra))


def _watch(s3: Any, bucket: str, events: list[str] = EVENTS_ALL) -> None:
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"Id": "to-hooks", "QueueArn": QUEUE_ARN, "Events": events}]})


def _outbox(process: ServerProcess) -> dict[str, Any]:
    status: dict[str, Any] = AdminClient(process.url, support.ACCESS_KEY,
                                         support.SECRET_KEY).outbox_status()
    return status


def _wait_for_empty_outbox(process: ServerProcess) -> None:
    """Acks follow deliveries asynchronously."""
    deadline = time.monotonic() + WAIT_SECONDS
    while _outbox(process)["shards"][0]["depth"]:
        assert time.monotonic() < deadline, _outbox(process)
        time.sleep(0.05)


def test_put_copy_multipart_delete_events_arrive_as_s3_writes_them(
    tmp_path: Path, webhook: Webhook
) -> None:
    webhook.start()
    with _server(tmp_path, webhook, "--volatile") as process:
        s3 = support.s3_client(process.url)
        _watch(s3, "photos")
        put = s3.put_object(Bucket="photos", Key="dir/red flower.jpg", Body=b"hello")
        s3.copy_object(Bucket="photos", Key="copy.jpg",
                       CopySource={"Bucket": "photos", "Key": "dir/red flower.jpg"})
        upload = s3.create_multipart_upload(Bucket="photos", Key="mp")["UploadId"]
        part = s3.upload_part(Bucket="photos", Key="mp", UploadId=upload, PartNumber=1,
                              Body=b"abc")
        s3.complete_multipart_upload(Bucket="photos", Key="mp", UploadId=upload,
                                     MultipartUpload={"Parts": [{"ETag": part["ETag"],
                                                                 "PartNumber": 1}]})
        s3.delete_object(Bucket="photos", Key="copy.jpg")
        s3.put_bucket_versioning(Bucket="photos",
                                 VersioningConfiguration={"Status": "Enabled"})
        s3.delete_object(Bucket="photos", Key="mp")  # a delete marker
        records = webhook.wait_until(lambda records: len(records) >= 5)
        _wait_for_empty_outbox(process)
    # Events of different keys are delivered concurrently; the sequencers (HLCs of one
    # node) give their commit order.
    records.sort(key=lambda record: record["s3"]["object"]["sequencer"])
    names = [(r["eventName"], r["s3"]["object"]["key"]) for r in records]
    assert names == [
        ("ObjectCreated:Put", "dir/red+flower.jpg"),
        ("ObjectCreated:Copy", "copy.jpg"),
        ("ObjectCreated:CompleteMultipartUpload", "mp"),
        ("ObjectRemoved:Delete", "copy.jpg"),
        ("ObjectRemoved:DeleteMarkerCreated", "mp"),
    ]
    first = records[0]
    request_id = put["ResponseMetadata"]["RequestId"]
    assert first["eventVersion"] == "2.1" and first["eventSource"] == "aws:s3"
    assert first["awsRegion"] == "us-east-1"
    assert first["requestParameters"] == {"sourceIPAddress": "127.0.0.1"}
    assert first["responseElements"]["x-amz-request-id"] == request_id
    assert first["s3"]["configurationId"] == "to-hooks"
    assert first["s3"]["bucket"]["name"] == "photos"
    assert first["s3"]["bucket"]["arn"] == "arn:aws:s3:::photos"
    assert first["s3"]["object"]["size"] == 5
    assert first["s3"]["object"]["eTag"] == put["ETag"].strip('"')
    assert "versionId" not in first["s3"]["object"]  # not versioned yet
    assert urllib.parse.unquote_plus(first["s3"]["object"]["key"]) == "dir/red flower.jpg"
    removed = records[3]["s3"]["object"]
    assert set(removed) == {"key", "sequencer"}
    marker = records[4]["s3"]["object"]
    assert marker["versionId"] and set(marker) == {"key", "versionId", "sequencer"}
    assert records[4]["s3"]["object"]["sequencer"] > records[2]["s3"]["object"]["sequencer"]


def test_a_target_must_be_a_configured_webhook(tmp_path: Path, webhook: Webhook) -> None:
    with _server(tmp_path, webhook, "--volatile") as process:
        s3 = support.s3_client(process.url)
        s3.create_bucket(Bucket="bkt")
        for arn in ("arn:squall:sqs::nope:webhook", "arn:aws:sqs:us-east-1:1:q"):
            with pytest.raises(ClientError) as raised:
                s3.put_bucket_notification_configuration(Bucket="bkt", NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": arn, "Events": EVENTS_ALL}]})
            assert raised.value.response["Error"]["Code"] == "InvalidArgument"
        s3.put_bucket_notification_configuration(Bucket="bkt", NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": f"arn:squall:sns::{WEBHOOK_ID}:webhook",
                                     "Events": ["s3:ObjectCreated:Put"]}]})


def test_a_target_down_then_failing_then_up_gets_every_event_in_key_order(
    tmp_path: Path, webhook: Webhook
) -> None:
    keys = [f"k{index}" for index in range(4)]
    rounds = 15
    with _server(tmp_path, webhook, "--volatile") as process:
        s3 = support.s3_client(process.url)
        _watch(s3, "bkt", ["s3:ObjectCreated:*"])
        for round_index in range(rounds):  # the webhook is not listening: refused
            for key in keys:
                s3.put_object(Bucket="bkt", Key=key, Body=f"{round_index}".encode())
        # Every put's event, and the test event of the configuration.
        assert _outbox(process)["shards"][0]["depth"] == rounds * len(keys) + 1
        webhook.status = 500
        webhook.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while webhook.refused == 0:  # the server retries into a failing target
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert webhook.records() == []
        webhook.status = 200
        expected = rounds * len(keys)
        records = webhook.wait_until(lambda records: len({_identity(r) for r in records})
                                     >= expected)
        _check_key_order(records)
        assert [r["s3"]["object"]["size"] for r in records if r["s3"]["object"]["key"] == "k0"
                ][:rounds] == [len(str(i)) for i in range(rounds)]
        _wait_for_empty_outbox(process)
        [target] = _outbox(process)["delivery"]["targets"]
        assert target["webhook"] == WEBHOOK_ID and target["delivered"] >= expected
        assert target["failed_attempts"] >= 1


@pytest.mark.slow
def test_kill_9_with_events_pending_loses_none(tmp_path: Path, webhook: Webhook) -> None:
    keys = [f"key-{index}" for index in range(5)]
    with _server(tmp_path, webhook) as process:  # durable: synced before each answer
        s3 = support.s3_client(process.url)
        _watch(s3, "bkt")
        for round_index in range(8):
            for key in keys:
                s3.put_object(Bucket="bkt", Key=key, Body=b"x" * round_index)
        s3.delete_object(Bucket="bkt", Key=keys[0])
        process.kill()
    expected = 8 * len(keys) + 1
    webhook.start()
    with _server(tmp_path, webhook) as restarted:
        records = webhook.wait_until(lambda records: len({_identity(r) for r in records})
                                     >= expected)
        _check_key_order(records)
        assert len({_identity(r) for r in records}) == expected  # duplicates allowed, no gaps
        assert any(r["eventName"] == "ObjectRemoved:Delete" for r in records)
        # ... and the server keeps delivering new events after the restart.
        s3 = support.s3_client(restarted.url)
        s3.put_object(Bucket="bkt", Key="after-restart", Body=b"")
        webhook.wait_until(lambda records: any(
            r["s3"]["object"]["key"] == "after-restart" for r in records))


def test_a_full_outbox_answers_slowdown_until_the_target_catches_up(
    tmp_path: Path, webhook: Webhook
) -> None:
    with _server(tmp_path, webhook, "--volatile", "--outbox-entries-max", "5") as process:
        s3 = support.s3_client(process.url, retries=1)
        _watch(s3, "bkt", ["s3:ObjectCreated:*"])  # its test event takes one place
        for index in range(4):
            s3.put_object(Bucket="bkt", Key=f"k{index}", Body=b"")
        with pytest.raises(ClientError) as raised:
            s3.put_object(Bucket="bkt", Key="one-too-many", Body=b"")
        assert raised.value.response["Error"]["Code"] == "SlowDown"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        with pytest.raises(ClientError):
            s3.head_object(Bucket="bkt", Key="one-too-many")  # refused means not stored
        shard = _outbox(process)["shards"][0]
        assert (shard["depth"], shard["depth_max"]) == (5, 5)
        webhook.start()
        webhook.wait_until(lambda records: len(records) >= 4)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                s3.put_object(Bucket="bkt", Key="one-too-many", Body=b"")
                break
            except ClientError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        webhook.wait_until(lambda records: any(
            r["s3"]["object"]["key"] == "one-too-many" for r in records))


def _object_records(webhook: Webhook, count: int) -> list[dict[str, Any]]:
    """The first ``count`` records, in arrival order (commit order for one key)."""
    return webhook.wait_until(lambda records: len(records) >= count)[:count]


def test_the_configuration_put_sends_the_test_event_to_each_destination(
    tmp_path: Path, webhook: Webhook
) -> None:
    webhook.start()
    with _server(tmp_path, webhook, "--volatile") as process:
        s3 = support.s3_client(process.url)
        s3.create_bucket(Bucket="bkt")
        answer = s3.put_bucket_notification_configuration(
            Bucket="bkt", NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": QUEUE_ARN, "Events": EVENTS_ALL}],
                "TopicConfigurations": [{"TopicArn": f"arn:squall:sns::{WEBHOOK_ID}:webhook",
                                         "Events": ["s3:ObjectCreated:Put"]}]})
        tests = webhook.wait_for_test_events(2)  # a queue and a topic: two destinations
        request_id = answer["ResponseMetadata"]["RequestId"]
        for message in tests:
            assert set(message) == {"Service", "Event", "Time", "Bucket", "RequestId",
                                    "HostId"}
            assert (message["Service"], message["Event"], message["Bucket"]) == (
                "Amazon S3", "s3:TestEvent", "bkt")
            assert message["RequestId"] == request_id and message["Time"].endswith("Z")
        # As AWS: SkipDestinationValidation sends none. A later event of a key, written
        # after it, arrives; then the outbox is empty, so no test event is still coming.
        s3.put_bucket_notification_configuration(
            Bucket="bkt", SkipDestinationValidation=True, NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": QUEUE_ARN, "Events": EVENTS_ALL}]})
        s3.put_object(Bucket="bkt", Key="after", Body=b"")
        webhook.wait_until(lambda records: len(records) >= 1)
        _wait_for_empty_outbox(process)
        assert len(webhook.test_events) == 2 and not webhook.records()[1:]


def test_tagging_and_acl_events_name_the_version_they_changed(
    tmp_path: Path, webhook: Webhook
) -> None:
    webhook.start()
    with _server(tmp_path, webhook, "--volatile") as process:
        s3 = support.s3_client(process.url)
        # ACLs enabled (a new bucket is BucketOwnerEnforced: ACLs disabled, as on AWS).
        s3.create_bucket(Bucket="bkt", ObjectOwnership="ObjectWriter")
        s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_notification_configuration(Bucket="bkt", NotificationConfiguration={
            "QueueConfigurations": [{
                "Id": "tags-and-acls", "QueueArn": QUEUE_ARN,
                "Events": ["s3:ObjectTagging:*", "s3:ObjectAcl:Put"],
                "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".jpg"}]}}}]})
        old = s3.put_object(Bucket="bkt", Key="cat photo.jpg", Body=b"one")
        new = s3.put_object(Bucket="bkt", Key="cat photo.jpg", Body=b"two")
        s3.put_object(Bucket="bkt", Key="notes.txt", Body=b"unwatched")
        tagged = s3.put_object_tagging(Bucket="bkt", Key="cat photo.jpg",
                                       Tagging={"TagSet": [{"Key": "kind", "Value": "cat"}]})
        s3.put_object_tagging(Bucket="bkt", Key="notes.txt",  # filtered out: no event
                              Tagging={"TagSet": [{"Key": "kind", "Value": "text"}]})
        s3.delete_object_tagging(Bucket="bkt", Key="cat photo.jpg", VersionId=old["VersionId"])
        s3.put_object_acl(Bucket="bkt", Key="cat photo.jpg", ACL="public-read")
        # The same ACL again changes nothing: AWS sends no event "when a request results
        # in no change to an object's ACL". The tagging after it proves the outbox went
        # past it.
        s3.put_object_acl(Bucket="bkt", Key="cat photo.jpg", ACL="public-read")
        s3.put_object_tagging(Bucket="bkt", Key="cat photo.jpg",
                              Tagging={"TagSet": [{"Key": "kind", "Value": "tabby"}]})
        records = _object_records(webhook, 4)
        _wait_for_empty_outbox(process)
        assert len(webhook.records()) == 4
    got = [(r["eventName"], r["s3"]["object"]["versionId"], r["s3"]["object"]["eTag"])
           for r in records]
    assert got == [
        ("ObjectTagging:Put", new["VersionId"], new["ETag"].strip('"')),
        ("ObjectTagging:Delete", old["VersionId"], old["ETag"].strip('"')),
        ("ObjectAcl:Put", new["VersionId"], new["ETag"].strip('"')),
        ("ObjectTagging:Put", new["VersionId"], new["ETag"].strip('"')),
    ]
    for record in records:  # as AWS's: version 2.3, no size, no sequencer
        assert record["eventVersion"] == "2.3"
        assert set(record["s3"]["object"]) == {"key", "versionId", "eTag"}
        assert record["s3"]["object"]["key"] == "cat+photo.jpg"
        assert record["s3"]["configurationId"] == "tags-and-acls"
    assert records[0]["responseElements"]["x-amz-request-id"] == \
        tagged["ResponseMetadata"]["RequestId"]


def test_lifecycle_expirations_make_lifecycle_events_not_object_removed(
    tmp_path: Path, webhook: Webhook
) -> None:
    webhook.start()
    with _server(tmp_path, webhook, "--volatile", "--lifecycle-period-seconds", "0.2") as process:
        s3 = support.s3_client(process.url)
        for bucket in ("plain", "versioned"):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
                "QueueConfigurations": [
                    {"Id": "lifecycle", "QueueArn": QUEUE_ARN,
                     "Events": ["s3:LifecycleExpiration:*"]},
                    {"Id": "removed", "QueueArn": QUEUE_ARN, "Events": ["s3:ObjectRemoved:*"]},
                ]})
        s3.put_bucket_versioning(Bucket="versioned",
                                 VersioningConfiguration={"Status": "Enabled"})
        kept = s3.put_object(Bucket="versioned", Key="tmp/b", Body=b"b")
        s3.put_object(Bucket="plain", Key="tmp/a", Body=b"a")
        s3.put_object(Bucket="plain", Key="keep/c", Body=b"c")
        for bucket in ("plain", "versioned"):  # a Date in the past: due at the next pass
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
                "Rules": [{"ID": "old", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
                           "Expiration": {"Date": "2020-01-01T00:00:00Z"}}]})
        records = _object_records(webhook, 2)
        _wait_for_empty_outbox(process)
        # A delete by a request still makes ObjectRemoved events for the other rule.
        s3.delete_object(Bucket="plain", Key="keep/c")
        records = _object_records(webhook, 3)
        _wait_for_empty_outbox(process)
        with pytest.raises(ClientError):  # versioned/tmp/b is now behind a delete marker
            s3.head_object(Bucket="versioned", Key="tmp/b")
        versions = s3.list_object_versions(Bucket="versioned")
    by_bucket = {r["s3"]["bucket"]["name"]: r for r in records[:2]}
    plain, versioned = by_bucket["plain"], by_bucket["versioned"]
    assert (plain["eventName"], plain["s3"]["object"]["key"]) == (
        "LifecycleExpiration:Delete", "tmp/a")
    assert "versionId" not in plain["s3"]["object"]
    [delete_marker] = versions["DeleteMarkers"]
    assert (versioned["eventName"], versioned["s3"]["object"]["versionId"]) == (
        "LifecycleExpiration:DeleteMarkerCreated", delete_marker["VersionId"])
    assert versions["Versions"][0]["VersionId"] == kept["VersionId"]
    for record in (plain, versioned):
        assert record["s3"]["configurationId"] == "lifecycle"  # never the ObjectRemoved rule
        assert record["eventVersion"] == "2.3"
        assert record["userIdentity"] == {"principalId": "s3.amazonaws.com"}
        assert record["requestParameters"] == {"sourceIPAddress": "s3.amazonaws.com"}
        assert set(record["s3"]["object"]) <= {"key", "versionId", "sequencer"}
    assert [(r["eventName"], r["s3"]["configurationId"]) for r in records[2:]] == [
        ("ObjectRemoved:Delete", "removed")]
