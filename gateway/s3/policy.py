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
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.bucket_policy import POLICY_CONFIG
from gateway.errors import S3Error
from gateway.policy_eval import PolicyError, parse_policy
from gateway.s3.common import RequestContext
from gateway.s3.documents import delete_documents, stored_document
from storage import api


def malformed_policy(message: str) -> S3Error:
    return S3Error("MalformedPolicy", message, 400)


def check_policy(document: bytes, bucket: str) -> None:
    """Raise MalformedPolicy unless ``document`` is a valid policy for ``bucket``."""
    try:
        parse_policy(document, bucket)
    except PolicyError as error:
        raise malformed_policy(error.message) from error


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
