"""What the bucket configuration operations share: reading a document body, safely.

S3 wants integrity data on some of them (PutBucketCors, PutBucketLifecycleConfiguration):
Content-MD5 or an x-amz-checksum-*; whatever the client sent is verified here.
"""

from __future__ import annotations

from gateway import checksums as integrity
from gateway.errors import S3Error
from gateway.s3.common import RequestContext


async def read_document(ctx: RequestContext, bytes_max: int, *, integrity_required: bool) -> bytes:
    """The whole request body (at most ``bytes_max``), its checksums verified."""
    wanted = integrity.parse_request(ctx.headers)
    body = await ctx.body.read_all(bytes_max)
    checksummer = integrity.Checksummer(wanted.algorithms)
    checksummer.update(body)
    integrity.verify(wanted, checksummer, ctx.body.trailers)
    if integrity_required and wanted.content_md5 is None and wanted.algorithm is None:
        raise S3Error("InvalidRequest",
                      "Missing required header for this request: Content-MD5", 400)
    return body
