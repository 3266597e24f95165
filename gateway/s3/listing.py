"""Listing: ListObjects (v1) and ListObjectsV2 (both may read as of a time: ``as_of``).

Both are one storage call per page. Pages continue after the last key or common prefix
they covered: v1 exposes it as NextMarker, v2 as an opaque continuation token (that
marker, base64url-encoded).

A page's entries (up to 1000 ``Contents``, and ``CommonPrefixes``) are rendered by one
template per entry, not as trees of nodes: with dates cached per second, key encoding
that skips keys needing none, and escaping only where a value needs it, an entry costs
a few microseconds. The bytes are exactly what ``gateway.xml.render`` makes of the same
elements (golden tests, and a test against that naive rendering). ListObjectVersions
(``versioning.py``) shares the helpers.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote

from starlette.responses import Response

from gateway.errors import invalid_argument
from gateway.s3.as_of import requested_as_of_ms
from gateway.s3.common import Owner, RequestContext
from gateway.xml import Node, bool_text, escape_text, iso8601_ms, render, render_element
from storage import api


def parse_max_keys(raw: str | None) -> int:
    """max-keys clamped to [0, 1000], as S3 does; not an integer -> InvalidArgument."""
    if raw is None:
        return api.limits.list_keys_max
    try:
        value = int(raw)
    except ValueError:
        raise invalid_argument("Provided max-keys not an integer or within integer range",
                               "max-keys", raw) from None
    if value < 0:
        raise invalid_argument("Argument maxKeys must be an integer between 0 and 2147483647",
                               "max-keys", raw)
    return min(value, api.limits.list_keys_max)


# What ``quote(text, safe="/")`` leaves alone: such text is its own url encoding.
_url_encoding_unchanged = re.compile(r"[A-Za-z0-9_.~/-]*").fullmatch


def url_encode(text: str) -> str:
    """S3's ``encoding-type=url`` form of a key or prefix (``/`` kept)."""
    # Most keys need no escape: one regex match is several times cheaper than quote().
    if _url_encoding_unchanged(text):
        return text
    return quote(text, safe="/")


def encoder_for(encoding: str | None) -> Callable[[str], str]:
    """How keys and prefixes are written for an ``encoding-type`` (absent or 'url')."""
    if encoding is None:
        return lambda text: text
    if encoding != "url":
        raise invalid_argument("Invalid Encoding Method specified in Request",
                               "encoding-type", encoding)
    return url_encode


def element_text_encoder_for(encoding: str | None) -> Callable[[str], str]:
    """``encoder_for`` then escaping as element text, in one call per key: url encoding
    leaves nothing to escape ('&', '<' and '>' are percent-encoded)."""
    if encoding is None:
        return escape_text
    encoder_for(encoding)  # the same check of the encoding-type
    return url_encode


def request_encoder(ctx: RequestContext) -> Callable[[str], str]:
    """The encoder for the request's ``encoding-type`` query parameter."""
    return encoder_for(ctx.query_value("encoding-type"))


async def _page(ctx: RequestContext, start_after: str, max_keys: int) -> api.ListPage:
    prefix = ctx.query_value("prefix") or ""
    delimiter = ctx.query_value("delimiter") or ""
    as_of_ms = requested_as_of_ms(ctx)
    if max_keys == 0:
        await ctx.storage.get_bucket(ctx.bucket)
        return api.ListPage((), (), False, None)
    return await ctx.storage.list_objects(
        ctx.bucket, prefix=prefix, delimiter=delimiter, start_after=start_after,
        max_keys=max_keys, as_of_ms=as_of_ms,
    )


class OwnerXml:
    """``<Owner>`` of a listing entry, by the entry's owner id, rendered once per
    distinct owner. One per page: its cache is bounded by the page's size."""

    __slots__ = ("_owner_by_id", "_rendered", "_default")

    def __init__(self, owner_by_id: Callable[[str], Owner], default: Owner) -> None:
        self._owner_by_id = owner_by_id
        self._default = default  # whom an entry without a recorded owner shows
        self._rendered: dict[str, str] = {}

    def __call__(self, owner_id: str) -> str:
        rendered = self._rendered.get(owner_id)
        if rendered is None:
            owner = self._owner_by_id(owner_id) if owner_id else self._default
            rendered = render_element(
                ("Owner", [("ID", owner.id), ("DisplayName", owner.display_name)]))
            self._rendered[owner_id] = rendered
        return rendered


OwnerShown = Node | OwnerXml | None  # one owner for every entry, each its own, or none


def owner_renderer(owner: OwnerShown) -> Callable[[str], str]:
    if isinstance(owner, OwnerXml):
        return owner
    rendered = render_element(owner) if owner is not None else ""
    return lambda _owner_id: rendered


def contents_xml(page: api.ListPage, key_text: Callable[[str], str], owner: OwnerShown) -> str:
    """The page's ``Contents`` then ``CommonPrefixes`` elements, rendered; ``key_text``
    from ``element_text_encoder_for``."""
    owner_xml = owner_renderer(owner)
    checksum_algorithms = ChecksumAlgorithmsXml()
    parts = [
        f"<Contents><Key>{key_text(entry.key)}</Key>"
        f"<LastModified>{iso8601_ms(entry.last_modified_ms)}</LastModified>"
        f'<ETag>"{escape_text(entry.etag)}"</ETag>'
        f"{checksum_algorithms(entry.checksum_algorithms)}<Size>{entry.size_bytes}</Size>"
        f"{owner_xml(entry.owner_id)}"
        f"<StorageClass>{escape_text(entry.storage_class)}</StorageClass>"
        "</Contents>"
        for entry in page.objects
    ]
    parts.append(common_prefixes_xml(page.common_prefixes, key_text))
    return "".join(parts)


def common_prefixes_xml(prefixes: Iterable[str], key_text: Callable[[str], str]) -> str:
    return "".join(
        f"<CommonPrefixes><Prefix>{key_text(prefix)}</Prefix></CommonPrefixes>"
        for prefix in prefixes
    )


class ChecksumAlgorithmsXml:
    """``<ChecksumAlgorithm>`` elements of an entry, rendered once per distinct set of
    algorithms. One per page: its cache is bounded by the page's size."""

    __slots__ = ("_rendered",)

    def __init__(self) -> None:
        self._rendered: dict[tuple[str, ...], str] = {(): ""}

    def __call__(self, algorithms: tuple[str, ...]) -> str:
        rendered = self._rendered.get(algorithms)
        if rendered is None:
            rendered = "".join(f"<ChecksumAlgorithm>{escape_text(algorithm)}</ChecksumAlgorithm>"
                               for algorithm in algorithms)
            self._rendered[algorithms] = rendered
        return rendered


def list_objects_body(
    bucket: str, query: Mapping[str, str], max_keys: int, page: api.ListPage, owner: OwnerShown
) -> bytes:
    """The ListBucketResult document of ListObjects (v1) (pure: golden-tested)."""
    encoding_type = query.get("encoding-type")
    encode = encoder_for(encoding_type)
    delimiter = query.get("delimiter", "")
    body: list[Node] = [
        ("Name", bucket),
        ("Prefix", encode(query.get("prefix", ""))),
        ("Marker", encode(query.get("marker", ""))),
        # AWS returns NextMarker only when a delimiter was given; without one, clients
        # continue from the last key of the page.
        ("NextMarker", encode(page.next_marker)
         if page.is_truncated and delimiter and page.next_marker else None),
        ("MaxKeys", str(max_keys)),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("IsTruncated", bool_text(page.is_truncated)),
        ("EncodingType", encoding_type),
    ]
    entries = contents_xml(page, element_text_encoder_for(encoding_type), owner)
    return render("ListBucketResult", body, rendered_tail=entries)


async def list_objects(ctx: RequestContext) -> Response:
    query = _query(ctx, ("prefix", "delimiter", "marker", "encoding-type"))
    encoder_for(query.get("encoding-type"))  # reject a bad encoding-type before any work
    max_keys = parse_max_keys(ctx.query_value("max-keys"))
    page = await _page(ctx, query.get("marker", ""), max_keys)
    body = list_objects_body(ctx.bucket, query, max_keys, page, _owner(ctx))
    return Response(body, media_type="application/xml")


def encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid_argument("The continuation token provided is incorrect",
                               "continuation-token", token) from None


def list_objects_v2_body(
    bucket: str, query: Mapping[str, str], max_keys: int, page: api.ListPage,
    owner: OwnerShown,
) -> bytes:
    """The ListBucketResult document of ListObjectsV2 (pure: golden-tested). ``owner`` is
    None unless the request asked for ``fetch-owner``."""
    encoding_type = query.get("encoding-type")
    encode = encoder_for(encoding_type)
    delimiter = query.get("delimiter", "")
    start_after = query.get("start-after", "")
    body: list[Node] = [
        ("Name", bucket),
        ("Prefix", encode(query.get("prefix", ""))),
        ("KeyCount", str(len(page.objects) + len(page.common_prefixes))),
        ("MaxKeys", str(max_keys)),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("IsTruncated", bool_text(page.is_truncated)),
        ("ContinuationToken", query.get("continuation-token")),
        ("NextContinuationToken", encode_token(page.next_marker)
         if page.is_truncated and page.next_marker is not None else None),
        ("StartAfter", encode(start_after) if start_after else None),
        ("EncodingType", encoding_type),
    ]
    entries = contents_xml(page, element_text_encoder_for(encoding_type), owner)
    return render("ListBucketResult", body, rendered_tail=entries)


async def list_objects_v2(ctx: RequestContext) -> Response:
    names = ("prefix", "delimiter", "start-after", "continuation-token", "encoding-type")
    query = _query(ctx, names)
    encoder_for(query.get("encoding-type"))  # reject a bad encoding-type before any work
    max_keys = parse_max_keys(ctx.query_value("max-keys"))
    token = query.get("continuation-token")
    if token == "":
        raise invalid_argument("The continuation token provided is incorrect",
                               "continuation-token", "")
    start_after = query.get("start-after", "")
    page = await _page(ctx, decode_token(token) if token is not None else start_after, max_keys)
    fetch_owner = (ctx.query_value("fetch-owner") or "").lower() == "true"
    owner = _owner(ctx) if fetch_owner else None
    body = list_objects_v2_body(ctx.bucket, query, max_keys, page, owner)
    return Response(body, media_type="application/xml")


def _query(ctx: RequestContext, names: tuple[str, ...]) -> dict[str, str]:
    return {name: value for name in names if (value := ctx.query_value(name)) is not None}


def _owner(ctx: RequestContext) -> OwnerXml:
    """Each entry's owner: its writer (entries written before owners were recorded
    show the requester, as they did then)."""
    return OwnerXml(ctx.users.owner_by_id, ctx.owner)
