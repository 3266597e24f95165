"""GetObjectAttributes: each attribute, versions and delete markers, multipart parts
paged by x-amz-max-parts / x-amz-part-number-marker, and the documented errors."""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    complete_upload,
    error_code,
    http_status,
    parse_error_body,
    quote_key,
    signed_request,
    upload_parts,
)

ALL_ATTRIBUTES = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
part_bytes = 5 * 1024 * 1024  # AWS's minimum size of every part but the last


def test_attributes_of_a_single_put_object(s3, bucket):
    body = b"attributes"
    put = s3.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm="SHA256")
    attributes = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=ALL_ATTRIBUTES)
    assert http_status(attributes) == 200
    # GetObjectAttributes shows the ETag without the quotes every other response has.
    assert attributes["ETag"] == hashlib.md5(body).hexdigest() == put["ETag"].strip('"')
    assert attributes["Checksum"] == {
        "ChecksumSHA256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
        "ChecksumType": "FULL_OBJECT",
    }
    assert attributes["StorageClass"] == "STANDARD"
    assert attributes["ObjectSize"] == len(body)
    assert "ObjectParts" not in attributes  # written in one piece
    head = s3.head_object(Bucket=bucket, Key="k")
    assert attributes["LastModified"] == head["LastModified"]


def test_only_the_requested_attributes_are_returned(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"abc")
    attributes = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert attributes["ObjectSize"] == 3
    for absent in ("ETag", "Checksum", "StorageClass", "ObjectParts"):
        assert absent not in attributes


def test_multipart_object_parts_are_paged(s3, bucket):
    bodies = [b"a" * part_bytes, b"b" * part_bytes, b"c" * 7]
    upload_id, completed = upload_parts(s3, bucket, "mp", bodies, ChecksumAlgorithm="CRC32")
    complete_upload(s3, bucket, "mp", upload_id, completed)

    whole = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL_ATTRIBUTES)
    assert whole["ETag"].endswith("-3")
    assert whole["Checksum"]["ChecksumType"] == "COMPOSITE"
    assert whole["Checksum"]["ChecksumCRC32"].endswith("-3")
    assert whole["ObjectSize"] == sum(len(body) for body in bodies)
    parts = whole["ObjectParts"]
    assert parts["TotalPartsCount"] == 3
    assert parts["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == [
        (1, part_bytes), (2, part_bytes), (3, 7)]
    # Each part's own checksum, as UploadPart answered it.
    assert [p["ChecksumCRC32"] for p in parts["Parts"]] == [
        entry["ChecksumCRC32"] for entry in completed]

    first = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                     MaxParts=2)["ObjectParts"]
    assert first["IsTruncated"] is True
    assert first["MaxParts"] == 2
    assert first["NextPartNumberMarker"] == 2
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                    MaxParts=2, PartNumberMarker=2)["ObjectParts"]
    assert rest["IsTruncated"] is False
    assert rest["PartNumberMarker"] == 2
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    assert "NextPartNumberMarker" not in rest


def test_parts_of_an_upload_without_checksums(s3, bucket):
    upload_id, completed = upload_parts(s3, bucket, "mp", [b"a" * part_bytes, b"b"])
    complete_upload(s3, bucket, "mp", upload_id, completed)
    attributes = s3.get_object_attributes(Bucket=bucket, Key="mp",
                                          ObjectAttributes=["Checksum", "ObjectParts"])
    assert "Checksum" not in attributes
    parts = attributes["ObjectParts"]
    assert parts["TotalPartsCount"] == 2
    assert [sorted(p) for p in parts["Parts"]] == [["PartNumber", "Size"]] * 2


def test_versions_and_delete_markers(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    s3.put_object(Bucket=bucket, Key="k", Body=b"newer")
    latest = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert latest["ObjectSize"] == 5
    by_id = s3.get_object_attributes(Bucket=bucket, Key="k", VersionId=old["VersionId"],
                                     ObjectAttributes=["ObjectSize", "ETag"])
    assert by_id["ObjectSize"] == 3
    assert by_id["VersionId"] == old["VersionId"]

    marker = s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as caught:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag"])
    assert (http_status(caught.value), error_code(caught.value)) == (404, "NoSuchKey")
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as caught:
        s3.get_object_attributes(Bucket=bucket, Key="k", VersionId=marker["VersionId"],
                                 ObjectAttributes=["ETag"])
    assert (http_status(caught.value), error_code(caught.value)) == (405, "MethodNotAllowed")


def test_missing_key_and_bucket(s3, bucket):
    with pytest.raises(ClientError) as caught:
        s3.get_object_attributes(Bucket=bucket, Key="absent", ObjectAttributes=["ETag"])
    assert (http_status(caught.value), error_code(caught.value)) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as caught:
        s3.get_object_attributes(Bucket=bucket + "-gone", Key="k", ObjectAttributes=["ETag"])
    assert (http_status(caught.value), error_code(caught.value)) == (404, "NoSuchBucket")


@pytest.mark.parametrize("header", [None, "", "ETag,Colour"])
def test_missing_or_unknown_attribute_names_are_invalid_argument(s3, s3_endpoint, http, bucket,
                                                                 header):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    headers = {} if header is None else {"x-amz-object-attributes": header}
    response = signed_request(http, s3_endpoint, "GET", f"/{bucket}/{quote_key('k')}",
                              query="attributes", headers=headers)
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidArgument"


def test_bad_max_parts_is_invalid_argument(s3, s3_endpoint, http, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    response = signed_request(http, s3_endpoint, "GET", f"/{bucket}/k", query="attributes",
                              headers={"x-amz-object-attributes": "ObjectParts",
                                       "x-amz-max-parts": "many"})
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidArgument"
