"""Bucket settings: Object Ownership, Block Public Access, policy status (default
encryption is ``encryption.py``'s).

* Object Ownership (``?ownershipControls``): Put/Get/DeleteBucketOwnershipControls, and
  CreateBucket's ``x-amz-object-ownership``. A new bucket gets BucketOwnerEnforced, as on
  AWS since 2023, stored like any other setting; after a Delete, Get is 404
  OwnershipControlsNotFoundError (an AWS bucket from before 2023 answers the same). In
  every mode the bucket owner owns every object (Squall has one account); the mode
  decides what an ACL request may say: with BucketOwnerEnforced ACLs are disabled, so
  one that grants anything beyond the owner's FULL_CONTROL is 400
  AccessControlListNotSupported (InvalidBucketAclWithObjectOwnership on CreateBucket).
* Block Public Access (``?publicAccessBlock``): Put/Get/DeletePublicAccessBlock, stored
  as canonical XML (an absent flag is false). Squall serves nothing publicly anyway;
  what the flags change is what a request may ask for, as AWS documents: with
  BlockPublicAcls a public canned ACL is 403 AccessDenied, with BlockPublicPolicy a
  public bucket policy is 403 AccessDenied. Without a configuration Get is 404
  NoSuchPublicAccessBlockConfiguration.

``acl.py`` and ``policy.py`` apply these settings to their requests.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import Response

from gateway.errors import S3Error, malformed_xml
from gateway.s3.common import RequestContext
from gateway.s3.documents import delete_documents, read_document, stored_document
from gateway.xml import bool_text, children, local_name, parse, render

OWNERSHIP_CONFIG = "ownership-controls"
PUBLIC_ACCESS_BLOCK_CONFIG = "public-access-block"
OBJECT_OWNERSHIP_MODES = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")
DEFAULT_OBJECT_OWNERSHIP = "BucketOwnerEnforced"
PUBLIC_ACCESS_BLOCK_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                             "RestrictPublicBuckets")
# Canned ACLs that grant someone other than the owner (AWS's "public" ones first).
PUBLIC_CANNED_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
# Settings documents are a few hundred bytes; anything near this is not one.
SETTINGS_DOCUMENT_BYTES_MAX = 64 * 1024


# --- Object Ownership ------------------------------------------------------------------


def render_ownership_controls(mode: str) -> bytes:
    return render("OwnershipControls", [("Rule", [("ObjectOwnership", mode)])])


def parse_ownership_controls(body: bytes) -> str:
    """The ObjectOwnership mode of an OwnershipControls document: exactly one Rule with
    one of the three modes, else MalformedXML (AWS's schema)."""
    root = parse(body)
    rules = children(root, "Rule")
    if local_name(root) != "OwnershipControls" or len(rules) != 1 or len(root) != 1:
        raise malformed_xml()
    modes = children(rules[0], "ObjectOwnership")
    if len(modes) != 1 or len(rules[0]) != 1:
        raise malformed_xml()
    mode = (modes[0].text or "").strip()
    if mode not in OBJECT_OWNERSHIP_MODES:
        raise malformed_xml()
    return mode


def requested_object_ownership(headers: Headers) -> str:
    """CreateBucket's ``x-amz-object-ownership`` (default BucketOwnerEnforced)."""
    mode = headers.get("x-amz-object-ownership")
    if mode is None:
        return DEFAULT_OBJECT_OWNERSHIP
    if mode not in OBJECT_OWNERSHIP_MODES:
        raise S3Error("InvalidArgument", f"Invalid x-amz-object-ownership header: {mode}", 400,
                      ArgumentName="x-amz-object-ownership", ArgumentValue=mode)
    return mode


async def put_bucket_ownership_controls(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    body = await read_document(ctx, SETTINGS_DOCUMENT_BYTES_MAX, integrity_required=True)
    mode = parse_ownership_controls(body)
    await ctx.storage.put_bucket_config(ctx.bucket, OWNERSHIP_CONFIG,
                                        render_ownership_controls(mode))
    return Response(status_code=200)


async def get_bucket_ownership_controls(ctx: RequestContext) -> Response:
    return await stored_document(
        ctx, OWNERSHIP_CONFIG, missing_code="OwnershipControlsNotFoundError",
        missing_message="The bucket ownership controls were not found")


async def delete_bucket_ownership_controls(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    return await delete_documents(ctx, OWNERSHIP_CONFIG)


# --- Block Public Access ---------------------------------------------------------------


def parse_public_access_block(body: bytes) -> dict[str, bool]:
    """The four flags of a PublicAccessBlockConfiguration (absent: false); an unknown
    element, a repeated flag or a value other than true/false is MalformedXML."""
    root = parse(body)
    if local_name(root) != "PublicAccessBlockConfiguration":
        raise malformed_xml()
    flags = dict.fromkeys(PUBLIC_ACCESS_BLOCK_FLAGS, False)
    seen: set[str] = set()
    for element in root:
        name = local_name(element)
        value = (element.text or "").strip().lower()
        if name not in flags or name in seen or value not in ("true", "false"):
            raise malformed_xml()
        seen.add(name)
        flags[name] = value == "true"
    return flags


def render_public_access_block(flags: dict[str, bool]) -> bytes:
    return render("PublicAccessBlockConfiguration",
                  [(name, bool_text(flags[name])) for name in PUBLIC_ACCESS_BLOCK_FLAGS])


async def public_access_block(ctx: RequestContext) -> dict[str, bool]:
    """The bucket's Block Public Access flags (all false without a configuration)."""
    document = await ctx.storage.get_bucket_config(ctx.bucket, PUBLIC_ACCESS_BLOCK_CONFIG)
    if document is None:
        return dict.fromkeys(PUBLIC_ACCESS_BLOCK_FLAGS, False)
    return parse_public_access_block(document)


def public_access_blocked(what: str) -> S3Error:
    return S3Error("AccessDenied", f"Access Denied: {what} is blocked by the bucket's "
                   "Block Public Access settings", 403)


async def put_public_access_block(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    body = await read_document(ctx, SETTINGS_DOCUMENT_BYTES_MAX, integrity_required=True)
    flags = parse_public_access_block(body)
    await ctx.storage.put_bucket_config(ctx.bucket, PUBLIC_ACCESS_BLOCK_CONFIG,
                                        render_public_access_block(flags))
    return Response(status_code=200)


async def get_public_access_block(ctx: RequestContext) -> Response:
    return await stored_document(
        ctx, PUBLIC_ACCESS_BLOCK_CONFIG, missing_code="NoSuchPublicAccessBlockConfiguration",
        missing_message="The public access block configuration was not found")


async def delete_public_access_block(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    return await delete_documents(ctx, PUBLIC_ACCESS_BLOCK_CONFIG)
