"""Bucket policy enforcement: a request's decision from its bucket's policy, in ONE place.

``policy_decision(storage, cache, facts)`` answers ``"allow"``, ``"deny"`` or ``"none"``
for one request (``RequestFacts``: who, which operation on what, and the request's
condition keys); ``gateway/app.py`` calls it after authentication (as ``decide_with``,
having looked the policy up for its no-policy fast path) and turns the answer into
access (``Gateway._authorize``), and so can an ACL layer. The evaluation itself is
``gateway/policy_eval.py`` (pure); this module does the I/O around it:

* the bucket's policy, read through ``storage.api`` and parsed once per document,
  cached per bucket against the storage change counter of the bucket's configuration
  (``StorageClient.change_count``): a request to a bucket whose configuration did not
  change does no I/O here, and a PutBucketPolicy applies to the very next request;
* the object's current tags, read only when the policy names ``s3:ExistingObjectTag/``
  and the action is one AWS gives that key to;
* CopyObject and UploadPartCopy also need ``s3:GetObject`` (or ``GetObjectVersion``) on
  the source, decided by the SOURCE bucket's policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from gateway.auth import AuthContext
from gateway.policy_eval import (
    ALLOW,
    ANONYMOUS,
    COPY_OPERATIONS,
    IAM_ARN_PREFIX,
    NONE,
    OBJECT_RESOURCE,
    Decision,
    Policy,
    PolicyError,
    Principal,
    action_for,
    combine,
    evaluate,
    object_arn,
    parse_copy_source,
    parse_policy,
    principal_for_account,
    resource_for,
    tag_context,
)
from storage import api

log = logging.getLogger("squall.gateway")

POLICY_CONFIG = "policy"
EXISTING_TAG_PREFIX = "s3:existingobjecttag/"
REQUEST_TAG_PREFIX = "s3:requestobjecttag/"
REQUEST_TAG_KEYS = "s3:requestobjecttagkeys"
# Actions AWS evaluates s3:ExistingObjectTag/<key> for (the version's current tags).
EXISTING_TAG_ACTIONS = frozenset({
    "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAcl", "s3:GetObjectVersionAcl",
    "s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl", "s3:PutObjectTagging", "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging", "s3:GetObjectAttributes",
    "s3:GetObjectVersionAttributes",
})  # fmt: skip
# Request headers that are S3 condition keys: (header, key), most keys named s3:<header>.
HEADER_KEYS = tuple((header, "s3:" + header) for header in (
    "x-amz-acl", "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp",
    "x-amz-grant-write-acp", "x-amz-grant-full-control", "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-copy-source",
    "x-amz-metadata-directive", "x-amz-storage-class", "x-amz-content-sha256",
)) + (
    ("x-amz-object-lock-mode", "s3:object-lock-mode"),
    ("x-amz-object-lock-retain-until-date", "s3:object-lock-retain-until-date"),
    ("x-amz-object-lock-legal-hold", "s3:object-lock-legal-hold"),
)  # fmt: skip
# Query parameters of the listing operations that are condition keys (s3:<name>).
LIST_QUERY_KEYS = ("prefix", "delimiter", "max-keys")
LIST_ACTIONS = frozenset({"s3:ListBucket", "s3:ListBucketVersions"})
SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
SIGV2_NAME = "AWS"


def principal_for(auth: AuthContext | None, canonical_id: str) -> Principal:
    """The policy principal of an authenticated request (None: anonymous)."""
    if auth is None:
        return ANONYMOUS
    return principal_for_account(auth.access_key, canonical_id)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a policy may ask about a request; everything ``policy_decision`` needs."""

    operation: str
    bucket: str
    key: str | None
    principal: Principal
    access_key: str | None  # None: anonymous
    auth: AuthContext | None  # None: anonymous, or a form (POST Object)
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    source_ip: str
    secure_transport: bool
    now_seconds: float
    # POST Object: its form fields stand for the headers of a PUT.
    authentication_type: str | None = None
    # Keys read from the body (PutObjectTagging's tags), set by the caller.
    extra_keys: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)

    @property
    def version_id(self) -> str | None:
        values = self.query.get("versionId")
        return values[0] if values else None


class PolicyCache:
    """Each bucket's parsed policy (or None), with the configuration change count it was
    read at. Bounded: past ``entries_max`` buckets, all entries are dropped at once."""

    def __init__(self, entries_max: int = api.limits.bucket_policies_cached_max) -> None:
        assert entries_max > 0
        self._entries_max = entries_max
        self._entries: dict[str, tuple[int | None, bytes, Policy | None]] = {}

    async def policy(self, storage: api.StorageClient, bucket: str) -> Policy | None:
        """The bucket's policy; None when it has none (or there is no such bucket: the
        operation then answers NoSuchBucket itself)."""
        change_count = storage.change_count(bucket, api.CHANGES_CONFIGURATION)
        cached = self._entries.get(bucket)
        if cached is not None and change_count is not None and cached[0] == change_count:
            return cached[2]
        try:
            raw = await storage.get_bucket_config(bucket, POLICY_CONFIG)
        except api.NoSuchBucket:
            return None
        document = b"" if raw is None else bytes(raw)
        if cached is not None and cached[1] == document:
            policy = cached[2]
        else:
            policy = _parsed(document, bucket)
        if len(self._entries) >= self._entries_max and bucket not in self._entries:
            self._entries.clear()
        self._entries[bucket] = (change_count, document, policy)
        return policy


# What a stored policy that no longer parses is enforced as: a Deny of everything (the
# owner can still replace or delete it). Only a policy stored before this parser grew
# stricter can be such (PutBucketPolicy validates with the same parser).
UNREADABLE_POLICY_DOCUMENT = (
    b'{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "*",'
    b' "Resource": ["arn:aws:s3:::*", "arn:aws:s3:::*/*"]}}'
)


def _parsed(document: bytes, bucket: str) -> Policy | None:
    if not document:
        return None
    try:
        return parse_policy(document, bucket)
    except PolicyError as error:
        # Fail closed, and say so: ignoring the owner's policy could open the bucket.
        log.error("the stored policy of bucket %s no longer parses (%s): every request "
                  "but the owner's Get/Put/DeleteBucketPolicy is denied until it is "
                  "replaced", bucket, error.message)
        return parse_policy(UNREADABLE_POLICY_DOCUMENT, bucket)


ContextValue = str | tuple[str, ...] | None
Provider = Callable[[RequestFacts, str], ContextValue]


def _principal_value(anonymous: str | None, signed: Callable[[str], str]) -> Provider:
    def provide(facts: RequestFacts, action: str) -> ContextValue:
        return anonymous if facts.access_key is None else signed(facts.access_key)
    return provide


def _header_value(header: str) -> Provider:
    def provide(facts: RequestFacts, action: str) -> ContextValue:
        return facts.headers.get(header)
    return provide


def _list_query_value(name: str) -> Provider:
    def provide(facts: RequestFacts, action: str) -> ContextValue:
        values = facts.query.get(name) if action in LIST_ACTIONS else None
        return values[0] if values else None
    return provide


def _authentication_type(facts: RequestFacts, action: str) -> ContextValue:
    if facts.authentication_type is not None:
        return facts.authentication_type
    if facts.auth is None:
        return None
    return "REST-QUERY-STRING" if facts.auth.presigned else "REST-HEADER"


def _signature_version(facts: RequestFacts, action: str) -> ContextValue:
    if facts.auth is None:
        return None
    # SigV2 contexts carry no credential scope (gateway/auth/sigv2.py).
    return SIGV4_ALGORITHM if facts.auth.scope else SIGV2_NAME


def _signature_age(facts: RequestFacts, action: str) -> ContextValue:
    signed_at = _signed_seconds(facts.auth.timestamp) if facts.auth is not None else None
    if signed_at is None:
        return None
    return str(max(0, int((facts.now_seconds - signed_at) * 1000)))


def _current_time(facts: RequestFacts, action: str) -> ContextValue:
    return datetime.fromtimestamp(facts.now_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _request_tags(facts: RequestFacts) -> dict[str, str]:
    tagging = facts.headers.get("x-amz-tagging")
    return {} if tagging is None else dict(parse_qsl(tagging, keep_blank_values=True))


def request_tag_keys(tags: Mapping[str, str]) -> dict[str, str | tuple[str, ...]]:
    """The condition keys of a request's tag set (a PutObjectTagging body's)."""
    keys: dict[str, str | tuple[str, ...]] = {REQUEST_TAG_KEYS: tuple(tags)}
    keys.update(tag_context(REQUEST_TAG_PREFIX, tags))
    return keys


def _request_tag_keys(facts: RequestFacts, action: str) -> ContextValue:
    return tuple(_request_tags(facts)) if "x-amz-tagging" in facts.headers else None


# Every condition key Squall provides (policy_eval.context_key form) -> how to read it
# from a request. Only the keys a policy names are computed (request_context).
PROVIDERS: dict[str, Provider] = {
    "aws:sourceip": lambda facts, action: facts.source_ip,
    "aws:securetransport": lambda facts, action: "true" if facts.secure_transport else "false",
    "aws:currenttime": _current_time,
    "aws:epochtime": lambda facts, action: str(int(facts.now_seconds)),
    "aws:principaltype": _principal_value("Anonymous", lambda key: "Account"),
    "aws:userid": _principal_value("anonymous", lambda key: key),
    "aws:username": _principal_value(None, lambda key: key),
    "aws:principalaccount": _principal_value(None, lambda key: key),
    "aws:principalarn": _principal_value(None, lambda key: f"{IAM_ARN_PREFIX}{key}:root"),
    "aws:referer": _header_value("referer"),
    "aws:useragent": _header_value("user-agent"),
    "s3:authtype": _authentication_type,
    "s3:signatureversion": _signature_version,
    "s3:signatureage": _signature_age,
    "s3:versionid": lambda facts, action: facts.version_id,
    REQUEST_TAG_KEYS: _request_tag_keys,
    **{key: _header_value(header) for header, key in HEADER_KEYS},
    **{"s3:" + name: _list_query_value(name) for name in LIST_QUERY_KEYS},
}


def request_context(facts: RequestFacts, action: str,
                    keys: Iterable[str] | None = None) -> dict[str, str | tuple[str, ...]]:
    """The condition keys S3 gives this request (``policy_eval.context_key`` form): those
    in ``keys`` (what a policy names), or all of them. ``s3:ExistingObjectTag/`` keys are
    added by the caller (they cost a read)."""
    wanted = PROVIDERS.keys() if keys is None else keys
    context: dict[str, str | tuple[str, ...]] = {}
    request_tags_wanted = keys is None
    for key in wanted:
        provider = PROVIDERS.get(key)
        if provider is not None:
            value = provider(facts, action)
            if value is not None:
                context[key] = value
        elif key.startswith(REQUEST_TAG_PREFIX):
            request_tags_wanted = True
    if request_tags_wanted:
        context.update(tag_context(REQUEST_TAG_PREFIX, _request_tags(facts)))
    context.update(facts.extra_keys)
    return context


def _signed_seconds(timestamp: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 basic timestamp (20130524T000000Z)."""
    if len(timestamp) != 16 or not timestamp[:8].isdigit() or not timestamp[9:15].isdigit():
        return None
    try:
        moment = datetime(int(timestamp[:4]), int(timestamp[4:6]), int(timestamp[6:8]),
                          int(timestamp[9:11]), int(timestamp[11:13]), int(timestamp[13:15]),
                          tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp()


async def _existing_tags(storage: api.StorageClient, bucket: str, key: str,
                         version_id: str | None) -> dict[str, str]:
    try:
        version = await storage.get_version(bucket, key, version_id)
    except (api.NoSuchKey, api.NoSuchVersion, api.InvalidArgument):
        return {}  # nothing exists to have tags; the operation answers its own error
    return {} if version.is_delete_marker else dict(version.tags)


async def decide_action(
    storage: api.StorageClient,
    policy: Policy,
    facts: RequestFacts,
    action: str,
    resource: str,
    key: str | None,
) -> Decision:
    """One (action, resource) of the request against ``policy``."""
    context = request_context(facts, action, policy.context_keys)
    if (key is not None and action in EXISTING_TAG_ACTIONS
            and policy.names_key_prefix(EXISTING_TAG_PREFIX)):
        tags = await _existing_tags(storage, facts.bucket, key, facts.version_id)
        context.update(tag_context(EXISTING_TAG_PREFIX, tags))
    return evaluate(policy, facts.principal, action, resource, context)


async def policy_decision(
    storage: api.StorageClient, cache: PolicyCache, facts: RequestFacts
) -> Decision:
    """The bucket policies' decision for the whole request: ``"deny"`` if any action it
    needs is explicitly denied, ``"allow"`` if every one is allowed, else ``"none"``.

    A bucket without a policy answers ``"none"`` with no I/O while its configuration is
    unchanged. DeleteObjects is decided per key by its handler (``decide_key``)."""
    return await decide_with(storage, cache, facts, await cache.policy(storage, facts.bucket))


async def decide_with(
    storage: api.StorageClient, cache: PolicyCache, facts: RequestFacts, policy: Policy | None
) -> Decision:
    """``policy_decision`` for a caller that has already looked the bucket's policy up."""
    decisions = []
    action, kind = action_for(facts.operation, facts.version_id)
    if policy is not None:
        resource = resource_for(kind, facts.bucket, facts.key)
        key = facts.key if kind == OBJECT_RESOURCE else None
        decisions.append(await decide_action(storage, policy, facts, action, resource, key))
    else:
        decisions.append(NONE)
    if facts.operation in COPY_OPERATIONS:
        decisions.append(await _copy_source_decision(storage, cache, facts))
    return combine(decisions)


async def _copy_source_decision(
    storage: api.StorageClient, cache: PolicyCache, facts: RequestFacts
) -> Decision:
    source = parse_copy_source(facts.headers.get("x-amz-copy-source", ""))
    if source is None:
        return ALLOW  # unreadable: the handler answers InvalidArgument
    bucket, key, version_id = source
    policy = await cache.policy(storage, bucket)
    if policy is None:
        return NONE
    action = "s3:GetObjectVersion" if version_id is not None else "s3:GetObject"
    source_facts = RequestFacts(
        operation=facts.operation, bucket=bucket, key=key, principal=facts.principal,
        access_key=facts.access_key, auth=facts.auth,
        query={"versionId": [version_id]} if version_id is not None else {},
        headers=facts.headers, source_ip=facts.source_ip,
        secure_transport=facts.secure_transport, now_seconds=facts.now_seconds,
        authentication_type=facts.authentication_type,
    )  # fmt: skip
    return await decide_action(storage, policy, source_facts, action, object_arn(bucket, key),
                               key)


async def decide_key(
    storage: api.StorageClient,
    cache: PolicyCache,
    facts: RequestFacts,
    key: str,
    version_id: str | None,
) -> Decision:
    """DeleteObjects: the decision for deleting one of its keys."""
    policy = await cache.policy(storage, facts.bucket)
    if policy is None:
        return NONE
    action = "s3:DeleteObjectVersion" if version_id is not None else "s3:DeleteObject"
    return await decide_action(storage, policy, facts, action,
                               object_arn(facts.bucket, key), key)
