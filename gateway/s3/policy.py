"""Put/Get/DeleteBucketPolicy (``?policy``): stored and validated, NOT yet enforced.

A policy is kept as the client sent it (GetBucketPolicy returns it byte for byte) after
a shape check of the IAM policy grammar: a JSON object with an optional Version
(2012-10-17 or 2008-10-17) and a non-empty Statement (one object or a list of them), each
with Effect Allow|Deny, Principal or NotPrincipal, Action or NotAction ('s3:...' or '*'),
Resource or NotResource (ARNs of this bucket or its objects), optional Sid and Condition.
Failures are 400 MalformedPolicy with a message naming the problem.

Enforcement comes later: today the only identity that can sign requests is the owner,
whom a policy could not restrict on AWS either (the root user).

Whether a policy is *public* follows AWS's rule ("The meaning of public"): an Allow
statement for every principal (``*``, ``{"AWS": "*"}``, or any NotPrincipal) is public
unless one of its conditions pins a key that names who may ask (source IP range,
account, organisation, VPC, ARN ...) to fixed values. It decides GetBucketPolicyStatus
and, under the bucket's BlockPublicPolicy setting (``settings.py``), refuses
PutBucketPolicy with 403 AccessDenied.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from starlette.responses import Response

from gateway.errors import S3Error
from gateway.s3.common import RequestContext
from gateway.s3.documents import delete_documents, stored_document
from gateway.s3.settings import public_access_block, public_access_blocked
from gateway.xml import bool_text, render
from storage import api

POLICY_CONFIG = "policy"
POLICY_VERSIONS = ("2012-10-17", "2008-10-17")
RESOURCE_ARN_PREFIX = "arn:aws:s3:::"
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
_STATEMENT_FIELDS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action",
                               "NotAction", "Resource", "NotResource", "Condition"})


def malformed_policy(message: str) -> S3Error:
    return S3Error("MalformedPolicy", message, 400)


def _strings(value: Any, field: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(item, str) and item for item in values):
        raise malformed_policy(f"Invalid value for field {field}")
    return values


def _one_of(statement: dict[str, Any], field: str) -> tuple[str, Any]:
    present = [name for name in (field, "Not" + field) if name in statement]
    if len(present) != 1:
        raise malformed_policy(f"Missing required field {field}")
    return present[0], statement[present[0]]


def _check_principal(value: Any) -> None:
    if value == "*":
        return
    if not isinstance(value, dict) or not value:
        raise malformed_policy("Invalid principal in policy")
    for name, principals in value.items():
        if not isinstance(name, str):
            raise malformed_policy("Invalid principal in policy")
        _strings(principals, "Principal")


def _check_resource(resource: str, bucket: str) -> None:
    if not resource.startswith(RESOURCE_ARN_PREFIX):
        raise malformed_policy("Policy has invalid resource")
    bucket_pattern = resource[len(RESOURCE_ARN_PREFIX):].split("/", 1)[0]
    if not fnmatch.fnmatchcase(bucket, bucket_pattern.replace("?", "[?]")):
        raise malformed_policy("Policy has invalid resource")


def _check_statement(statement: Any, bucket: str) -> None:
    if not isinstance(statement, dict):
        raise malformed_policy("Statement must be an object or a list of objects")
    unknown = sorted(set(statement) - _STATEMENT_FIELDS)
    if unknown:
        raise malformed_policy(f"Unknown field {unknown[0]}")
    if "Sid" in statement and not isinstance(statement["Sid"], str):
        raise malformed_policy("Invalid value for field Sid")
    effect = statement.get("Effect")
    if effect is None:
        raise malformed_policy("Missing required field Effect")
    if effect not in ("Allow", "Deny"):
        raise malformed_policy(f"Invalid effect: {effect}")
    _check_principal(_one_of(statement, "Principal")[1])
    for action in _strings(_one_of(statement, "Action")[1], "Action"):
        if action != "*" and not action.lower().startswith("s3:"):
            raise malformed_policy("Policy has invalid action")
    for resource in _strings(_one_of(statement, "Resource")[1], "Resource"):
        _check_resource(resource, bucket)
    if "Condition" in statement and not isinstance(statement["Condition"], dict):
        raise malformed_policy("Invalid Condition")


def check_policy(document: bytes, bucket: str) -> None:
    """Raise MalformedPolicy unless ``document`` is a well-shaped bucket policy."""
    try:
        policy = json.loads(document)
    except (UnicodeDecodeError, ValueError) as error:
        raise malformed_policy(
            "Policies must be valid JSON and the first byte must be '{'"
        ) from error
    if not isinstance(policy, dict):
        raise malformed_policy("Policies must be valid JSON and the first byte must be '{'")
    unknown = sorted(set(policy) - {"Version", "Id", "Statement"})
    if unknown:
        raise malformed_policy(f"Unknown field {unknown[0]}")
    if "Version" in policy and policy["Version"] not in POLICY_VERSIONS:
        raise malformed_policy("The policy must contain a valid version string")
    statements = policy.get("Statement")
    if statements is None or statements == []:
        raise malformed_policy("Missing required field Statement")
    for statement in statements if isinstance(statements, list) else [statements]:
        _check_statement(statement, bucket)


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
