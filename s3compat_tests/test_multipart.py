"""Multipart upload. Kept in its own file so that it can be deselected
(`--deselect s3compat_tests/test_multipart.py` or `--ignore=...`) while a server does not
implement it yet.

Reference: https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html
"""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from s3compat_tests.support import error_code, http_status

part_size_min_bytes = 5 * 1024 * 1024  # every part but the last must be at least 5 MiB


def multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(part).digest() for part in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def upload_parts(s3, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[dict]]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    completed = []
    for number, part in enumerate(parts, start=1):
        response = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
        )
        assert response["ETag"] == f'"{hashlib.md5(part).hexdigest()}"'
        completed.append({"PartNumber": number, "ETag": response["ETag"]})
    return upload_id, completed


@pytest.fixture(scope="module")
def two_parts() -> list[bytes]:
    return [os.urandom(part_size_min_bytes), os.urandom(1024)]


def test_multipart_upload_round_trip(s3, bucket, two_parts):
    upload_id, completed = upload_parts(s3, bucket, "mp", two_parts)

    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp", upload_id)]
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (c["PartNumber"], c["ETag"], len(part))
        for c, part in zip(completed, two_parts, strict=True)
    ]

    response = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": completed}
    )
    assert http_status(response) == 200
    assert response["ETag"] == multipart_etag(two_parts)
    assert response["Key"] == "mp"
    assert response["Bucket"] == bucket

    head = s3.head_object(Bucket=bucket, Key="mp")
    assert head["ETag"] == multipart_etag(two_parts)
    assert head["ContentLength"] == sum(len(part) for part in two_parts)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(two_parts)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_get_part_of_multipart_object(s3, bucket, two_parts):
    upload_id, completed = upload_parts(s3, bucket, "mp", two_parts)
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": completed}
    )
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert http_status(second) == 206
    assert second["PartsCount"] == 2
    assert second["ContentLength"] == len(two_parts[1])
    first_length = len(two_parts[0])
    assert second["ContentRange"] == (
        f"bytes {first_length}-{first_length + len(two_parts[1]) - 1}/"
        f"{first_length + len(two_parts[1])}"
    )
    assert second["Body"].read() == two_parts[1]


def test_part_too_small(s3, bucket):
    upload_id, completed = upload_parts(s3, bucket, "small", [b"tiny", b"last"])
    with pytest.raises(ClientError) as caught:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="small", UploadId=upload_id, MultipartUpload={"Parts": completed}
        )
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "EntityTooSmall"


def test_single_small_part_is_allowed(s3, bucket):
    # The last part (here the only one) may be smaller than 5 MiB.
    upload_id, completed = upload_parts(s3, bucket, "one", [b"only part"])
    s3.complete_multipart_upload(
        Bucket=bucket, Key="one", UploadId=upload_id, MultipartUpload={"Parts": completed}
    )
    head = s3.head_object(Bucket=bucket, Key="one")
    assert head["ETag"] == multipart_etag([b"only part"])


def test_complete_with_wrong_etag_is_invalid_part(s3, bucket):
    upload_id, completed = upload_parts(s3, bucket, "k", [b"only part"])
    completed[0]["ETag"] = '"00000000000000000000000000000000"'
    with pytest.raises(ClientError) as caught:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": completed}
        )
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "InvalidPart"


def test_complete_with_parts_out_of_order(s3, bucket, two_parts):
    # Both parts are large enough, so order is the only thing wrong with the request.
    parts = [two_parts[0], two_parts[0][::-1]]
    upload_id, completed = upload_parts(s3, bucket, "k", parts)
    with pytest.raises(ClientError) as caught:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": list(reversed(completed))},
        )
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "InvalidPartOrder"


def test_abort_and_no_such_upload(s3, bucket):
    upload_id, _ = upload_parts(s3, bucket, "k", [b"part"])
    assert http_status(s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)) == (
        204
    )
    with pytest.raises(ClientError) as caught:
        s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    assert http_status(caught.value) == 404
    assert error_code(caught.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as caught:
        s3.upload_part(Bucket=bucket, Key="k", UploadId="no-such-upload", PartNumber=1, Body=b"x")
    assert error_code(caught.value) == "NoSuchUpload"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def test_upload_fileobj_multipart_20_mib(s3, bucket):
    body = os.urandom(20 * 1024 * 1024)
    chunk_bytes = 8 * 1024 * 1024
    config = TransferConfig(multipart_threshold=chunk_bytes, multipart_chunksize=chunk_bytes)
    s3.upload_fileobj(io.BytesIO(body), bucket, "big", Config=config)
    expected_parts = [body[i : i + chunk_bytes] for i in range(0, len(body), chunk_bytes)]
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ETag"] == multipart_etag(expected_parts)
    received = io.BytesIO()
    s3.download_fileobj(bucket, "big", received, Config=config)
    assert hashlib.sha256(received.getvalue()).digest() == hashlib.sha256(body).digest()
