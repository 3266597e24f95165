"""Object and bucket tagging as AWS documents it.

Sources: the S3 API reference (PutObjectTagging, GetObjectTagging, DeleteObjectTagging,
PutBucketTagging, GetBucketTagging, DeleteBucketTagging, PutObject's x-amz-tagging,
CopyObject's x-amz-tagging-directive, GetObject's x-amz-tagging-count) and the user guide
"Categorizing your storage using tags" (at most 10 tags per object, keys up to 128 and
values up to 256 Unicode characters, unique keys, no 'aws:' prefix).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    content_md5_header,
    error_code,
    http_status,
    signed_request,
)


def _tag_set(tags: dict[str, str]) -> dict:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}


def _tags(response) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in response["TagSet"]}


def _object_tags(s3, bucket: str, key: str, **kwargs) -> dict[str, str]:
    return _tags(s3.get_object_tagging(Bucket=bucket, Key=key, **kwargs))


def _expect_error(call, status: int, code: str | None = None, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    assert http_status(caught.value) == status, caught.value.response
    if code is not None:
        assert error_code(caught.value) == code
    return caught.value


# --- object tagging ----------------------------------------------------------------------


def test_untagged_object_has_an_empty_tag_set(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="k")


def test_put_get_delete_object_tagging(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    tags = {"project": "squall", "empty": "", "unicode-\u00e9": "caf\u00e9 \u2603"}
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tag_set(tags))
    assert _object_tags(s3, bucket, "k") == tags
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 3
    # Put replaces the whole set.
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tag_set({"only": "one"}))
    assert _object_tags(s3, bucket, "k") == {"only": "one"}
    deleted = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert http_status(deleted) == 204
    assert _object_tags(s3, bucket, "k") == {}
    # The object itself is untouched.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_tagging_of_a_missing_key(s3, bucket) -> None:
    _expect_error(s3.get_object_tagging, 404, "NoSuchKey", Bucket=bucket, Key="missing")
    _expect_error(s3.put_object_tagging, 404, "NoSuchKey", Bucket=bucket, Key="missing",
                  Tagging=_tag_set({"a": "b"}))


def test_put_object_with_tagging_header(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1&b%20c=d%26e&empty=")
    assert _object_tags(s3, bucket, "k") == {"a": "1", "b c": "d&e", "empty": ""}
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 3


def test_tagging_header_name_without_value(s3, bucket) -> None:
    """'bar' with no '=' is the tag bar with an empty value, as in any query string
    (s3-tests test_put_obj_with_tags)."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="foo=bar&bar")
    # Read back in key order, whatever order they were given in.
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "bar", "Value": ""}, {"Key": "foo", "Value": "bar"}]


def test_overwrite_without_tagging_header_has_no_tags(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"y")
    assert _object_tags(s3, bucket, "k") == {}


def test_tags_belong_to_one_version(s3, make_bucket) -> None:
    bucket = make_bucket("tagversions")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="era=old")["VersionId"]
    new = s3.put_object(Bucket=bucket, Key="k", Body=b"2")["VersionId"]
    assert _object_tags(s3, bucket, "k") == {}
    assert _object_tags(s3, bucket, "k", VersionId=old) == {"era": "old"}
    put = s3.put_object_tagging(Bucket=bucket, Key="k", VersionId=old,
                                Tagging=_tag_set({"era": "older"}))
    assert put["VersionId"] == old
    got = s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=old)
    assert (got["VersionId"], _tags(got)) == (old, {"era": "older"})
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["VersionId"] == new
    # Tagging does not make a new version.
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted([old, new])
    s3.delete_object_tagging(Bucket=bucket, Key="k", VersionId=old)
    assert _object_tags(s3, bucket, "k", VersionId=old) == {}


def test_copy_copies_tags_by_default_and_replaces_on_request(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", Tagging="a=1&b=2")
    source = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=source)
    assert _object_tags(s3, bucket, "copied") == {"a": "1", "b": "2"}
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=source,
                   TaggingDirective="REPLACE", Tagging="c=3")
    assert _object_tags(s3, bucket, "replaced") == {"c": "3"}
    s3.copy_object(Bucket=bucket, Key="cleared", CopySource=source, TaggingDirective="REPLACE")
    assert _object_tags(s3, bucket, "cleared") == {}


# --- limits ------------------------------------------------------------------------------


def test_at_most_ten_tags_per_object(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    ten = {f"k{i}": str(i) for i in range(10)}
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tag_set(ten))
    assert _object_tags(s3, bucket, "k") == ten
    eleven = {**ten, "k10": "10"}
    _expect_error(s3.put_object_tagging, 400, Bucket=bucket, Key="k",
                  Tagging=_tag_set(eleven))
    _expect_error(s3.put_object, 400, Bucket=bucket, Key="k2", Body=b"x",
                  Tagging="&".join(f"{k}={v}" for k, v in eleven.items()))
    assert _object_tags(s3, bucket, "k") == ten


@pytest.mark.parametrize(
    "tags",
    [
        [("k" * 129, "v")],  # key longer than 128 characters
        [("k", "v" * 257)],  # value longer than 256 characters
        [("aws:reserved", "v")],  # the aws: prefix is reserved
        [("same", "1"), ("same", "2")],  # duplicate keys
    ],
    ids=["long-key", "long-value", "aws-prefix", "duplicate-key"],
)
def test_invalid_tags_are_invalid_tag(s3, bucket, tags) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    tagging = {"TagSet": [{"Key": k, "Value": v} for k, v in tags]}
    _expect_error(s3.put_object_tagging, 400, "InvalidTag", Bucket=bucket, Key="k",
                  Tagging=tagging)
    assert _object_tags(s3, bucket, "k") == {}


def test_limits_count_unicode_characters_not_bytes(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    tags = {"\u00e9" * 128: "\u2603" * 256}
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tag_set(tags))
    assert _object_tags(s3, bucket, "k") == tags


def test_malformed_tagging_xml(http, s3_endpoint, s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for body in (b"<Tagging><TagSet><Tag><Key>a</Key>", b"<NotTagging/>"):
        response = signed_request(http, s3_endpoint, "PUT", f"/{bucket}/k", query="tagging=",
                                  headers={"Content-MD5": content_md5_header(body)}, body=body)
        assert response.status_code == 400
        assert b"<Code>MalformedXML</Code>" in response.content


# --- bucket tagging ----------------------------------------------------------------------


def test_bucket_without_tags_is_no_such_tag_set(s3, bucket) -> None:
    _expect_error(s3.get_bucket_tagging, 404, "NoSuchTagSet", Bucket=bucket)


def test_put_get_delete_bucket_tagging(s3, bucket) -> None:
    tags = {"team": "storage", "cost-center": "42"}
    s3.put_bucket_tagging(Bucket=bucket, Tagging=_tag_set(tags))
    assert _tags(s3.get_bucket_tagging(Bucket=bucket)) == tags
    s3.put_bucket_tagging(Bucket=bucket, Tagging=_tag_set({"team": "s3"}))
    assert _tags(s3.get_bucket_tagging(Bucket=bucket)) == {"team": "s3"}
    assert http_status(s3.delete_bucket_tagging(Bucket=bucket)) == 204
    _expect_error(s3.get_bucket_tagging, 404, "NoSuchTagSet", Bucket=bucket)


def test_at_most_fifty_tags_per_bucket(s3, bucket) -> None:
    fifty = {f"k{i}": str(i) for i in range(50)}
    s3.put_bucket_tagging(Bucket=bucket, Tagging=_tag_set(fifty))
    assert _tags(s3.get_bucket_tagging(Bucket=bucket)) == fifty
    _expect_error(s3.put_bucket_tagging, 400, Bucket=bucket,
                  Tagging=_tag_set({**fifty, "k50": "50"}))


def test_bucket_tagging_of_a_missing_bucket(s3) -> None:
    _expect_error(s3.get_bucket_tagging, 404, "NoSuchBucket",
                  Bucket="s3compat-no-such-bucket-tagging-0")
