"""Listing: ListObjects (v1) and ListObjectsV2 (both may read as of a time: ``as_of``).

Both are one storage call per page. Pages continue after the last key or common prefix
they covered: v1 exposes it as NextMarker, v2 as an opaque continuation token (that
marker, base64url-encoded).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from urllib.parse import quote

from starlette.responses import Response

from gateway.errors import invalid_argument
from gateway.s3.as_of import requested_as_of_ms
from gateway.s3.common import RequestContext
from gateway.xml import Node, bool_text, iso8601_ms, render
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


def encoder_for(encoding: str | None) -> Callable[[str], str]:
    """How keys and prefixes are written for an ``encoding-type`` (absent or 'url')."""
    if encoding is None:
        return lambda text: text
    if encoding != "url":
        raise invalid_argument("Invalid Encoding Method specified in Request",
                               "encoding-type", encoding)
    return lambda text: quote(text, safe="/")


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


def _contents(page: api.ListPage, encode, owner: Node | None) -> list[Node]:  # type: ignore[no-untyped-def]
    nodes: list[Node] = []
    for version in page.objects:
        fields: list[Node] = [
            ("Key", encode(version.key)),
            ("LastModified", iso8601_ms(version.last_modified_ms)),
            ("ETag", f'"{version.etag}"'),
        ]
        fields += [("ChecksumAlgorithm", algorithm) for algorithm in version.checksums]
        fields.append(("Size", str(version.size_bytes)))
        if owner is not None:
            fields.append(owner)
        fields.append(("StorageClass", version.storage_class))
        nodes.append(("Contents", fields))
    nodes += [("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes]
    return nodes


def list_objects_body(
    bucket: str, query: Mapping[str, str], max_keys: int, page: api.ListPage, owner: Node
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
    body += _contents(page, encode, owner)
    return render("ListBucketResult", body)


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
    owner: Node | None,
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
    body += _contents(page, encode, owner)
    return render("ListBucketResult", body)


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


def _owner(ctx: RequestContext) -> Node:
    return ("Owner", [("ID", ctx.owner.id), ("DisplayName", ctx.owner.display_name)])
