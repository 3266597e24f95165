"""The router against requests as AWS's API reference shows them."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from gateway.errors import S3Error
from gateway.router import Endpoint, bucket_from_host, route

DOMAINS = ("localhost", "s3.example.test")


def _route(line: str, host: str = "127.0.0.1:9000", **headers: str) -> Endpoint:
    method, target = line.split(" ", 1)
    path, _, query = target.partition("?")
    return route(method, path, parse_qs(query, keep_blank_values=True),
                 {"host": host, **headers}, DOMAINS)


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        ("GET /", Endpoint("ListBuckets")),
        ("PUT /amzn-bucket", Endpoint("CreateBucket", "amzn-bucket")),
        ("DELETE /amzn-bucket", Endpoint("DeleteBucket", "amzn-bucket")),
        ("HEAD /amzn-bucket", Endpoint("HeadBucket", "amzn-bucket")),
        ("GET /amzn-bucket?location", Endpoint("GetBucketLocation", "amzn-bucket")),
        ("GET /amzn-bucket", Endpoint("ListObjects", "amzn-bucket")),
        ("GET /amzn-bucket/", Endpoint("ListObjects", "amzn-bucket")),
        ("GET /amzn-bucket?list-type=2&prefix=photos/&delimiter=/",
         Endpoint("ListObjectsV2", "amzn-bucket")),
        ("GET /amzn-bucket?max-keys=2&prefix=N&marker=Ned", Endpoint("ListObjects", "amzn-bucket")),
        ("POST /amzn-bucket?delete", Endpoint("DeleteObjects", "amzn-bucket")),
        ("PUT /amzn-bucket/my-image.jpg", Endpoint("PutObject", "amzn-bucket", "my-image.jpg")),
        ("GET /amzn-bucket/my-image.jpg", Endpoint("GetObject", "amzn-bucket", "my-image.jpg")),
        ("GET /amzn-bucket/my-image.jpg?versionId=3HL4kqtJlcpXroDTDmJ",
         Endpoint("GetObject", "amzn-bucket", "my-image.jpg")),
        ("GET /amzn-bucket/my-image.jpg?response-content-type=text/plain",
         Endpoint("GetObject", "amzn-bucket", "my-image.jpg")),
        ("HEAD /amzn-bucket/my-image.jpg", Endpoint("HeadObject", "amzn-bucket", "my-image.jpg")),
        ("GET /amzn-bucket/my-image.jpg?attributes",
         Endpoint("GetObjectAttributes", "amzn-bucket", "my-image.jpg")),
        ("DELETE /amzn-bucket/my-image.jpg",
         Endpoint("DeleteObject", "amzn-bucket", "my-image.jpg")),
        ("GET /b/a%20b/c%2Bd/%E2%82%AC", Endpoint("GetObject", "b", "a b/c+d/\u20ac")),
        ("GET /b/a+b", Endpoint("GetObject", "b", "a+b")),
        ("GET /b//double//slash/", Endpoint("GetObject", "b", "/double//slash/")),
        ("GET /b/unknown-param?foo=bar", Endpoint("GetObject", "b", "unknown-param")),
    ],
)
def test_path_style(request_line: str, expected: Endpoint) -> None:
    assert _route(request_line) == expected


def test_post_to_a_bucket_is_post_object() -> None:
    """AWS's "POST Object" example: ``POST / HTTP/1.1``, ``Host: examplebucket.s3...``."""
    assert _route("POST /", host="examplebucket.s3.example.test") == Endpoint(
        "PostObject", "examplebucket")
    assert _route("POST /examplebucket") == Endpoint("PostObject", "examplebucket")
    assert _route("POST /examplebucket?delete") == Endpoint("DeleteObjects", "examplebucket")


@pytest.mark.parametrize(
    ("line", "host", "expected"),
    [
        ("GET /_squall/health", "127.0.0.1:9000", Endpoint("SquallHealth")),
        ("HEAD /_squall/health/", "127.0.0.1:9000", Endpoint("SquallHealth")),
        ("GET /_squall/metrics", "127.0.0.1:9000", Endpoint("SquallMetrics")),
        ("GET /_squall/healthz", "127.0.0.1:9000", Endpoint("SquallAdmin")),
        # Virtual-host style, the path is a key of the bucket, not Squall's own API.
        ("GET /_squall/health", "b.localhost", Endpoint("GetObject", "b", "_squall/health")),
    ],
)
def test_squall_paths(line: str, host: str, expected: Endpoint) -> None:
    assert _route(line, host=host) == expected


def test_copy_object_needs_copy_source_header() -> None:
    assert _route("PUT /b/k", **{"x-amz-copy-source": "/src/key"}) == Endpoint("CopyObject", "b", "k")


@pytest.mark.parametrize(
    ("host", "line", "expected"),
    [
        ("amzn-bucket.localhost:9000", "GET /", Endpoint("ListObjects", "amzn-bucket")),
        ("amzn-bucket.localhost", "GET /photos/a.jpg",
         Endpoint("GetObject", "amzn-bucket", "photos/a.jpg")),
        ("my.dotted.bucket.s3.example.test", "PUT /k", Endpoint("PutObject", "my.dotted.bucket", "k")),
        ("localhost:9000", "GET /b/k", Endpoint("GetObject", "b", "k")),
        ("s3.example.test", "GET /", Endpoint("ListBuckets")),
    ],
)
def test_virtual_host_style(host: str, line: str, expected: Endpoint) -> None:
    assert _route(line, host=host) == expected


def test_bucket_from_host_ignores_other_domains() -> None:
    assert bucket_from_host("bucket.other.test", DOMAINS) is None
    assert bucket_from_host("[::1]:9000", DOMAINS) is None


@pytest.mark.parametrize("line", ["PUT /b?website", "PUT /b?replication", "PUT /b?analytics",
                                  "GET /b?metadataTable", "PUT /b?accelerate"])
def test_known_but_unserved_subresource_is_not_implemented(line: str) -> None:
    with pytest.raises(S3Error) as caught:
        _route(line)
    assert (caught.value.code, caught.value.status) == ("NotImplemented", 501)


@pytest.mark.parametrize("line", ["POST /b/k", "PATCH /b", "DELETE /", "POST /"])
def test_method_not_allowed(line: str) -> None:
    with pytest.raises(S3Error) as caught:
        _route(line)
    assert (caught.value.code, caught.value.status) == ("MethodNotAllowed", 405)


def test_invalid_percent_encoding_is_invalid_uri() -> None:
    with pytest.raises(S3Error) as caught:
        _route("GET /b/%FF%FE")
    assert caught.value.code == "InvalidURI"


# Multipart upload, as the request lines of AWS's API reference show them.
@pytest.mark.parametrize(
    ("request_line", "headers", "expected"),
    [
        ("POST /b/example-object?uploads", {}, "CreateMultipartUpload"),
        ("PUT /b/my-movie.m2ts?partNumber=1&uploadId=VCVsb2FkIElEIGZvciBlbZZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZR",
         {}, "UploadPart"),
        ("PUT /b/my-movie.m2ts?uploadId=VCVsb2FkIElE&partNumber=1", {}, "UploadPart"),
        ("PUT /b/example-object?partNumber=1&uploadId=VXBsb2FkIElE",
         {"x-amz-copy-source": "/source-bucket/sourceobject"}, "UploadPartCopy"),
        ("POST /b/example-object?uploadId=AAAsb2FkIElEIGZvciBlbHZpbmcncyWeeS1tb3ZpZS5tMnRzIRRwbG9hZA",
         {}, "CompleteMultipartUpload"),
        ("DELETE /b/example-object?uploadId=VXBsb2FkIElE", {}, "AbortMultipartUpload"),
        ("GET /b/example-object?uploadId=XXBsb2FkIElE&max-parts=2&part-number-marker=1", {},
         "ListParts"),
        ("GET /b?uploads", {}, "ListMultipartUploads"),
        ("GET /b?uploads&max-uploads=3&key-marker=a&upload-id-marker=x", {},
         "ListMultipartUploads"),
        ("GET /b/k?partNumber=2", {}, "GetObject"),
        ("HEAD /b/k?partNumber=2", {}, "HeadObject"),
    ],
)  # fmt: skip
def test_multipart_routes(request_line: str, headers: dict[str, str], expected: str) -> None:
    assert _route(request_line, **headers).operation == expected


def test_gateway_query_parsing_is_parse_qs_with_blank_values() -> None:
    import random
    from urllib.parse import parse_qs

    from gateway.app import parse_query

    pieces = ["a", "b", "=", "&", "+", "%2F", "%", "%zz", "%C3%A9", "%ff", "é", "=="]
    rng = random.Random(5)
    cases = ["", "&", "uploads", "versionId=&x", "a=1&a=2&b", "list-type=2&prefix=a%2Fb+c"]
    cases += ["".join(rng.choice(pieces) for _ in range(rng.randrange(12))) for _ in range(3000)]
    for case in cases:
        assert parse_query(case) == parse_qs(case, keep_blank_values=True), case
