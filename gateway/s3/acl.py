"""Get/PutBucketAcl and Get/PutObjectAcl (``?acl``).

Squall does not enforce ACL grants: every bucket and object is private to its owner, the
one account that can sign requests. So GetBucketAcl/GetObjectAcl answer the owner with
FULL_CONTROL, and a Put is accepted only when it asks for exactly that (the canned ACL
'private', 'bucket-owner-full-control' for an object, or an AccessControlPolicy granting
only the owner FULL_CONTROL). Anything else is refused, never silently accepted, so no
client believes a grant is in force: as AWS refuses it under the bucket's settings
(``settings.py``: 403 AccessDenied for a public canned ACL under BlockPublicAcls, 400
AccessControlListNotSupported while BucketOwnerEnforced), else 501 NotImplemented.
PutObject, CopyObject and CreateMultipartUpload apply the settings' refusals to their
ACL headers (``check_write_acl``) and store no ACL. An accepted PutObjectAcl changes
nothing, so it makes no s3:ObjectAcl:Put notification event: AWS sends none "when a
request results in no change to an object's ACL".
"""

from __future__ import annotations

from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from starlette.datastructures import Headers
from starlette.responses import Response

from gateway.errors import S3Error, invalid_argument
from gateway.requests import IndexedHeaders
from gateway.s3.common import Owner, RequestContext
from gateway.s3.settings import (
    PUBLIC_CANNED_ACLS,
    acls_not_supported,
    object_ownership,
    public_access_block,
    public_access_blocked,
)
from gateway.xml import S3_NAMESPACE, XML_DECLARATION, child_text, children, local_name, parse
from storage import api

XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
OWNER_ONLY_CANNED_ACLS = frozenset({"private", "bucket-owner-full-control"})
# Every canned ACL AWS defines; any other x-amz-acl value is 400 InvalidArgument.
CANNED_ACLS = OWNER_ONLY_CANNED_ACLS | {
    "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
    "bucket-owner-read", "log-delivery-write",
}
GRANT_HEADERS = ("x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp",
                 "x-amz-grant-write-acp", "x-amz-grant-full-control")
ACL_HEADERS = frozenset({"x-amz-acl", *GRANT_HEADERS})


def render_owner_acl(owner: Owner) -> bytes:
    """The AccessControlPolicy that grants the owner FULL_CONTROL and nobody anything."""
    owner_fields = f"<ID>{escape(owner.id)}</ID><DisplayName>{escape(owner.display_name)}</DisplayName>"
    return XML_DECLARATION + (
        f'<AccessControlPolicy xmlns="{S3_NAMESPACE}">'
        f"<Owner>{owner_fields}</Owner>"
        "<AccessControlList><Grant>"
        f'<Grantee xmlns:xsi="{XSI_NAMESPACE}" xsi:type="CanonicalUser">{owner_fields}</Grantee>'
        "<Permission>FULL_CONTROL</Permission>"
        "</Grant></AccessControlList>"
        "</AccessControlPolicy>"
    ).encode()


def grants_not_enforced(what: str) -> S3Error:
    return S3Error(
        "NotImplemented",
        f"{what} is not implemented: Squall does not enforce ACL grants; buckets and objects "
        "are private to their owner. Only the canned ACL 'private' (or a policy granting "
        "the owner FULL_CONTROL and nothing else) is accepted.",
        501,
    )


def malformed_acl() -> S3Error:
    return S3Error("MalformedACLError", "The XML you provided was not well-formed or did not "
                   "validate against our published schema.", 400)


def check_canned_acl_name(headers: Headers) -> None:
    """An ``x-amz-acl`` that names no canned ACL is malformed (400), whatever the request;
    one that names a real ACL Squall does not enforce is a separate matter (501)."""
    canned = headers.get("x-amz-acl")
    if canned is not None and canned.strip() not in CANNED_ACLS:
        raise invalid_argument("", "x-amz-acl", canned)


def check_canned_acl(headers: Headers) -> None:
    """For writes that may carry an ACL: only owner-only ACLs pass."""
    check_canned_acl_name(headers)
    for name in GRANT_HEADERS:
        if name in headers:
            raise grants_not_enforced(f"The {name} header")
    canned = headers.get("x-amz-acl")
    if canned is not None and canned.strip() not in OWNER_ONLY_CANNED_ACLS:
        raise grants_not_enforced(f"The canned ACL '{canned.strip()}'")


def _grant_is_owner_full_control(grant: Element, owner: Owner) -> bool:
    grantees = children(grant, "Grantee")
    if len(grantees) != 1:
        raise malformed_acl()
    grantee = grantees[0]
    grantee_type = grantee.get(f"{{{XSI_NAMESPACE}}}type")
    return (
        grantee_type == "CanonicalUser"
        and (child_text(grantee, "ID") or "").strip() == owner.id
        and (child_text(grant, "Permission") or "").strip() == "FULL_CONTROL"
    )


def check_policy_body(body: bytes, owner: Owner) -> None:
    root = parse(body)
    if local_name(root) != "AccessControlPolicy":
        raise malformed_acl()
    lists = children(root, "AccessControlList")
    if len(lists) != 1:
        raise malformed_acl()
    owner_id = child_text(children(root, "Owner")[0], "ID") if children(root, "Owner") else None
    if owner_id is not None and owner_id.strip() != owner.id:
        raise grants_not_enforced("Changing the owner in an ACL")
    grants = children(lists[0], "Grant")
    if not grants or not all(_grant_is_owner_full_control(g, owner) for g in grants):
        raise grants_not_enforced("An ACL granting anything but the owner's FULL_CONTROL")


def acl_grants_others(headers: Headers) -> bool:
    """Whether the request's ACL headers grant anyone but the owner."""
    canned = headers.get("x-amz-acl")
    if canned is not None and canned.strip() not in OWNER_ONLY_CANNED_ACLS:
        return True
    return any(name in headers for name in GRANT_HEADERS)


def acl_headers_present(headers: Headers) -> bool:
    # Every PutObject asks this, and almost none carries an ACL: one set operation on the
    # request's header index costs ~0.4 us of CPU here, six lookups ~1.6 us.
    if isinstance(headers, IndexedHeaders):
        return headers.has_any(ACL_HEADERS)
    return any(name in headers for name in ACL_HEADERS)


async def check_write_acl(ctx: RequestContext) -> None:
    """PutObject, CopyObject and CreateMultipartUpload may carry an ACL: the bucket's
    Block Public Access and Object Ownership settings refuse it as AWS does
    (``check_acl_settings``). One they let through is not stored: Squall keeps no
    grants (see the module doc). Costs nothing when no ACL header is present."""
    if acl_headers_present(ctx.headers):
        await check_acl_settings(ctx)


async def check_acl_settings(ctx: RequestContext) -> None:
    """An ACL request asking for more than the owner's FULL_CONTROL, against the bucket's
    settings (``settings.py``): a public canned ACL under BlockPublicAcls is 403
    AccessDenied; any such ACL under BucketOwnerEnforced is 400
    AccessControlListNotSupported. What passes is then judged by ``check_canned_acl``."""
    check_canned_acl_name(ctx.headers)  # a name that is no canned ACL: 400 first
    canned = (ctx.headers.get("x-amz-acl") or "").strip()
    if canned in PUBLIC_CANNED_ACLS and (await public_access_block(ctx))["BlockPublicAcls"]:
        raise public_access_blocked(f"The canned ACL '{canned}'")
    if acl_grants_others(ctx.headers) and await object_ownership(ctx) == "BucketOwnerEnforced":
        raise acls_not_supported()


async def _check_put_acl(ctx: RequestContext) -> None:
    await check_acl_settings(ctx)
    body = await ctx.body.read_all(api.limits.request_xml_body_bytes_max)
    has_canned = "x-amz-acl" in ctx.headers or any(h in ctx.headers for h in GRANT_HEADERS)
    if has_canned and body.strip():
        raise S3Error("UnexpectedContent", "This request does not support content", 400)
    if has_canned:
        check_canned_acl(ctx.headers)
    elif body.strip():
        try:
            check_policy_body(body, ctx.owner)
        except S3Error as error:
            # A grant beyond the owner's: with ACLs disabled that is AWS's 400, not 501.
            if error.code == "NotImplemented" and (
                    await object_ownership(ctx) == "BucketOwnerEnforced"):
                raise acls_not_supported() from error
            raise
    else:
        raise S3Error("MissingSecurityHeader", "Your request was missing a required header",
                      400, MissingHeaderName="x-amz-acl")


async def _object_exists(ctx: RequestContext) -> api.ObjectVersion:
    version = await ctx.storage.get_version(ctx.bucket, ctx.key, ctx.query_value("versionId"))
    if version.is_delete_marker:
        raise api.NoSuchKey(f"{ctx.bucket}/{ctx.key} is deleted")
    return version


async def get_bucket_acl(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    return Response(render_owner_acl(ctx.owner), media_type="application/xml")


async def put_bucket_acl(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    await _check_put_acl(ctx)
    return Response(status_code=200)


async def get_object_acl(ctx: RequestContext) -> Response:
    await _object_exists(ctx)
    return Response(render_owner_acl(ctx.owner), media_type="application/xml")


async def put_object_acl(ctx: RequestContext) -> Response:
    await _object_exists(ctx)
    await _check_put_acl(ctx)
    return Response(status_code=200)
