"""Put/Get/DeleteBucketPolicy (``?policy``): validated, stored byte for byte, enforced.

A policy is kept as the client sent it (GetBucketPolicy returns it byte for byte) after
``gateway.policy_eval.parse_policy`` accepted it: a JSON object with an optional Version
(2012-10-17 or 2008-10-17) and a non-empty Statement (one object or a list of them), each
with Effect Allow|Deny, Principal or NotPrincipal (not with Allow), Action or NotAction
('s3:...' or '*'), Resource or NotResource (ARNs of this bucket or its objects), optional
Sid, and a Condition of AWS's operators. Failures are 400 MalformedPolicy with a message
naming the problem.

Enforcement is ``gateway/bucket_policy.py``, called by ``Gateway._authorize`` for every
request to a bucket; the parse is cached there per bucket, so a stored policy applies to
the very next request.

Whether a policy is *public* follows AWS's rule ("The meaning of public"): an Allow
statement for every principal (``*``, ``{"AWS": "*"}``, or any NotPrincipal) is public
unless one of its conditions pins a key that names who may ask (source IP range,
account, organisation, VPC, ARN ...) to fixed values. It decides GetBucketPolicyStatus;
under the bucket's BlockPublicPolicy setting (``settings.py``) it refuses PutBucketPolicy
with 403 AccessDenied, and under RestrictPublicBuckets a public policy lets no
anonymous request in (``Gateway._authorize``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from gateway.bucket_policy import POLICY_CONFIG
from gateway.errors import S3Error
from gateway.policy_eval import PolicyError, parse_policy
from gateway.s3.common import RequestContext
from gateway.s3.documents import delete_documents, stored_document
from gateway.s3.settings import (
    PUBLIC_ACCESS_BLOCK_CONFIG,
    parse_public_access_block,
    public_access_block,
    public_access_blocked,
)
from gateway.xml import bool_text, render
from storage import api

# Condition keys that, pinned to fixed values, make an Allow-everyone statement
# non-public (AWS's list; compared in lower case, as IAM compares keys).
_PINNING_CONDITION_KEYS = frozenset({
    "aws:sourceip", "aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceowner",
    "aws:sourceaccount", "aws:principalorgid", "aws:principalaccount", "aws:userid",
    "s3:dataaccesspointarn", "s3:dataaccesspointaccount",
})
# Condition operators that compare for equality (a wildcard or a negation pins nothing).
_PINNING_OPERATORS = frozenset({"stringequals", "stringequalsignorecase", "arnequals",
                                "ipaddress"})
_ANY_ADDRESS = frozenset({"0.0.0.0/0", "::/0"})


def malformed_policy(message: str) -> S3Error:
    return S3Error("MalformedPolicy", message, 400)


def check_policy(document: bytes, bucket: str) -> None:
    """Raise MalformedPolicy unless ``document`` is a valid policy for ``bucket``."""
    try:
        parse_policy(document, bucket)
    except PolicyError as error:
        raise malformed_policy(error.message) from error


def _grants_everyone(statement: dict[str, Any]) -> bool:
    if "NotPrincipal" in statement:
        return True
    principal = statement.get("Principal")
    if principal == "*":
        return True
    return isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _pins_requester(condition: Any) -> bool:
    """Whether a statement's Condition limits it to fixed requesters."""
    if not isinstance(condition, dict):
        return False
    for operator, tests in condition.items():
        base = str(operator).lower().removeprefix("forallvalues:").removeprefix("foranyvalue:")
        if base not in _PINNING_OPERATORS or not isinstance(tests, dict):
            continue
        for key, values in tests.items():
            fixed = [v for v in _as_list(values) if isinstance(v, str) and v
                     and "*" not in v and "?" not in v and v not in _ANY_ADDRESS]
            if str(key).lower() in _PINNING_CONDITION_KEYS and fixed:
                return True
    return False


def policy_is_public(document: bytes) -> bool:
    """AWS's rule: some Allow statement grants every principal without pinning the
    requester. ``document`` has passed ``check_policy``."""
    statements = json.loads(document).get("Statement")
    for statement in _as_list(statements):
        if (statement.get("Effect") == "Allow" and _grants_everyone(statement)
                and not _pins_requester(statement.get("Condition"))):
            return True
    return False


async def public_policy_restricted(storage: api.StorageClient, bucket: str) -> bool:
    """Whether the bucket's RestrictPublicBuckets setting is on and its policy is public:
    then the policy lets no anonymous request in (AWS: only principals of the owner's
    account, and AWS services, may use such a bucket). Asked only for an anonymous
    request a policy allowed, so the common request pays nothing for it."""
    settings_document = await storage.get_bucket_config(bucket, PUBLIC_ACCESS_BLOCK_CONFIG)
    if settings_document is None:
        return False
    if not parse_public_access_block(bytes(settings_document))["RestrictPublicBuckets"]:
        return False
    document = await storage.get_bucket_config(bucket, POLICY_CONFIG)
    return document is not None and policy_is_public(bytes(document))


async def put_bucket_policy(ctx: RequestContext) -> Response:
    document = await ctx.body.read_all(api.limits.bucket_policy_bytes_max)
    check_policy(document, ctx.bucket)
    if policy_is_public(document) and (await public_access_block(ctx))["BlockPublicPolicy"]:
        raise public_access_blocked("A public bucket policy")
    await ctx.storage.put_bucket_config(ctx.bucket, POLICY_CONFIG, document)
    return Response(status_code=204)


async def get_bucket_policy(ctx: RequestContext) -> Response:
    return await stored_document(ctx, POLICY_CONFIG, missing_code="NoSuchBucketPolicy",
                                 missing_message="The bucket policy does not exist",
                                 media_type="application/json")


async def delete_bucket_policy(ctx: RequestContext) -> Response:
    return await delete_documents(ctx, POLICY_CONFIG)


async def get_bucket_policy_status(ctx: RequestContext) -> Response:
    """IsPublic: whether the stored policy is public. ACLs never make a Squall bucket
    public (grants beyond the owner's are refused), so only the policy counts."""
    document = await ctx.storage.get_bucket_config(ctx.bucket, POLICY_CONFIG)
    is_public = document is not None and policy_is_public(document)
    body = render("PolicyStatus", [("IsPublic", bool_text(is_public))])
    return Response(body, media_type="application/xml")
