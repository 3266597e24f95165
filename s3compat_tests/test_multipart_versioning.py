"""Multipart uploads with tagging and in versioning-enabled buckets, as AWS documents them.

Sources: the S3 API reference for CreateMultipartUpload (``x-amz-tagging``: the tag set
of the object the upload creates), CompleteMultipartUpload (``x-amz-version-id`` in a
versioning-enabled bucket), GetObject / HeadObject (``x-amz-tagging-count``,
``partNumber`` with ``versionId``, ``x-amz-mp-parts-count``), GetObjectTagging,
ListObjectVersions, DeleteObject (``versionId``), CopyObject and UploadPartCopy
(``x-amz-copy-source`` with ``?versionId=``, ``x-amz-copy-source-version-id``), and the
user guide "Categorizing your storage using tags" (tag limits, the ``aws:`` prefix).
"""

from __future__ import annotations

import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    complete_upload,
    error_code,
    http_status,
    multipart_etag,
    upload_parts,
)

part_size_min_bytes = 5 * 1024 * 1024  # every part but the last must be at least 5 MiB


@pytest.fixture
def versioned_bucket(s3, make_bucket) -> str:
    name = make_bucket("mpu-versioned")
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def _two_parts(fill: bytes) -> list[bytes]:
    return [fill * part_size_min_bytes, os.urandom(1000)]


def _multipart_put(s3, bucket: str, key: str, parts: list[bytes], **create_args) -> dict:
    upload_id, completed = upload_parts(s3, bucket, key, parts, **create_args)
    return complete_upload(s3, bucket, key, upload_id, completed)


def _tags(s3, bucket: str, key: str, **kwargs) -> dict[str, str]:
    tag_set = s3.get_object_tagging(Bucket=bucket, Key=key, **kwargs)["TagSet"]
    return {tag["Key"]: tag["Value"] for tag in tag_set}


# --- x-amz-tagging on CreateMultipartUpload -------------------------------------------


def test_tags_given_at_create_are_the_completed_objects(s3, bucket) -> None:
    _multipart_put(s3, bucket, "k", [b"only part"], Tagging="project=squall&empty=&a%20b=c%26d")
    assert _tags(s3, bucket, "k") == {"project": "squall", "empty": "", "a b": "c&d"}
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 3


def test_an_upload_without_tagging_makes_an_untagged_object(s3, bucket) -> None:
    _multipart_put(s3, bucket, "k", [b"only part"])
    assert _tags(s3, bucket, "k") == {}
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="k")


@pytest.mark.parametrize(
    "tagging",
    [
        "k=" + "v" * 257,  # value longer than 256 characters
        "aws:reserved=v",  # the aws: prefix is reserved
        "same=1&same=2",  # duplicate keys
    ],
    ids=["long-value", "aws-prefix", "duplicate-key"],
)
def test_invalid_tags_refuse_the_upload(s3, bucket, tagging: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.create_multipart_upload(Bucket=bucket, Key="k", Tagging=tagging)
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "InvalidTag"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_more_than_ten_tags_refuse_the_upload(s3, bucket) -> None:
    eleven = "&".join(f"k{index}={index}" for index in range(11))
    with pytest.raises(ClientError) as caught:
        s3.create_multipart_upload(Bucket=bucket, Key="k", Tagging=eleven)
    assert http_status(caught.value) == 400
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- versioning-enabled bucket ------------------------------------------------------------


def test_complete_returns_the_new_version_id_and_lists_it(s3, versioned_bucket) -> None:
    first_parts, second_parts = _two_parts(b"1"), _two_parts(b"2")
    first = _multipart_put(s3, versioned_bucket, "k", first_parts, Tagging="era=first")
    second = _multipart_put(s3, versioned_bucket, "k", second_parts, Tagging="era=second")
    assert first["VersionId"] and second["VersionId"] and first["VersionId"] != second["VersionId"]
    listed = s3.list_object_versions(Bucket=versioned_bucket)["Versions"]
    assert [(v["VersionId"], v["IsLatest"], v["ETag"], v["Size"]) for v in listed] == [
        (second["VersionId"], True, multipart_etag(second_parts), sum(map(len, second_parts))),
        (first["VersionId"], False, multipart_etag(first_parts), sum(map(len, first_parts))),
    ]
    older = s3.get_object(Bucket=versioned_bucket, Key="k", VersionId=first["VersionId"])
    assert older["Body"].read() == b"".join(first_parts)
    assert older["VersionId"] == first["VersionId"] and older["TagCount"] == 1
    # Each version keeps the tag set its upload was created with.
    assert _tags(s3, versioned_bucket, "k", VersionId=first["VersionId"]) == {"era": "first"}
    assert _tags(s3, versioned_bucket, "k") == {"era": "second"}


def test_part_number_reads_the_named_version(s3, versioned_bucket) -> None:
    first_parts = _two_parts(b"1")
    first = _multipart_put(s3, versioned_bucket, "k", first_parts)
    _multipart_put(s3, versioned_bucket, "k", [b"one small part"])
    for number, part in enumerate(first_parts, start=1):
        got = s3.get_object(Bucket=versioned_bucket, Key="k", VersionId=first["VersionId"],
                            PartNumber=number)
        assert got["Body"].read() == part
        assert got["PartsCount"] == 2 and got["VersionId"] == first["VersionId"]
        head = s3.head_object(Bucket=versioned_bucket, Key="k", VersionId=first["VersionId"],
                              PartNumber=number)
        assert head["ContentLength"] == len(part) and head["PartsCount"] == 2
    latest = s3.head_object(Bucket=versioned_bucket, Key="k", PartNumber=1)
    assert latest["ContentLength"] == len(b"one small part") and latest["PartsCount"] == 1
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=versioned_bucket, Key="k", VersionId=first["VersionId"],
                      PartNumber=3)
    assert error_code(caught.value) == "InvalidPartNumber"


def test_deleting_a_multipart_version_by_id_removes_only_it(s3, versioned_bucket) -> None:
    first = _multipart_put(s3, versioned_bucket, "k", _two_parts(b"1"))
    second_parts = _two_parts(b"2")
    second = _multipart_put(s3, versioned_bucket, "k", second_parts)
    response = s3.delete_object(Bucket=versioned_bucket, Key="k", VersionId=first["VersionId"])
    assert http_status(response) == 204 and response["VersionId"] == first["VersionId"]
    listed = s3.list_object_versions(Bucket=versioned_bucket)["Versions"]
    assert [v["VersionId"] for v in listed] == [second["VersionId"]]
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=versioned_bucket, Key="k", VersionId=first["VersionId"])
    assert (http_status(caught.value), error_code(caught.value)) == (404, "NoSuchVersion")
    assert s3.get_object(Bucket=versioned_bucket, Key="k")["Body"].read() == b"".join(
        second_parts
    )


def test_a_delete_marker_hides_a_multipart_object_but_keeps_its_versions(
    s3, versioned_bucket
) -> None:
    parts = _two_parts(b"1")
    created = _multipart_put(s3, versioned_bucket, "k", parts)
    marker = s3.delete_object(Bucket=versioned_bucket, Key="k")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=versioned_bucket, Key="k")
    assert error_code(caught.value) == "NoSuchKey"
    got = s3.get_object(Bucket=versioned_bucket, Key="k", VersionId=created["VersionId"],
                        PartNumber=2)
    assert got["Body"].read() == parts[1]


# --- copying from a multipart source ------------------------------------------------------


def test_copy_object_from_an_older_multipart_version(s3, versioned_bucket) -> None:
    first_parts = _two_parts(b"1")
    first = _multipart_put(s3, versioned_bucket, "src", first_parts, Tagging="era=first")
    _multipart_put(s3, versioned_bucket, "src", _two_parts(b"2"), Tagging="era=second")
    copied = s3.copy_object(
        Bucket=versioned_bucket, Key="dst",
        CopySource={"Bucket": versioned_bucket, "Key": "src", "VersionId": first["VersionId"]},
    )  # fmt: skip
    assert copied["CopySourceVersionId"] == first["VersionId"]
    assert copied["VersionId"]
    body = b"".join(first_parts)
    # CopyObject writes the object in one piece: its ETag is the MD5 of its bytes.
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=versioned_bucket, Key="dst", VersionId=copied["VersionId"])
    assert got["Body"].read() == body
    # x-amz-tagging-directive defaults to COPY: the source version's tags come along.
    assert _tags(s3, versioned_bucket, "dst") == {"era": "first"}


def test_upload_part_copy_from_a_multipart_version_across_its_parts(
    s3, versioned_bucket
) -> None:
    first_parts = _two_parts(b"1")
    first = _multipart_put(s3, versioned_bucket, "src", first_parts)
    _multipart_put(s3, versioned_bucket, "src", [b"newer"])
    source_body = b"".join(first_parts)
    start, end = part_size_min_bytes - 10, part_size_min_bytes + 99  # spans both parts
    upload_id = s3.create_multipart_upload(Bucket=versioned_bucket, Key="dst")["UploadId"]
    copied = s3.upload_part_copy(
        Bucket=versioned_bucket, Key="dst", UploadId=upload_id, PartNumber=1,
        CopySource={"Bucket": versioned_bucket, "Key": "src", "VersionId": first["VersionId"]},
        CopySourceRange=f"bytes={start}-{end}",
    )  # fmt: skip
    assert copied["CopySourceVersionId"] == first["VersionId"]
    expected = source_body[start : end + 1]
    assert copied["CopyPartResult"]["ETag"] == f'"{hashlib.md5(expected).hexdigest()}"'
    completed = [{"PartNumber": 1, "ETag": copied["CopyPartResult"]["ETag"]}]
    done = complete_upload(s3, versioned_bucket, "dst", upload_id, completed)
    assert done["VersionId"]
    assert s3.get_object(Bucket=versioned_bucket, Key="dst")["Body"].read() == expected
