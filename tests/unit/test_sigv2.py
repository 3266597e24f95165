"""SigV2 verification against AWS's legacy examples, botocore's, boto3's and s3cmd's signers."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from unittest import mock
from urllib.parse import quote, urlsplit

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.auth import sigv2
from gateway.auth.sigv4 import Anonymous, AuthContext, AuthError, PayloadMode, authenticate
from storage.api import limits

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = calendar.timegm((2025, 1, 2, 3, 4, 5))
ENDPOINT = "http://127.0.0.1:9000"
VHOST_DOMAIN = "s3.example.test"


def lookup(access_key: str) -> str | None:
    return {ACCESS_KEY: SECRET, "AK2": "other secret"}.get(access_key)


class Wire:
    """A request as the gateway receives it."""

    def __init__(
        self, method: str, url: str, headers: Any, virtual_host_bucket: str | None = None
    ) -> None:
        parts = urlsplit(url)
        self.method = method
        self.raw_path = parts.path.encode() or b"/"
        self.raw_query = parts.query.encode()
        items = [(str(k), _text(v)) for k, v in dict(headers).items()]
        if not any(k.lower() == "host" for k, _ in items):
            items.append(("host", parts.netloc))
        self.headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in items]
        self.virtual_host_bucket = virtual_host_bucket

    def verify(self, now: float = NOW) -> AuthContext | Anonymous:
        return authenticate(
            self.method,
            self.raw_path,
            self.raw_query,
            self.headers,
            lookup,
            now,
            virtual_host_bucket=self.virtual_host_bucket,
        )

    def with_header(self, name: str, value: str) -> Wire:
        clone = Wire.__new__(Wire)
        clone.__dict__.update(self.__dict__)
        kept = [(k, v) for k, v in self.headers if k != name.lower().encode()]
        clone.headers = kept + [(name.lower().encode(), value.encode("latin-1"))]
        return clone

    def header(self, name: str) -> str:
        return next(v.decode("latin-1") for k, v in self.headers if k == name.encode())


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def expect_error(code: str, call: Callable[[], object]) -> AuthError:
    with pytest.raises(AuthError) as info:
        call()
    assert info.value.code == code, info.value.message
    return info.value


def verified(wire: Wire, now: float = NOW) -> AuthContext:
    context = wire.verify(now)
    assert isinstance(context, AuthContext)
    return context


def key_url(bucket: str, key: str, query: str = "") -> str:
    url = f"{ENDPOINT}/{bucket}/{quote(key, safe='/~')}"
    return f"{url}?{query}" if query else url


# --- AWS's legacy "Signing and Authenticating REST Requests" examples ----------------


@pytest.mark.parametrize(
    ("method", "host", "target", "headers", "signature", "bucket"),
    [
        (
            "GET",
            "johnsmith.s3.amazonaws.com",
            "/photos/puppy.jpg",
            {"Date": "Tue, 27 Mar 2007 19:36:42 +0000"},
            "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
            "johnsmith",
        ),
        (
            "PUT",
            "johnsmith.s3.amazonaws.com",
            "/photos/puppy.jpg",
            {
                "Content-Type": "image/jpeg",
                "Content-Length": "94328",
                "Date": "Tue, 27 Mar 2007 21:15:45 +0000",
            },
            "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
            "johnsmith",
        ),
        (
            "GET",
            "johnsmith.s3.amazonaws.com",
            "/?acl",
            {"Date": "Tue, 27 Mar 2007 19:44:46 +0000"},
            "c2WLPFtWHVgbEmeEG93a4cG37dM=",
            "johnsmith",
        ),
        (  # x-amz-date wins over Date, and the example signs it on the Date line
            "DELETE",
            "s3.us-west-1.amazonaws.com",
            "/johnsmith/photos/puppy.jpg",
            {
                "Date": "Tue, 27 Mar 2007 21:20:27 +0000",
                "x-amz-date": "Tue, 27 Mar 2007 21:20:26 +0000",
            },
            "lx3byBScXR6KzyMaifNkardMwNk=",
            None,
        ),
    ],
)
def test_aws_documentation_examples(
    method: str,
    host: str,
    target: str,
    headers: dict[str, str],
    signature: str,
    bucket: str | None,
) -> None:
    authorization = f"AWS {ACCESS_KEY}:{signature}"
    wire = Wire(
        method, f"http://{host}{target}", {"Host": host, **headers, "Authorization": authorization}
    )
    wire.virtual_host_bucket = bucket
    doc_now = parsedate_to_datetime(headers.get("x-amz-date", headers["Date"])).timestamp()
    context = verified(wire, doc_now)
    assert context.access_key == ACCESS_KEY and not context.presigned
    assert context.payload_mode is PayloadMode.UNSIGNED and context.payload_sha256_hex is None
    assert context.region == "us-east-1" and context.scope == "" and context.signing_key == b""
    assert context.timestamp.startswith("20070327T")


# --- botocore's own SigV2 signers ----------------------------------------------------


def hmacv1_sign(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    auth_path: str | None = None,
    virtual_host_bucket: str | None = None,
    now: float = NOW,
    access_key: str = ACCESS_KEY,
) -> Wire:
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    request.auth_path = auth_path
    signer = botocore.auth.HmacV1Auth(Credentials(access_key, SECRET))
    with mock.patch.object(signer, "_get_date", return_value=formatdate(now, usegmt=True)):
        signer.add_auth(request)
    prepared = request.prepare()
    return Wire(method, prepared.url, prepared.headers, virtual_host_bucket)


def hmacv1_presign(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    expires: int = 3600,
    now: float = NOW,
    auth_path: str | None = None,
    virtual_host_bucket: str | None = None,
) -> Wire:
    request = AWSRequest(method=method, url=url, headers=headers or {})
    request.auth_path = auth_path
    signer = botocore.auth.HmacV1QueryAuth(Credentials(ACCESS_KEY, SECRET), expires)
    with mock.patch.object(signer, "_get_date", return_value=str(int(now + expires))):
        signer.add_auth(request)
    # The presigned URL carries everything; whoever fetches it sends no signed header.
    return Wire(method, request.url, {}, virtual_host_bucket)


QUERIES = [
    "",
    "acl",
    "uploads",
    "uploadId=abc%2Bdef&partNumber=3",
    "versionId=3%2F4%3D&x=1",
    "response-content-type=text%2Fplain%3B%20a%3Db&response-cache-control=no-cache",
    "response-content-disposition=attachment%3B%20filename%3D%22%C3%BC%20b.txt%22",
    "tagging&versionId=v1",
    "list-type=2&prefix=a%20b&delimiter=%2F",
    "delete",
    "restore&versionId=",
    "object-lock",  # botocore signs it, minio-go does not
    "encryption",  # minio-go signs it, botocore does not
    "select&select-type=2",
    "retention&versionId=v&legal-hold",
]


@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "DELETE", "POST"])
@pytest.mark.parametrize("query", QUERIES)
def test_botocore_header_signed_requests_verify(method: str, query: str) -> None:
    headers = {
        "Content-Type": "text/plain",
        "Content-MD5": "XUFAKrxLKna5cZ2REBfFkg==",
        "x-amz-meta-note": "  two   spaces  ",
        "x-amz-acl": "private",
        "X-Amz-Meta-Upper": "V",
    }
    wire = hmacv1_sign(method, key_url("bkt", "dir/a key+1~ü%.txt", query), headers, b"hello")
    context = verified(wire)
    assert context.presigned is False and context.payload_mode is PayloadMode.UNSIGNED


@pytest.mark.parametrize("query", QUERIES)
def test_botocore_presigned_urls_verify(query: str) -> None:
    wire = hmacv1_presign("GET", key_url("bkt", "dir/a key+1~ü%.txt", query))
    context = verified(wire)
    assert context.presigned is True
    assert context.timestamp == time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(NOW + 3600))


def test_presigned_headers_travel_in_the_query() -> None:
    headers = {"Content-Type": "text/plain", "x-amz-acl": "public-read", "x-amz-meta-a": "b"}
    wire = hmacv1_presign("PUT", key_url("bkt", "k"), headers)
    assert b"content-type=text%2Fplain" in wire.raw_query and b"x-amz-acl=" in wire.raw_query
    verified(wire)
    # A client that also sends them as headers, with the same values, still matches...
    verified(wire.with_header("Content-Type", "text/plain").with_header("x-amz-acl", "public-read"))
    # ...but a header with another value is what the gateway would act on: refused.
    expect_error("SignatureDoesNotMatch", wire.with_header("Content-Type", "text/html").verify)
    expect_error("SignatureDoesNotMatch", wire.with_header("x-amz-acl", "private").verify)


def test_repeated_amz_headers_are_joined_with_commas() -> None:
    request = AWSRequest(method="GET", url=key_url("bkt", "k"), headers={})
    request.headers.add_header("x-amz-meta-list", "a")
    request.headers.add_header("x-amz-meta-list", " b  c ")
    signer = botocore.auth.HmacV1Auth(Credentials(ACCESS_KEY, SECRET))
    with mock.patch.object(signer, "_get_date", return_value=formatdate(NOW, usegmt=True)):
        signer.add_auth(request)
    wire = Wire("GET", request.url, {})
    wire.headers += [(k.lower().encode(), _text(v).encode()) for k, v in request.headers.items()]
    assert [v for k, v in wire.headers if k == b"x-amz-meta-list"] == [b"a", b" b  c "]
    verified(wire)


def test_path_style_bucket_is_signed_with_or_without_trailing_slash() -> None:
    for sent, signed in (("/bkt", "/bkt/"), ("/bkt", "/bkt"), ("/bkt/", "/bkt/")):
        url = f"{ENDPOINT}{sent}?versioning"
        verified(hmacv1_sign("GET", url, auth_path=signed))
        verified(hmacv1_presign("GET", url, auth_path=signed))
    # Only for the bucket itself: a key's trailing slash is part of its name.
    wire = hmacv1_sign("GET", f"{ENDPOINT}/bkt/k", auth_path="/bkt/k/")
    expect_error("SignatureDoesNotMatch", wire.verify)


@pytest.mark.parametrize(
    ("path", "auth_path"),
    [
        ("/photos/ü b+c.jpg", "/bkt/photos/ü b+c.jpg"),
        ("/", "/bkt/"),  # the spec's and botocore's form for the bucket itself
        ("/", "/bkt"),  # a client that signs an empty path
        ("/a//b/", "/bkt/a//b/"),
    ],
)
def test_virtual_host_style(path: str, auth_path: str) -> None:
    url = f"http://bkt.{VHOST_DOMAIN}{quote(path, safe='/~')}?acl"
    signed_path = quote(auth_path, safe="/~")
    wire = hmacv1_sign("GET", url, auth_path=signed_path, virtual_host_bucket="bkt")
    verified(wire)
    presigned = hmacv1_presign("GET", url, auth_path=signed_path, virtual_host_bucket="bkt")
    verified(presigned)
    # The bucket is part of what is signed: another bucket, or path style, fails.
    wire.virtual_host_bucket = "other"
    expect_error("SignatureDoesNotMatch", wire.verify)
    wire.virtual_host_bucket = None
    expect_error("SignatureDoesNotMatch", wire.verify)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    key=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=40,
    ),
    version=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=12),
    response_type=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=20),
)
def test_hypothesis_keys_and_subresource_values(key: str, version: str, response_type: str) -> None:
    query = f"versionId={quote(version, safe='')}&response-content-type={quote(response_type)}"
    verified(hmacv1_sign("GET", key_url("bkt", key, query)))
    verified(hmacv1_presign("GET", key_url("bkt", key, query)))
    s3cmd_wire = s3cmd_sign("GET", f"/bkt/{key}", {"versionId": version or None})
    verified(s3cmd_wire, s3cmd_now(s3cmd_wire))


@settings(max_examples=60, deadline=None)
@given(value=st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30))
@example(value="\u00c2\u0080")  # Latin-1 bytes that are also UTF-8: both readings tried
def test_hypothesis_header_values(value: str) -> None:
    headers = {"x-amz-meta-v": value, "Content-Type": value, "Content-MD5": value}
    verified(hmacv1_sign("PUT", key_url("bkt", "k"), headers))


# --- a real boto3 client -------------------------------------------------------------


def test_boto3_generate_presigned_url_defaults_to_sigv2() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "get_object", {"Bucket": "bkt", "Key": "dir/ü b+c %.txt"}),
        (
            "GET",
            "get_object",
            {
                "Bucket": "bkt",
                "Key": "k",
                "VersionId": "v+1/2",
                "ResponseContentType": "text/plain; charset=utf-8",
                "ResponseContentDisposition": 'attachment; filename="ü b.txt"',
                "ResponseCacheControl": "no-cache",
                "ResponseExpires": "Thu, 01 Dec 1994 16:00:00 GMT",
            },
        ),
        ("PUT", "put_object", {"Bucket": "bkt", "Key": "p", "ContentType": "text/plain"}),
        ("PUT", "put_object", {"Bucket": "bkt", "Key": "p", "Metadata": {"a": "b c"}}),
        ("HEAD", "head_object", {"Bucket": "bkt", "Key": "k"}),
        ("DELETE", "delete_object", {"Bucket": "bkt", "Key": "k"}),
        ("GET", "list_objects", {"Bucket": "bkt", "Prefix": "a b"}),
        ("GET", "get_object_acl", {"Bucket": "bkt", "Key": "k"}),
        (
            "PUT",
            "upload_part",
            {"Bucket": "bkt", "Key": "k", "UploadId": "u/1+2", "PartNumber": 7},
        ),
    ]
    for method, operation, params in cases:
        url = client.generate_presigned_url(operation, Params=params, ExpiresIn=600)
        assert "AWSAccessKeyId=" in url and "X-Amz-" not in url, url
        context = verified(Wire(method, url, {}), time.time())
        assert context.presigned and context.access_key == ACCESS_KEY
    expired = client.generate_presigned_url("get_object", {"Bucket": "b", "Key": "k"}, ExpiresIn=1)
    error = expect_error("AccessDenied", lambda: Wire("GET", expired, {}).verify(time.time() + 5))
    assert error.message == "Request has expired" and error.status == 403


def test_boto3_presigned_url_virtual_host_style() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{VHOST_DOMAIN}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "virtual"}),
    )
    for operation, params in (
        ("get_object", {"Bucket": "bkt", "Key": "a b/ü"}),
        ("list_objects", {"Bucket": "bkt"}),
        ("get_bucket_acl", {"Bucket": "bkt"}),
    ):
        url = client.generate_presigned_url(operation, Params=params, ExpiresIn=600)
        assert urlsplit(url).netloc == f"bkt.{VHOST_DOMAIN}", url
        verified(Wire("GET", url, {}, virtual_host_bucket="bkt"), time.time())


class _EmptyRaw:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


@pytest.fixture(scope="module", params=["path", "virtual"])
def sigv2_client(request: pytest.FixtureRequest) -> Callable[[str, dict[str, Any]], Wire]:
    style = request.param
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{VHOST_DOMAIN}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(
            signature_version="s3", s3={"addressing_style": style}, retries={"max_attempts": 1}
        ),
    )
    sent: list[Any] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _EmptyRaw())

    client.meta.events.register("before-send.s3.*", capture)

    def call(operation: str, params: dict[str, Any]) -> Wire:
        sent.clear()
        getattr(client, operation)(**params)  # the empty 200 parses as an empty result
        request = sent[-1]
        bucket = params.get("Bucket") if style == "virtual" else None
        return Wire(request.method, request.url, request.headers, bucket)

    return call


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("list_buckets", {}),
        ("list_objects_v2", {"Bucket": "bkt", "Prefix": "ü +/", "Delimiter": "/"}),
        ("get_object", {"Bucket": "bkt", "Key": "a/b c+d", "Range": "bytes=0-9"}),
        ("get_object", {"Bucket": "bkt", "Key": "k", "VersionId": "v1", "PartNumber": 2}),
        ("put_object", {"Bucket": "bkt", "Key": "k", "Body": b"hello", "ContentType": "a/b"}),
        ("put_object", {"Bucket": "bkt", "Key": "k", "Body": b"x", "Metadata": {"m": "v"}}),
        ("create_multipart_upload", {"Bucket": "bkt", "Key": "big", "ACL": "private"}),
        (
            "upload_part",
            {"Bucket": "bkt", "Key": "k", "UploadId": "u+1", "PartNumber": 1, "Body": b"x"},
        ),
        ("delete_objects", {"Bucket": "bkt", "Delete": {"Objects": [{"Key": "a"}]}}),
        ("get_bucket_versioning", {"Bucket": "bkt"}),
        ("list_object_versions", {"Bucket": "bkt"}),
        ("get_object_tagging", {"Bucket": "bkt", "Key": "k"}),
        ("copy_object", {"Bucket": "bkt", "Key": "k2", "CopySource": "bkt/k ü"}),
    ],
)
def test_boto3_sigv2_client_requests_verify(
    sigv2_client: Callable[[str, dict[str, Any]], Wire], operation: str, params: dict[str, Any]
) -> None:
    wire = sigv2_client(operation, params)
    assert wire.header("authorization").startswith("AWS ")
    context = verified(wire, time.time())
    assert context.payload_mode is PayloadMode.UNSIGNED


# --- s3cmd's signer ------------------------------------------------------------------


def _s3cmd_config() -> Any:
    from S3.Config import Config as S3cmdConfig

    config = S3cmdConfig()
    config.access_key, config.secret_key = ACCESS_KEY, SECRET
    return config


def s3cmd_sign(
    method: str,
    uri: str,
    params: dict[str, str | None] | None = None,
    extra: dict[str, str] | None = None,
) -> Wire:
    """Sign like ``S3Request.sign`` with ``signature_v2 = True``: ``x-amz-date``, no Date."""
    from S3.Crypto import format_param_str, s3_quote, sign_request_v2
    from S3.SortedDict import SortedDict

    _s3cmd_config()
    headers = SortedDict(ignore_case=True)
    headers["x-amz-date"] = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    for name, value in (extra or {}).items():
        headers[name] = value
    signed = sign_request_v2(method, uri, params or {}, headers)
    target = s3_quote(uri, quote_backslashes=False, unicode_output=True)
    target += format_param_str(params or {})
    return Wire(method, f"{ENDPOINT}{target}", dict(signed.items()))


def s3cmd_now(wire: Wire) -> float:
    return calendar.timegm(time.strptime(wire.header("x-amz-date"), "%a, %d %b %Y %H:%M:%S +0000"))


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("GET", {}),
        ("PUT", {"uploadId": "x y+z", "partNumber": "2"}),
        ("POST", {"uploads": None}),
        ("GET", {"acl": None}),
        ("PUT", {"tagging": None, "versionId": "a/b=c"}),
        ("GET", {"prefix": "ü x", "delimiter": "/"}),
        ("POST", {"delete": None}),
    ],
)
def test_s3cmd_header_signed_requests_verify(method: str, params: dict[str, str | None]) -> None:
    extra = {"content-type": "text/plain", "x-amz-meta-owner": "s3cmd", "content-md5": "abc="}
    wire = s3cmd_sign(method, "/bkt/dir/ü a+b~c.txt", params, extra)
    assert wire.header("authorization").startswith(f"AWS {ACCESS_KEY}:")
    assert not any(name == b"date" for name, _ in wire.headers)
    verified(wire, s3cmd_now(wire))


def test_s3cmd_virtual_host_request_verifies() -> None:
    # s3cmd signs '/bucket/key' for SigV2 whatever the addressing style.
    wire = s3cmd_sign("GET", "/bkt/k ü", {"acl": None})
    wire.raw_path = wire.raw_path.removeprefix(b"/bkt")
    wire.virtual_host_bucket = "bkt"
    verified(wire, s3cmd_now(wire))


def test_s3cmd_signed_url_verifies() -> None:
    from S3.Crypto import sign_url_base_v2

    config = _s3cmd_config()
    config.host_base, config.host_bucket = "127.0.0.1:9000", "127.0.0.1:9000"
    config.signurl_use_https = False
    config.content_disposition = 'attachment; filename="a b.txt"'
    config.content_type = "text/plain"
    try:
        url = sign_url_base_v2(bucket="bkt", object="dir/ü b.txt", expiry=NOW + 600)
    finally:
        config.content_disposition = config.content_type = None
    context = verified(Wire("GET", url, {}))
    assert context.presigned
    expect_error("AccessDenied", lambda: Wire("GET", url, {}).verify(NOW + 601))


# --- failures ------------------------------------------------------------------------


def base_wire() -> Wire:
    return hmacv1_sign(
        "PUT",
        key_url("bkt", "k", "uploadId=u1&partNumber=2"),
        {"Content-Type": "text/plain", "Content-MD5": "md5==", "x-amz-meta-a": "1"},
        b"data",
    )


def _set(attribute: str, value: bytes) -> Callable[[Wire], None]:
    return lambda wire: setattr(wire, attribute, value)


@pytest.mark.parametrize(
    "tamper",
    [
        _set("method", "POST"),  # type: ignore[arg-type]
        _set("raw_path", b"/bkt/K"),
        _set("raw_path", b"/bkt/k/"),
        _set("raw_query", b"uploadId=u2&partNumber=2"),
        _set("raw_query", b"uploadId=u1&partNumber=3"),
        _set("raw_query", b"uploadId=u1&partNumber=2&acl"),
        _set("raw_query", b"uploadId=u1"),
        lambda w: w.headers.__setitem__(-1, (b"authorization", b"AWS AKIAIOSFODNN7EXAMPLE:AAAA")),
        lambda w: setattr(w, "headers", w.with_header("content-type", "text/html").headers),
        lambda w: setattr(w, "headers", w.with_header("content-md5", "other==").headers),
        lambda w: setattr(w, "headers", w.with_header("x-amz-meta-a", "2").headers),
        lambda w: setattr(w, "headers", w.with_header("x-amz-meta-new", "x").headers),
        lambda w: setattr(
            w, "headers", w.with_header("date", formatdate(NOW + 1, usegmt=True)).headers
        ),
    ],
)
def test_tampering_any_signed_part_fails(tamper: Callable[[Wire], None]) -> None:
    wire = base_wire()
    verified(wire)
    tamper(wire)
    error = expect_error("SignatureDoesNotMatch", wire.verify)
    assert error.status == 403


def test_signature_mismatch_details_are_like_aws() -> None:
    wire = base_wire().with_header("x-amz-meta-a", "2")
    error = expect_error("SignatureDoesNotMatch", wire.verify)
    to_sign = error.details["StringToSign"]
    assert to_sign == (
        f"PUT\nmd5==\ntext/plain\n{formatdate(NOW, usegmt=True)}\n"
        "x-amz-meta-a:2\n/bkt/k?partNumber=2&uploadId=u1"
    )
    assert error.details["StringToSignBytes"] == " ".join(f"{b:02x}" for b in to_sign.encode())
    assert error.details["SignatureProvided"] == base_wire().header("authorization").split(":")[1]
    assert error.details["AWSAccessKeyId"] == ACCESS_KEY
    assert list(error.details) == [
        "AWSAccessKeyId",
        "StringToSign",
        "SignatureProvided",
        "StringToSignBytes",
    ]


def test_tampered_presigned_url_fails() -> None:
    wire = hmacv1_presign("GET", key_url("bkt", "k", "response-content-type=a%2Fb"))
    verified(wire)
    for old, new in (
        (b"response-content-type=a%2Fb", b"response-content-type=a%2Fc"),
        (f"Expires={NOW + 3600}".encode(), f"Expires={NOW + 3599}".encode()),
        (b"AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE", b"AWSAccessKeyId=AK2"),
    ):
        tampered = Wire.__new__(Wire)
        tampered.__dict__.update(wire.__dict__)
        tampered.raw_query = wire.raw_query.replace(old, new)
        assert tampered.raw_query != wire.raw_query
        expect_error("SignatureDoesNotMatch", tampered.verify)
    wrong_key = Wire.__new__(Wire)
    wrong_key.__dict__.update(wire.__dict__)
    wrong_key.raw_path = b"/bkt/other"
    expect_error("SignatureDoesNotMatch", wrong_key.verify)


def test_signature_with_an_unescaped_plus_still_verifies() -> None:
    for now in range(NOW, NOW + 50):  # find a signature with a '+' in it
        wire = hmacv1_presign("GET", key_url("bkt", "k"), now=now)
        if b"%2B" in wire.raw_query.partition(b"Signature=")[2].partition(b"&")[0]:
            break
    else:
        pytest.fail("no signature with a '+'")
    wire.raw_query = wire.raw_query.replace(b"%2B", b"+")
    verified(wire, now)


def test_expired_presigned_url() -> None:
    wire = hmacv1_presign("GET", key_url("bkt", "k"), expires=60)
    verified(wire, NOW + 60)  # the last valid second
    error = expect_error("AccessDenied", lambda: wire.verify(NOW + 61))
    assert error.message == "Request has expired" and error.status == 403
    assert error.details["Expires"] == "2025-01-02T03:05:05Z"


def test_unknown_access_key_and_wrong_secret() -> None:
    error = expect_error(
        "InvalidAccessKeyId", hmacv1_sign("GET", key_url("b", "k"), access_key="NOPE").verify
    )
    assert error.status == 403 and error.details["AWSAccessKeyId"] == "NOPE"
    presigned = hmacv1_presign("GET", key_url("b", "k"))
    presigned.raw_query = presigned.raw_query.replace(ACCESS_KEY.encode(), b"NOPE")
    expect_error("InvalidAccessKeyId", presigned.verify)
    # AK2 exists, but with another secret.
    expect_error(
        "SignatureDoesNotMatch", hmacv1_sign("GET", key_url("b", "k"), access_key="AK2").verify
    )


def test_request_time_skew() -> None:
    skew = limits.request_time_skew_seconds_max
    wire = hmacv1_sign("GET", key_url("bkt", "k"))
    verified(wire, NOW + skew)
    verified(wire, NOW - skew)
    error = expect_error("RequestTimeTooSkewed", lambda: wire.verify(NOW + skew + 1))
    assert error.status == 403
    assert error.details["RequestTime"] == formatdate(NOW, usegmt=True)
    assert error.details["MaxAllowedSkewMilliseconds"] == str(skew * 1000)
    # x-amz-date, when present, is the request time: an old Date does not matter.
    s3cmd_wire = s3cmd_sign("GET", "/bkt/k")
    stale = s3cmd_wire.with_header("date", formatdate(NOW - 86400, usegmt=True))
    verified(stale, s3cmd_now(s3cmd_wire))
    expect_error("RequestTimeTooSkewed", lambda: s3cmd_wire.verify(s3cmd_now(s3cmd_wire) + 901))


def test_missing_or_bad_date() -> None:
    wire = base_wire()
    no_date = Wire.__new__(Wire)
    no_date.__dict__.update(wire.__dict__)
    no_date.headers = [(k, v) for k, v in wire.headers if k != b"date"]
    error = expect_error("AccessDenied", no_date.verify)
    assert error.status == 403 and "Date" in error.message
    expect_error("AccessDenied", wire.with_header("date", "yesterday").verify)
    expect_error("AccessDenied", wire.with_header("x-amz-date", "").verify)


@pytest.mark.parametrize(
    "authorization", ["AWS ", "AWS nocolon", f"AWS {ACCESS_KEY}:", "AWS :signature"]
)
def test_malformed_authorization_header(authorization: str) -> None:
    wire = base_wire().with_header("authorization", authorization)
    error = expect_error("InvalidArgument", wire.verify)
    assert error.status == 400


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (f"AWSAccessKeyId={ACCESS_KEY}", "Query-string authentication requires"),
        (f"AWSAccessKeyId={ACCESS_KEY}&Signature=abc", "Query-string authentication requires"),
        ("Signature=abc&Expires=99999999999", "Query-string authentication requires"),
        (f"AWSAccessKeyId={ACCESS_KEY}&Signature=a&Expires=soon", "Invalid date"),
        (f"AWSAccessKeyId={ACCESS_KEY}&Signature=a&Expires=-5", "Invalid date"),
    ],
)
def test_malformed_presigned_query(query: str, message: str) -> None:
    error = expect_error("AccessDenied", Wire("GET", f"{ENDPOINT}/b/k?{query}", {}).verify)
    assert error.message.startswith(message)


def test_repeated_presign_parameter_and_two_mechanisms() -> None:
    wire = hmacv1_presign("GET", key_url("bkt", "k"))
    wire.raw_query += b"&Expires=99"
    expect_error("InvalidArgument", wire.verify)
    both = hmacv1_presign("GET", key_url("bkt", "k")).with_header("authorization", "AWS a:b")
    error = expect_error("InvalidArgument", both.verify)
    assert "Only one auth mechanism" in error.message


def test_payload_modes_and_security_token() -> None:
    sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    wire = hmacv1_sign("PUT", key_url("bkt", "k"), {"x-amz-content-sha256": sha})
    context = verified(wire)
    assert context.payload_mode is PayloadMode.SIGNED and context.payload_sha256_hex == sha
    trailer = hmacv1_sign(
        "PUT",
        key_url("bkt", "k"),
        {
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-trailer": "x-amz-checksum-crc32",
            "x-amz-decoded-content-length": "5",
        },
    )
    context = verified(trailer)
    assert context.payload_mode is PayloadMode.STREAMING_UNSIGNED_TRAILER
    assert context.trailer_names == ("x-amz-checksum-crc32",)
    assert context.decoded_content_length_bytes == 5
    chunked = hmacv1_sign(
        "PUT", key_url("bkt", "k"), {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}
    )
    expect_error("InvalidRequest", chunked.verify)
    token = hmacv1_presign("GET", key_url("bkt", "k"), {"x-amz-security-token": "tok en"})
    assert verified(token).security_token == "tok en"


def test_sigv4_and_anonymous_requests_are_not_affected() -> None:
    assert isinstance(Wire("GET", f"{ENDPOINT}/bkt/k?Expires=5", {}).verify(), Anonymous)
    assert sigv2.sign(
        SECRET, b"GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg"
    ) == ("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")
