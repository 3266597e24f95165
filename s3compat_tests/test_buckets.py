"""Bucket operations: ListBuckets, CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation.

References: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
and the API reference pages of each operation.
"""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    create_bucket,
    empty_and_delete_bucket,
    error_code,
    http_status,
    parse_error_body,
    signed_request,
    unique_bucket_name,
)


def test_list_buckets_shows_a_new_bucket(s3, bucket):
    response = s3.list_buckets()
    assert http_status(response) == 200
    listed = {entry["Name"]: entry for entry in response["Buckets"]}
    assert bucket in listed
    assert listed[bucket]["CreationDate"] is not None
    assert response["Owner"]["ID"]


def test_create_bucket_returns_location(s3, s3_endpoint):
    name = unique_bucket_name("loc")
    try:
        if s3_endpoint.region == "us-east-1":
            response = s3.create_bucket(Bucket=name)
        else:
            response = s3.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": s3_endpoint.region},
            )
        assert http_status(response) == 200
        # AWS answers "/<bucket>" in us-east-1 and the bucket's URL elsewhere.
        assert name in response["Location"]
    finally:
        empty_and_delete_bucket(s3, name)


def _random_lowercase(length: int) -> str:
    text = uuid.uuid4().hex
    while len(text) < length:
        text += uuid.uuid4().hex
    return "b" + text[: length - 1]


invalid_bucket_names = {
    "uppercase": "S3compat-Upper-" + uuid.uuid4().hex[:8],
    "too_short": "ab",
    "too_long": _random_lowercase(64),
    "ip_address": "192.168.5.4",
    "adjacent_periods": "s3compat..dots",
    "leading_hyphen": "-s3compat-lead",
    "trailing_hyphen": "s3compat-trail-",
    "underscore": "s3compat_under",
    "xn_prefix": "xn--s3compat",
    "sthree_prefix": "sthree-s3compat",
    "s3alias_suffix": "s3compat-s3alias",
    "ol_s3_suffix": "s3compat--ol-s3",
    "leading_period": ".s3compat",
}


@pytest.mark.parametrize(
    "name", list(invalid_bucket_names.values()), ids=list(invalid_bucket_names.keys())
)
def test_create_bucket_rejects_invalid_names(s3, s3_endpoint, name):
    with pytest.raises(ClientError) as caught:
        create_bucket(s3, s3_endpoint, name)
        # The server accepted a name AWS rejects: remove it so the endpoint stays clean.
        empty_and_delete_bucket(s3, name)
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "InvalidBucketName"


def test_create_bucket_rejects_punctuation_signed_raw(http, s3_endpoint):
    # boto3 refuses such a name itself; a client that signs the path as it sends it
    # (raw '!', as ceph/s3-tests' naming test does) must still hear InvalidBucketName.
    response = signed_request(http, s3_endpoint, "PUT", "/s3compat!punct")
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidBucketName"


def test_create_bucket_accepts_edge_valid_names(s3, s3_endpoint):
    names = [
        _random_lowercase(63),  # longest allowed
        f"s3compat.dotted.{uuid.uuid4().hex[:12]}",  # periods are allowed
        f"9s3compat-{uuid.uuid4().hex[:12]}-0",  # may start and end with a digit
    ]
    for name in names:
        try:
            create_bucket(s3, s3_endpoint, name)
            s3.head_bucket(Bucket=name)
        finally:
            empty_and_delete_bucket(s3, name)


def test_create_bucket_twice_by_owner(s3, s3_endpoint, bucket):
    """AWS: BucketAlreadyOwnedByYou (409) in every region except us-east-1, where for
    legacy compatibility re-creating a bucket you own returns 200 OK (CreateBucket and
    "Error codes" pages of the S3 API reference)."""
    if s3_endpoint.region == "us-east-1":
        response = s3.create_bucket(Bucket=bucket)
        assert http_status(response) == 200
    else:
        with pytest.raises(ClientError) as caught:
            create_bucket(s3, s3_endpoint, bucket)
        assert http_status(caught.value) == 409
        assert error_code(caught.value) == "BucketAlreadyOwnedByYou"


def test_delete_bucket(s3, s3_endpoint):
    name = unique_bucket_name("del")
    create_bucket(s3, s3_endpoint, name)
    response = s3.delete_bucket(Bucket=name)
    assert http_status(response) == 204
    with pytest.raises(ClientError) as caught:
        s3.head_bucket(Bucket=name)
    assert http_status(caught.value) == 404


def test_delete_bucket_not_empty(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    with pytest.raises(ClientError) as caught:
        s3.delete_bucket(Bucket=bucket)
    assert http_status(caught.value) == 409
    assert error_code(caught.value) == "BucketNotEmpty"
    assert caught.value.response["Error"].get("BucketName") == bucket
    # The bucket and its object are still there.
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"


def test_delete_missing_bucket(s3):
    name = unique_bucket_name("missing")
    with pytest.raises(ClientError) as caught:
        s3.delete_bucket(Bucket=name)
    assert http_status(caught.value) == 404
    assert error_code(caught.value) == "NoSuchBucket"
    assert caught.value.response["Error"].get("BucketName") == name


def test_head_bucket_existing(s3, s3_endpoint, bucket):
    response = s3.head_bucket(Bucket=bucket)
    assert http_status(response) == 200
    # HeadBucket documents x-amz-bucket-region in its response.
    assert response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-bucket-region") == (
        s3_endpoint.region
    )


def test_head_missing_bucket_is_404_without_body(s3, s3_endpoint, http):
    name = unique_bucket_name("missing")
    with pytest.raises(ClientError) as caught:
        s3.head_bucket(Bucket=name)
    assert http_status(caught.value) == 404
    assert error_code(caught.value) == "404"
    raw = signed_request(http, s3_endpoint, "HEAD", f"/{name}")
    assert raw.status_code == 404
    assert raw.content == b""


def test_get_bucket_location(s3, s3_endpoint, bucket):
    response = s3.get_bucket_location(Bucket=bucket)
    assert http_status(response) == 200
    # AWS returns an empty LocationConstraint for us-east-1, the region name otherwise.
    expected = None if s3_endpoint.region == "us-east-1" else s3_endpoint.region
    assert response.get("LocationConstraint") == expected


def test_get_bucket_location_missing_bucket(s3):
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_location(Bucket=unique_bucket_name("missing"))
    assert http_status(caught.value) == 404
    assert error_code(caught.value) == "NoSuchBucket"


def test_list_objects_in_missing_bucket_raw_error(s3_endpoint, http):
    name = unique_bucket_name("missing")
    response = signed_request(http, s3_endpoint, "GET", f"/{name}", query="list-type=2")
    assert response.status_code == 404
    error = parse_error_body(response.content)
    assert error["Code"] == "NoSuchBucket"
    assert error.get("BucketName") == name


# --- ListBuckets paging (max-buckets, continuation-token, prefix: AWS since 2024) --------


def _names(response) -> list[str]:
    return [entry["Name"] for entry in response["Buckets"]]


def test_list_buckets_pages_with_max_buckets(s3, make_bucket):
    # The buckets share a unique tag, so the Prefix keeps other tests' buckets out.
    tag = "pages" + uuid.uuid4().hex[:8]
    names = sorted(make_bucket(tag) for _ in range(3))
    prefix = names[0][: names[0].index(tag) + len(tag)]
    first = s3.list_buckets(Prefix=prefix, MaxBuckets=2)
    assert _names(first) == names[:2]
    assert first["Prefix"] == prefix
    second = s3.list_buckets(Prefix=prefix, MaxBuckets=2,
                             ContinuationToken=first["ContinuationToken"])
    assert _names(second) == names[2:]
    # The last page says so by carrying no token.
    assert "ContinuationToken" not in second


def test_list_buckets_last_page_exactly_full_has_no_token(s3, make_bucket):
    make_bucket()  # one bucket outside the prefix, which the page must leave out
    tag = "full" + uuid.uuid4().hex[:8]
    name = make_bucket(tag)
    prefix = name[: name.index(tag) + len(tag)]
    response = s3.list_buckets(Prefix=prefix, MaxBuckets=1)
    assert _names(response) == [name]
    assert "ContinuationToken" not in response


def test_list_buckets_prefix_matching_nothing(s3, bucket):
    assert bucket in _names(s3.list_buckets())
    response = s3.list_buckets(Prefix="s3compat-no-such-prefix-" + uuid.uuid4().hex)
    assert response["Buckets"] == []


@pytest.mark.parametrize("max_buckets", ["0", "10001", "-1", "many"])
def test_list_buckets_max_buckets_out_of_range(http, s3_endpoint, max_buckets):
    # AWS: max-buckets is 1..10000; it refuses anything else instead of clamping it.
    response = signed_request(http, s3_endpoint, "GET", "/", query=f"max-buckets={max_buckets}")
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidArgument"
