"""Object basics: PutObject, GetObject, HeadObject, DeleteObject(s), ranges, metadata."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import os

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    content_md5_header,
    error_code,
    http_status,
    make_client,
    parse_error_body,
    quote_key,
    signed_request,
)

alphabet = b"abcdefghijklmnopqrstuvwxyz"  # 26 bytes: ranges below are checked against it
single_put_threshold_bytes = 64 * 1024 * 1024


def quoted_md5(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


def test_put_get_head_delete_round_trip(s3, bucket):
    body = b"hello, squall\n"
    put = s3.put_object(Bucket=bucket, Key="greeting.txt", Body=body)
    assert http_status(put) == 200
    assert put["ETag"] == quoted_md5(body)

    got = s3.get_object(Bucket=bucket, Key="greeting.txt")
    assert http_status(got) == 200
    assert got["Body"].read() == body
    assert got["ETag"] == quoted_md5(body)
    assert got["ContentLength"] == len(body)
    assert got["AcceptRanges"] == "bytes"
    assert isinstance(got["LastModified"], datetime.datetime)

    head = s3.head_object(Bucket=bucket, Key="greeting.txt")
    assert http_status(head) == 200
    assert head["ETag"] == quoted_md5(body)
    assert head["ContentLength"] == len(body)
    assert head["LastModified"] == got["LastModified"]

    deleted = s3.delete_object(Bucket=bucket, Key="greeting.txt")
    assert http_status(deleted) == 204
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket=bucket, Key="greeting.txt")
    assert http_status(caught.value) == 404


def test_put_overwrites(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second!")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second!"
    assert got["ETag"] == quoted_md5(b"second!")


def test_default_content_type(s3, bucket):
    # AWS stores binary/octet-stream when the PUT carries no Content-Type. boto3 sends
    # none for bytes bodies.
    s3.put_object(Bucket=bucket, Key="untyped", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="untyped")["ContentType"] in {
        "binary/octet-stream",
        "application/octet-stream",
    }


def test_empty_object(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["ContentLength"] == 0
    assert got["Body"].read() == b""
    assert s3.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0


def test_user_metadata_round_trip_lowercases_names(s3, bucket):
    # AWS stores user-defined metadata names in lowercase.
    metadata = {"Color": "Blue", "x-Mixed-Case": "Value With Spaces", "empty": ""}
    s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata=metadata)
    expected = {"color": "Blue", "x-mixed-case": "Value With Spaces", "empty": ""}
    assert s3.head_object(Bucket=bucket, Key="meta")["Metadata"] == expected
    assert s3.get_object(Bucket=bucket, Key="meta")["Metadata"] == expected


def test_standard_headers_round_trip(s3, bucket):
    body = gzip.compress(b"compressed text")
    expires = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    s3.put_object(
        Bucket=bucket,
        Key="doc",
        Body=body,
        ContentType="text/plain; charset=utf-8",
        ContentEncoding="gzip",
        ContentDisposition='attachment; filename="report 1.txt"',
        ContentLanguage="en-US",
        CacheControl="max-age=60, public",
        Expires=expires,
    )
    for response in (
        s3.head_object(Bucket=bucket, Key="doc"),
        s3.get_object(Bucket=bucket, Key="doc"),
    ):
        assert response["ContentType"] == "text/plain; charset=utf-8"
        assert response["ContentEncoding"] == "gzip"
        assert response["ContentDisposition"] == 'attachment; filename="report 1.txt"'
        assert response["ContentLanguage"] == "en-US"
        assert response["CacheControl"] == "max-age=60, public"
        assert response["ResponseMetadata"]["HTTPHeaders"]["expires"] == (
            "Thu, 02 Jan 2031 03:04:05 GMT"
        )
        if "Body" in response:
            assert response["Body"].read() == body  # no server-side decoding


def test_get_response_header_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
        ResponseExpires=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentEncoding"] == "identity"
    assert got["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Tue, 01 Jan 2030 00:00:00 GMT"


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, 25),
        ("bytes=-5", 21, 25),
        ("bytes=20-100", 20, 25),  # last-byte-pos past the end is clamped
        ("bytes=0-25", 0, 25),  # the whole object is still a 206
        ("bytes=-100", 0, 25),  # suffix longer than the object: the whole object
    ],
)
def test_range_get(s3, bucket, range_header, first, last):
    s3.put_object(Bucket=bucket, Key="abc", Body=alphabet)
    got = s3.get_object(Bucket=bucket, Key="abc", Range=range_header)
    assert http_status(got) == 206
    assert got["ContentRange"] == f"bytes {first}-{last}/{len(alphabet)}"
    assert got["ContentLength"] == last - first + 1
    assert got["Body"].read() == alphabet[first : last + 1]
    assert got["ETag"] == quoted_md5(alphabet)


def test_range_head(s3, bucket):
    s3.put_object(Bucket=bucket, Key="abc", Body=alphabet)
    head = s3.head_object(Bucket=bucket, Key="abc", Range="bytes=0-9")
    assert http_status(head) == 206
    assert head["ContentLength"] == 10
    assert head["ContentRange"] == "bytes 0-9/26"


@pytest.mark.parametrize("range_header", ["bytes=26-", "bytes=100-200"])
def test_range_not_satisfiable(s3, bucket, range_header):
    s3.put_object(Bucket=bucket, Key="abc", Body=alphabet)
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="abc", Range=range_header)
    assert http_status(caught.value) == 416
    assert error_code(caught.value) == "InvalidRange"


def test_range_on_empty_object_not_satisfiable(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-9")
    assert http_status(caught.value) == 416
    assert error_code(caught.value) == "InvalidRange"


@pytest.mark.parametrize("range_header", ["bytes=0-1,3-4", "bytes=9-3", "bytes=abc", "items=0-1"])
def test_range_ignored_when_multiple_or_unparsable(s3, bucket, range_header):
    """S3 does not support multiple ranges in one GET ("Amazon S3 doesn't support retrieving
    multiple ranges of data per GET request"): AWS ignores such a header and answers 200
    with the whole object, as RFC 9110 section 14.2 allows; it does the same for a Range
    it cannot parse (an invalid byte-range-spec, an unknown unit)."""
    s3.put_object(Bucket=bucket, Key="abc", Body=alphabet)
    got = s3.get_object(Bucket=bucket, Key="abc", Range=range_header)
    assert http_status(got) == 200
    assert got["Body"].read() == alphabet


def test_part_number_one_of_simple_object(s3, bucket):
    """A non-multipart object has exactly one part; partNumber=1 is a ranged GET of all of
    it (AWS answers 206 with Content-Range), partNumber=2 is InvalidPartNumber (416)."""
    s3.put_object(Bucket=bucket, Key="abc", Body=alphabet)
    got = s3.get_object(Bucket=bucket, Key="abc", PartNumber=1)
    assert http_status(got) == 206
    assert got["ContentRange"] == "bytes 0-25/26"
    assert got["Body"].read() == alphabet
    head = s3.head_object(Bucket=bucket, Key="abc", PartNumber=1)
    assert http_status(head) == 206
    assert head["ContentLength"] == 26
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="abc", PartNumber=2)
    assert http_status(caught.value) == 416
    assert error_code(caught.value) == "InvalidPartNumber"


def test_get_missing_key(s3, bucket):
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="no/such key")
    assert http_status(caught.value) == 404
    assert error_code(caught.value) == "NoSuchKey"
    assert caught.value.response["Error"].get("Key") == "no/such key"


def test_get_missing_key_raw_body(s3_endpoint, http, bucket):
    response = signed_request(http, s3_endpoint, "GET", f"/{bucket}/{quote_key('missing')}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/xml")
    error = parse_error_body(response.content)
    assert error["Code"] == "NoSuchKey"
    assert error["Key"] == "missing"
    assert error["Message"]
    assert error["RequestId"]


def test_get_object_in_missing_bucket(s3, bucket):
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket + "-nope", Key="k")
    assert http_status(caught.value) == 404
    assert error_code(caught.value) == "NoSuchBucket"


def test_head_missing_key_is_404_without_body(s3, s3_endpoint, http, bucket):
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket=bucket, Key="missing")
    assert http_status(caught.value) == 404
    assert error_code(caught.value) == "404"
    response = signed_request(http, s3_endpoint, "HEAD", f"/{bucket}/missing")
    assert response.status_code == 404
    assert response.content == b""


def test_delete_missing_key_is_204(s3, bucket):
    response = s3.delete_object(Bucket=bucket, Key="never-existed")
    assert http_status(response) == 204


def test_delete_objects_verbose_reports_missing_keys_as_deleted(s3, bucket):
    for key in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    response = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "ghost"}], "Quiet": False},
    )
    assert http_status(response) == 200
    assert sorted(entry["Key"] for entry in response["Deleted"]) == ["a", "b", "ghost"]
    assert response.get("Errors", []) == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_quiet_reports_nothing_on_success(s3, bucket):
    for key in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    response = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "ghost"}], "Quiet": True}
    )
    assert http_status(response) == 200
    assert response.get("Deleted", []) == []
    assert response.get("Errors", []) == []
    remaining = [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert remaining == ["b"]


def test_user_metadata_limit(s3, bucket):
    """User metadata is limited to 2 KB (names plus values, UTF-8): MetadataTooLarge."""
    s3.put_object(Bucket=bucket, Key="ok", Body=b"x", Metadata={"m": "v" * 1500})
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="big", Body=b"x", Metadata={"m": "v" * 2100})
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "MetadataTooLarge"
    with pytest.raises(ClientError) as caught:
        s3.put_object(
            Bucket=bucket, Key="many", Body=b"x", Metadata={f"k{i}": "v" * 100 for i in range(25)}
        )
    assert error_code(caught.value) == "MetadataTooLarge"


def test_content_md5_correct(s3, bucket):
    body = b"checked body"
    response = s3.put_object(Bucket=bucket, Key="k", Body=body, ContentMD5=content_md5_header(body))
    assert response["ETag"] == quoted_md5(body)


def test_content_md5_mismatch_is_bad_digest(s3, bucket):
    with pytest.raises(ClientError) as caught:
        s3.put_object(
            Bucket=bucket, Key="k", Body=b"actual body", ContentMD5=content_md5_header(b"other")
        )
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "BadDigest"
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="k")
    assert http_status(missing.value) == 404  # nothing was stored


@pytest.mark.parametrize("bad_md5", ["not base64!", "AAAA", content_md5_header(b"x")[:-4]])
def test_content_md5_malformed_is_invalid_digest(s3_endpoint, http, bucket, bad_md5):
    response = signed_request(
        http,
        s3_endpoint,
        "PUT",
        f"/{bucket}/k",
        headers={"Content-MD5": bad_md5},
        body=b"body",
    )
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidDigest"


def test_large_object_single_put_round_trip(s3, bucket):
    """20 MiB in ONE PutObject (threshold raised so boto3 does not switch to multipart)."""
    body = os.urandom(20 * 1024 * 1024)
    single_part = TransferConfig(multipart_threshold=single_put_threshold_bytes, use_threads=False)
    s3.upload_fileobj(io.BytesIO(body), bucket, "big.bin", Config=single_part)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == quoted_md5(body)  # a single PUT: ETag is the plain MD5
    received = io.BytesIO()
    s3.download_fileobj(bucket, "big.bin", received, Config=single_part)
    assert hashlib.sha256(received.getvalue()).digest() == hashlib.sha256(body).digest()


def test_non_ascii_metadata_value_is_accepted(s3_endpoint, bucket):
    """boto3 signs a non-ASCII x-amz-meta-* value as text and sends it as UTF-8: the
    signature must match (s3-tests test_object_set_get_unicode_metadata). How the value
    reads back is left open: AWS answers RFC 2047 encoded words for non-ASCII metadata."""
    client = make_client(s3_endpoint)
    client.meta.events.register(
        "before-call.s3.PutObject",
        lambda params, **_: params["headers"].update({"x-amz-meta-meta1": "Hello World\xe9"}))
    put = client.put_object(Bucket=bucket, Key="k", Body=b"bar")
    client.close()
    assert http_status(put) == 200


def test_sse_s3_is_honoured_and_every_object_is_encrypted(s3, bucket):
    """As on AWS since 2023 (and on Squall with --encryption-key-file, as this suite
    runs it): an object written with or without asking for SSE-S3 says AES256."""
    asked = s3.put_object(Bucket=bucket, Key="asked", Body=b"a", ServerSideEncryption="AES256")
    unasked = s3.put_object(Bucket=bucket, Key="unasked", Body=b"u")
    assert asked["ServerSideEncryption"] == unasked["ServerSideEncryption"] == "AES256"
    for key, body in (("asked", b"a"), ("unasked", b"u")):
        got = s3.get_object(Bucket=bucket, Key=key)
        assert (got["ServerSideEncryption"], got["Body"].read()) == ("AES256", body)
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="AES256")
    assert upload["ServerSideEncryption"] == "AES256"
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])


@pytest.mark.parametrize("extra", [
    {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/whatever"},
])
def test_server_side_encryption_is_refused_not_ignored(s3, bucket, extra):
    """Squall has no KMS: a write asking for SSE-KMS is 501 NotImplemented, never an
    object stored otherwise than asked and answered with 200. (AWS would honour it: this
    test is Squall's own. SSE-C: test_sse_c.py.)"""
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="secret", Body=b"plaintext", **extra)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert raised.value.response["Error"]["Code"] == "NotImplemented"
    assert "server-side-encryption" in raised.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as raised:
        s3.create_multipart_upload(Bucket=bucket, Key="secret", **extra)
    assert raised.value.response["Error"]["Code"] == "NotImplemented"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
