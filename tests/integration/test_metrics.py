"""GET /_squall/metrics through a real server, read with Prometheus's own text parser:
request counts and durations by operation, verdicts by function and action, the outbox,
and who may scrape (SigV4 by root, a bearer token, or anyone with --metrics-public)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from squall.launcher import ServerProcess
from tests.integration import triggers_support as support

pytestmark = pytest.mark.slow

TOKEN = "metrics-test-token-0123456789"


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    token_file = tmp_path_factory.mktemp("metrics") / "token"
    token_file.write_text(TOKEN + "\n")
    yield from support.server(tmp_path_factory, "--metrics-token-file", str(token_file),
                              "--webhook", "down=http://127.0.0.1:9/")


samples = support.metric_samples


def scrape(process: ServerProcess, authorization: str | None) -> tuple[int, str]:
    request = urllib.request.Request(process.url + "/_squall/metrics")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_requests_verdicts_and_outbox_are_counted(process: ServerProcess) -> None:
    s3 = support.s3_client(process.url)
    s3.create_bucket(Bucket="metered")
    support.register(process, "sizes", {
        "kind": "python", "entry_point": "triggers.examples:size_class",
        "actions": [{"annotate": True},
                    {"when": {"label": "empty"}, "reject": "empty objects are refused"}]})
    support.bind(s3, "metered", "sizes", prefix="in/")
    s3.put_bucket_notification_configuration(Bucket="metered", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": "arn:squall:sqs::down:webhook",
                                 "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [
                                     {"Name": "prefix", "Value": "evt/"}]}}}],
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": "arn:squall:function:sizes",
                                          "Events": ["s3:ObjectCreated:*"],
                                          "Filter": {"Key": {"FilterRules": [
                                              {"Name": "prefix", "Value": "in/"}]}}}]})
    before = samples(support.admin(process).metrics())
    for n in range(3):
        stored = s3.put_object(Bucket="metered", Key=f"in/{n}", Body=b"small")
        assert support.verdict(stored)["steps"][0]["inference_ms"] >= 0
    with pytest.raises(ClientError):
        s3.put_object(Bucket="metered", Key="in/empty", Body=b"")
    with pytest.raises(ClientError):
        s3.get_object(Bucket="metered", Key="missing")
    # The webhook is down (nothing listens on port 9): its events stay in the outbox.
    s3.put_object(Bucket="metered", Key="evt/1", Body=b"x")
    after = samples(support.admin(process).metrics())

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("squall_requests_total", operation="PutObject", status="200") == 4
    assert grew("squall_requests_total", operation="PutObject", status="403") == 1
    assert grew("squall_requests_total", operation="GetObject", status="404") == 1
    assert grew("squall_request_duration_seconds_count", operation="PutObject") == 5
    assert grew("squall_request_duration_seconds_bucket", operation="PutObject",
                le="+Inf") == 5
    assert grew("squall_trigger_verdicts_total", function="sizes", action="store") == 3
    assert grew("squall_trigger_verdicts_total", function="sizes", action="reject") == 1
    # Each call of the python function was timed, the rejected one too.
    assert grew("squall_trigger_inference_seconds_count", function="sizes") == 4
    assert grew("squall_trigger_inference_seconds_bucket", function="sizes", le="+Inf") == 4
    assert after[("squall_outbox_events", (("shard", "0"),))] >= 1
    assert after[("squall_outbox_events_max", (("shard", "0"),))] > 0
    assert ("squall_inference_slots", ()) in after


def test_who_may_scrape(process: ServerProcess) -> None:
    status, body = scrape(process, None)
    assert status == 403 and "<Code>AccessDenied</Code>" in body
    status, body = scrape(process, "Bearer not-the-token-at-all-000")
    assert status in (400, 403) and "<Code>" in body
    status, body = scrape(process, f"Bearer {TOKEN}")
    assert status == 200 and "squall_requests_total" in body


def test_public_metrics(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, access_key=support.ACCESS_KEY,
                       secret_key=support.SECRET_KEY,
                       extra_args=("--volatile", "--metrics-public")) as process:
        status, body = scrape(process, None)
        assert status == 200
        families = {f.name for f in text_string_to_metric_families(body)}
        assert {"squall_requests", "squall_outbox_events"} <= families
        status, _ = scrape(process, None)  # the first scrape is counted by the second
        status, body = scrape(process, None)
        assert samples(body)[("squall_requests_total", (("operation", "SquallMetrics"),
                                                        ("status", "200")))] >= 2
