"""Pure pieces of the object handlers: Range, conditions, copy source, metadata, names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from gateway.errors import S3Error
from gateway.s3.buckets import bucket_name_problem
from gateway.s3.common import check_read_conditions, etag_matches, metadata_from_headers
from gateway.s3.listing import decode_token, encode_token, parse_max_keys
from gateway.s3.objects import ByteRange, parse_copy_source, parse_range
from storage import api


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, ByteRange(0, 10)),
        ("bytes=10-", 100, ByteRange(10, 100)),
        ("bytes=-5", 100, ByteRange(95, 100)),
        ("bytes=-500", 100, ByteRange(0, 100)),
        ("bytes=90-200", 100, ByteRange(90, 100)),
        ("bytes=99-99", 100, ByteRange(99, 100)),
        ("bytes=5-1", 100, None),  # invalid syntax: ignored, whole object
        ("bytes=0-1,5-9", 100, None),  # several ranges: S3 serves the whole object
        ("items=0-9", 100, None),
        ("bytes=a-b", 100, None),
    ],
)
def test_parse_range(header: str, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100),
                                              ("bytes=0-", 0), ("bytes=-1", 0)])
def test_unsatisfiable_range_is_416(header: str, size: int) -> None:
    with pytest.raises(S3Error) as caught:
        parse_range(header, size)
    assert (caught.value.code, caught.value.status) == ("InvalidRange", 416)
    assert caught.value.headers["Content-Range"] == f"bytes */{size}"


@given(st.integers(0, 10_000), st.integers(0, 20_000), st.integers(0, 20_000))
def test_range_never_leaves_the_object(size: int, first: int, last: int) -> None:
    for header in (f"bytes={first}-{last}", f"bytes={first}-", f"bytes=-{last}"):
        try:
            result = parse_range(header, size)
        except S3Error:
            continue
        if result is not None:
            assert 0 <= result.start < result.end_exclusive <= size


def _version(etag: str = "abc", modified_s: int = 1_000_000) -> api.ObjectVersion:
    return api.ObjectVersion("b", "k", "v", modified_s * 1000 + 500, 1, etag)


MODIFIED = "Mon, 12 Jan 1970 13:46:40 GMT"  # 1_000_000 s after the epoch
EARLIER = "Mon, 12 Jan 1970 13:46:39 GMT"


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({}, None),
        ({"if-match": '"abc"'}, None),
        ({"if-match": '"x", "abc"'}, None),
        ({"if-match": "*"}, None),
        ({"if-match": '"nope"'}, 412),
        ({"if-none-match": '"abc"'}, 304),
        ({"if-none-match": '"nope"'}, None),
        ({"if-modified-since": MODIFIED}, 304),
        ({"if-modified-since": EARLIER}, None),
        ({"if-unmodified-since": EARLIER}, 412),
        ({"if-unmodified-since": MODIFIED}, None),
        ({"if-unmodified-since": "garbage"}, None),
        # AWS: If-Match true + If-Unmodified-Since false -> 200
        ({"if-match": '"abc"', "if-unmodified-since": EARLIER}, None),
        # AWS: If-None-Match false + If-Modified-Since true -> 304
        ({"if-none-match": '"abc"', "if-modified-since": EARLIER}, 304),
        ({"if-none-match": '"nope"', "if-modified-since": MODIFIED}, None),
    ],
)
def test_read_conditions(headers: dict[str, str], outcome: int | None) -> None:
    assert check_read_conditions(headers, _version()) == outcome


def test_copy_source_conditions_use_their_prefix() -> None:
    headers = {"x-amz-copy-source-if-match": '"nope"', "if-match": '"abc"'}
    assert check_read_conditions(headers, _version(), prefix="x-amz-copy-source-if-") == 412


def test_weak_etags_match() -> None:
    assert etag_matches('W/"abc"', "abc")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bucket/key", ("bucket", "key", None)),
        ("/bucket/dir/a%20b%3Fc", ("bucket", "dir/a b?c", None)),
        ("/bucket/key?versionId=0001abc", ("bucket", "key", "0001abc")),
        ("bucket/%E2%82%AC", ("bucket", "\u20ac", None)),
    ],
)
def test_parse_copy_source(value: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_copy_source(value) == expected


@pytest.mark.parametrize("value", ["bucket", "/bucket/", "bucket/key?acl=1"])
def test_bad_copy_source(value: str) -> None:
    with pytest.raises(S3Error):
        parse_copy_source(value)


def test_metadata_from_headers() -> None:
    headers = Headers(raw=[
        (b"content-type", b"text/plain"),
        (b"x-amz-meta-Color", b"blue"),
        (b"x-amz-meta-color", b"green"),
        (b"content-encoding", b"aws-chunked,gzip"),
        (b"cache-control", b"no-cache"),
    ])
    content_type, system, user = metadata_from_headers(headers)
    assert content_type == "text/plain"
    assert system == {"Cache-Control": "no-cache", "Content-Encoding": "gzip"}
    assert user == {"color": "blue,green"}


def test_metadata_too_large() -> None:
    headers = Headers({"x-amz-meta-big": "x" * api.limits.user_metadata_bytes_max})
    with pytest.raises(S3Error) as caught:
        metadata_from_headers(headers)
    assert caught.value.code == "MetadataTooLarge"


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Abc", "a_b", "-ab", "ab-", "a..b", "a.-b", "192.168.1.1", "xn--abc",
     "abc-s3alias", "a b"],
)
def test_invalid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name) is not None


@pytest.mark.parametrize("name", ["abc", "a" * 63, "my.bucket-1", "1bucket", "a.b.c.d1"])
def test_valid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name) is None


@pytest.mark.parametrize(("raw", "value"), [(None, 1000), ("0", 0), ("5", 5), ("5000", 1000)])
def test_max_keys_clamp(raw: str | None, value: int) -> None:
    assert parse_max_keys(raw) == value


@pytest.mark.parametrize("raw", ["-1", "x", ""])
def test_bad_max_keys(raw: str) -> None:
    with pytest.raises(S3Error) as caught:
        parse_max_keys(raw)
    assert caught.value.code == "InvalidArgument"


@given(st.text())
def test_continuation_token_round_trip(marker: str) -> None:
    try:
        marker.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert decode_token(encode_token(marker)) == marker
