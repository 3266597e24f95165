"""The S3 gateway as an ASGI application: route, authenticate, dispatch, render errors.

Routing only: the router names the operation, ``gateway.auth`` checks the signature,
the operation's module does the work through ``storage.api``. Every response carries
``x-amz-request-id``; every error is the S3 XML error body (no body for HEAD).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway import admin, authz
from gateway.auth import Anonymous, AuthContext, AuthError, authenticate, parse_query_pairs
from gateway.auth.sigv4 import anonymous_payload_context
from gateway.body import RequestBody
from gateway.bucket_policy import (
    REQUEST_TAG_KEYS,
    REQUEST_TAG_PREFIX,
    PolicyCache,
    RequestFacts,
    decide_key,
    decide_with,
    principal_for,
    request_tag_keys,
)
from gateway.errors import CodedError, S3Error, error_for_client, error_for_storage
from gateway.health import health_response
from gateway.metrics import UNKNOWN_OPERATION, RequestMetrics, metrics_response
from gateway.policy_eval import (
    ALLOW,
    COPY_OPERATIONS,
    DENY,
    NO_POLICY_OPERATIONS,
    NONE,
    OWNER_ALWAYS_OPERATIONS,
    Decision,
    Policy,
)
from gateway.requests import GatewayRequest
from gateway.router import HEALTH_OPERATION, METRICS_OPERATION, Endpoint, bucket_from_host, route
from gateway.s3 import (
    absent,
    acl,
    attributes,
    buckets,
    cors,
    encryption,
    lifecycle,
    listing,
    multidelete,
    multipart,
    notification,
    object_lock,
    objects,
    policy,
    post_object,
    settings,
    tagging,
    versioning,
)
from gateway.s3.common import (
    ANONYMOUS_PRINCIPAL,
    GatewayConfig,
    KeyAccess,
    Principal,
    RequestContext,
    is_secure_transport,
    owner_for,
)
from gateway.users import UserDirectory
from gateway.verdicts import discarded_response_headers
from gateway.xml import render
from storage import api

log = logging.getLogger("squall.gateway")

Handler = Callable[[RequestContext], Awaitable[Response]]

HANDLERS: dict[str, Handler] = {
    "ListBuckets": buckets.list_buckets,
    "CreateBucket": buckets.create_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "HeadBucket": buckets.head_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "ListObjects": listing.list_objects,
    "ListObjectsV2": listing.list_objects_v2,
    "DeleteObjects": multidelete.delete_objects,
    "PutObject": objects.put_object,
    "CopyObject": objects.copy_object,
    "PostObject": post_object.post_object,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "GetObjectAttributes": attributes.get_object_attributes,
    "DeleteObject": objects.delete_object,
    "CreateMultipartUpload": multipart.create_multipart_upload,
    "UploadPart": multipart.upload_part,
    "UploadPartCopy": multipart.upload_part_copy,
    "CompleteMultipartUpload": multipart.complete_multipart_upload,
    "AbortMultipartUpload": multipart.abort_multipart_upload,
    "ListParts": multipart.list_parts,
    "ListMultipartUploads": multipart.list_multipart_uploads,
    # Bucket configuration documents. (PreflightCors is answered before authentication,
    # in Gateway._handle, so it has no entry here.)
    "PutBucketCors": cors.put_bucket_cors,
    "GetBucketCors": cors.get_bucket_cors,
    "DeleteBucketCors": cors.delete_bucket_cors,
    "PutBucketLifecycleConfiguration": lifecycle.put_bucket_lifecycle,
    "GetBucketLifecycleConfiguration": lifecycle.get_bucket_lifecycle,
    "DeleteBucketLifecycle": lifecycle.delete_bucket_lifecycle,
    "GetBucketAcl": acl.get_bucket_acl,
    "PutBucketAcl": acl.put_bucket_acl,
    "GetObjectAcl": acl.get_object_acl,
    "PutObjectAcl": acl.put_object_acl,
    "PutBucketPolicy": policy.put_bucket_policy,
    "GetBucketPolicy": policy.get_bucket_policy,
    "DeleteBucketPolicy": policy.delete_bucket_policy,
    "GetBucketEncryption": encryption.get_bucket_encryption,
    "PutBucketEncryption": encryption.put_bucket_encryption,
    "DeleteBucketEncryption": encryption.delete_bucket_encryption,
    "GetBucketRequestPayment": absent.get_bucket_request_payment,
    "PutBucketRequestPayment": absent.put_bucket_request_payment,
    "GetBucketAccelerateConfiguration": absent.get_bucket_accelerate,
    "GetBucketLogging": absent.get_bucket_logging,
    "PutBucketLogging": absent.put_bucket_logging,
    "GetBucketWebsite": absent.get_bucket_website,
    "DeleteBucketWebsite": absent.delete_absent_configuration,
    "GetBucketReplication": absent.get_bucket_replication,
    "DeleteBucketReplication": absent.delete_absent_configuration,
    "ListBucketAnalyticsConfigurations": absent.list_absent_configurations,
    "ListBucketInventoryConfigurations": absent.list_absent_configurations,
    "ListBucketMetricsConfigurations": absent.list_absent_configurations,
    "ListBucketIntelligentTieringConfigurations": absent.list_absent_configurations,
    "GetBucketOwnershipControls": settings.get_bucket_ownership_controls,
    "PutBucketOwnershipControls": settings.put_bucket_ownership_controls,
    "DeleteBucketOwnershipControls": settings.delete_bucket_ownership_controls,
    "GetPublicAccessBlock": settings.get_public_access_block,
    "PutPublicAccessBlock": settings.put_public_access_block,
    "DeletePublicAccessBlock": settings.delete_public_access_block,
    "GetBucketPolicyStatus": policy.get_bucket_policy_status,
    "GetBucketVersioning": versioning.get_bucket_versioning,
    "PutBucketVersioning": versioning.put_bucket_versioning,
    "ListObjectVersions": versioning.list_object_versions,
    "GetBucketTagging": tagging.get_bucket_tagging,
    "PutBucketTagging": tagging.put_bucket_tagging,
    "DeleteBucketTagging": tagging.delete_bucket_tagging,
    "GetObjectTagging": tagging.get_object_tagging,
    "PutObjectTagging": tagging.put_object_tagging,
    "DeleteObjectTagging": tagging.delete_object_tagging,
    "PutBucketNotificationConfiguration": notification.put_bucket_notification,
    "GetBucketNotificationConfiguration": notification.get_bucket_notification,
    "PutObjectLockConfiguration": object_lock.put_object_lock_configuration,
    "GetObjectLockConfiguration": object_lock.get_object_lock_configuration,
    "PutObjectRetention": object_lock.put_object_retention,
    "GetObjectRetention": object_lock.get_object_retention,
    "PutObjectLegalHold": object_lock.put_object_legal_hold,
    "GetObjectLegalHold": object_lock.get_object_legal_hold,
    "SquallAdmin": admin.handle,
}
PREFLIGHT_OPERATION = "PreflightCors"
DELETE_OBJECTS_OPERATION = "DeleteObjects"
PUT_OBJECT_TAGGING_OPERATION = "PutObjectTagging"
# Object reads whose missing key answers 404 or 403 by the requester's right to list.
MISSING_KEY_OPERATIONS = frozenset({"GetObject", "HeadObject", "GetObjectAttributes"})


def access_denied() -> S3Error:
    return S3Error("AccessDenied", "Access Denied", 403)


# Request ids: a random per-process prefix and a counter. Unique and cheap (a syscall
# per request for os.urandom showed in profiles of small GETs).
_REQUEST_ID_PREFIX = os.urandom(4).hex().upper()
_request_numbers = itertools.count(1)


def new_request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers):08X}"


def error_response(error: S3Error, *, request_id: str, resource: str, method: str) -> Response:
    headers = {"x-amz-request-id": request_id, **error.headers}
    if method == "HEAD":
        return Response(status_code=error.status, headers=headers)
    fields = [("Code", error.code), ("Message", error.message)]
    fields += [(name, value) for name, value in error.fields.items()]
    fields += [("Resource", error.resource or resource), ("RequestId", request_id)]
    return Response(
        render("Error", fields, namespace=False),
        status_code=error.status,
        headers=headers,
        media_type="application/xml",
    )


class _BodyWatch:
    """An ASGI ``receive`` that remembers whether the request body was read to its end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.body_complete = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.body_complete = True
        return message


def _check_header_size(headers: list[tuple[bytes, bytes]]) -> None:
    size = sum(len(name) + len(value) + 4 for name, value in headers)  # ': ' and CRLF
    if size > api.limits.request_header_bytes_max:
        raise S3Error(
            "RequestHeaderSectionTooLarge",
            "Your request header section exceeds the maximum allowed size.",
            400,
            MaxSizeAllowed=str(api.limits.request_header_bytes_max),
        )


def parse_query(query_string: str) -> dict[str, list[str]]:
    """``urllib.parse.parse_qs(query_string, keep_blank_values=True)``, without its
    generic machinery (it showed in profiles of small GETs): fields split on '&', empty
    ones skipped, a name without '=' has the value '', '+' is a space, %-escapes are
    UTF-8 with errors replaced. Only what holds a "+" or a "%" is rewritten: the six
    parameters of a presigned URL hold one escape among them."""
    parsed: dict[str, list[str]] = {}
    for field in query_string.split("&"):
        if not field:
            continue
        if "+" in field:
            field = field.replace("+", " ")
        name, _, value = field.partition("=")
        if "%" in name:
            name = unquote(name)
        if "%" in value:
            value = unquote(value)
        values = parsed.get(name)
        if values is None:
            parsed[name] = [value]
        else:
            values.append(value)
    return parsed


def query_from_pairs(
    pairs: list[tuple[bytes, bytes]], raw_query: bytes
) -> dict[str, list[str]]:
    """``parse_query(raw_query.decode("latin-1"))`` from the verifier's decoded pairs
    (``parse_query_pairs(raw_query)``), so that a request's query is split and
    unescaped once, not once here and again in SigV4.

    The same result for a query of ASCII bytes (every query a client escapes): the
    pairs were split, given spaces for '+' and unescaped in the same order, and
    ``unquote`` of ASCII text is ``unquote_to_bytes`` decoded as UTF-8 with errors
    replaced (a hypothesis test holds the two equal). ``unquote`` keeps raw non-ASCII
    bytes as their latin-1 characters, which the pairs no longer tell apart from
    escaped ones: such a query takes ``parse_query``.
    """
    if not raw_query.isascii():
        return parse_query(raw_query.decode("latin-1"))
    parsed: dict[str, list[str]] = {}
    for name_raw, value_raw in pairs:
        name = name_raw.decode("utf-8", "replace")
        value = value_raw.decode("utf-8", "replace")
        values = parsed.get(name)
        if values is None:
            parsed[name] = [value]
        else:
            values.append(value)
    return parsed


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


def _resource(raw_path: bytes) -> str:
    """The path an error names as its Resource."""
    return raw_path.decode("latin-1").split("?", 1)[0]


_SERVER_NAME = b"Squall"


def _add_common_headers(raw_headers: list[tuple[bytes, bytes]], request_id: str) -> None:
    """x-amz-request-id, x-amz-id-2 and Server, where the response does not set them.

    On the raw list in one pass: three ``MutableHeaders.setdefault`` calls scanned the
    list three times and encoded each name again.
    """
    present = {name for name, _ in raw_headers}
    request_id_bytes = request_id.encode("latin-1")
    if b"x-amz-request-id" not in present:
        raw_headers.append((b"x-amz-request-id", request_id_bytes))
    if b"x-amz-id-2" not in present:
        raw_headers.append((b"x-amz-id-2", request_id_bytes))
    if b"server" not in present:
        raw_headers.append((b"server", _SERVER_NAME))


class Gateway:
    """The ASGI application. One instance per server process."""

    def __init__(self, storage: api.StorageClient, config: GatewayConfig) -> None:
        self.storage = storage
        self.config = config
        self.users = config.users or UserDirectory(storage, config.credentials)
        self.cors_rules = cors.ParsedCorsCache()
        self.policies = PolicyCache()
        self.request_metrics = RequestMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        began_s = time.perf_counter()
        watched = _BodyWatch(receive)
        request = GatewayRequest(scope, watched)
        request_id = new_request_id()
        raw_path = scope.get("raw_path") or scope["path"].encode()
        endpoint: Endpoint | None = None
        try:
            raw_query = scope.get("query_string", b"")
            query_pairs = parse_query_pairs(raw_query)
            query = query_from_pairs(query_pairs, raw_query)
            endpoint = self._route(request, raw_path, query)
            response = await self._handle(request, endpoint, query, query_pairs, request_id,
                                          raw_path)
        except S3Error as error:
            response = error_response(error, request_id=request_id,
                                      resource=_resource(raw_path), method=request.method)
        except api.StorageError as error:
            # Raised outside an operation's own handling (the user directory's refresh
            # before it): an unreachable store is still 503, not a bug.
            response = error_response(error_for_storage(error), request_id=request_id,
                                      resource=_resource(raw_path), method=request.method)
        except Exception:  # a bug: logged with its traceback, answered as S3 does
            resource = _resource(raw_path)
            log.exception("internal error in request %s %s", request.method, resource)
            response = error_response(
                S3Error("InternalError", "We encountered an internal error. Please try "
                        "again.", 500),
                request_id=request_id, resource=resource, method=request.method,
            )
        _add_common_headers(response.raw_headers, request_id)
        if endpoint is not None and "origin" in request.headers:
            await self._add_cors_headers(request, endpoint, response)
        if not watched.body_complete and _has_body(request):
            # We answer without having read the body (an early error, or a client that
            # sent 'Expect: 100-continue' and will not send it now): the rest of the
            # connection's bytes cannot be trusted to start a new request.
            response.headers["Connection"] = "close"
        try:
            await response(scope, watched, send)
        finally:  # a client gone mid-body still made a request
            self.request_metrics.observe(
                endpoint.operation if endpoint is not None else UNKNOWN_OPERATION,
                response.status_code, time.perf_counter() - began_s)

    def _route(self, request: Request, raw_path: bytes, query: dict[str, list[str]]) -> Endpoint:
        _check_header_size(request.scope["headers"])
        return route(request.method, raw_path.decode("latin-1"), query,
                     request.headers, self.config.domains)

    async def _handle(
        self,
        request: Request,
        endpoint: Endpoint,
        query: dict[str, list[str]],
        query_pairs: list[tuple[bytes, bytes]],
        request_id: str,
        raw_path: bytes,
    ) -> Response:
        if endpoint.operation == PREFLIGHT_OPERATION:
            # Browsers never sign a preflight: it is answered from the bucket's CORS
            # rules alone, and is the only operation that skips authentication.
            try:
                return await cors.preflight(self.storage, self.cors_rules, endpoint,
                                            request.headers)
            except api.StorageError as error:
                raise error_for_storage(error, bucket=endpoint.bucket) from error
        if endpoint.operation == post_object.OPERATION:
            # A browser form carries its credentials in the body (a signed policy): the
            # handler authenticates it once it has read the fields before the file.
            return await self._dispatch(self._form_context(request, endpoint, query,
                                                           request_id), endpoint)
        if endpoint.operation == HEALTH_OPERATION:
            return await health_response(request.method, self.storage)  # probes never sign
        if endpoint.operation == METRICS_OPERATION and self.config.metrics_access.admits(
                request.headers.get("authorization")):
            return await self._metrics(request)  # a public or bearer-token scrape
        if self.users.needs_refresh():  # a user was added or removed (no I/O to tell)
            await self.users.refresh()
        if endpoint.operation == "CreateBucket" and endpoint.bucket is not None:
            # A name that can never be a bucket protects nothing: say so before checking
            # the signature, which a client may have computed over a path with raw
            # punctuation ('alpha!soup') that no valid bucket name contains.
            buckets.check_bucket_name(endpoint.bucket)
        authenticated = self._authenticate(
            request, raw_path, bucket_from_host(request.headers.get("host", ""),
                                                self.config.domains),
            query_pairs,
        )
        auth = None if isinstance(authenticated, Anonymous) else authenticated
        principal = self._principal(auth)
        if endpoint.operation == METRICS_OPERATION:
            if not principal.is_admin:
                raise authz.access_denied()
            return await self._metrics(request)
        body = RequestBody(request, auth if auth is not None
                           else self._anonymous_payload(request))
        try:
            decision, key_access, policy_lists = await self._authorize(
                request, endpoint, query, auth, body)
        except api.StorageError as error:
            raise error_for_storage(error, bucket=endpoint.bucket) from error
        except CodedError as error:  # a body read early (PutObjectTagging) failed a check
            raise error_for_client(error) from error
        except ClientDisconnect:
            raise S3Error("IncompleteBody", "The request body ended early.", 400) from None
        ctx = RequestContext(
            request=request,
            endpoint=endpoint,
            storage=self.storage,
            config=self.config,
            owner=principal.owner,
            query=query,
            body=body,
            request_id=request_id,
            users=self.users,
            principal=principal,
            anonymous=auth is None,
            key_access=key_access,
            policies=self.policies,
        )
        if decision == ALLOW:  # the bucket policy admits it: no ACL needed
            ctx.object_checked = ctx.policy_allowed = True
            ctx.policy_allows_listing = policy_lists
        elif not authz.settled_without_reads(endpoint) and not (
                key_access is not None and auth is None):
            # The ACLs and ownership (gateway/authz.py); an unsigned DeleteObjects that a
            # policy governs is decided key by key by its ``key_access`` alone.
            try:
                await authz.authorize(ctx)
            except api.StorageError as error:
                raise error_for_storage(error, bucket=endpoint.bucket) from error
        return await self._dispatch(ctx, endpoint)

    def _principal(self, auth: AuthContext | None) -> Principal:
        if auth is None:
            return ANONYMOUS_PRINCIPAL
        return self.users.principal(auth.access_key)

    async def _authorize(
        self,
        request: Request,
        endpoint: Endpoint,
        query: dict[str, list[str]],
        auth: AuthContext | None,
        body: RequestBody,
    ) -> tuple[Decision, KeyAccess | None, bool]:
        """The bucket policy's word on this request: (ALLOW / NONE, DeleteObjects' per-key
        ``KeyAccess`` when the bucket has a policy, whether the policy lets the requester
        list the bucket: asked for an allowed object read only); AccessDenied for an
        explicit Deny.

        A Deny refuses anyone, the bucket owner included, except the owner's
        Get/Put/DeleteBucketPolicy. An Allow admits the request without the ACLs
        (unsigned ones too, unless RestrictPublicBuckets); NONE leaves it to the ACLs and
        ownership (``gateway/authz.py``), which admit an unsigned request only where
        AllUsers is granted."""
        operation = endpoint.operation
        if (endpoint.bucket is None or endpoint.bucket == api.SYSTEM_BUCKET
                or operation in NO_POLICY_OPERATIONS):
            return NONE, None, False  # the system bucket is root's alone: no policy admits
        stored_policy = await self.policies.policy(self.storage, endpoint.bucket)
        if stored_policy is None and operation not in COPY_OPERATIONS:
            return NONE, None, False  # the common case: no policy, no I/O, nothing to decide
        facts = self._request_facts(request, endpoint, query, auth)
        if operation == DELETE_OBJECTS_OPERATION:
            return NONE, self._key_access(stored_policy, facts, anonymous=auth is None), False
        if operation == PUT_OBJECT_TAGGING_OPERATION and stored_policy is not None:
            facts = await self._with_body_tags(stored_policy, facts, body)
        decision = await decide_with(self.storage, self.policies, facts, stored_policy)
        if decision == DENY:
            if (operation in OWNER_ALWAYS_OPERATIONS
                    and await self._owns_bucket(auth, facts.bucket)):
                return NONE, None, False
            raise access_denied()
        if decision == ALLOW and auth is None and await policy.public_policy_restricted(
                self.storage, facts.bucket):
            raise access_denied()
        if decision == ALLOW and operation in MISSING_KEY_OPERATIONS:
            # A key that is not there is 404 only to whom may list the bucket, else 403
            # (AWS, GetObject): what the policy says of s3:ListBucket, asked only here.
            listing = dataclasses.replace(facts, operation="ListObjects", key=None,
                                          query={})
            return decision, None, await decide_with(
                self.storage, self.policies, listing, stored_policy) == ALLOW
        return decision, None, False

    @staticmethod
    async def _with_body_tags(policy: Policy, facts: RequestFacts,
                              body: RequestBody) -> RequestFacts:
        """PutObjectTagging's request tags are its body: read it (bounded) before the
        handler, which gets it again, when the policy asks about request tags."""
        if not (policy.names_key_prefix(REQUEST_TAG_PREFIX)
                or REQUEST_TAG_KEYS in policy.context_keys):
            return facts
        document = await body.buffer(api.limits.request_xml_body_bytes_max)
        tags = tagging.parse_tagging_xml(document, api.limits.object_tags_max, "Object")
        return dataclasses.replace(facts, extra_keys=request_tag_keys(tags))

    def _key_access(self, policy: Policy | None, facts: RequestFacts, *,
                    anonymous: bool) -> KeyAccess | None:
        if policy is None:
            return None

        async def may_delete(key: str, version_id: str | None) -> bool:
            decision: Decision = await decide_key(self.storage, self.policies, facts, key,
                                                  version_id)
            return decision == ALLOW or (decision != DENY and not anonymous)

        return may_delete

    def _request_facts(
        self,
        request: Request,
        endpoint: Endpoint,
        query: dict[str, list[str]],
        auth: AuthContext | None,
    ) -> RequestFacts:
        assert endpoint.bucket is not None
        owner_id = owner_for(auth.access_key).id if auth is not None else ""
        client = request.client
        return RequestFacts(
            operation=endpoint.operation,
            bucket=endpoint.bucket,
            key=endpoint.key,
            principal=principal_for(auth, owner_id),
            access_key=auth.access_key if auth is not None else None,
            auth=auth,
            query=query,
            headers=request.headers,
            source_ip=client.host if client is not None else "",
            secure_transport=is_secure_transport(request),
            now_seconds=time.time(),
        )

    async def _owns_bucket(self, auth: AuthContext | None, bucket: str) -> bool:
        if auth is None:
            return False
        info = await self.storage.get_bucket(bucket)
        return info.owner_id == owner_for(auth.access_key).id

    def _anonymous_payload(self, request: Request) -> AuthContext:
        try:
            return anonymous_payload_context(request.scope["headers"])
        except AuthError as error:
            raise error_for_client(error) from error

    async def _metrics(self, request: Request) -> Response:
        try:
            return await metrics_response(request.method, self.storage, self.request_metrics,
                                          self.config.metrics_sources)
        except api.StorageError as error:
            raise error_for_storage(error) from error

    def _form_context(
        self, request: Request, endpoint: Endpoint, query: dict[str, list[str]], request_id: str
    ) -> RequestContext:
        return RequestContext(
            request=request,
            endpoint=endpoint,
            storage=self.storage,
            config=self.config,
            owner=post_object.UNAUTHENTICATED,
            query=query,
            body=RequestBody(request, post_object.FORM_BODY_AUTH),
            request_id=request_id,
            users=self.users,
            policies=self.policies,
        )

    async def _add_cors_headers(
        self, request: Request, endpoint: Endpoint, response: Response
    ) -> None:
        """CORS headers for a request with an Origin header, from its bucket's rules."""
        if endpoint.bucket is None or endpoint.operation == PREFLIGHT_OPERATION:
            return
        try:
            headers = await cors.response_headers(
                self.storage, self.cors_rules, endpoint.bucket, request.headers["origin"],
                request.method,
            )
        except api.StorageError as error:
            # The response itself stands; only its CORS headers are missing.
            log.warning("no CORS headers for %s: %r", endpoint.bucket, error)
            return
        response.headers.update(headers)

    def _authenticate(
        self,
        request: Request,
        raw_path: bytes,
        host_bucket: str | None,
        query_pairs: list[tuple[bytes, bytes]],
    ) -> AuthContext | None:
        """The verified signature, or None for an unsigned request (``authz`` decides
        whether the grants let an anonymous request through)."""
        try:
            result = authenticate(
                request.method,
                raw_path,
                request.scope.get("query_string", b""),
                request.scope["headers"],
                self.users.secret_lookup,
                time.time(),
                region=self.config.region,
                virtual_host_bucket=host_bucket,
                query_pairs=query_pairs,
            )
        except AuthError as error:
            raise error_for_client(error) from error
        if isinstance(result, Anonymous):
            return None
        return result

    async def _dispatch(self, ctx: RequestContext, endpoint: Endpoint) -> Response:
        handler = HANDLERS[endpoint.operation]
        at_rest = self.config.encryption_at_rest
        if endpoint.operation in encryption.OPERATIONS:
            ctx.customer_key, ctx.copy_source_customer_key = encryption.requested_customer_keys(
                ctx.request.headers, endpoint.operation, secure=ctx.secure_transport,
                over_http_allowed=self.config.sse_c_over_http, cluster=self.config.cluster)
            encryption.check_encryption(ctx.request.headers, at_rest)
        try:
            response = await handler(ctx)
            # A handler of an object operation checks the object it serves (authz);
            # one that did not would serve it to anybody: a bug, never a response.
            assert ctx.object_checked or authz.REQUIREMENTS[
                endpoint.operation].resource != authz.OBJECT, (
                f"{endpoint.operation} answered without authz.check_object")
            encryption.say_encrypted(response, endpoint.operation, at_rest,
                                     ctx.answered_customer_key)
            return response
        except api.WriteDiscarded as discarded:
            # A function answered and discarded the object: success, nothing stored.
            return Response(status_code=200,
                            headers=discarded_response_headers(discarded.verdict))
        except api.StorageError as error:
            raise error_for_storage(error, bucket=endpoint.bucket, key=endpoint.key) from error
        except CodedError as error:
            raise error_for_client(error) from error
        except ClientDisconnect:
            # The client went away mid-body; whatever was staged has been aborted.
            raise S3Error("IncompleteBody", "The request body ended early.", 400) from None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # The storage client is closed by whoever opened it (squall.cli).
                await send({"type": "lifespan.shutdown.complete"})
                return
