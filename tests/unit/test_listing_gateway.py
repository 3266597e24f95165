"""ListObjects (v1) and ListObjectsV2 documents: golden bytes with every field (owner,
checksum algorithms, escaping, url encoding, markers, common prefixes), and the entry
templates of all three listings against the naive rendering of trees of nodes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import xml
from gateway.s3.listing import (
    contents_xml,
    element_text_encoder_for,
    encoder_for,
    list_objects_body,
    list_objects_v2_body,
    url_encode,
)
from gateway.s3.versioning import versions_xml
from gateway.xml import Node, bool_text, iso8601_ms, render_element
from storage import api

_OWNER: Node = ("Owner", [("ID", "75aa57f09aa0c8ca"), ("DisplayName", "me&you")])
_OWNER_XML = b"<Owner><ID>75aa57f09aa0c8ca</ID><DisplayName>me&amp;you</DisplayName></Owner>"


def _object(key: str, *, ms: int, size: int, checksums: tuple[str, ...] = (),
            storage_class: str = "STANDARD") -> api.ListedVersion:
    return api.ListedVersion(
        key=key, version_id="0" * 16, s3_version_id="null", last_modified_ms=ms,
        size_bytes=size, etag="fba9dede5f27731c9771645a39863328",
        storage_class=storage_class, checksum_algorithms=checksums,
        is_delete_marker=False, is_latest=True,
    )


def _full(entry: api.ListedVersion) -> api.ObjectVersion:
    """The same version as ``get_version`` would give it."""
    return api.ObjectVersion(
        bucket="b", key=entry.key, version_id=entry.version_id,
        last_modified_ms=entry.last_modified_ms, size_bytes=entry.size_bytes,
        etag=entry.etag, storage_class=entry.storage_class,
        checksums={algorithm: "AAAAAA==" for algorithm in entry.checksum_algorithms},
    )


def _page(*, truncated: bool, next_marker: str | None) -> api.ListPage:
    return api.ListPage(
        objects=(
            _object("my image & <more>.jpg", ms=1_255_369_830_000, size=434234),
            _object("my-movie.m2ts", ms=1_255_369_830_007, size=5, checksums=("CRC32",),
                    storage_class="GLACIER"),
            _object("my\u00e9 two+three", ms=1_258_048_230_999, size=0,
                    checksums=("CRC32C", "SHA256")),
        ),
        common_prefixes=("my photos/", "my&x/"),
        is_truncated=truncated,
        next_marker=next_marker,
    )


_CONTENTS_PLAIN = (
    b"<Contents><Key>my image &amp; &lt;more&gt;.jpg</Key>"
    b"<LastModified>2009-10-12T17:50:30.000Z</LastModified>"
    b"<ETag>\"fba9dede5f27731c9771645a39863328\"</ETag><Size>434234</Size>"
    b"{owner}<StorageClass>STANDARD</StorageClass></Contents>"
    b"<Contents><Key>my-movie.m2ts</Key>"
    b"<LastModified>2009-10-12T17:50:30.007Z</LastModified>"
    b"<ETag>\"fba9dede5f27731c9771645a39863328\"</ETag>"
    b"<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>5</Size>"
    b"{owner}<StorageClass>GLACIER</StorageClass></Contents>"
    b"<Contents><Key>my\xc3\xa9 two+three</Key>"
    b"<LastModified>2009-11-12T17:50:30.999Z</LastModified>"
    b"<ETag>\"fba9dede5f27731c9771645a39863328\"</ETag>"
    b"<ChecksumAlgorithm>CRC32C</ChecksumAlgorithm>"
    b"<ChecksumAlgorithm>SHA256</ChecksumAlgorithm><Size>0</Size>"
    b"{owner}<StorageClass>STANDARD</StorageClass></Contents>"
    b"<CommonPrefixes><Prefix>my photos/</Prefix></CommonPrefixes>"
    b"<CommonPrefixes><Prefix>my&amp;x/</Prefix></CommonPrefixes>"
)
_CONTENTS_URL = (
    b"<Contents><Key>my%20image%20%26%20%3Cmore%3E.jpg</Key>"
    b"<LastModified>2009-10-12T17:50:30.000Z</LastModified>"
    b"<ETag>\"fba9dede5f27731c9771645a39863328\"</ETag><Size>434234</Size>"
    b"{owner}<StorageClass>STANDARD</StorageClass></Contents>"
    b"<Contents><Key>my-movie.m2ts</Key>"
    b"<LastModified>2009-10-12T17:50:30.007Z</LastModified>"
    b"<ETag>\"fba9dede5f27731c9771645a39863328\"</ETag>"
    b"<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>5</Size>"
    b"{owner}<StorageClass>GLACIER</StorageClass></Contents>"
    b"<Contents><Key>my%C3%A9%20two%2Bthree</Key>"
    b"<LastModified>2009-11-12T17:50:30.999Z</LastModified>"
    b"<ETag>\"fba9dede5f27731c9771645a39863328\"</ETag>"
    b"<ChecksumAlgorithm>CRC32C</ChecksumAlgorithm>"
    b"<ChecksumAlgorithm>SHA256</ChecksumAlgorithm><Size>0</Size>"
    b"{owner}<StorageClass>STANDARD</StorageClass></Contents>"
    b"<CommonPrefixes><Prefix>my%20photos/</Prefix></CommonPrefixes>"
    b"<CommonPrefixes><Prefix>my%26x/</Prefix></CommonPrefixes>"
)
_HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n' \
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'


def test_list_objects_v1_golden_bytes() -> None:
    page = _page(truncated=True, next_marker="my&x/")
    query = {"prefix": "my", "delimiter": "/", "marker": "a<b"}
    assert list_objects_body("bucket", query, 5, page, _OWNER) == (
        _HEAD + b"<Name>bucket</Name><Prefix>my</Prefix><Marker>a&lt;b</Marker>"
        b"<NextMarker>my&amp;x/</NextMarker><MaxKeys>5</MaxKeys><Delimiter>/</Delimiter>"
        b"<IsTruncated>true</IsTruncated>"
        + _CONTENTS_PLAIN.replace(b"{owner}", _OWNER_XML) + b"</ListBucketResult>"
    )


def test_list_objects_v1_url_encoding_and_no_next_marker_without_delimiter() -> None:
    page = _page(truncated=True, next_marker="my&x/")
    query = {"prefix": "my ", "marker": "a\u00e9", "encoding-type": "url"}
    assert list_objects_body("bucket", query, 1000, page, _OWNER) == (
        _HEAD + b"<Name>bucket</Name><Prefix>my%20</Prefix><Marker>a%C3%A9</Marker>"
        b"<MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
        b"<EncodingType>url</EncodingType>"
        + _CONTENTS_URL.replace(b"{owner}", _OWNER_XML) + b"</ListBucketResult>"
    )


def test_list_objects_v2_golden_bytes_with_owner_and_url_encoding() -> None:
    page = _page(truncated=True, next_marker="my&x/")
    query = {"prefix": "my", "delimiter": "/", "start-after": "a b", "encoding-type": "url",
             "continuation-token": "YQ=="}
    assert list_objects_v2_body("bucket", query, 5, page, _OWNER) == (
        _HEAD + b"<Name>bucket</Name><Prefix>my</Prefix><KeyCount>5</KeyCount>"
        b"<MaxKeys>5</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>"
        b"<ContinuationToken>YQ==</ContinuationToken>"
        b"<NextContinuationToken>bXkmeC8=</NextContinuationToken>"
        b"<StartAfter>a%20b</StartAfter><EncodingType>url</EncodingType>"
        + _CONTENTS_URL.replace(b"{owner}", _OWNER_XML) + b"</ListBucketResult>"
    )


def test_list_objects_v2_golden_bytes_without_owner() -> None:
    page = _page(truncated=False, next_marker=None)
    assert list_objects_v2_body("bucket", {}, 1000, page, None) == (
        _HEAD + b"<Name>bucket</Name><Prefix></Prefix><KeyCount>5</KeyCount>"
        b"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
        + _CONTENTS_PLAIN.replace(b"{owner}", b"") + b"</ListBucketResult>"
    )


def test_object_versions_render_as_the_listed_versions_they_are() -> None:
    """Pages may hold ``ObjectVersion``s (tests built before ``ListedVersion`` do):
    ``checksum_algorithms`` is the one attribute the templates read that needed adding."""
    listed = _page(truncated=True, next_marker="my&x/")
    full = dataclasses.replace(listed, objects=tuple(_full(o) for o in listed.objects))
    assert [_full(o).checksum_algorithms for o in listed.objects] == [
        o.checksum_algorithms for o in listed.objects]
    for owner in (_OWNER, None):
        assert (list_objects_v2_body("b", {}, 5, full, owner)
                == list_objects_v2_body("b", {}, 5, listed, owner))


def test_empty_pages() -> None:
    empty = api.ListPage((), (), False, None)
    assert list_objects_v2_body("b", {}, 0, empty, None) == (
        _HEAD + b"<Name>b</Name><Prefix></Prefix><KeyCount>0</KeyCount>"
        b"<MaxKeys>0</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"
    )
    assert list_objects_body("b", {}, 0, empty, _OWNER) == (
        _HEAD + b"<Name>b</Name><Prefix></Prefix><Marker></Marker>"
        b"<MaxKeys>0</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"
    )


# --- the templates against the naive rendering (trees of nodes, as before) -----------------

_TEXT = st.text(alphabet="ab/ &<>\"'+%\u00e9\u4e2d~-_.", min_size=1, max_size=12)


@st.composite
def _listed(draw: st.DrawFn) -> api.ListedVersion:
    version_id = draw(st.sampled_from(["null", "0123456789abcdef"]))
    return api.ListedVersion(
        key=draw(_TEXT),
        version_id="0123456789abcdef",
        s3_version_id=version_id,
        last_modified_ms=draw(st.integers(0, 4_102_444_800_000)),
        size_bytes=draw(st.integers(0, 5 * 1024**4)),
        etag=draw(st.sampled_from(["fba9dede5f27731c9771645a39863328", "abc-12", "a&b"])),
        storage_class=draw(st.sampled_from(["STANDARD", "GLACIER", "X<Y"])),
        checksum_algorithms=tuple(draw(st.lists(st.sampled_from(["CRC32", "SHA1", "A&B"]),
                                                max_size=2, unique=True))),
        is_delete_marker=draw(st.booleans()),
        is_latest=draw(st.booleans()),
    )


def _naive_contents(page: api.ListPage, encode, owner: Node | None) -> str:  # type: ignore[no-untyped-def]
    nodes: list[Node] = []
    for version in page.objects:
        fields: list[Node] = [
            ("Key", encode(version.key)),
            ("LastModified", iso8601_ms(version.last_modified_ms)),
            ("ETag", f'"{version.etag}"'),
        ]
        fields += [("ChecksumAlgorithm", a) for a in version.checksum_algorithms]
        fields.append(("Size", str(version.size_bytes)))
        if owner is not None:
            fields.append(owner)
        fields.append(("StorageClass", version.storage_class))
        nodes.append(("Contents", fields))
    nodes += [("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes]
    return "".join(render_element(node) for node in nodes)


def _naive_versions(versions: list[api.ListedVersion], encode, owner: Node) -> str:  # type: ignore[no-untyped-def]
    nodes: list[Node] = []
    for version in versions:
        fields: list[Node] = [
            ("Key", encode(version.key)),
            ("VersionId", version.s3_version_id),
            ("IsLatest", bool_text(version.is_latest)),
            ("LastModified", iso8601_ms(version.last_modified_ms)),
        ]
        if version.is_delete_marker:
            nodes.append(("DeleteMarker", [*fields, owner]))
            continue
        fields.append(("ETag", f'"{version.etag}"'))
        fields += [("ChecksumAlgorithm", a) for a in version.checksum_algorithms]
        fields += [("Size", str(version.size_bytes)), ("StorageClass", version.storage_class),
                   owner]
        nodes.append(("Version", fields))
    return "".join(render_element(node) for node in nodes)


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(_listed(), max_size=6), prefixes=st.lists(_TEXT, max_size=3),
       encoding=st.sampled_from([None, "url"]), with_owner=st.booleans())
def test_templates_render_what_the_naive_renderer_does(
    entries: list[api.ListedVersion], prefixes: list[str], encoding: str | None,
    with_owner: bool,
) -> None:
    encode, key_text = encoder_for(encoding), element_text_encoder_for(encoding)
    owner = _OWNER if with_owner else None
    page = api.ListPage(tuple(entries), tuple(prefixes), False, None)
    assert contents_xml(page, key_text, owner) == _naive_contents(page, encode, owner)
    assert versions_xml(entries, key_text, _OWNER) == _naive_versions(entries, encode, _OWNER)


@given(_TEXT)
def test_url_encoding_is_quote_with_slash_safe(text: str) -> None:
    assert url_encode(text) == quote(text, safe="/")


def test_date_cache_is_bounded_and_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.limits, "xml_dates_cached_max", 3)
    monkeypatch.setattr(xml, "_iso8601_seconds", {})
    for epoch_ms in range(0, 10_000_000_000, 999_999_937):
        expected = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert iso8601_ms(epoch_ms) == expected
        assert len(xml._iso8601_seconds) <= 3
