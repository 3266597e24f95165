"""Bucket features Squall does not offer, answered as AWS answers for a bucket without
them: the reads say "not configured", a write that turns the feature off (or asks for
what is already so) succeeds, and a write that would turn it on is ``501
NotImplemented``, naming the feature, so nobody believes it is on.

Tools read these on every bucket they manage (Terraform's ``aws_s3_bucket`` refresh,
``s3cmd info``, rclone, SDK bucket wrappers); a 501 on a read breaks some of them.

* Requester Pays (``?requestPayment``): Get says ``Payer: BucketOwner``; Put of
  ``BucketOwner`` succeeds (nothing changes), ``Requester`` is 501.
* Transfer Acceleration (``?accelerate``): Get is an empty ``AccelerateConfiguration``
  (never enabled); Put is 501 (AWS keeps a ``Suspended`` once set, which Squall could
  not answer back without storing it).
* Server access logging (``?logging``): Get is an empty ``BucketLoggingStatus``
  (logging off); Put of an empty status (turning logging off) succeeds, with
  ``LoggingEnabled`` is 501.
* Static website (``?website``) and replication (``?replication``): Get is 404
  NoSuchWebsiteConfiguration / ReplicationConfigurationNotFoundError, Delete is 204
  (AWS answers 204 with nothing to delete too); Put is not routed (501).
* Analytics, inventory, metrics and Intelligent-Tiering configurations: Get with an
  ``id`` is 404 NoSuchConfiguration; without one it is an empty list (one route, named
  after the list operation, serves both, as the query decides); Put and Delete are not
  routed (501).

Every handler first checks that the bucket exists (404 NoSuchBucket otherwise).
Authorization is the bucket owner's, with the IAM actions AWS names
(``authz.REQUIREMENTS``).
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.errors import S3Error, malformed_xml
from gateway.s3.common import RequestContext
from gateway.s3.documents import read_document
from gateway.xml import children, local_name, parse, render

# These documents are a few hundred bytes; anything near this is not one.
DOCUMENT_BYTES_MAX = 64 * 1024


def _xml(document: bytes) -> Response:
    return Response(document, media_type="application/xml")


def _not_implemented(feature: str) -> S3Error:
    return S3Error("NotImplemented", f"{feature} is not supported by this server.", 501)


# --- Requester Pays ----------------------------------------------------------------------


async def get_bucket_request_payment(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    return _xml(render("RequestPaymentConfiguration", [("Payer", "BucketOwner")]))


async def put_bucket_request_payment(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    root = parse(await read_document(ctx, DOCUMENT_BYTES_MAX, integrity_required=False))
    payers = children(root, "Payer")
    if local_name(root) != "RequestPaymentConfiguration" or len(payers) != 1 or len(root) != 1:
        raise malformed_xml()
    payer = (payers[0].text or "").strip()
    if payer == "Requester":
        raise _not_implemented("Requester Pays")
    if payer != "BucketOwner":
        raise malformed_xml()
    return Response(status_code=200)


# --- Transfer Acceleration and access logging ---------------------------------------------


async def get_bucket_accelerate(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    return _xml(render("AccelerateConfiguration"))


async def get_bucket_logging(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    return _xml(render("BucketLoggingStatus"))


async def put_bucket_logging(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    root = parse(await read_document(ctx, DOCUMENT_BYTES_MAX, integrity_required=False))
    if local_name(root) != "BucketLoggingStatus":
        raise malformed_xml()
    if children(root, "LoggingEnabled"):
        raise _not_implemented("Server access logging")
    if len(root):
        raise malformed_xml()
    return Response(status_code=200)


# --- website and replication --------------------------------------------------------------


async def get_bucket_website(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    raise S3Error("NoSuchWebsiteConfiguration",
                  "The specified bucket does not have a website configuration", 404,
                  BucketName=ctx.bucket)


async def get_bucket_replication(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    raise S3Error("ReplicationConfigurationNotFoundError",
                  "The replication configuration was not found", 404, BucketName=ctx.bucket)


async def delete_absent_configuration(ctx: RequestContext) -> Response:
    """DeleteBucketWebsite / DeleteBucketReplication: there is none; done."""
    await ctx.storage.get_bucket(ctx.bucket)
    return Response(status_code=204)


# --- analytics, inventory, metrics, Intelligent-Tiering -------------------------------------

# sub-resource -> the list result's root element
_LIST_RESULTS = {
    "analytics": "ListBucketAnalyticsConfigurationResult",
    "inventory": "ListInventoryConfigurationsResult",
    "metrics": "ListMetricsConfigurationsResult",
    "intelligent-tiering": "ListBucketIntelligentTieringConfigurationsOutput",
}


async def list_absent_configurations(ctx: RequestContext) -> Response:
    """Get...Configuration (``?analytics&id=X``, ...): 404; List... (no id): empty."""
    await ctx.storage.get_bucket(ctx.bucket)
    subresource = next(name for name in _LIST_RESULTS if name in ctx.query)
    if "id" in ctx.query:
        raise S3Error("NoSuchConfiguration", "The specified configuration does not exist.",
                      404)
    return _xml(render(_LIST_RESULTS[subresource], [("IsTruncated", "false")]))
