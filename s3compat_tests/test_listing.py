"""ListObjects (v1) and ListObjectsV2: prefix, delimiter, max-keys, paging, encoding.

References: https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjects.html and
https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html

The paging tests share one read-only bucket per module (146 objects): uploading it for
every test would dominate the suite's run time. No test writes to it.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    create_bucket,
    empty_and_delete_bucket,
    error_code,
    http_status,
    parse_error_body,
    put_objects,
    signed_request,
    unique_bucket_name,
)

flat_keys = [f"flat/key-{index:03d}" for index in range(120)]
tree_dirs = [f"tree/d{index:02d}/" for index in range(12)]
tree_files = ["tree/file-a", "tree/file-b"]
tree_keys = [d + leaf for d in tree_dirs for leaf in ("x", "y")] + tree_files


@pytest.fixture(scope="module")
def listing_bucket(s3, s3_endpoint):
    name = unique_bucket_name("list")
    create_bucket(s3, s3_endpoint, name)
    try:
        put_objects(s3, name, flat_keys + tree_keys)
        yield name
    finally:
        empty_and_delete_bucket(s3, name)


def keys_of(response) -> list[str]:
    return [entry["Key"] for entry in response.get("Contents", [])]


def prefixes_of(response) -> list[str]:
    return [entry["Prefix"] for entry in response.get("CommonPrefixes", [])]


def test_list_v2_with_prefix(s3, listing_bucket):
    response = s3.list_objects_v2(Bucket=listing_bucket, Prefix="flat/")
    assert http_status(response) == 200
    assert keys_of(response) == flat_keys
    assert response["KeyCount"] == 120
    assert response["IsTruncated"] is False
    assert response["Prefix"] == "flat/"
    assert response["Name"] == listing_bucket
    assert response["MaxKeys"] == 1000
    assert "NextContinuationToken" not in response
    first = response["Contents"][0]
    assert first["Size"] == 1
    assert first["ETag"] == '"9dd4e461268c8034f5c8564e155c67a6"'  # md5(b"x")
    assert first["StorageClass"] == "STANDARD"
    assert "LastModified" in first
    assert "Owner" not in first  # v2 returns Owner only with fetch-owner=true


def test_list_v1_with_prefix(s3, listing_bucket):
    response = s3.list_objects(Bucket=listing_bucket, Prefix="flat/")
    assert keys_of(response) == flat_keys
    assert response["IsTruncated"] is False
    assert response["MaxKeys"] == 1000
    assert response.get("Marker", "") == ""
    assert "NextMarker" not in response
    assert response["Contents"][0]["Owner"]["ID"]  # v1 always includes Owner


def test_list_v2_fetch_owner(s3, listing_bucket):
    response = s3.list_objects_v2(Bucket=listing_bucket, Prefix="flat/", FetchOwner=True)
    assert all(entry["Owner"]["ID"] for entry in response["Contents"])


def test_prefix_matching_nothing(s3, listing_bucket):
    v2 = s3.list_objects_v2(Bucket=listing_bucket, Prefix="nothing/here")
    assert v2["KeyCount"] == 0
    assert "Contents" not in v2
    assert v2["IsTruncated"] is False
    v1 = s3.list_objects(Bucket=listing_bucket, Prefix="nothing/here")
    assert "Contents" not in v1


def test_max_keys_zero(s3, listing_bucket):
    v2 = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=0)
    assert v2["KeyCount"] == 0
    assert "Contents" not in v2
    assert v2["MaxKeys"] == 0
    assert v2["IsTruncated"] is False
    v1 = s3.list_objects(Bucket=listing_bucket, MaxKeys=0)
    assert "Contents" not in v1
    assert v1["IsTruncated"] is False


def test_max_keys_one(s3, listing_bucket):
    v2 = s3.list_objects_v2(Bucket=listing_bucket, Prefix="flat/", MaxKeys=1)
    assert keys_of(v2) == flat_keys[:1]
    assert v2["KeyCount"] == 1
    assert v2["IsTruncated"] is True
    assert v2["NextContinuationToken"]
    v1 = s3.list_objects(Bucket=listing_bucket, Prefix="flat/", MaxKeys=1)
    assert keys_of(v1) == flat_keys[:1]
    assert v1["IsTruncated"] is True
    # NextMarker "is returned only if you have the delimiter request parameter specified".
    assert "NextMarker" not in v1


def test_max_keys_above_1000_is_clamped_not_rejected(s3, listing_bucket):
    v2 = s3.list_objects_v2(Bucket=listing_bucket, Prefix="flat/", MaxKeys=5000)
    assert keys_of(v2) == flat_keys
    assert v2["IsTruncated"] is False
    v1 = s3.list_objects(Bucket=listing_bucket, Prefix="flat/", MaxKeys=5000)
    assert keys_of(v1) == flat_keys


@pytest.mark.parametrize("bad", ["-1", "abc"])
def test_max_keys_invalid_is_invalid_argument(s3_endpoint, http, listing_bucket, bad):
    response = signed_request(
        http, s3_endpoint, "GET", f"/{listing_bucket}", query=f"list-type=2&max-keys={bad}"
    )
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidArgument"


def test_v1_paging_with_marker(s3, listing_bucket):
    collected: list[str] = []
    marker = ""
    pages = 0
    while True:
        response = s3.list_objects(Bucket=listing_bucket, Prefix="flat/", MaxKeys=50, Marker=marker)
        pages += 1
        assert response.get("Marker", "") == marker
        assert "NextMarker" not in response  # no delimiter
        page = keys_of(response)
        assert len(page) <= 50
        collected += page
        if not response["IsTruncated"]:
            break
        marker = page[-1]  # AWS: use the last Key as the next marker
        assert pages < 10
    assert pages == 3
    assert collected == flat_keys


def test_v2_paging_with_continuation_token(s3, listing_bucket):
    collected: list[str] = []
    token = None
    page_sizes = []
    while True:
        arguments = {"Bucket": listing_bucket, "Prefix": "flat/", "MaxKeys": 50}
        if token:
            arguments["ContinuationToken"] = token
        response = s3.list_objects_v2(**arguments)
        if token:
            assert response["ContinuationToken"] == token
        page = keys_of(response)
        assert response["KeyCount"] == len(page)
        page_sizes.append(len(page))
        collected += page
        if not response["IsTruncated"]:
            assert "NextContinuationToken" not in response
            break
        token = response["NextContinuationToken"]
        assert len(page_sizes) < 10
    assert page_sizes == [50, 50, 20]
    assert collected == flat_keys


def test_v2_start_after(s3, listing_bucket):
    response = s3.list_objects_v2(Bucket=listing_bucket, Prefix="flat/", StartAfter="flat/key-099")
    assert response["StartAfter"] == "flat/key-099"
    assert keys_of(response) == flat_keys[100:]
    between = s3.list_objects_v2(Bucket=listing_bucket, Prefix="flat/", StartAfter="flat/key-0995")
    assert keys_of(between) == flat_keys[100:]  # StartAfter need not be an existing key


def test_v1_marker_need_not_exist(s3, listing_bucket):
    response = s3.list_objects(Bucket=listing_bucket, Prefix="flat/", Marker="flat/key-0995")
    assert keys_of(response) == flat_keys[100:]


def test_delimiter_groups_common_prefixes(s3, listing_bucket):
    v2 = s3.list_objects_v2(Bucket=listing_bucket, Prefix="tree/", Delimiter="/")
    assert prefixes_of(v2) == tree_dirs
    assert keys_of(v2) == tree_files
    assert v2["KeyCount"] == len(tree_dirs) + len(tree_files)  # KeyCount counts both
    assert v2["Delimiter"] == "/"
    v1 = s3.list_objects(Bucket=listing_bucket, Prefix="tree/", Delimiter="/")
    assert prefixes_of(v1) == tree_dirs
    assert keys_of(v1) == tree_files
    assert "NextMarker" not in v1 or v1["IsTruncated"]


def test_delimiter_at_top_level(s3, listing_bucket):
    response = s3.list_objects_v2(Bucket=listing_bucket, Delimiter="/")
    assert prefixes_of(response) == ["flat/", "tree/"]
    assert keys_of(response) == []


def test_delimiter_other_than_slash(s3, listing_bucket):
    # After the prefix "flat/key-1" come "00".."19"; grouping ends at the first "1".
    response = s3.list_objects_v2(Bucket=listing_bucket, Prefix="flat/key-1", Delimiter="1")
    assert prefixes_of(response) == ["flat/key-101", "flat/key-11"]
    assert keys_of(response) == ["flat/key-100"] + [f"flat/key-10{d}" for d in range(2, 10)]


def test_v1_paging_with_delimiter_returns_next_marker(s3, listing_bucket):
    entries: list[str] = []
    marker = ""
    for _ in range(10):
        response = s3.list_objects(
            Bucket=listing_bucket, Prefix="tree/", Delimiter="/", MaxKeys=5, Marker=marker
        )
        page = sorted(keys_of(response) + prefixes_of(response))
        assert len(page) <= 5  # MaxKeys counts keys and common prefixes together
        entries += page
        if not response["IsTruncated"]:
            break
        marker = response["NextMarker"]
        assert marker == page[-1]
    assert entries == sorted(tree_dirs + tree_files)


def test_v2_paging_with_delimiter(s3, listing_bucket):
    entries: list[str] = []
    arguments = {"Bucket": listing_bucket, "Prefix": "tree/", "Delimiter": "/", "MaxKeys": 5}
    for _ in range(10):
        response = s3.list_objects_v2(**arguments)
        page = keys_of(response) + prefixes_of(response)
        assert response["KeyCount"] == len(page) <= 5
        entries += page
        if not response["IsTruncated"]:
            break
        arguments["ContinuationToken"] = response["NextContinuationToken"]
    assert sorted(entries) == sorted(tree_dirs + tree_files)
    assert len(entries) == len(set(entries))  # no prefix repeated across pages


def test_keys_sorted_by_utf8_bytes(s3, bucket):
    keys = ["b", "B", "a", "é", "Z", "~", "a/b", "a-b", "🙂", "ÿ"]
    put_objects(s3, bucket, keys)
    listed = keys_of(s3.list_objects_v2(Bucket=bucket))
    assert listed == sorted(keys, key=lambda key: key.encode("utf-8"))


encoding_keys = ["sp ace", "plus+sign", "uni-é", "ctrl\x01char", "amp&lt;", "dir é/x"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_encoding_type_url(s3, bucket, version):
    """With encoding-type=url, S3 URL-encodes Key, Prefix, Delimiter, StartAfter and
    CommonPrefixes so that keys XML 1.0 cannot carry (control characters) survive.

    boto3 decodes automatically only when it chose the encoding itself; passing
    EncodingType explicitly leaves the raw values for this test to check."""
    put_objects(s3, bucket, encoding_keys)
    listing = s3.list_objects_v2 if version == "v2" else s3.list_objects
    response = listing(Bucket=bucket, EncodingType="url", Delimiter="/")
    assert response["EncodingType"] == "url"
    raw_keys = keys_of(response)
    raw_prefixes = prefixes_of(response)
    for raw in raw_keys + raw_prefixes:
        assert all(33 <= ord(char) < 127 for char in raw), f"not URL-encoded: {raw!r}"
    assert sorted(unquote_plus(raw) for raw in raw_keys) == sorted(
        key for key in encoding_keys if "/" not in key
    )
    assert [unquote_plus(raw) for raw in raw_prefixes] == ["dir é/"]


def test_boto3_default_listing_round_trips_control_characters(s3, bucket):
    # boto3 asks for encoding-type=url behind the caller's back and decodes the answer.
    put_objects(s3, bucket, encoding_keys)
    assert sorted(keys_of(s3.list_objects_v2(Bucket=bucket))) == sorted(encoding_keys)
    assert sorted(keys_of(s3.list_objects(Bucket=bucket))) == sorted(encoding_keys)


def test_list_missing_bucket(s3):
    for listing in (s3.list_objects, s3.list_objects_v2):
        with pytest.raises(ClientError) as caught:
            listing(Bucket=unique_bucket_name("missing"))
        assert http_status(caught.value) == 404
        assert error_code(caught.value) == "NoSuchBucket"


@pytest.mark.slow
def test_max_keys_clamped_to_1000(s3, bucket):
    keys = [f"k{index:04d}" for index in range(1001)]
    put_objects(s3, bucket, keys)
    for max_keys in (None, 1001, 5000):
        arguments = {"Bucket": bucket} | ({"MaxKeys": max_keys} if max_keys else {})
        v2 = s3.list_objects_v2(**arguments)
        assert v2["KeyCount"] == 1000
        assert keys_of(v2) == keys[:1000]
        assert v2["IsTruncated"] is True
        v1 = s3.list_objects(**arguments)
        assert keys_of(v1) == keys[:1000]
        assert v1["IsTruncated"] is True
