"""Reading a small whole-body request document (an XML configuration or request), safely.

Used by the bucket configuration operations (CORS, lifecycle, versioning, tagging) and
DeleteObjects. S3 wants integrity data on some of them (PutBucketCors,
PutBucketLifecycleConfiguration, DeleteObjects): Content-MD5 or an x-amz-checksum-*;
whatever the client sent is verified here, required or not.
"""

from __future__ import annotations

from starlette.responses import Response

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


async def stored_document(
    ctx: RequestContext,
    name: str,
    *,
    missing_code: str,
    missing_message: str,
    media_type: str = "application/xml",
) -> Response:
    """Get<Config>: the bucket's document ``name`` as stored; 404 ``missing_code`` (with
    the BucketName field) when it has none."""
    document = await ctx.storage.get_bucket_config(ctx.bucket, name)
    if document is None:
        raise S3Error(missing_code, missing_message, 404, BucketName=ctx.bucket)
    return Response(document, media_type=media_type)


async def delete_documents(ctx: RequestContext, *names: str) -> Response:
    """Delete<Config>: remove the bucket's documents ``names``, in that order; 204."""
    for name in names:
        await ctx.storage.put_bucket_config(ctx.bucket, name, None)
    return Response(status_code=204)
