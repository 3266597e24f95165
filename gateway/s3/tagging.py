"""Tagging: Put/Get/DeleteObjectTagging, Put/Get/DeleteBucketTagging, and the tag-set
codecs PutObject and CreateMultipartUpload (``x-amz-tagging``) and CopyObject
(``x-amz-tagging-directive``) use.

An object's tags live in its version record; replacing them rewrites that one record
(``StorageClient.replace_tags``) and makes no new version, as in S3. The replacement
carries its notification event (s3:ObjectTagging:Put, or :Delete for
DeleteObjectTagging), written by storage in the same transaction. A bucket's tags are
a configuration document (``put_bucket_config(bucket, "tagging", ...)``) kept as the
canonical Tagging XML this module renders.

Validation follows AWS: more tags than allowed is 400 BadRequest; a key or value too
long, an empty key, a duplicate key or the reserved ``aws:`` prefix is 400 InvalidTag;
XML that is not a Tagging document is MalformedXML.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

from starlette.responses import Response

from gateway import authz
from gateway.errors import S3Error, malformed_xml
from gateway.s3.common import RequestContext, addressed_version, version_id_headers
from gateway.s3.documents import delete_documents, read_document, stored_document
from gateway.xml import Node, child_text, children, local_name, parse, render
from storage import api

BUCKET_TAGGING_DOCUMENT = "tagging"
TAGGING_HEADER = "x-amz-tagging"
TAGGING_DIRECTIVE_HEADER = "x-amz-tagging-directive"
_RESERVED_PREFIX = "aws:"


def invalid_tag(message: str) -> S3Error:
    return S3Error("InvalidTag", message, 400)


def check_tags(pairs: list[tuple[str, str]], tags_max: int, what: str) -> dict[str, str]:
    """The tag set of ``pairs`` after AWS's checks; raises the S3 error AWS answers."""
    limits = api.limits
    tags: dict[str, str] = {}
    for key, value in pairs:
        if not 1 <= len(key) <= limits.tag_key_chars_max:
            raise invalid_tag(f"The TagKey you have provided is invalid (1 to "
                              f"{limits.tag_key_chars_max} characters)")
        if len(value) > limits.tag_value_chars_max:
            raise invalid_tag(f"The TagValue you have provided is too long, max "
                              f"{limits.tag_value_chars_max}")
        if key.lower().startswith(_RESERVED_PREFIX):
            raise invalid_tag("Your TagKey cannot be prefixed with aws:")
        if key in tags:
            raise invalid_tag("Cannot provide multiple Tags with the same key")
        tags[key] = value
    if len(tags) > tags_max:
        raise S3Error("BadRequest", f"{what} tags cannot be greater than {tags_max}", 400)
    return tags


def parse_tagging_xml(body: bytes, tags_max: int, what: str) -> dict[str, str]:
    """``<Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>``."""
    root = parse(body)
    tag_sets = children(root, "TagSet")
    if local_name(root) != "Tagging" or len(tag_sets) != 1:
        raise malformed_xml()
    pairs: list[tuple[str, str]] = []
    for tag in children(tag_sets[0], "Tag"):
        key, value = child_text(tag, "Key"), child_text(tag, "Value")
        if key is None or value is None:
            raise malformed_xml()
        pairs.append((key, value))
    return check_tags(pairs, tags_max, what)


def parse_tagging_header(value: str) -> dict[str, str]:
    """``x-amz-tagging``: a URL-encoded query string, ``k1=v1&k2=v2``. A name without
    ``=`` is a tag with an empty value, as in any query string (``foo=bar&bar``: s3-tests'
    test_put_obj_with_tags, written against S3); an empty piece (``a=1&&b=2``) is not."""
    try:
        if value and "" in value.split("&"):
            raise ValueError("an empty query field")
        pairs = parse_qsl(value, keep_blank_values=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise invalid_tag("The header 'x-amz-tagging' shall be encoded as UTF-8 then "
                          "URLEncoded URL query parameters without tag name duplicates.") from None
    return check_tags(pairs, api.limits.object_tags_max, "Object")


def requested_tags(ctx: RequestContext) -> dict[str, str]:
    """The tag set a write (PutObject, CreateMultipartUpload) asks for in x-amz-tagging;
    {} when the header is absent."""
    value = ctx.headers.get(TAGGING_HEADER)
    return parse_tagging_header(value) if value is not None else {}


def render_tagging(tags: Mapping[str, str]) -> bytes:
    """The tag set in key order, not the order it was given in (s3-tests'
    test_put_obj_with_tags sends 'foo=bar&bar' and reads back bar, then foo)."""
    tag_nodes: list[Node] = [("Tag", [("Key", k), ("Value", v)]) for k, v in sorted(tags.items())]
    return render("Tagging", [("TagSet", tag_nodes)])


def tagging_header_value(tags: Mapping[str, str]) -> str:
    """The ``x-amz-tagging`` form of a tag set (used by tests and tools)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in tags.items())


def tags_for_copy(ctx: RequestContext, source: api.ObjectVersion) -> dict[str, str]:
    """CopyObject's tag set: the source's (COPY, the default) or x-amz-tagging (REPLACE)."""
    directive = ctx.headers.get(TAGGING_DIRECTIVE_HEADER, "COPY").upper()
    if directive == "COPY":
        return dict(source.tags)
    if directive == "REPLACE":
        return parse_tagging_header(ctx.headers.get(TAGGING_HEADER, ""))
    raise S3Error("InvalidArgument", "Unknown tagging directive.", 400,
                  ArgumentName=TAGGING_DIRECTIVE_HEADER, ArgumentValue=directive)


# --- object tagging ----------------------------------------------------------------------


async def _tagged_version(ctx: RequestContext) -> api.ObjectVersion:
    """The version a tagging request addresses (delete markers answer as GET does),
    checked against the requester's permission."""
    version = await addressed_version(ctx)
    await authz.check_object(ctx, version)
    return version


async def get_object_tagging(ctx: RequestContext) -> Response:
    version = await _tagged_version(ctx)
    return Response(render_tagging(version.tags), media_type="application/xml",
                    headers=version_id_headers(version))


async def put_object_tagging(ctx: RequestContext) -> Response:
    body = await read_document(ctx, api.limits.request_xml_body_bytes_max,
                               integrity_required=False)
    tags = parse_tagging_xml(body, api.limits.object_tags_max, "Object")
    version = await _tagged_version(ctx)
    updated = await ctx.storage.replace_tags(ctx.bucket, ctx.key, version.version_id, tags,
                                             event_name="s3:ObjectTagging:Put",
                                             origin=ctx.event_origin())
    return Response(status_code=200, headers=version_id_headers(updated))


async def delete_object_tagging(ctx: RequestContext) -> Response:
    version = await _tagged_version(ctx)
    updated = await ctx.storage.replace_tags(ctx.bucket, ctx.key, version.version_id, {},
                                             event_name="s3:ObjectTagging:Delete",
                                             origin=ctx.event_origin())
    return Response(status_code=204, headers=version_id_headers(updated))


# --- bucket tagging ----------------------------------------------------------------------


async def get_bucket_tagging(ctx: RequestContext) -> Response:
    return await stored_document(ctx, BUCKET_TAGGING_DOCUMENT, missing_code="NoSuchTagSet",
                                 missing_message="The TagSet does not exist")


async def put_bucket_tagging(ctx: RequestContext) -> Response:
    body = await read_document(ctx, api.limits.request_xml_body_bytes_max,
                               integrity_required=False)
    tags = parse_tagging_xml(body, api.limits.bucket_tags_max, "Bucket")
    await ctx.storage.put_bucket_config(ctx.bucket, BUCKET_TAGGING_DOCUMENT,
                                        render_tagging(tags))
    return Response(status_code=204)


async def delete_bucket_tagging(ctx: RequestContext) -> Response:
    return await delete_documents(ctx, BUCKET_TAGGING_DOCUMENT)
