"""Versioning: Put/GetBucketVersioning and ListObjectVersions.

The store keeps versions, null versions and delete markers itself (``storage.engine``);
this module only translates. A bucket that never had versioning answers an empty
``VersioningConfiguration``; once Enabled it can be Suspended but never return to that
unversioned state, as in S3. ``Status`` other than Enabled/Suspended is MalformedXML
(what AWS answers); MFA delete cannot be enabled (Squall has no MFA devices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.responses import Response

from gateway.errors import S3Error, invalid_argument, malformed_xml
from gateway.s3.common import RequestContext
from gateway.s3.documents import read_document
from gateway.s3.listing import (
    ChecksumAlgorithmsXml,
    OwnerShown,
    OwnerXml,
    common_prefixes_xml,
    element_text_encoder_for,
    encoder_for,
    owner_renderer,
    parse_max_keys,
)
from gateway.xml import (
    Node,
    bool_text,
    child_text,
    escape_text,
    iso8601_ms,
    local_name,
    parse,
    render,
)
from storage import api

VERSIONING_STATES = ("Enabled", "Suspended")
MFA_DELETE_STATES = ("Enabled", "Disabled")


def parse_versioning_configuration(body: bytes) -> str | None:
    """The Status a PutBucketVersioning body asks for; None when it names none."""
    root = parse(body)
    if local_name(root) != "VersioningConfiguration":
        raise malformed_xml()
    status = child_text(root, "Status")
    mfa_delete = child_text(root, "MfaDelete")
    if status is not None and status not in VERSIONING_STATES:
        raise malformed_xml()
    if mfa_delete is not None and mfa_delete not in MFA_DELETE_STATES:
        raise malformed_xml()
    if mfa_delete == "Enabled":
        raise S3Error("NotImplemented", "MFA delete is not implemented by this server.", 501)
    if status is None and mfa_delete is None:
        raise S3Error("IllegalVersioningConfigurationException",
                      "The Versioning element must be specified", 400)
    return status


async def get_bucket_versioning(ctx: RequestContext) -> Response:
    info = await ctx.storage.get_bucket(ctx.bucket)
    children: list[Node] = [("Status", info.versioning or None)]
    return Response(render("VersioningConfiguration", children), media_type="application/xml")


async def put_bucket_versioning(ctx: RequestContext) -> Response:
    body = await read_document(ctx, api.limits.request_xml_body_bytes_max,
                               integrity_required=False)
    status = parse_versioning_configuration(body)
    if status is None:  # only MfaDelete=Disabled: nothing changes
        await ctx.storage.get_bucket(ctx.bucket)
    else:
        await ctx.storage.set_bucket_versioning(ctx.bucket, status)
    return Response(status_code=200)


# --- ListObjectVersions ------------------------------------------------------------------


def versions_xml(
    versions: Iterable[api.ListedVersion], key_text: Callable[[str], str], owner: OwnerShown
) -> str:
    """The page's ``Version`` and ``DeleteMarker`` elements, rendered one template each
    (as ``listing.contents_xml``; ``key_text`` from ``element_text_encoder_for``)."""
    owner_xml = owner_renderer(owner)
    checksum_algorithms = ChecksumAlgorithmsXml()
    parts: list[str] = []
    append = parts.append
    for version in versions:
        head = (
            f"<Key>{key_text(version.key)}</Key>"
            f"<VersionId>{escape_text(version.s3_version_id)}</VersionId>"
            f"<IsLatest>{bool_text(version.is_latest)}</IsLatest>"
            f"<LastModified>{iso8601_ms(version.last_modified_ms)}</LastModified>"
        )
        if version.is_delete_marker:
            append(f"<DeleteMarker>{head}{owner_xml(version.owner_id)}</DeleteMarker>")
            continue
        append(
            f'<Version>{head}<ETag>"{escape_text(version.etag)}"</ETag>'
            f"{checksum_algorithms(version.checksum_algorithms)}"
            f"<Size>{version.size_bytes}</Size>"
            f"<StorageClass>{escape_text(version.storage_class)}</StorageClass>"
            f"{owner_xml(version.owner_id)}</Version>"
        )
    return "".join(parts)


def list_versions_body(
    bucket: str,
    query: dict[str, str],
    max_keys: int,
    page: api.ListVersionsPage,
    owner: OwnerShown,
) -> bytes:
    """The ListVersionsResult document (pure: golden-tested)."""
    encoding_type = query.get("encoding-type")
    encode = encoder_for(encoding_type)
    delimiter = query.get("delimiter", "")
    body: list[Node] = [
        ("Name", bucket),
        ("Prefix", encode(query.get("prefix", ""))),
        ("KeyMarker", encode(query.get("key-marker", ""))),
        ("VersionIdMarker", query.get("version-id-marker", "")),
        ("NextKeyMarker", encode(page.next_key_marker)
         if page.is_truncated and page.next_key_marker is not None else None),
        ("NextVersionIdMarker", page.next_version_id_marker if page.is_truncated else None),
        ("MaxKeys", str(max_keys)),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("IsTruncated", bool_text(page.is_truncated)),
        ("EncodingType", encoding_type),
    ]
    key_text = element_text_encoder_for(encoding_type)
    entries = versions_xml(page.versions, key_text, owner)
    entries += common_prefixes_xml(page.common_prefixes, key_text)
    return render("ListVersionsResult", body, rendered_tail=entries)


async def list_object_versions(ctx: RequestContext) -> Response:
    names = ("prefix", "delimiter", "key-marker", "version-id-marker", "encoding-type")
    query = {name: value for name in names if (value := ctx.query_value(name)) is not None}
    encoder_for(query.get("encoding-type"))  # reject a bad encoding-type before any work
    max_keys = parse_max_keys(ctx.query_value("max-keys"))
    key_marker = query.get("key-marker", "")
    version_id_marker = query.get("version-id-marker", "")
    if version_id_marker and not key_marker:
        raise invalid_argument("A version-id marker cannot be specified without a key marker.",
                               "version-id-marker", version_id_marker)
    if max_keys == 0:
        await ctx.storage.get_bucket(ctx.bucket)
        page = api.ListVersionsPage((), (), False, None, None)
    else:
        page = await ctx.storage.list_object_versions(
            ctx.bucket,
            prefix=query.get("prefix", ""),
            delimiter=query.get("delimiter", ""),
            key_marker=key_marker,
            version_id_marker=version_id_marker,
            max_keys=max_keys,
        )
    owner = OwnerXml(ctx.users.owner_by_id, ctx.owner)
    body = list_versions_body(ctx.bucket, query, max_keys, page, owner)
    return Response(body, media_type="application/xml")
