"""What every operation module shares: the request context and header helpers."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.requests import Request

from gateway.auth.sigv4 import parse_http_date
from gateway.errors import S3Error
from gateway.metrics import MetricsAccess
from gateway.router import Endpoint
from gateway.s3.expiration import LifecycleRulesCache
from gateway.xml import http_date, iso8601_ms
from storage import api

if TYPE_CHECKING:
    from gateway.body import RequestBody
    from gateway.bucket_policy import PolicyCache
    from gateway.users import UserDirectory


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    display_name: str


@functools.lru_cache(maxsize=api.limits.signing_keys_cached_max)
def owner_for(access_key: str) -> Owner:
    """A stable canonical user id for an access key (64 hex characters, like AWS's).

    Cached: every request asks for it, and the answer never changes."""
    return Owner(hashlib.sha256(f"squall-owner:{access_key}".encode()).hexdigest(), access_key)


# Who an unsigned request is: AWS's canonical id of the anonymous user (the owner of an
# object written anonymously into a public-read-write bucket).
ANONYMOUS = Owner("65a011a29cdf8ec533ec3d1ccaae921c", "anonymous")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who signed a request: an access key (None for an unsigned request), its owner
    identity, and whether it may use the admin API (root only)."""

    access_key: str | None
    owner: Owner
    is_admin: bool = False

    @property
    def canonical_id(self) -> str | None:
        """The id ACL grants name; None for an unsigned request."""
        return None if self.access_key is None else self.owner.id


ANONYMOUS_PRINCIPAL = Principal(None, ANONYMOUS)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    # Root's access key -> secret key: admins, set at start-up, never stored.
    credentials: Mapping[str, str]
    region: str = "us-east-1"
    # Host suffixes for virtual-host-style addressing: '<bucket>.<domain>'.
    domains: tuple[str, ...] = ("localhost",)
    # Registered pre-commit functions (the triggers hook); None when triggers are off.
    functions: api.FunctionAdmin | None = None
    # Webhook IDs given at start-up (``--webhook ID=URL``): the only post-commit targets
    # a notification configuration may name (``arn:squall:sqs::ID:webhook``).
    webhook_targets: frozenset[str] = frozenset()
    # The notification dispatcher, for GET /_squall/outbox; None when none runs.
    delivery: api.EventDelivery | None = None
    # GET /_squall/metrics: who may read it without SigV4, and what reports besides the
    # gateway and the outbox (gateway/metrics.py).
    metrics_access: MetricsAccess = MetricsAccess()
    metrics_sources: tuple[api.MetricsSource, ...] = ()
    # Root plus the users stored in the system bucket (gateway/users.py); None: the
    # gateway makes one over ``credentials`` and its storage.
    users: UserDirectory | None = None
    # Length of a lifecycle day (``squall serve --lifecycle-day-seconds``), for the dates
    # of x-amz-expiration: the same as the sweeper's.
    lifecycle_day_ms: int = api.LIFECYCLE_DAY_MS
    # The store encrypts object data at rest (``squall serve --encryption-key-file``):
    # SSE-S3 requests are honoured and object responses say AES256 (gateway/s3/encryption.py).
    encryption_at_rest: bool = False
    # SSE-C keys are taken over plain HTTP too (``squall serve --allow-sse-c-over-http``:
    # a TLS-terminating proxy in front); AWS refuses them there (400 InvalidRequest).
    sse_c_over_http: bool = False
    # Serving a replicated cluster (``squall serve --cluster``): functions and
    # notifications are not available there, and their configurations say so.
    cluster: bool = False
    # Not a setting: the process's cache of lifecycle rules (gateway/s3/expiration.py),
    # here because every handler that answers x-amz-expiration is given the config.
    lifecycle_rules: LifecycleRulesCache = field(default_factory=LifecycleRulesCache)


def is_secure_transport(request: Request) -> bool:
    """Whether a request came over TLS: what bucket policies see as
    ``aws:SecureTransport``, and what SSE-C requires (``squall serve`` behind a
    TLS-terminating proxy sees plain HTTP: X-Forwarded-Proto is not believed)."""
    return request.scope.get("scheme") == "https"


# DeleteObjects asks it per key: may this request delete (key, version id)?
KeyAccess = Callable[[str, str | None], Awaitable[bool]]
ANONYMOUS_PRINCIPAL_ID = "anonymous"  # who an unsigned request is, in event records


@dataclass(slots=True)
class RequestContext:
    request: Request
    endpoint: Endpoint
    storage: api.StorageClient
    config: GatewayConfig
    owner: Owner
    query: dict[str, list[str]]
    body: RequestBody
    request_id: str
    users: UserDirectory
    principal: Principal = ANONYMOUS_PRINCIPAL
    # Set by ``authz.check_object`` once a handler has checked the object it serves: the
    # gateway asserts it for every operation whose permission is on the object.
    object_checked: bool = False
    # The bucket policy allowed this request (``Gateway._authorize``): no ACL is checked.
    policy_allowed: bool = False
    # ... and it also allows the requester s3:ListBucket (a missing key is then 404).
    policy_allows_listing: bool = False
    response_headers: dict[str, str] = field(default_factory=dict)
    # An unsigned request (``principal`` is ANONYMOUS_PRINCIPAL).
    anonymous: bool = False
    # Set for DeleteObjects when the bucket has a policy (gateway/bucket_policy.py).
    key_access: KeyAccess | None = None
    # The gateway's bucket policies, for a handler that decides after reading the body
    # (POST Object: its credentials and key are form fields).
    policies: PolicyCache | None = None
    # SSE-C (gateway/s3/encryption.py): the customer keys the request gave, for the
    # object it writes or reads and for a copy's source, checked by ``_dispatch``; and
    # the record of the key of the object the response describes, which the response
    # then echoes (its MD5) instead of saying SSE-S3.
    customer_key: api.CustomerKey | None = None
    copy_source_customer_key: api.CustomerKey | None = None
    answered_customer_key: api.CustomerKeyRecord | None = None

    @property
    def secure_transport(self) -> bool:
        return is_secure_transport(self.request)

    @property
    def headers(self) -> Headers:
        return self.request.headers

    @property
    def bucket(self) -> str:
        assert self.endpoint.bucket is not None, "router guarantees a bucket here"
        return self.endpoint.bucket

    @property
    def key(self) -> str:
        assert self.endpoint.key is not None, "router guarantees a key here"
        return self.endpoint.key

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def event_origin(self) -> api.EventOrigin:
        """Who is asking, as the post-commit events of this request report it."""
        client = self.request.client
        return api.EventOrigin(
            principal_id=ANONYMOUS_PRINCIPAL_ID if self.anonymous else self.owner.id,
            source_ip=client.host if client is not None else "",
            request_id=self.request_id,
            host_id=self.request_id,  # the gateway answers x-amz-id-2 with the request id
        )


# --- metadata headers --------------------------------------------------------------------

# Standard headers S3 stores with an object and returns on GET/HEAD, as the client sent
# them. Content-Type is kept apart (it has a default).
SYSTEM_METADATA_HEADERS = (
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
    "x-amz-website-redirect-location",
)
USER_METADATA_PREFIX = "x-amz-meta-"


def metadata_from_headers(headers: Headers) -> tuple[str, dict[str, str], dict[str, str]]:
    """(content type, system metadata, user metadata) from a write's headers."""
    content_type = headers.get("content-type") or "binary/octet-stream"
    system = {name: headers[name] for name in SYSTEM_METADATA_HEADERS if name in headers}
    # S3 drops 'aws-chunked' from a stored Content-Encoding: it describes the transfer.
    encoding = system.get("Content-Encoding")
    if encoding is not None:
        kept = [part.strip() for part in encoding.split(",") if part.strip() != "aws-chunked"]
        if kept:
            system["Content-Encoding"] = ", ".join(kept)
        else:
            del system["Content-Encoding"]
    user: dict[str, str] = {}
    for name, value in headers.items():
        name = name.lower()  # S3 stores user metadata names lower-case
        if name.startswith(USER_METADATA_PREFIX):
            short = name[len(USER_METADATA_PREFIX) :]
            user[short] = f"{user[short]},{value}" if short in user else value
    check_user_metadata_size(user)
    return content_type, system, user


def check_user_metadata_size(user: Mapping[str, str]) -> None:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in user.items())
    if size > api.limits.user_metadata_bytes_max:
        raise S3Error(
            "MetadataTooLarge",
            "Your metadata headers exceed the maximum allowed metadata size.",
            400,
            Size=str(size),
            MaxSizeAllowed=str(api.limits.user_metadata_bytes_max),
        )


def object_headers(version: api.ObjectVersion, *, checksum_mode: bool) -> dict[str, str]:
    """The headers GET and HEAD return for a version (Content-Length set by the caller)."""
    headers = {
        "ETag": f'"{version.etag}"',
        "Last-Modified": http_date(version.last_modified_ms),
        "Content-Type": version.content_type,
        "Accept-Ranges": "bytes",
    }
    headers.update(version.system_metadata)
    for name, value in version.user_metadata.items():
        headers[USER_METADATA_PREFIX + name] = value
    if version.s3_version_id != "null":
        headers["x-amz-version-id"] = version.s3_version_id
    if version.lock_mode:  # S3 Object Lock (gateway/s3/object_lock.py)
        headers["x-amz-object-lock-mode"] = version.lock_mode
        headers["x-amz-object-lock-retain-until-date"] = iso8601_ms(version.lock_retain_until_ms)
    if version.legal_hold:
        headers["x-amz-object-lock-legal-hold"] = "ON"
    if checksum_mode:
        for algorithm, value in version.checksums.items():
            headers[f"x-amz-checksum-{algorithm.lower()}"] = value
        if version.checksums:
            # A multipart object's COMPOSITE checksum is '<base64>-<part count>'.
            composite = any("-" in value for value in version.checksums.values())
            headers["x-amz-checksum-type"] = "COMPOSITE" if composite else "FULL_OBJECT"
    return headers


# --- ETag and date conditions ------------------------------------------------------------


def etag_matches(header_value: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match list names ``etag`` (or is '*')."""
    for candidate in header_value.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate.strip('"') == etag:
            return True
    return False


def check_read_conditions(
    headers: Mapping[str, str], version: api.ObjectVersion, *, prefix: str = "if-"
) -> int | None:
    """RFC 7232 evaluation as S3 does it: None to proceed, 304 or 412 to stop.

    With ``prefix='x-amz-copy-source-if-'`` this evaluates CopyObject's conditions,
    where a would-be 304 is a 412 too.
    """
    last_modified_s = version.last_modified_ms // 1000
    if_match = headers.get(prefix + "match")
    if if_match is not None:
        if not etag_matches(if_match, version.etag):
            return 412
    else:
        since = headers.get(prefix + "unmodified-since")
        moment = parse_http_date(since) if since is not None else None
        if moment is not None and last_modified_s > moment.timestamp():
            return 412
    if_none_match = headers.get(prefix + "none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, version.etag):
            return 304
    else:
        since = headers.get(prefix + "modified-since")
        moment = parse_http_date(since) if since is not None else None
        if moment is not None and last_modified_s <= moment.timestamp():
            return 304
    return None


def precondition_failed(condition: str) -> S3Error:
    return S3Error(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        412,
        Condition=condition,
    )


async def addressed_version(ctx: RequestContext) -> api.ObjectVersion:
    """The version a sub-resource request on an object addresses (``?versionId``, else
    the latest), as GET answers for what is not there: an empty id is InvalidArgument,
    a delete marker is 405 MethodNotAllowed by id and 404 NoSuchKey as the latest (both
    with ``x-amz-delete-marker``)."""
    version_id = ctx.query_value("versionId")
    if version_id == "":
        raise S3Error("InvalidArgument", "Version id cannot be the empty string", 400,
                      ArgumentName="versionId", ArgumentValue="")
    version = await ctx.storage.get_version(ctx.bucket, ctx.key, version_id=version_id)
    if not version.is_delete_marker:
        return version
    headers = {"x-amz-delete-marker": "true", "x-amz-version-id": version.s3_version_id}
    if version_id is not None:
        raise S3Error("MethodNotAllowed",
                      "The specified method is not allowed against this resource.", 405,
                      headers=headers, Method=ctx.request.method, ResourceType="DeleteMarker")
    raise S3Error("NoSuchKey", "The specified key does not exist.", 404, headers=headers,
                  Key=ctx.key)


def version_id_headers(version: api.ObjectVersion) -> dict[str, str]:
    """``x-amz-version-id`` of a version that has one (not the null version)."""
    return {"x-amz-version-id": version.s3_version_id} if version.s3_version_id != "null" else {}
