"""Reads as of a time (a Squall extension), end to end: boto3 -> squall serve -> LMDB.

Squall-only, so not part of s3compat_tests (which judges any S3 server). The server is
started here on a free port with a temporary data directory.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import boto3
import httpx
import pytest
from botocore.client import Config
from botocore.exceptions import ClientError

from squall.asof import AS_OF_HEADER, as_of_header, reading_as_of, register_as_of
from squall.launcher import ServerProcess

ACCESS_KEY = "ASOFTESTUSER00000000"
SECRET_KEY = "as-of-test-secret-00000000000000000000000"
# Versions are stamped in milliseconds; pausing this long between writes keeps each
# instant of the test unambiguous.
PAUSE_SECONDS = 0.02


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("as-of-data")
    with ServerProcess(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                       extra_args=("--volatile",)) as server:
        yield server.url


@pytest.fixture
def s3(endpoint: str):
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}),
    )
    yield client
    client.close()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _pause() -> int:
    """Sleep a little and return the instant in the middle of the pause."""
    time.sleep(PAUSE_SECONDS / 2)
    middle = _now_ms()
    time.sleep(PAUSE_SECONDS / 2)
    return middle


def _read(s3, bucket: str, key: str) -> bytes:
    response = s3.get_object(Bucket=bucket, Key=key)
    with response["Body"] as body:
        return body.read()


@pytest.fixture
def history(s3):
    """A versioned bucket where key 'k' was 'one', then 'two', then deleted."""
    bucket = f"as-of-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    instants = {"before": _pause()}
    s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    instants["one"] = _pause()
    s3.put_object(Bucket=bucket, Key="k", Body=b"two")
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    instants["two"] = _pause()
    s3.delete_object(Bucket=bucket, Key="k")
    instants["deleted"] = _pause()
    return bucket, instants


def test_get_and_head_as_of(s3, history) -> None:
    bucket, at = history
    for instant, expected in (("one", b"one"), ("two", b"two")):
        with reading_as_of(s3, at[instant]):
            assert _read(s3, bucket, "k") == expected
            assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == len(expected)
    for instant in ("before", "deleted"):
        with reading_as_of(s3, at[instant]), pytest.raises(ClientError) as caught:
            s3.get_object(Bucket=bucket, Key="k")
        assert caught.value.response["Error"]["Code"] == "NoSuchKey"
    # Outside the block, the present: the key is deleted.
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def test_list_as_of(s3, history) -> None:
    bucket, at = history
    with reading_as_of(s3, at["one"]):
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
        assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == ["k"]
    with reading_as_of(s3, at["two"]):
        listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
        assert [(o["Key"], o["Size"]) for o in listed] == [("k", 3), ("other", 1)]
    with reading_as_of(s3, at["before"]):
        assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["other"]


def test_time_formats(s3, history) -> None:
    bucket, at = history
    moment = datetime.fromtimestamp(at["one"] / 1000, tz=UTC)
    plus_one = timezone(timedelta(hours=1))
    forms = [
        at["one"],
        moment,
        moment.astimezone(plus_one),
        moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",  # microseconds: truncated to ms
        moment.astimezone(plus_one).isoformat(),
    ]
    for form in forms:
        with reading_as_of(s3, form):
            assert _read(s3, bucket, "k") == b"one", form


@pytest.mark.parametrize("value", ["yesterday", "2026-11-28", "2026-11-28T10:42:00",
                                   "2026-13-01T00:00:00Z", "-5", "1.5"])
def test_malformed_time_is_invalid_argument(s3, history, value: str) -> None:
    bucket, _ = history
    undo = register_as_of(s3, value)
    try:
        with pytest.raises(ClientError) as caught:
            s3.list_objects_v2(Bucket=bucket)
    finally:
        undo()
    error = caught.value.response["Error"]
    assert (error["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InvalidArgument", 400)


def test_version_id_and_as_of_together_are_refused(s3, history) -> None:
    bucket, at = history
    version_id = s3.list_object_versions(Bucket=bucket)["Versions"][0]["VersionId"]
    with reading_as_of(s3, at["one"]), pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="k", VersionId=version_id)
    assert caught.value.response["Error"]["Code"] == "InvalidArgument"


def test_presigned_url_carries_the_time_in_its_query(s3, history) -> None:
    bucket, at = history
    with reading_as_of(s3, at["one"]):
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"},
                                        ExpiresIn=60)
    assert "as-of=" in url
    response = httpx.get(url)
    assert (response.status_code, response.content) == (200, b"one")


def test_header_is_signed(s3, endpoint, history) -> None:
    """Changing the header after signing breaks the signature: it is covered by SigV4."""
    bucket, at = history

    def tamper(request, **_) -> None:
        request.headers[AS_OF_HEADER] = as_of_header(at["two"])

    with reading_as_of(s3, at["one"]):
        s3.meta.events.register_last("before-send.s3.GetObject", tamper)
        try:
            with pytest.raises(ClientError) as caught:
                s3.get_object(Bucket=bucket, Key="k")
        finally:
            s3.meta.events.unregister("before-send.s3.GetObject", tamper)
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_unversioned_bucket_keeps_only_the_current_version(s3) -> None:
    bucket = f"as-of-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    first = _pause()
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")
    second = _pause()
    with reading_as_of(s3, second):
        assert _read(s3, bucket, "k") == b"new"
    # The overwritten version was garbage-collected: there is nothing to read at `first`.
    with reading_as_of(s3, first), pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="k")
    assert caught.value.response["Error"]["Code"] == "NoSuchKey"


def test_as_of_header_formatting() -> None:
    moment = datetime(2026, 11, 28, 11, 42, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert as_of_header(moment) == "2026-11-28T10:42:00.123Z"
    assert as_of_header(1_795_000_000_000) == "1795000000000"
    with pytest.raises(ValueError):
        as_of_header(datetime(2026, 11, 28))
    with pytest.raises(ValueError):
        as_of_header(-1)
