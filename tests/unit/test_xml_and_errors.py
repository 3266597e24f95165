"""Golden XML bodies and the storage -> S3 error table."""

from __future__ import annotations

import pytest

from gateway.errors import S3Error, error_for_storage
from gateway.xml import child_text, children, http_date, iso8601_ms, parse, render
from storage import api


def test_render_golden_bytes() -> None:
    body = render(
        "ListAllMyBucketsResult",
        [
            ("Owner", [("ID", "abc"), ("DisplayName", "me & you")]),
            ("Buckets", [("Bucket", [("Name", "b1"), ("CreationDate", iso8601_ms(1_000_123))])]),
            ("Skipped", None),
        ],
    )
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Owner><ID>abc</ID><DisplayName>me &amp; you</DisplayName></Owner>"
        b"<Buckets><Bucket><Name>b1</Name><CreationDate>1970-01-01T00:16:40.123Z"
        b"</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>"
    )


def test_render_text_root() -> None:
    assert render("LocationConstraint", text="eu-west-1").endswith(
        b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">eu-west-1'
        b"</LocationConstraint>"
    )


def test_dates() -> None:
    assert iso8601_ms(1445412480_007) == "2015-10-21T07:28:00.007Z"
    assert http_date(1445412480_999) == "Wed, 21 Oct 2015 07:28:00 GMT"


def test_parse_with_and_without_namespace() -> None:
    for body in (
        b"<Delete><Object><Key>a</Key></Object><Quiet>true</Quiet></Delete>",
        b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a</Key>'
        b"</Object><Quiet>true</Quiet></Delete>",
    ):
        root = parse(body)
        assert child_text(root, "Quiet") == "true"
        assert [child_text(o, "Key") for o in children(root, "Object")] == ["a"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<Delete>",
        b"not xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>',
    ],
)
def test_malformed_or_hostile_xml_is_malformed_xml(body: bytes) -> None:
    with pytest.raises(S3Error) as caught:
        parse(body)
    assert caught.value.code == "MalformedXML"


def test_oversized_xml_is_refused_before_parsing() -> None:
    with pytest.raises(S3Error) as caught:
        parse(b"<a>" + b"x" * api.limits.request_xml_body_bytes_max + b"</a>")
    assert caught.value.code == "MaxMessageLengthExceeded"


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (api.NoSuchBucket(), "NoSuchBucket", 404),
        (api.BucketAlreadyExists(), "BucketAlreadyExists", 409),
        (api.BucketAlreadyOwnedByYou(), "BucketAlreadyOwnedByYou", 409),
        (api.BucketNotEmpty(), "BucketNotEmpty", 409),
        (api.NoSuchKey(), "NoSuchKey", 404),
        (api.NoSuchVersion(), "NoSuchVersion", 404),
        (api.PreconditionFailed(), "PreconditionFailed", 412),
        (api.KeyTooLong(), "KeyTooLongError", 400),
        (api.Overloaded(), "SlowDown", 503),
        (api.InvalidArgument(), "InvalidArgument", 400),
    ],
)
def test_error_table(error: api.StorageError, code: str, status: int) -> None:
    mapped = error_for_storage(error, bucket="b", key="k")
    assert (mapped.code, mapped.status) == (code, status)


def test_every_storage_error_is_mapped() -> None:
    for name in api.__all__:
        cls = getattr(api, name)
        if isinstance(cls, type) and issubclass(cls, api.StorageError) and cls is not api.StorageError:
            error_for_storage(cls())  # raises AssertionError when unmapped


def test_error_fields_name_the_resource() -> None:
    assert error_for_storage(api.NoSuchKey(), bucket="b", key="k").fields == {"Key": "k"}
    assert error_for_storage(api.NoSuchBucket(), bucket="b").fields == {"BucketName": "b"}
    assert error_for_storage(api.Overloaded()).headers == {"Retry-After": "1"}


def test_text_is_escaped_only_where_needed() -> None:
    body = render("R", [("Key", "a&b<c>d"), ("Plain", "photos/2026/x.jpg")], namespace=False)
    assert b"<Key>a&amp;b&lt;c&gt;d</Key><Plain>photos/2026/x.jpg</Plain>" in body


def test_iso8601_matches_datetime_formatting() -> None:
    from datetime import UTC, datetime

    for epoch_ms in (0, 999, 1_000, 951_782_400_123, 1_795_884_547_999, 4_102_444_800_000):
        moment = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
        expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
        assert iso8601_ms(epoch_ms) == expected
