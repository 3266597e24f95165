"""SSE-C: server-side encryption with customer-provided keys, as AWS documents it
("Using server-side encryption with customer-provided keys (SSE-C)", and the SSE-C
parameters of PutObject, GetObject, HeadObject, CopyObject, the multipart operations and
GetObjectAttributes in the API reference).

AWS takes SSE-C keys over HTTPS only. These tests run against an https:// endpoint, or
one the suite is told takes them over plain HTTP (``S3COMPAT_SSE_C_OVER_HTTP=1``; the
Squall the suite starts itself is run with ``--allow-sse-c-over-http``, as behind a
TLS-terminating proxy); otherwise they are skipped, except the one that checks plain
HTTP is refused.

Where AWS documents only the status (a missing key, another key), the error codes
asserted are the ones AWS answers and that MinIO and Ceph RGW also give (their error
tables reproduce AWS's messages); ceph/s3-tests asserts the same statuses
(test_encryption_sse_c_*).
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import error_code, http_status, multipart_etag, signed_request

KEY = bytes(range(7, 39))
OTHER_KEY = bytes(range(99, 131))
MIB = 1024 * 1024


def sse(key: bytes = KEY) -> dict:
    """boto3's SSE-C parameters: it base64-encodes the key and adds its MD5."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def copy_source_sse(key: bytes = KEY) -> dict:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def key_md5(key: bytes = KEY) -> str:
    return base64.b64encode(hashlib.md5(key).digest()).decode()


def sse_headers(key: bytes = KEY) -> dict[str, str]:
    return {"x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
            "x-amz-server-side-encryption-customer-key-MD5": key_md5(key)}


@pytest.fixture
def takes_sse_c(s3_endpoint) -> None:
    if not s3_endpoint.takes_sse_c:
        pytest.skip("SSE-C needs HTTPS: give an https:// S3COMPAT_ENDPOINT, or set "
                    "S3COMPAT_SSE_C_OVER_HTTP=1 for one behind a TLS-terminating proxy")



@pytest.mark.usefixtures("takes_sse_c")
def test_put_get_head_with_a_customer_key(s3, bucket):
    body = b"customer-encrypted body" * 1000
    put = s3.put_object(Bucket=bucket, Key="k", Body=body, **sse())
    assert (put["SSECustomerAlgorithm"], put["SSECustomerKeyMD5"]) == ("AES256", key_md5())
    # "The entity tag (ETag) in the response is not the MD5 of the object data."
    assert put["ETag"].strip('"') != hashlib.md5(body).hexdigest()
    got = s3.get_object(Bucket=bucket, Key="k", **sse())
    assert got["Body"].read() == body
    assert (got["SSECustomerAlgorithm"], got["SSECustomerKeyMD5"]) == ("AES256", key_md5())
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="k", **sse())
    assert head["ContentLength"] == len(body) and head["SSECustomerKeyMD5"] == key_md5()
    ranged = s3.get_object(Bucket=bucket, Key="k", Range="bytes=5-104", **sse())
    assert ranged["Body"].read() == body[5:105] and http_status(ranged) == 206


@pytest.mark.usefixtures("takes_sse_c")
def test_without_the_key_400_with_another_key_403(s3, bucket):
    """ceph/s3-tests test_encryption_sse_c_present / _method_head / _other_key."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret", **sse())
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket=bucket, Key="k")
    assert (http_status(raised.value), error_code(raised.value)) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as raised:
        s3.head_object(Bucket=bucket, Key="k")
    assert http_status(raised.value) == 400
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket=bucket, Key="k", **sse(OTHER_KEY))
    assert (http_status(raised.value), error_code(raised.value)) == (403, "AccessDenied")
    with pytest.raises(ClientError) as raised:
        s3.head_object(Bucket=bucket, Key="k", **sse(OTHER_KEY))
    assert http_status(raised.value) == 403


@pytest.mark.usefixtures("takes_sse_c")
@pytest.mark.parametrize("case", ["no MD5", "wrong MD5", "no algorithm", "short key",
                                  "wrong algorithm"])
def test_malformed_key_headers_are_invalid_argument(s3, s3_endpoint, bucket, http, case):
    """ceph/s3-tests test_encryption_sse_c_no_md5 / _invalid_md5 / _no_key /
    test_encryption_key_no_sse_c: 400 InvalidArgument, and nothing stored."""
    headers = sse_headers()
    if case == "no MD5":
        del headers["x-amz-server-side-encryption-customer-key-MD5"]
    elif case == "wrong MD5":
        headers["x-amz-server-side-encryption-customer-key-MD5"] = key_md5(OTHER_KEY)
    elif case == "no algorithm":
        del headers["x-amz-server-side-encryption-customer-algorithm"]
    elif case == "short key":
        headers["x-amz-server-side-encryption-customer-key"] = base64.b64encode(
            bytes(16)).decode()
        headers["x-amz-server-side-encryption-customer-key-MD5"] = base64.b64encode(
            hashlib.md5(bytes(16)).digest()).decode()
    else:
        headers["x-amz-server-side-encryption-customer-algorithm"] = "AES128"
    answer = signed_request(http, s3_endpoint, "PUT", f"/{bucket}/k", headers=headers,
                            body=b"x")
    assert answer.status_code == 400, answer.text
    assert "<Code>InvalidArgument</Code>" in answer.text
    assert base64.b64encode(KEY).decode() not in answer.text  # the key is never echoed
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


@pytest.mark.usefixtures("takes_sse_c")
def test_a_key_for_an_object_without_one(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket=bucket, Key="plain", **sse())
    assert http_status(raised.value) == 400


@pytest.mark.usefixtures("takes_sse_c")
def test_multipart_with_a_customer_key(s3, bucket):
    """Each UploadPart gives the key of CreateMultipartUpload (ceph/s3-tests
    test_encryption_sse_c_multipart_invalid_chunks_1: another key is 400);
    CompleteMultipartUpload needs none; reads by part number and range decrypt."""
    parts = [b"a" * (5 * MIB), b"b" * 1234]
    created = s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse())
    assert created["SSECustomerKeyMD5"] == key_md5()
    upload_id = created["UploadId"]
    with pytest.raises(ClientError) as raised:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1,
                       Body=parts[0], **sse(OTHER_KEY))
    assert http_status(raised.value) == 400
    with pytest.raises(ClientError) as raised:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1,
                       Body=parts[0])
    assert http_status(raised.value) == 400
    completed = []
    for number, body in enumerate(parts, start=1):
        part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number,
                              Body=body, **sse())
        assert part["SSECustomerKeyMD5"] == key_md5()
        completed.append({"PartNumber": number, "ETag": part["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                        MultipartUpload={"Parts": completed})
    # Made of the parts' ETags, which are not their MD5s: not AWS's plain multipart ETag.
    assert done["ETag"] != multipart_etag(parts) and done["ETag"].endswith('-2"')
    whole = b"".join(parts)
    assert s3.get_object(Bucket=bucket, Key="mp", **sse())["Body"].read() == whole
    assert s3.get_object(Bucket=bucket, Key="mp", PartNumber=2, **sse())[
        "Body"].read() == parts[1]
    middle = len(parts[0])
    ranged = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={middle - 3}-{middle + 2}",
                           **sse())
    assert ranged["Body"].read() == whole[middle - 3:middle + 3]
    with pytest.raises(ClientError) as raised:  # ..._multipart_bad_download
        s3.get_object(Bucket=bucket, Key="mp", **sse(OTHER_KEY))
    assert http_status(raised.value) == 403


@pytest.mark.usefixtures("takes_sse_c")
def test_copy_needs_the_source_key_and_may_change_keys(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied secret", **sse())
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as raised:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source)
    assert http_status(raised.value) == 400
    with pytest.raises(ClientError) as raised:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source,
                       **copy_source_sse(OTHER_KEY))
    assert http_status(raised.value) == 403
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, **copy_source_sse(),
                            **sse(OTHER_KEY))
    assert copied["SSECustomerKeyMD5"] == key_md5(OTHER_KEY)
    assert s3.get_object(Bucket=bucket, Key="dst", **sse(OTHER_KEY))[
        "Body"].read() == b"copied secret"
    s3.copy_object(Bucket=bucket, Key="dst-plain", CopySource=source, **copy_source_sse())
    assert s3.get_object(Bucket=bucket, Key="dst-plain")["Body"].read() == b"copied secret"


@pytest.mark.usefixtures("takes_sse_c")
def test_rotating_the_key_is_a_copy_onto_itself(s3, bucket):
    """A copy onto itself that changes its encryption attributes is allowed (AWS's
    InvalidRequest for a self-copy names them among what a self-copy may change)."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"rotate me", Metadata={"m": "1"}, **sse())
    s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"},
                   **copy_source_sse(), **sse(OTHER_KEY))
    got = s3.get_object(Bucket=bucket, Key="k", **sse(OTHER_KEY))
    assert got["Body"].read() == b"rotate me" and got["Metadata"] == {"m": "1"}
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket=bucket, Key="k", **sse())
    assert http_status(raised.value) == 403


@pytest.mark.usefixtures("takes_sse_c")
def test_upload_part_copy_from_a_customer_keyed_source(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"s" * (5 * MIB + 10), **sse())
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse(OTHER_KEY))[
        "UploadId"]
    copy_source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as raised:
        s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1,
                            CopySource=copy_source, **sse(OTHER_KEY))
    assert http_status(raised.value) == 400
    part = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1,
                               CopySource=copy_source, **copy_source_sse(), **sse(OTHER_KEY))
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                 MultipartUpload={"Parts": [{
                                     "PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="mp", **sse(OTHER_KEY))[
        "Body"].read() == b"s" * (5 * MIB + 10)


@pytest.mark.usefixtures("takes_sse_c")
def test_sse_s3_and_sse_c_together_are_refused(s3, s3_endpoint, bucket, http):
    headers = {**sse_headers(), "x-amz-server-side-encryption": "AES256"}
    answer = signed_request(http, s3_endpoint, "PUT", f"/{bucket}/k", headers=headers,
                            body=b"x")
    assert answer.status_code == 400 and "<Code>InvalidArgument</Code>" in answer.text


@pytest.mark.cli
@pytest.mark.usefixtures("takes_sse_c")
def test_aws_cli_sse_c(aws, bucket, tmp_path):
    key_file = tmp_path / "key.bin"
    key_file.write_bytes(KEY)
    source = tmp_path / "file.bin"
    source.write_bytes(b"cli secret" * 1000)
    sse_c = ("--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}")
    aws("s3", "cp", *sse_c, str(source), f"s3://{bucket}/file.bin")
    aws("s3", "cp", *sse_c, f"s3://{bucket}/file.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()


def test_plain_http_is_refused(s3, s3_endpoint, bucket):
    """Over plain HTTP, AWS refuses any request carrying a customer key."""
    if s3_endpoint.takes_sse_c:
        pytest.skip("the endpoint takes SSE-C (HTTPS, or told it sits behind a TLS proxy)")
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", **sse())
    assert (http_status(raised.value), error_code(raised.value)) == (400, "InvalidRequest")
    assert "secure connection" in raised.value.response["Error"]["Message"]
