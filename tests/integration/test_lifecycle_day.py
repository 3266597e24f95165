"""Lifecycle expiry watched in seconds: ``squall serve --lifecycle-day-seconds``.

Conformance suites (ceph/s3-tests' expiration tests) shorten the lifecycle day so that a
``Days: 1`` rule expires within seconds (RGW's ``rgw_lc_debug_interval``). This runs the
real server with a 1-second day and a fast sweeper and watches rules act through boto3.
"""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from squall.launcher import ServerProcess

ACCESS_KEY = "LIFECYCLEDAYROOT0000"
SECRET_KEY = "lifecycle-day-secret-000000000000000000"
DAY_SECONDS = 1.0
SWEEP_PERIOD_SECONDS = 0.2
# Days: 1 is due within two days (rounded up to the next "midnight"), plus one sweep.
WAIT_SECONDS_MAX = 10.0


@pytest.fixture
def s3(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = ServerProcess(
        tmp_path / "data", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
        extra_args=("--volatile", "--lifecycle-day-seconds", str(DAY_SECONDS),
                    "--lifecycle-period-seconds", str(SWEEP_PERIOD_SECONDS)),
    )
    try:
        server.start()
    except RuntimeError:
        server.close()
        raise
    client = boto3.client(
        "s3", endpoint_url=server.url, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    try:
        yield client
    finally:
        client.close()
        server.close()


def _keys(s3, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_one_day_rule_expires_within_seconds(s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="days")
    for key in ("expire/a", "expire/b", "keep/a", "later/a"):
        s3.put_object(Bucket="days", Key=key, Body=key.encode())
    s3.put_bucket_lifecycle_configuration(Bucket="days", LifecycleConfiguration={"Rules": [
        {"ID": "soon", "Filter": {"Prefix": "expire/"}, "Status": "Enabled",
         "Expiration": {"Days": 1}},
        {"ID": "late", "Filter": {"Prefix": "later/"}, "Status": "Enabled",
         "Expiration": {"Days": 1000}},
    ]})
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while time.monotonic() < deadline and _keys(s3, "days") != ["keep/a", "later/a"]:
        time.sleep(SWEEP_PERIOD_SECONDS)
    assert _keys(s3, "days") == ["keep/a", "later/a"]


def test_the_day_must_be_positive(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                           extra_args=("--lifecycle-day-seconds", "0"))
    with pytest.raises(RuntimeError):
        server.start()
    server.close()
