"""The pure router: one HTTP request -> one S3 operation (an ``Endpoint``).

No I/O and no Starlette types: the inputs are the method, the raw (percent-encoded) path,
the parsed query, the Host header and the configured virtual-host domains. The output
names the operation, the bucket and the key. Handlers never look at the URL again.

Addressing: virtual-host style when Host is ``<bucket>.<domain>`` for a configured
domain, else path style (``/<bucket>/<key>``). Keys are the percent-decoded remainder of
the path, kept byte for byte (no normalisation of '//', '.', '..': S3 keys are opaque).

Sub-resources: S3 selects an operation by the presence of certain query parameters
(``?location``, ``?delete``, ``?tagging`` ...). The table below is data; the first entry
whose method, target (service/bucket/object) and sub-resource match wins. Query
parameters that select nothing are ignored, as AWS does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from gateway.errors import S3Error

METRICS_PATH = "/_squall/metrics"  # Prometheus metrics (gateway/metrics.py)
METRICS_OPERATION = "SquallMetrics"
HEALTH_PATH = "/_squall/health"  # liveness/readiness probes (gateway/health.py), no signature
HEALTH_OPERATION = "SquallHealth"
ADMIN_PATH_PREFIX = "/_squall/"  # Squall's admin API (gateway/admin.py), path style only

# Target kinds.
SERVICE, BUCKET, OBJECT = "service", "bucket", "object"
# A route's sub-resource that matches whatever sub-resource is present, or none: a CORS
# preflight asks about the URL of the request to come, query string included.
ANY_SUBRESOURCE = "*"

# Query parameters that select an operation (S3's "sub-resources").
SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
        "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location",
        "logging", "metadataConfiguration", "metadataTable", "metrics", "notification",
        "object-lock", "ownershipControls", "policy", "policyStatus", "publicAccessBlock",
        "replication", "requestPayment", "restore", "retention", "select", "session",
        "tagging", "torrent", "uploadId", "uploads", "versioning", "versions", "website",
    }
)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    target: str
    subresource: str | None  # None: no sub-resource present; ANY_SUBRESOURCE: any or none
    operation: str
    header: str | None = None  # the operation also needs this request header


# Order matters only where two rows share (method, target, subresource): the row with a
# header condition comes first.
ROUTES: tuple[Route, ...] = (
    Route("GET", SERVICE, None, "ListBuckets"),
    Route("PUT", BUCKET, None, "CreateBucket"),
    Route("DELETE", BUCKET, None, "DeleteBucket"),
    Route("HEAD", BUCKET, None, "HeadBucket"),
    Route("GET", BUCKET, "location", "GetBucketLocation"),
    Route("GET", BUCKET, "versioning", "GetBucketVersioning"),
    Route("PUT", BUCKET, "versioning", "PutBucketVersioning"),
    Route("GET", BUCKET, "versions", "ListObjectVersions"),
    Route("GET", BUCKET, "tagging", "GetBucketTagging"),
    Route("PUT", BUCKET, "tagging", "PutBucketTagging"),
    Route("DELETE", BUCKET, "tagging", "DeleteBucketTagging"),
    Route("GET", OBJECT, "tagging", "GetObjectTagging"),
    Route("PUT", OBJECT, "tagging", "PutObjectTagging"),
    Route("DELETE", OBJECT, "tagging", "DeleteObjectTagging"),
    Route("GET", BUCKET, None, "ListObjects"),  # list-type=2 -> ListObjectsV2 (below)
    Route("POST", BUCKET, "delete", "DeleteObjects"),
    # Browser-based upload (an HTML form, multipart/form-data): gateway/s3/post_object.py.
    Route("POST", BUCKET, None, "PostObject"),
    Route("PUT", BUCKET, "notification", "PutBucketNotificationConfiguration"),
    Route("GET", BUCKET, "notification", "GetBucketNotificationConfiguration"),
    Route("PUT", OBJECT, None, "CopyObject", header="x-amz-copy-source"),
    Route("PUT", OBJECT, None, "PutObject"),
    Route("GET", OBJECT, None, "GetObject"),
    Route("HEAD", OBJECT, None, "HeadObject"),
    Route("GET", OBJECT, "attributes", "GetObjectAttributes"),
    Route("DELETE", OBJECT, None, "DeleteObject"),
    # Multipart upload. UploadPart's query is '?partNumber=N&uploadId=ID': partNumber
    # selects nothing by itself, so the sub-resource is 'uploadId'.
    Route("POST", OBJECT, "uploads", "CreateMultipartUpload"),
    Route("PUT", OBJECT, "uploadId", "UploadPartCopy", header="x-amz-copy-source"),
    Route("PUT", OBJECT, "uploadId", "UploadPart"),
    Route("POST", OBJECT, "uploadId", "CompleteMultipartUpload"),
    Route("DELETE", OBJECT, "uploadId", "AbortMultipartUpload"),
    Route("GET", OBJECT, "uploadId", "ListParts"),
    Route("GET", BUCKET, "uploads", "ListMultipartUploads"),
    # Bucket configuration documents (gateway/s3/cors.py, lifecycle.py, acl.py, policy.py,
    # settings.py). A preflight is answered without authentication (browsers never sign
    # it): gateway/app.py checks for exactly the PreflightCors operation.
    Route("OPTIONS", BUCKET, ANY_SUBRESOURCE, "PreflightCors"),
    Route("OPTIONS", OBJECT, ANY_SUBRESOURCE, "PreflightCors"),
    Route("GET", BUCKET, "cors", "GetBucketCors"),
    Route("PUT", BUCKET, "cors", "PutBucketCors"),
    Route("DELETE", BUCKET, "cors", "DeleteBucketCors"),
    Route("GET", BUCKET, "lifecycle", "GetBucketLifecycleConfiguration"),
    Route("PUT", BUCKET, "lifecycle", "PutBucketLifecycleConfiguration"),
    Route("DELETE", BUCKET, "lifecycle", "DeleteBucketLifecycle"),
    Route("GET", BUCKET, "acl", "GetBucketAcl"),
    Route("PUT", BUCKET, "acl", "PutBucketAcl"),
    Route("GET", OBJECT, "acl", "GetObjectAcl"),
    Route("PUT", OBJECT, "acl", "PutObjectAcl"),
    Route("GET", BUCKET, "policy", "GetBucketPolicy"),
    Route("PUT", BUCKET, "policy", "PutBucketPolicy"),
    Route("DELETE", BUCKET, "policy", "DeleteBucketPolicy"),
    Route("GET", BUCKET, "encryption", "GetBucketEncryption"),
    Route("PUT", BUCKET, "encryption", "PutBucketEncryption"),
    Route("DELETE", BUCKET, "encryption", "DeleteBucketEncryption"),
    # Features Squall does not offer, answered as for a bucket without them (absent.py).
    Route("GET", BUCKET, "requestPayment", "GetBucketRequestPayment"),
    Route("PUT", BUCKET, "requestPayment", "PutBucketRequestPayment"),
    Route("GET", BUCKET, "accelerate", "GetBucketAccelerateConfiguration"),
    Route("GET", BUCKET, "logging", "GetBucketLogging"),
    Route("PUT", BUCKET, "logging", "PutBucketLogging"),
    Route("GET", BUCKET, "website", "GetBucketWebsite"),
    Route("DELETE", BUCKET, "website", "DeleteBucketWebsite"),
    Route("GET", BUCKET, "replication", "GetBucketReplication"),
    Route("DELETE", BUCKET, "replication", "DeleteBucketReplication"),
    Route("GET", BUCKET, "analytics", "ListBucketAnalyticsConfigurations"),
    Route("GET", BUCKET, "inventory", "ListBucketInventoryConfigurations"),
    Route("GET", BUCKET, "metrics", "ListBucketMetricsConfigurations"),
    Route("GET", BUCKET, "intelligent-tiering", "ListBucketIntelligentTieringConfigurations"),
    Route("GET", BUCKET, "ownershipControls", "GetBucketOwnershipControls"),
    Route("PUT", BUCKET, "ownershipControls", "PutBucketOwnershipControls"),
    Route("DELETE", BUCKET, "ownershipControls", "DeleteBucketOwnershipControls"),
    Route("GET", BUCKET, "publicAccessBlock", "GetPublicAccessBlock"),
    Route("PUT", BUCKET, "publicAccessBlock", "PutPublicAccessBlock"),
    Route("DELETE", BUCKET, "publicAccessBlock", "DeletePublicAccessBlock"),
    Route("GET", BUCKET, "policyStatus", "GetBucketPolicyStatus"),
    # S3 Object Lock (gateway/s3/object_lock.py).
    Route("PUT", BUCKET, "object-lock", "PutObjectLockConfiguration"),
    Route("GET", BUCKET, "object-lock", "GetObjectLockConfiguration"),
    Route("PUT", OBJECT, "retention", "PutObjectRetention"),
    Route("GET", OBJECT, "retention", "GetObjectRetention"),
    Route("PUT", OBJECT, "legal-hold", "PutObjectLegalHold"),
    Route("GET", OBJECT, "legal-hold", "GetObjectLegalHold"),
)


def _routes_by_method_and_target() -> dict[tuple[str, str], tuple[Route, ...]]:
    """ROUTES grouped by (method, target), each group in table order."""
    groups: dict[tuple[str, str], list[Route]] = {}
    for candidate in ROUTES:
        groups.setdefault((candidate.method, candidate.target), []).append(candidate)
    return {group: tuple(routes) for group, routes in groups.items()}


# A request looks only at the routes of its method and target (GetObject was the 21st
# route of the table), and the first one that matches still wins.
_ROUTES_BY_METHOD_AND_TARGET = _routes_by_method_and_target()


@dataclass(frozen=True, slots=True)
class Endpoint:
    operation: str
    bucket: str | None = None
    key: str | None = None


def bucket_from_host(host: str, domains: Sequence[str]) -> str | None:
    """The bucket named by a virtual-host-style Host header, else None."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    hostname = hostname.lower()
    for domain in domains:
        suffix = "." + domain.lower()
        if hostname.endswith(suffix) and len(hostname) > len(suffix):
            return hostname[: -len(suffix)]
    return None


def split_path(raw_path: str, host_bucket: str | None) -> tuple[str | None, str | None]:
    """(bucket, key) from the raw path; key None when the path names no object."""
    if not raw_path.startswith("/"):
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.", 400)
    path = raw_path[1:]
    if host_bucket is not None:
        return host_bucket, (unquote(path, errors="strict") or None)
    if not path:
        return None, None
    bucket, _, key = path.partition("/")
    return unquote(bucket, errors="strict"), (unquote(key, errors="strict") or None)


def _subresource(query: Mapping[str, Sequence[str]]) -> str | None:
    present = [name for name in query if name in SUBRESOURCES]
    if not present:
        return None
    # 'uploadId' with 'partNumber' etc. is an object op; any one decides here, since S3
    # never combines two operation-selecting parameters in one request.
    return sorted(present)[0]


def route(
    method: str,
    raw_path: str,
    query: Mapping[str, Sequence[str]],
    headers: Mapping[str, str],
    domains: Sequence[str] = (),
) -> Endpoint:
    """The S3 operation a request asks for; S3Error when it names none we serve."""
    host_bucket = bucket_from_host(headers.get("host", ""), domains)
    try:
        bucket, key = split_path(raw_path, host_bucket)
    except UnicodeDecodeError as error:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.", 400) from error
    if host_bucket is None and raw_path.startswith(ADMIN_PATH_PREFIX):
        # Squall's own admin API ('_' is never in a bucket name, so no bucket is hidden).
        if raw_path.rstrip("/") == METRICS_PATH:
            return Endpoint(METRICS_OPERATION)
        if raw_path.rstrip("/") == HEALTH_PATH:
            return Endpoint(HEALTH_OPERATION)
        return Endpoint("SquallAdmin")
    target = SERVICE if bucket is None else (BUCKET if key is None else OBJECT)
    subresource = _subresource(query)
    for candidate in _ROUTES_BY_METHOD_AND_TARGET.get((method, target), ()):
        if candidate.subresource not in (subresource, ANY_SUBRESOURCE):
            continue
        if candidate.header is not None and candidate.header not in headers:
            continue
        operation = candidate.operation
        if operation == "ListObjects" and query.get("list-type", [""])[0] == "2":
            operation = "ListObjectsV2"
        return Endpoint(operation, bucket, key)
    if subresource is not None:
        raise S3Error(
            "NotImplemented",
            f"The '{subresource}' sub-resource is not implemented for {method} on this "
            "server.",
            501,
        )
    raise S3Error(
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
        405,
        Method=method,
        ResourceType=target.upper(),
    )
