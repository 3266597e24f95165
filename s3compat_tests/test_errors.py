"""Error response shape and bad input.

Every S3 error is an XML document `<Error><Code/><Message/><RequestId/>...</Error>` with
Content-Type application/xml (HEAD excepted: no body), and every response, success or
not, carries x-amz-request-id. Reference:
https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from s3compat_tests.support import (
    Endpoint,
    content_md5_header,
    parse_error_body,
    sign_headers,
    signed_request,
    unique_bucket_name,
)


def _delete_body(keys: list[str]) -> bytes:
    objects = "".join(f"<Object><Key>{key}</Key></Object>" for key in keys)
    return f"<Delete><Quiet>true</Quiet>{objects}</Delete>".encode()


def _post_delete(http, endpoint, bucket, body: bytes) -> httpx.Response:
    return signed_request(
        http,
        endpoint,
        "POST",
        f"/{bucket}",
        query="delete",
        headers={"Content-MD5": content_md5_header(body), "Content-Type": "application/xml"},
        body=body,
    )


ErrorCase = Callable[[httpx.Client, Endpoint, str], httpx.Response]

error_cases: dict[str, tuple[int, str, ErrorCase]] = {
    "no_such_bucket": (
        404, "NoSuchBucket",
        lambda http, ep, b: signed_request(http, ep, "GET", f"/{b}-missing"),
    ),
    "no_such_key": (
        404, "NoSuchKey",
        lambda http, ep, b: signed_request(http, ep, "GET", f"/{b}/missing"),
    ),
    "invalid_bucket_name": (
        400, "InvalidBucketName",
        lambda http, ep, b: signed_request(http, ep, "PUT", "/Invalid_Bucket_Name"),
    ),
    "malformed_xml": (
        400, "MalformedXML",
        lambda http, ep, b: _post_delete(http, ep, b, b"<Delete><Object><Key>oops"),
    ),
    "access_denied": (
        403, "AccessDenied",
        lambda http, ep, b: http.get(f"{ep.url}/{b}"),
    ),
    "signature_does_not_match": (
        403, "SignatureDoesNotMatch",
        lambda http, ep, b: signed_request(http, ep, "GET", f"/{b}", secret_key="bad-secret"),
    ),
    "bucket_not_empty": (
        409, "BucketNotEmpty",
        lambda http, ep, b: signed_request(http, ep, "DELETE", f"/{b}"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(error_cases), ids=list(error_cases))
def test_error_response_shape(s3, s3_endpoint, http, bucket, case):
    status, code, send = error_cases[case]
    s3.put_object(Bucket=bucket, Key="present", Body=b"x")  # makes DeleteBucket fail
    response = send(http, s3_endpoint, bucket)
    assert response.status_code == status
    assert response.headers.get("content-type", "").startswith("application/xml")
    error = parse_error_body(response.content)
    assert error["Code"] == code
    assert error.get("Message")
    assert error.get("RequestId")
    assert response.headers.get("x-amz-request-id") == error["RequestId"]


def test_every_success_response_has_request_id(s3_endpoint, http, bucket):
    responses = [
        signed_request(http, s3_endpoint, "GET", "/"),
        signed_request(http, s3_endpoint, "HEAD", f"/{bucket}"),
        signed_request(http, s3_endpoint, "PUT", f"/{bucket}/k", body=b"v"),
        signed_request(http, s3_endpoint, "GET", f"/{bucket}/k"),
        signed_request(http, s3_endpoint, "HEAD", f"/{bucket}/k"),
        signed_request(http, s3_endpoint, "GET", f"/{bucket}", query="list-type=2"),
        signed_request(http, s3_endpoint, "DELETE", f"/{bucket}/k"),
    ]
    for response in responses:
        assert response.status_code in (200, 204), response.request.url
        assert response.headers.get("x-amz-request-id"), response.request.url


def test_head_error_has_request_id_and_no_body(s3_endpoint, http, bucket):
    response = signed_request(http, s3_endpoint, "HEAD", f"/{bucket}/missing")
    assert response.status_code == 404
    assert response.headers.get("x-amz-request-id")
    assert response.content == b""


@pytest.mark.parametrize(
    "body",
    [b"not xml at all", b"<Delete><Object><Key>a</Key></Object>", b"<Delete></Delete>"],
    ids=["garbage", "unterminated", "no_objects"],
)
def test_delete_objects_malformed_xml(s3_endpoint, http, bucket, body):
    response = _post_delete(http, s3_endpoint, bucket, body)
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "MalformedXML"


def test_delete_objects_more_than_1000_keys(s3_endpoint, http, bucket):
    response = _post_delete(http, s3_endpoint, bucket, _delete_body([f"k{i}" for i in range(1001)]))
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "MalformedXML"


def test_delete_objects_raw_xml_response(s3, s3_endpoint, http, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    body = b"<Delete><Object><Key>a</Key></Object><Object><Key>ghost</Key></Object></Delete>"
    response = _post_delete(http, s3_endpoint, bucket, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    text = response.text
    assert "<DeleteResult" in text
    assert "http://s3.amazonaws.com/doc/2006-03-01/" in text
    assert text.count("<Deleted>") == 2


def test_put_with_chunked_transfer_encoding_is_501(s3_endpoint, http, bucket):
    """AWS answers a PUT whose body is HTTP-chunked (no Content-Length, no aws-chunked
    signing) 501 NotImplemented naming the Transfer-Encoding header, as captured from
    S3 in SDK bug reports (aws-sdk-js #15, aws-sdk-go #4944, knox #43)."""
    url = f"{s3_endpoint.url}/{bucket}/chunked"
    headers = sign_headers(s3_endpoint, "PUT", url, body=b"streamed")

    def stream():
        yield b"streamed"

    response = http.put(url, headers=headers, content=stream())
    assert response.status_code == 501
    error = parse_error_body(response.content)
    assert (error["Code"], error["Header"]) == ("NotImplemented", "Transfer-Encoding")


def test_missing_bucket_error_names_bucket(s3_endpoint, http):
    name = unique_bucket_name("missing")
    response = signed_request(http, s3_endpoint, "GET", f"/{name}/some/key")
    assert response.status_code == 404
    error = parse_error_body(response.content)
    assert error["Code"] == "NoSuchBucket"
    assert error.get("BucketName") == name


def test_unparsable_request_is_an_xml_error(s3_endpoint):
    """Bytes that are not HTTP still get S3's answer: 400 with an XML error document."""
    address = urlsplit(s3_endpoint.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(b"NOT AN HTTP REQUEST\r\n\r\n")
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/xml" in head.lower()
    error = parse_error_body(body)
    assert error["Code"] == "BadRequest"
    assert error["RequestId"]
