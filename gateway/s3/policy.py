"""Put/Get/DeleteBucketPolicy (``?policy``): stored and validated, NOT yet enforced.

A policy is kept as the client sent it (GetBucketPolicy returns it byte for byte) after
a shape check of the IAM policy grammar: a JSON object with an optional Version
(2012-10-17 or 2008-10-17) and a non-empty Statement (one object or a list of them), each
with Effect Allow|Deny, Principal or NotPrincipal, Action or NotAction ('s3:...' or '*'),
Resource or NotResource (ARNs of this bucket or its objects), optional Sid and Condition.
Failures are 400 MalformedPolicy with a message naming the problem.

Enforcement comes later: today the only identity that can sign requests is the owner,
whom a policy could not restrict on AWS either (the root user).
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from starlette.responses import Response

from gateway.errors import S3Error
from gateway.s3.common import RequestContext
from gateway.s3.documents import delete_documents, stored_document
from storage import api

POLICY_CONFIG = "policy"
POLICY_VERSIONS = ("2012-10-17", "2008-10-17")
RESOURCE_ARN_PREFIX = "arn:aws:s3:::"
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


async def put_bucket_policy(ctx: RequestContext) -> Response:
    document = await ctx.body.read_all(api.limits.bucket_policy_bytes_max)
    check_policy(document, ctx.bucket)
    await ctx.storage.put_bucket_config(ctx.bucket, POLICY_CONFIG, document)
    return Response(status_code=204)


async def get_bucket_policy(ctx: RequestContext) -> Response:
    return await stored_document(ctx, POLICY_CONFIG, missing_code="NoSuchBucketPolicy",
                                 missing_message="The bucket policy does not exist",
                                 media_type="application/json")


async def delete_bucket_policy(ctx: RequestContext) -> Response:
    return await delete_documents(ctx, POLICY_CONFIG)
