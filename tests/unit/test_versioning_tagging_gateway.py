"""Pure pieces of versioning, tagging and as-of reads: routes, parsers, golden XML."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import S3Error
from gateway.router import Endpoint, route
from gateway.s3.as_of import parse_as_of
from gateway.s3.tagging import (
    parse_tagging_header,
    parse_tagging_xml,
    render_tagging,
    tagging_header_value,
)
from gateway.s3.versioning import list_versions_body, parse_versioning_configuration
from gateway.xml import Node
from storage import api


def _route(line: str) -> Endpoint:
    method, target = line.split(" ", 1)
    path, _, query = target.partition("?")
    return route(method, path, parse_qs(query, keep_blank_values=True),
                 {"host": "127.0.0.1:9000"}, ("localhost",))


# --- routes (request lines from the AWS API reference examples) ---------------------------


@pytest.mark.parametrize(
    ("request_line", "operation", "key"),
    [
        ("GET /amzn-bucket?versioning", "GetBucketVersioning", None),
        ("PUT /amzn-bucket?versioning", "PutBucketVersioning", None),
        ("GET /amzn-bucket?versions", "ListObjectVersions", None),
        ("GET /amzn-bucket?versions&key-marker=key2&max-keys=3", "ListObjectVersions", None),
        ("GET /amzn-bucket?versions&prefix=photos/&delimiter=/", "ListObjectVersions", None),
        ("GET /amzn-bucket?tagging", "GetBucketTagging", None),
        ("PUT /amzn-bucket?tagging", "PutBucketTagging", None),
        ("DELETE /amzn-bucket?tagging", "DeleteBucketTagging", None),
        ("GET /amzn-bucket/example-object?tagging", "GetObjectTagging", "example-object"),
        ("GET /amzn-bucket/example-object?tagging&versionId=ydlaNkwWm0SfKJR.T1b1fIdPRbldTYRI",
         "GetObjectTagging", "example-object"),
        ("PUT /amzn-bucket/object-key?tagging", "PutObjectTagging", "object-key"),
        ("DELETE /amzn-bucket/exampleobject?tagging", "DeleteObjectTagging", "exampleobject"),
        ("GET /amzn-bucket/k?as-of=2026-11-28T10:42:00Z", "GetObject", "k"),
        ("GET /amzn-bucket?list-type=2&as-of=1700000000000", "ListObjectsV2", None),
    ],
)
def test_routes(request_line: str, operation: str, key: str | None) -> None:
    assert _route(request_line) == Endpoint(operation, "amzn-bucket", key)


# --- PutBucketVersioning bodies ----------------------------------------------------------

_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (f"<VersioningConfiguration {_NS}><Status>Enabled</Status></VersioningConfiguration>",
         "Enabled"),
        ("<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>",
         "Suspended"),
        ("<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Disabled</MfaDelete>"
         "</VersioningConfiguration>", "Enabled"),
        ("<VersioningConfiguration><MfaDelete>Disabled</MfaDelete></VersioningConfiguration>",
         None),
    ],
)
def test_versioning_configuration(body: str, status: str | None) -> None:
    assert parse_versioning_configuration(body.encode()) == status


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("<VersioningConfiguration><Status>enabled</Status></VersioningConfiguration>",
         "MalformedXML"),
        ("<VersioningConfiguration><Status>On</Status></VersioningConfiguration>",
         "MalformedXML"),
        ("<Versioning><Status>Enabled</Status></Versioning>", "MalformedXML"),
        ("<VersioningConfiguration><Status>Enabled</Status>", "MalformedXML"),
        ("<VersioningConfiguration><MfaDelete>Maybe</MfaDelete></VersioningConfiguration>",
         "MalformedXML"),
        ("<VersioningConfiguration/>", "IllegalVersioningConfigurationException"),
        ("<VersioningConfiguration><MfaDelete>Enabled</MfaDelete></VersioningConfiguration>",
         "NotImplemented"),
    ],
)
def test_bad_versioning_configuration(body: str, code: str) -> None:
    with pytest.raises(S3Error) as caught:
        parse_versioning_configuration(body.encode())
    assert caught.value.code == code


# --- ListVersionsResult golden bytes -----------------------------------------------------

_OWNER: Node = ("Owner", [("ID", "75aa57f09aa0c8ca"), ("DisplayName", "me")])


def _version(key: str, version_id: str, *, latest: bool, marker: bool = False,
             ms: int = 1_255_369_830_000) -> api.ObjectVersion:
    return api.ObjectVersion(
        bucket="b", key=key, version_id="0" * 16, last_modified_ms=ms,
        size_bytes=0 if marker else 434234,
        etag="" if marker else "fba9dede5f27731c9771645a39863328",
        is_delete_marker=marker, s3_version_id=version_id, is_latest=latest,
    )


def test_list_versions_golden_bytes() -> None:
    page = api.ListVersionsPage(
        versions=(
            _version("my-image.jpg", "3/L4kqtJl40Nr8X8gdRQBpUMLUo", latest=True),
            _version("my-second-image.jpg", "03jpff543dhffds434rfdsFDN943fdsFkdmqnh892",
                     latest=True, marker=True, ms=1_258_048_230_000),
            _version("my-second-image.jpg", "null", latest=False),
        ),
        common_prefixes=("photos/",),
        is_truncated=True,
        next_key_marker="my-second-image.jpg",
        next_version_id_marker="null",
    )
    body = list_versions_body("bucket", {"prefix": "my", "delimiter": "/"}, 3, page, _OWNER)
    owner = b"<Owner><ID>75aa57f09aa0c8ca</ID><DisplayName>me</DisplayName></Owner>"
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Name>bucket</Name><Prefix>my</Prefix><KeyMarker></KeyMarker>"
        b"<VersionIdMarker></VersionIdMarker>"
        b"<NextKeyMarker>my-second-image.jpg</NextKeyMarker>"
        b"<NextVersionIdMarker>null</NextVersionIdMarker>"
        b"<MaxKeys>3</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>"
        b"<Version><Key>my-image.jpg</Key><VersionId>3/L4kqtJl40Nr8X8gdRQBpUMLUo</VersionId>"
        b"<IsLatest>true</IsLatest><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
        b"<ETag>\"fba9dede5f27731c9771645a39863328\"</ETag><Size>434234</Size>"
        b"<StorageClass>STANDARD</StorageClass>" + owner + b"</Version>"
        b"<DeleteMarker><Key>my-second-image.jpg</Key>"
        b"<VersionId>03jpff543dhffds434rfdsFDN943fdsFkdmqnh892</VersionId>"
        b"<IsLatest>true</IsLatest><LastModified>2009-11-12T17:50:30.000Z</LastModified>"
        + owner + b"</DeleteMarker>"
        b"<Version><Key>my-second-image.jpg</Key><VersionId>null</VersionId>"
        b"<IsLatest>false</IsLatest><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
        b"<ETag>\"fba9dede5f27731c9771645a39863328\"</ETag><Size>434234</Size>"
        b"<StorageClass>STANDARD</StorageClass>" + owner + b"</Version>"
        b"<CommonPrefixes><Prefix>photos/</Prefix></CommonPrefixes>"
        b"</ListVersionsResult>"
    )


def test_list_versions_url_encoding() -> None:
    page = api.ListVersionsPage((_version("a b+c", "null", latest=True),), ("d e/",), False,
                                None, None)
    body = list_versions_body("b", {"encoding-type": "url", "key-marker": "a\u00e9",
                                    "delimiter": "/"}, 1000, page, _OWNER)
    assert b"<KeyMarker>a%C3%A9</KeyMarker>" in body
    assert b"<Key>a%20b%2Bc</Key>" in body
    assert b"<Prefix>d%20e/</Prefix>" in body
    assert b"<EncodingType>url</EncodingType>" in body
    assert b"NextKeyMarker" not in body


# --- tagging codecs ----------------------------------------------------------------------


def test_tagging_xml_round_trip() -> None:
    tags = {"a": "1", "caf\u00e9": "", "x&y": "<z>"}
    assert parse_tagging_xml(render_tagging(tags), 10, "Object") == tags


def test_empty_tag_set() -> None:
    assert parse_tagging_xml(b"<Tagging><TagSet/></Tagging>", 10, "Object") == {}
    assert render_tagging({}).endswith(b"<Tagging xmlns=\"http://s3.amazonaws.com/doc/"
                                       b"2006-03-01/\"><TagSet></TagSet></Tagging>")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"<Tagging/>", "MalformedXML"),
        (b"<TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet>", "MalformedXML"),
        (b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>", "MalformedXML"),
        (b"<Tagging><TagSet><Tag><Value>a</Value></Tag></TagSet></Tagging>", "MalformedXML"),
        (b"<Tagging><TagSet><Tag><Key></Key><Value>a</Value></Tag></TagSet></Tagging>",
         "InvalidTag"),
        (b"<Tagging><TagSet><Tag><Key>AWS:x</Key><Value>a</Value></Tag></TagSet></Tagging>",
         "InvalidTag"),
        (b"<Tagging><TagSet>" + b"<Tag><Key>k</Key><Value>v</Value></Tag>" * 2
         + b"</TagSet></Tagging>", "InvalidTag"),
        (b"<Tagging><TagSet>" + b"".join(b"<Tag><Key>k%d</Key><Value>v</Value></Tag>" % i
                                         for i in range(11)) + b"</TagSet></Tagging>",
         "BadRequest"),
    ],
)
def test_bad_tagging_xml(body: bytes, code: str) -> None:
    with pytest.raises(S3Error) as caught:
        parse_tagging_xml(body, api.limits.object_tags_max, "Object")
    assert caught.value.code == code


def test_tag_length_limits_count_characters() -> None:
    limits = api.limits
    ok = [("\u00e9" * limits.tag_key_chars_max, "\u2603" * limits.tag_value_chars_max)]
    assert parse_tagging_header(tagging_header_value(dict(ok))) == dict(ok)
    for key, value in (("k" * (limits.tag_key_chars_max + 1), "v"),
                       ("k", "v" * (limits.tag_value_chars_max + 1))):
        with pytest.raises(S3Error) as caught:
            parse_tagging_header(tagging_header_value({key: value}))
        assert caught.value.code == "InvalidTag"


def test_tagging_header() -> None:
    assert parse_tagging_header("") == {}
    assert parse_tagging_header("a=1&b%20c=d%26e&empty=&plus=x+y") == {
        "a": "1", "b c": "d&e", "empty": "", "plus": "x y"}
    with pytest.raises(S3Error) as caught:
        parse_tagging_header("a=1&a=2")
    assert caught.value.code == "InvalidTag"
    # A name without '=' is a tag with an empty value; an empty piece is malformed.
    assert parse_tagging_header("foo=bar&bar") == {"foo": "bar", "bar": ""}
    for malformed in ("a=1&&b=2", "&a=1", "a=1&"):
        with pytest.raises(S3Error) as caught:
            parse_tagging_header(malformed)
        assert caught.value.code == "InvalidTag"


@given(st.dictionaries(st.text(min_size=1, max_size=20).filter(
    lambda k: not k.lower().startswith("aws:")), st.text(max_size=30), max_size=10))
def test_tagging_header_round_trip(tags: dict[str, str]) -> None:
    try:
        encoded = tagging_header_value(tags)
        encoded.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be sent at all
        return
    assert parse_tagging_header(encoded) == tags


# --- as-of times -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "epoch_ms"),
    [
        ("2026-11-28T10:42:00Z", 1_795_862_520_000),
        ("2026-11-28t10:42:00z", 1_795_862_520_000),
        ("2026-11-28 10:42:00Z", 1_795_862_520_000),
        ("2026-11-28T11:42:00+01:00", 1_795_862_520_000),
        ("2026-11-28T05:12:00-05:30", 1_795_862_520_000),
        ("2026-11-28T10:42:00.5Z", 1_795_862_520_500),
        ("2026-11-28T10:42:00.123456789Z", 1_795_862_520_123),
        ("1795862520123", 1_795_862_520_123),
        ("0", 0),
        (" 1795862520123 ", 1_795_862_520_123),
    ],
)
def test_as_of_forms(text: str, epoch_ms: int) -> None:
    assert parse_as_of(text) == epoch_ms


@pytest.mark.parametrize(
    "text",
    ["", "now", "2026-11-28", "2026-11-28T10:42:00", "2026-11-28T10:42Z",
     "2026-02-30T10:42:00Z", "2026-11-28T24:00:00Z", "-1", "1.5", "1e12",
     "2026-11-28T10:42:00+0100", "9" * 16],
)
def test_as_of_malformed(text: str) -> None:
    with pytest.raises(S3Error) as caught:
        parse_as_of(text)
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_as_of_rfc3339_round_trip(epoch_ms: int) -> None:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
    assert parse_as_of(text) == epoch_ms
    assert parse_as_of(str(epoch_ms)) == epoch_ms
