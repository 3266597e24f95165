"""Bucket operations: ListBuckets, CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation.

ListBuckets pages as AWS does since 2024: without ``max-buckets`` every bucket (the
old behaviour clients rely on); with it, at most that many, and a ContinuationToken
(the last name of the page, base64url-encoded, like ListObjectsV2's) while more remain.
``prefix`` filters by name; ``bucket-region`` must name this endpoint's region.
"""

from __future__ import annotations

import ipaddress
import re

from starlette.responses import Response

from gateway.errors import S3Error, invalid_argument
from gateway.s3.acl import ACL_CONFIG, acl_from_headers, document_for
from gateway.s3.common import RequestContext
from gateway.s3.listing import decode_token, encode_token
from gateway.s3.settings import (
    OWNERSHIP_CONFIG,
    render_ownership_controls,
    requested_object_ownership,
)
from gateway.xml import child_text, iso8601_ms, local_name, parse, render
from storage import api

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` breaks AWS's bucket naming rules, or None if it is valid."""
    limits = api.limits
    if not limits.bucket_name_length_min <= len(name) <= limits.bucket_name_length_max:
        return "Bucket names must be between 3 and 63 characters long"
    if not _BUCKET_NAME.fullmatch(name):
        return (
            "Bucket names can consist only of lowercase letters, numbers, dots and hyphens, "
            "and must begin and end with a letter or number"
        )
    if ".." in name or ".-" in name or "-." in name:
        return "Bucket names must not contain two adjacent periods or a period next to a hyphen"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        return "Bucket names must not be formatted as an IP address"
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return "Bucket names must not use a reserved prefix or suffix"
    return None


def check_bucket_name(name: str) -> None:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise S3Error("InvalidBucketName", f"The specified bucket is not valid. {problem}.",
                      400, BucketName=name)


def parse_max_buckets(raw: str | None) -> int | None:
    """ListBuckets' max-buckets: None when absent (every bucket, as before pagination
    existed); an integer in 1..list_buckets_max, else InvalidArgument (AWS refuses, it
    does not clamp)."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= api.limits.list_buckets_max:
        raise invalid_argument(
            f"max-buckets must be an integer between 1 and {api.limits.list_buckets_max}",
            "max-buckets", raw)
    return value


def list_buckets_page(
    buckets: list[api.BucketInfo], prefix: str, after: str, max_buckets: int | None,
) -> tuple[list[api.BucketInfo], str | None]:
    """The page of ``buckets`` (by name) whose names start with ``prefix`` and sort after
    ``after``, at most ``max_buckets`` of them, and the name to continue after when more
    remain (None on the last page)."""
    chosen = sorted((b for b in buckets if b.name.startswith(prefix) and b.name > after),
                    key=lambda b: b.name)
    if max_buckets is None or len(chosen) <= max_buckets:
        return chosen, None
    page = chosen[:max_buckets]
    return page, page[-1].name


async def list_buckets(ctx: RequestContext) -> Response:
    max_buckets = parse_max_buckets(ctx.query_value("max-buckets"))
    token = ctx.query_value("continuation-token")
    if token == "":
        raise invalid_argument("The continuation token provided is incorrect",
                               "continuation-token", "")
    after = decode_token(token) if token is not None else ""
    region = ctx.query_value("bucket-region")
    if region is not None and region != ctx.config.region:
        # AWS: bucket-region naming another Region than the endpoint's is InvalidArgument.
        raise invalid_argument("The bucket-region parameter names another region",
                               "bucket-region", region)
    prefix = ctx.query_value("prefix")
    buckets = await ctx.storage.list_buckets(ctx.owner.id)
    page, next_after = list_buckets_page(buckets, prefix or "", after, max_buckets)
    body = render(
        "ListAllMyBucketsResult",
        [
            ("Owner", [("ID", ctx.owner.id), ("DisplayName", ctx.owner.display_name)]),
            (
                "Buckets",
                [
                    ("Bucket", [("Name", b.name), ("CreationDate", iso8601_ms(b.created_ms)),
                                ("BucketRegion", ctx.config.region)])
                    for b in page
                ],
            ),
            ("ContinuationToken", encode_token(next_after) if next_after is not None else None),
            ("Prefix", prefix),
        ],
    )
    return Response(body, media_type="application/xml")


async def _location_constraint(ctx: RequestContext) -> str | None:
    body = await ctx.body.read_all(api.limits.request_xml_body_bytes_max)
    if not body.strip():
        return None
    root = parse(body)
    if local_name(root) != "CreateBucketConfiguration":
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did "
                      "not validate against our published schema.", 400)
    return child_text(root, "LocationConstraint") or None


async def create_bucket(ctx: RequestContext) -> Response:
    check_bucket_name(ctx.bucket)
    constraint = await _location_constraint(ctx)
    if constraint is not None and constraint != ctx.config.region:
        raise S3Error(
            "InvalidLocationConstraint",
            "The specified location-constraint is not valid",
            400,
            LocationConstraint=constraint,
        )
    # The ACL asked for (canned or grant headers), validated before the bucket exists.
    acl = acl_from_headers(ctx.headers, ctx.owner.id, ctx.owner.id, ctx.users.knows_id)
    lock_header = ctx.headers.get("x-amz-bucket-object-lock-enabled", "false").strip().lower()
    if lock_header not in ("true", "false"):
        raise S3Error("InvalidArgument", "x-amz-bucket-object-lock-enabled must be true or false",
                      400, ArgumentName="x-amz-bucket-object-lock-enabled")
    ownership = requested_object_ownership(ctx.headers)
    if acl is not None and document_for(acl) is not None and (
            ownership == "BucketOwnerEnforced"):  # grants beyond the owner's, ACLs off
        raise S3Error("InvalidBucketAclWithObjectOwnership",
                      "Bucket cannot have ACLs set with ObjectOwnership's "
                      "BucketOwnerEnforced setting", 400)
    try:
        await ctx.storage.create_bucket(ctx.bucket, ctx.owner.id,
                                        object_lock_enabled=lock_header == "true")
    except api.BucketAlreadyOwnedByYou:
        # AWS: in us-east-1, re-creating a bucket you own answers 200 for legacy
        # compatibility (and sets the ACL the request carries); every other region
        # answers 409 BucketAlreadyOwnedByYou.
        if ctx.config.region != "us-east-1":
            raise
    else:
        # Stored right after the bucket (storage has no create-with-settings): a Get in
        # between would see no ownership controls, as on an AWS bucket from before 2023.
        await ctx.storage.put_bucket_config(ctx.bucket, OWNERSHIP_CONFIG,
                                            render_ownership_controls(ownership))
    if acl is not None:
        await ctx.storage.put_bucket_config(ctx.bucket, ACL_CONFIG, document_for(acl))
    return Response(status_code=200, headers={"Location": f"/{ctx.bucket}"})


async def delete_bucket(ctx: RequestContext) -> Response:
    await ctx.storage.delete_bucket(ctx.bucket)
    return Response(status_code=204)


async def head_bucket(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    return Response(
        status_code=200,
        headers={"x-amz-bucket-region": ctx.config.region, "x-amz-access-point-alias": "false"},
    )


async def get_bucket_location(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    # AWS answers an empty LocationConstraint for us-east-1.
    region = "" if ctx.config.region == "us-east-1" else ctx.config.region
    body = render("LocationConstraint", text=region)
    return Response(body, media_type="application/xml")
