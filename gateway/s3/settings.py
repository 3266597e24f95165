"""Bucket settings that tools commonly probe, answered with what Squall really does.

* GetBucketEncryption: 404 ServerSideEncryptionConfigurationNotFoundError (Squall does
  not encrypt at rest, so it does not claim a default encryption).
* GetBucketOwnershipControls: BucketOwnerEnforced, AWS's default for new buckets, and
  what Squall does: ACLs are not enforced and the bucket owner owns every object.
* GetPublicAccessBlock: 404 NoSuchPublicAccessBlockConfiguration (nothing can be public).
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.errors import S3Error
from gateway.s3.common import RequestContext
from gateway.xml import render


async def get_bucket_encryption(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    raise S3Error("ServerSideEncryptionConfigurationNotFoundError",
                  "The server side encryption configuration was not found", 404,
                  BucketName=ctx.bucket)


async def get_bucket_ownership_controls(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    body = render("OwnershipControls",
                  [("Rule", [("ObjectOwnership", "BucketOwnerEnforced")])])
    return Response(body, media_type="application/xml")


async def get_public_access_block(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    raise S3Error("NoSuchPublicAccessBlockConfiguration",
                  "The public access block configuration was not found", 404,
                  BucketName=ctx.bucket)
