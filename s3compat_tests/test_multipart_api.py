"""Multipart upload, beyond test_multipart.py: three-part round trip with metadata and
ranges, ListParts / ListMultipartUploads paging, UploadPartCopy, abort, the errors AWS
documents, checksums (COMPOSITE and FULL_OBJECT), GET/HEAD by part number, and the
aws cli and s3cmd doing multipart transfers.

Reference: https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from pathlib import Path
from urllib.parse import unquote

import pytest
from awscrt import checksums as crt_checksums
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    complete_upload,
    error_code,
    http_status,
    multipart_etag,
    parse_error_body,
    quote_key,
    signed_request,
    upload_parts,
)

MIB = 1024 * 1024
part_size_min_bytes = 5 * MIB


@pytest.fixture(scope="module")
def three_parts() -> list[bytes]:
    return [os.urandom(part_size_min_bytes), os.urandom(part_size_min_bytes), os.urandom(1000)]


def test_three_part_round_trip_keeps_metadata(s3, bucket, three_parts):
    upload_id, completed = upload_parts(
        s3, bucket, "dir/obj", three_parts, ContentType="text/plain",
        Metadata={"color": "blue"}, CacheControl="no-cache",
    )  # fmt: skip
    response = complete_upload(s3, bucket, "dir/obj", upload_id, completed)
    assert response["ETag"] == multipart_etag(three_parts)
    assert response["Location"].endswith(f"/{bucket}/dir/obj")
    body = b"".join(three_parts)
    head = s3.head_object(Bucket=bucket, Key="dir/obj")
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"color": "blue"}
    assert head["CacheControl"] == "no-cache"
    # A range across both part boundaries.
    start, end = part_size_min_bytes - 10, 2 * part_size_min_bytes + 10
    ranged = s3.get_object(Bucket=bucket, Key="dir/obj", Range=f"bytes={start}-{end}")
    assert ranged["Body"].read() == body[start : end + 1]
    assert s3.get_object(Bucket=bucket, Key="dir/obj")["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["ETag"], o["Size"]) for o in listed] == [
        ("dir/obj", multipart_etag(three_parts), len(body))
    ]


def test_get_and_head_by_part_number(s3, bucket, three_parts):
    upload_id, completed = upload_parts(s3, bucket, "k", three_parts)
    complete_upload(s3, bucket, "k", upload_id, completed)
    total = sum(len(part) for part in three_parts)
    offset = 0
    for number, part in enumerate(three_parts, start=1):
        got = s3.get_object(Bucket=bucket, Key="k", PartNumber=number)
        assert http_status(got) == 206
        assert got["PartsCount"] == 3
        assert got["ContentRange"] == f"bytes {offset}-{offset + len(part) - 1}/{total}"
        assert got["Body"].read() == part
        head = s3.head_object(Bucket=bucket, Key="k", PartNumber=number)
        assert head["ContentLength"] == len(part) and head["PartsCount"] == 3
        offset += len(part)
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="k", PartNumber=4)
    assert http_status(caught.value) == 416
    assert error_code(caught.value) == "InvalidPartNumber"


def test_list_parts_pages(s3, bucket):
    parts = [bytes([n]) * 10 for n in range(1, 6)]
    upload_id, completed = upload_parts(s3, bucket, "k", parts)
    page = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert page["IsTruncated"] is True and page["NextPartNumberMarker"] == 2
    assert page["MaxParts"] == 2
    assert page["StorageClass"] == "STANDARD"
    assert page["Initiator"]["ID"] == page["Owner"]["ID"]
    page = s3.list_parts(
        Bucket=bucket, Key="k", UploadId=upload_id, MaxParts=2, PartNumberMarker=4
    )
    assert [p["PartNumber"] for p in page["Parts"]] == [5] and page["IsTruncated"] is False
    paginator = s3.get_paginator("list_parts")
    seen = [
        (p["PartNumber"], p["ETag"], p["Size"])
        for response in paginator.paginate(
            Bucket=bucket, Key="k", UploadId=upload_id, PaginationConfig={"PageSize": 2}
        )
        for p in response.get("Parts", [])
    ]
    assert seen == [(c["PartNumber"], c["ETag"], 10) for c in completed]


def test_list_multipart_uploads_pages_prefixes_and_encoding(s3, bucket):
    keys = ["a/1", "a/2", "b", "b", "c", "d/e/f"]
    created = [(key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
               for key in keys]  # fmt: skip
    everything = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in everything["Uploads"]] == created
    assert all(u["StorageClass"] == "STANDARD" and "Initiated" in u for u in everything["Uploads"])

    seen, markers = [], {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=1, **markers)
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        markers = {"KeyMarker": page["NextKeyMarker"],
                   "UploadIdMarker": page["NextUploadIdMarker"]}  # fmt: skip
    assert seen == created

    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["a/", "d/"]
    assert [u["Key"] for u in rolled["Uploads"]] == ["b", "b", "c"]
    under = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in under["Uploads"]] == ["a/1", "a/2"]
    # With encoding-type=url keys come back percent-encoded (botocore does not decode
    # them for this operation, unlike ListObjects).
    odd = s3.create_multipart_upload(Bucket=bucket, Key="odd key+&<")["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket, Prefix="odd", EncodingType="url")
    assert listed["EncodingType"] == "url"
    assert [(unquote(u["Key"]), u["UploadId"]) for u in listed["Uploads"]] == [
        ("odd key+&<", odd)
    ]


def test_upload_part_copy_with_ranges(s3, bucket):
    source = os.urandom(part_size_min_bytes + 3 * MIB)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copy")["UploadId"]
    ranges = [(0, part_size_min_bytes - 1), (part_size_min_bytes, len(source) - 1)]
    completed = []
    for number, (first, last) in enumerate(ranges, start=1):
        result = s3.upload_part_copy(
            Bucket=bucket, Key="copy", UploadId=upload_id, PartNumber=number,
            CopySource={"Bucket": bucket, "Key": "source"},
            CopySourceRange=f"bytes={first}-{last}",
        )["CopyPartResult"]  # fmt: skip
        assert result["ETag"] == f'"{hashlib.md5(source[first : last + 1]).hexdigest()}"'
        completed.append({"PartNumber": number, "ETag": result["ETag"]})
    # A third part copied whole, then dropped from Complete.
    s3.upload_part_copy(Bucket=bucket, Key="copy", UploadId=upload_id, PartNumber=3,
                        CopySource=f"{bucket}/source")  # fmt: skip
    complete_upload(s3, bucket, "copy", upload_id, completed)
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == source

    other = s3.create_multipart_upload(Bucket=bucket, Key="copy2")["UploadId"]
    with pytest.raises(ClientError) as caught:
        s3.upload_part_copy(Bucket=bucket, Key="copy2", UploadId=other, PartNumber=1,
                            CopySource=f"{bucket}/source",
                            CopySourceRange=f"bytes=0-{len(source)}")  # fmt: skip
    assert (http_status(caught.value), error_code(caught.value)) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as caught:
        s3.upload_part_copy(Bucket=bucket, Key="copy2", UploadId=other, PartNumber=1,
                            CopySource=f"{bucket}/source", CopySourceIfMatch='"nope"')  # fmt: skip
    assert http_status(caught.value) == 412
    with pytest.raises(ClientError) as caught:
        s3.upload_part_copy(Bucket=bucket, Key="copy2", UploadId=other, PartNumber=1,
                            CopySource=f"{bucket}/missing")  # fmt: skip
    assert error_code(caught.value) == "NoSuchKey"


def test_abort_then_every_operation_is_no_such_upload(s3, bucket):
    upload_id, completed = upload_parts(s3, bucket, "k", [b"part one"])
    assert http_status(s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)) == 204
    attempts = [
        lambda: complete_upload(s3, bucket, "k", upload_id, completed),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id),
        lambda: s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=2,
                               Body=b"x"),
        lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id),
        # The id is valid only with the key it was created for.
        lambda: s3.list_parts(Bucket=bucket, Key="other", UploadId=upload_id),
    ]  # fmt: skip
    for attempt in attempts:
        with pytest.raises(ClientError) as caught:
            attempt()
        assert (http_status(caught.value), error_code(caught.value)) == (404, "NoSuchUpload")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_completed_upload_is_gone_and_unlisted_parts_are_dropped(s3, bucket, three_parts):
    upload_id, completed = upload_parts(s3, bucket, "k", three_parts)
    complete_upload(s3, bucket, "k", upload_id, [completed[0], completed[2]])
    expected = three_parts[0] + three_parts[2]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == expected
    with pytest.raises(ClientError) as caught:
        complete_upload(s3, bucket, "k", upload_id, completed)
    assert error_code(caught.value) == "NoSuchUpload"


def test_completing_again_with_the_same_parts_succeeds(s3, bucket, three_parts):
    # Real S3 answers a repeated CompleteMultipartUpload (a client retrying after a lost
    # answer) with success and the same object; ceph/s3-tests relies on it too.
    upload_id, completed = upload_parts(s3, bucket, "k", three_parts)
    first = complete_upload(s3, bucket, "k", upload_id, completed)
    again = complete_upload(s3, bucket, "k", upload_id, completed)
    assert http_status(again) == 200
    assert (again["ETag"], again["Key"]) == (first["ETag"], "k")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"".join(three_parts)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_reuploaded_part_replaces_the_first(s3, bucket):
    upload_id, _ = upload_parts(s3, bucket, "k", [b"first version"])
    again = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1,
                           Body=b"second")  # fmt: skip
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)["Parts"]
    assert [(p["ETag"], p["Size"]) for p in listed] == [(again["ETag"], 6)]
    complete_upload(s3, bucket, "k", upload_id, [{"PartNumber": 1, "ETag": again["ETag"]}])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"


def test_complete_errors(s3, s3_endpoint, http, bucket):
    upload_id, completed = upload_parts(s3, bucket, "k", [b"a", b"b"])
    with pytest.raises(ClientError) as caught:  # unknown part
        complete_upload(s3, bucket, "k", upload_id, [{"PartNumber": 7, "ETag": completed[0]["ETag"]}])
    assert (http_status(caught.value), error_code(caught.value)) == (400, "InvalidPart")
    with pytest.raises(ClientError) as caught:  # same part twice is not ascending
        complete_upload(s3, bucket, "k", upload_id, [completed[0], completed[0]])
    assert error_code(caught.value) == "InvalidPartOrder"

    path = f"/{bucket}/{quote_key('k')}"
    for body in (b"<CompleteMultipartUpload></CompleteMultipartUpload>", b"<oops"):
        response = signed_request(http, s3_endpoint, "POST", path, query=f"uploadId={upload_id}",
                                  body=body)  # fmt: skip
        assert response.status_code == 400
        assert parse_error_body(response.content)["Code"] == "MalformedXML"
    response = signed_request(http, s3_endpoint, "PUT", path,
                              query=f"partNumber=10001&uploadId={upload_id}", body=b"x")
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidArgument"
    # Still intact after all that.
    complete_upload(s3, bucket, "k", upload_id, [completed[1]])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"b"


def test_complete_honours_if_none_match(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"exists")
    upload_id, completed = upload_parts(s3, bucket, "k", [b"new"])
    with pytest.raises(ClientError) as caught:
        complete_upload(s3, bucket, "k", upload_id, completed, IfNoneMatch="*")
    assert http_status(caught.value) == 412
    complete_upload(s3, bucket, "k", upload_id, completed,
             IfMatch=f'"{hashlib.md5(b"exists").hexdigest()}"')  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"


def test_part_integrity_is_verified(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as caught:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"body",
                       ContentMD5=wrong_md5)  # fmt: skip
    assert error_code(caught.value) == "BadDigest"
    wrong_crc = base64.b64encode((zlib.crc32(b"other")).to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as caught:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"body",
                       ChecksumCRC32=wrong_crc)  # fmt: skip
    assert error_code(caught.value) == "BadDigest"
    assert s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id).get("Parts", []) == []


def test_composite_checksum(s3, bucket, three_parts):
    upload_id, completed = upload_parts(s3, bucket, "k", three_parts, ChecksumAlgorithm="SHA256")
    digests = b"".join(hashlib.sha256(part).digest() for part in three_parts)
    expected = f"{base64.b64encode(hashlib.sha256(digests).digest()).decode()}-3"
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    assert listed["ChecksumAlgorithm"] == "SHA256"
    assert [p["ChecksumSHA256"] for p in listed["Parts"]] == [
        base64.b64encode(hashlib.sha256(part).digest()).decode() for part in three_parts
    ]
    response = complete_upload(s3, bucket, "k", upload_id, completed)
    assert response["ChecksumSHA256"] == expected
    assert response["ChecksumType"] == "COMPOSITE"
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == expected and head["ChecksumType"] == "COMPOSITE"
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(three_parts)


def test_part_checksum_must_use_the_upload_algorithm(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")[
        "UploadId"
    ]
    with pytest.raises(ClientError) as caught:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x",
                       ChecksumAlgorithm="CRC32")  # fmt: skip
    assert error_code(caught.value) == "InvalidRequest"


@pytest.mark.parametrize(
    ("algorithm", "checksum_type", "crc", "width"),
    [("CRC32", "FULL_OBJECT", lambda data: zlib.crc32(data), 4),
     ("CRC64NVME", None, lambda data: crt_checksums.crc64nvme(data), 8)],
)  # fmt: skip
def test_full_object_checksum(s3, bucket, three_parts, algorithm, checksum_type, crc, width):
    extra = {"ChecksumType": checksum_type} if checksum_type else {}
    upload_id, completed = upload_parts(s3, bucket, "k", three_parts, ChecksumAlgorithm=algorithm,
                                  **extra)  # fmt: skip
    expected = base64.b64encode(crc(b"".join(three_parts)).to_bytes(width, "big")).decode()
    response = complete_upload(s3, bucket, "k", upload_id, completed,
                        **{f"Checksum{algorithm}": expected})  # fmt: skip
    assert response[f"Checksum{algorithm}"] == expected
    assert response["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == expected  # and botocore validated the body
    assert got["Body"].read() == b"".join(three_parts)


# ---- command-line clients -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.cli
def test_aws_s3_cp_100_mib_multipart(aws, s3, bucket, tmp_path: Path):
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(100 * MIB))
    aws("s3", "cp", str(local), f"s3://{bucket}/big.bin")
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == 100 * MIB
    assert head["ETag"].endswith('-13"')  # the cli's 8 MiB parts
    back = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{bucket}/big.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(local.read_bytes()).digest()


@pytest.mark.cli
def test_s3cmd_multipart_put_and_get(s3cmd, s3, bucket, tmp_path: Path):
    local = tmp_path / "twelve.bin"
    local.write_bytes(os.urandom(12 * MIB))
    s3cmd("put", "--multipart-chunk-size-mb=5", str(local), f"s3://{bucket}/twelve.bin")
    head = s3.head_object(Bucket=bucket, Key="twelve.bin")
    assert head["ContentLength"] == 12 * MIB
    assert head["ETag"].endswith('-3"')
    back = tmp_path / "back.bin"
    s3cmd("get", f"s3://{bucket}/twelve.bin", str(back))
    assert back.read_bytes() == local.read_bytes()
