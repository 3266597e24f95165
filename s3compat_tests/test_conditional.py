"""Conditional requests: GET/HEAD preconditions (RFC 9110 as S3 documents them) and
conditional writes (PutObject If-None-Match / If-Match).

References: GetObject, HeadObject and PutObject API pages;
https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html
"""

from __future__ import annotations

import datetime

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import error_code, http_status

day = datetime.timedelta(days=1)
wrong_etag = '"00000000000000000000000000000000"'


@pytest.fixture
def stored(s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=b"conditional")
    return s3.head_object(Bucket=bucket, Key="obj")


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
def test_if_match_mismatch_is_412(s3, bucket, stored, operation):
    with pytest.raises(ClientError) as caught:
        getattr(s3, operation)(Bucket=bucket, Key="obj", IfMatch=wrong_etag)
    assert http_status(caught.value) == 412
    expected = "PreconditionFailed" if operation == "get_object" else "412"
    assert error_code(caught.value) == expected


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
def test_if_match_hit_is_200(s3, bucket, stored, operation):
    response = getattr(s3, operation)(Bucket=bucket, Key="obj", IfMatch=stored["ETag"])
    assert http_status(response) == 200


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
def test_if_none_match_hit_is_304(s3, bucket, stored, operation):
    with pytest.raises(ClientError) as caught:
        getattr(s3, operation)(Bucket=bucket, Key="obj", IfNoneMatch=stored["ETag"])
    assert http_status(caught.value) == 304
    assert error_code(caught.value) == "304"
    headers = caught.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("etag") == stored["ETag"]  # RFC 9110: 304 repeats the ETag


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
def test_if_none_match_miss_is_200(s3, bucket, stored, operation):
    response = getattr(s3, operation)(Bucket=bucket, Key="obj", IfNoneMatch=wrong_etag)
    assert http_status(response) == 200


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
@pytest.mark.parametrize("offset", [datetime.timedelta(0), day], ids=["last_modified", "future"])
def test_if_modified_since_not_modified_is_304(s3, bucket, stored, operation, offset):
    with pytest.raises(ClientError) as caught:
        getattr(s3, operation)(
            Bucket=bucket, Key="obj", IfModifiedSince=stored["LastModified"] + offset
        )
    assert http_status(caught.value) == 304


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
def test_if_modified_since_past_is_200(s3, bucket, stored, operation):
    response = getattr(s3, operation)(
        Bucket=bucket, Key="obj", IfModifiedSince=stored["LastModified"] - day
    )
    assert http_status(response) == 200


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
def test_if_unmodified_since_past_is_412(s3, bucket, stored, operation):
    with pytest.raises(ClientError) as caught:
        getattr(s3, operation)(
            Bucket=bucket, Key="obj", IfUnmodifiedSince=stored["LastModified"] - day
        )
    assert http_status(caught.value) == 412


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
def test_if_unmodified_since_future_is_200(s3, bucket, stored, operation):
    response = getattr(s3, operation)(
        Bucket=bucket, Key="obj", IfUnmodifiedSince=stored["LastModified"] + day
    )
    assert http_status(response) == 200


def test_if_match_true_overrides_if_unmodified_since_false(s3, bucket, stored):
    """Documented on GetObject: If-Match true and If-Unmodified-Since false -> 200 OK."""
    response = s3.get_object(
        Bucket=bucket,
        Key="obj",
        IfMatch=stored["ETag"],
        IfUnmodifiedSince=stored["LastModified"] - day,
    )
    assert http_status(response) == 200
    assert response["Body"].read() == b"conditional"


def test_if_none_match_false_and_if_modified_since_true_is_304(s3, bucket, stored):
    """Documented on GetObject: If-None-Match false and If-Modified-Since true -> 304."""
    with pytest.raises(ClientError) as caught:
        s3.get_object(
            Bucket=bucket,
            Key="obj",
            IfNoneMatch=stored["ETag"],
            IfModifiedSince=stored["LastModified"] - day,
        )
    assert http_status(caught.value) == 304


# ---- conditional writes ---------------------------------------------------------------


def test_put_if_none_match_star_on_missing_key_writes(s3, bucket):
    response = s3.put_object(Bucket=bucket, Key="new", Body=b"first", IfNoneMatch="*")
    assert http_status(response) == 200
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"first"


def test_put_if_none_match_star_on_existing_key_is_412(s3, bucket, stored):
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="obj", Body=b"overwrite", IfNoneMatch="*")
    assert http_status(caught.value) == 412
    assert error_code(caught.value) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"conditional"


def test_put_if_match_right_etag_writes(s3, bucket, stored):
    response = s3.put_object(Bucket=bucket, Key="obj", Body=b"updated", IfMatch=stored["ETag"])
    assert http_status(response) == 200
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"updated"


def test_put_if_match_wrong_etag_is_412(s3, bucket, stored):
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="obj", Body=b"updated", IfMatch=wrong_etag)
    assert http_status(caught.value) == 412
    assert error_code(caught.value) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"conditional"


def test_put_if_match_on_missing_key_is_404(s3, bucket):
    """Conditional writes: If-Match on a key that does not exist fails with NoSuchKey."""
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch=wrong_etag)
    assert http_status(caught.value) == 404
    assert error_code(caught.value) == "NoSuchKey"
