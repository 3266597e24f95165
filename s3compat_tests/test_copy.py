"""CopyObject: metadata directives, copy onto itself, copy-source preconditions."""

from __future__ import annotations

import datetime

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import error_code, http_status

day = datetime.timedelta(days=1)


@pytest.fixture
def source(s3, bucket):
    """An object with metadata and standard headers to copy from."""
    s3.put_object(
        Bucket=bucket,
        Key="source",
        Body=b"source body",
        ContentType="text/x-source",
        CacheControl="max-age=5",
        Metadata={"origin": "source"},
    )
    return s3.head_object(Bucket=bucket, Key="source")


def test_copy_with_copy_directive_keeps_metadata(s3, bucket, source):
    response = s3.copy_object(
        Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "source"}
    )
    assert http_status(response) == 200
    assert response["CopyObjectResult"]["ETag"] == source["ETag"]
    assert isinstance(response["CopyObjectResult"]["LastModified"], datetime.datetime)
    copy = s3.get_object(Bucket=bucket, Key="copy")
    assert copy["Body"].read() == b"source body"
    assert copy["Metadata"] == {"origin": "source"}
    assert copy["ContentType"] == "text/x-source"
    assert copy["CacheControl"] == "max-age=5"
    assert copy["ETag"] == source["ETag"]


def test_copy_with_copy_directive_ignores_new_metadata(s3, bucket, source):
    s3.copy_object(
        Bucket=bucket,
        Key="copy",
        CopySource={"Bucket": bucket, "Key": "source"},
        MetadataDirective="COPY",
        Metadata={"ignored": "yes"},
    )
    assert s3.head_object(Bucket=bucket, Key="copy")["Metadata"] == {"origin": "source"}


def test_copy_with_replace_directive(s3, bucket, source):
    s3.copy_object(
        Bucket=bucket,
        Key="copy",
        CopySource={"Bucket": bucket, "Key": "source"},
        MetadataDirective="REPLACE",
        Metadata={"fresh": "1"},
        ContentType="application/x-new",
    )
    head = s3.head_object(Bucket=bucket, Key="copy")
    assert head["Metadata"] == {"fresh": "1"}
    assert head["ContentType"] == "application/x-new"
    assert "CacheControl" not in head  # REPLACE replaces all of it
    assert s3.head_object(Bucket=bucket, Key="source")["Metadata"] == {"origin": "source"}


def test_copy_across_buckets(s3, make_bucket, bucket, source):
    other = make_bucket()
    s3.copy_object(Bucket=other, Key="there", CopySource={"Bucket": bucket, "Key": "source"})
    assert s3.get_object(Bucket=other, Key="there")["Body"].read() == b"source body"


def test_copy_onto_itself_without_replace_is_invalid(s3, bucket, source):
    with pytest.raises(ClientError) as caught:
        s3.copy_object(Bucket=bucket, Key="source", CopySource={"Bucket": bucket, "Key": "source"})
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "InvalidRequest"


def test_copy_onto_itself_with_replace_updates_metadata(s3, bucket, source):
    s3.copy_object(
        Bucket=bucket,
        Key="source",
        CopySource={"Bucket": bucket, "Key": "source"},
        MetadataDirective="REPLACE",
        Metadata={"origin": "rewritten"},
    )
    head = s3.head_object(Bucket=bucket, Key="source")
    assert head["Metadata"] == {"origin": "rewritten"}
    assert head["ETag"] == source["ETag"]


def test_copy_missing_source(s3, bucket):
    with pytest.raises(ClientError) as caught:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "nope"})
    assert http_status(caught.value) == 404
    assert error_code(caught.value) == "NoSuchKey"


@pytest.mark.parametrize(
    "key", ["spaces and+plus", "ünïcødé/ключ", "percent%2F?q=1#frag", "a//b~c"]
)
def test_copy_source_with_special_characters(s3, bucket, key):
    s3.put_object(Bucket=bucket, Key=key, Body=b"special")
    s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key=key + ".copy")["Body"].read() == b"special"


def _copy_condition_cases(source):
    modified = source["LastModified"]
    return {
        "if_match_wrong": {"CopySourceIfMatch": '"00000000000000000000000000000000"'},
        "if_none_match_same": {"CopySourceIfNoneMatch": source["ETag"]},
        "if_modified_since_future": {"CopySourceIfModifiedSince": modified + day},
        "if_unmodified_since_past": {"CopySourceIfUnmodifiedSince": modified - day},
    }


@pytest.mark.parametrize(
    "case",
    [
        "if_match_wrong",
        "if_none_match_same",
        "if_modified_since_future",
        "if_unmodified_since_past",
    ],
)
def test_copy_source_precondition_fails(s3, bucket, source, case):
    condition = _copy_condition_cases(source)[case]
    with pytest.raises(ClientError) as caught:
        s3.copy_object(
            Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "source"}, **condition
        )
    assert http_status(caught.value) == 412
    assert error_code(caught.value) == "PreconditionFailed"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="copy")


def test_copy_source_preconditions_that_hold(s3, bucket, source):
    modified = source["LastModified"]
    for index, condition in enumerate(
        [
            {"CopySourceIfMatch": source["ETag"]},
            {"CopySourceIfNoneMatch": '"00000000000000000000000000000000"'},
            {"CopySourceIfModifiedSince": modified - day},
            {"CopySourceIfUnmodifiedSince": modified + day},
        ]
    ):
        s3.copy_object(
            Bucket=bucket,
            Key=f"copy{index}",
            CopySource={"Bucket": bucket, "Key": "source"},
            **condition,
        )


def test_copy_source_if_match_wins_over_unmodified_since(s3, bucket, source):
    """AWS: if x-amz-copy-source-if-match is true and -if-unmodified-since is false, the
    copy succeeds (200)."""
    response = s3.copy_object(
        Bucket=bucket,
        Key="copy",
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceIfMatch=source["ETag"],
        CopySourceIfUnmodifiedSince=source["LastModified"] - day,
    )
    assert http_status(response) == 200
