"""The one surface that ``gateway/`` and ``triggers/`` import from ``storage/``.

Rules:

* Everything here is a value type, a typed error, or a protocol. Nothing here touches
  LMDB, sockets or threads; the implementation lives in ``storage.client`` (what the
  gateway calls), ``storage.node`` and ``storage.engine``.
* Records are immutable (frozen dataclasses). A version's bytes and metadata never change
  once committed; its tag set (PutObjectTagging) and its Object Lock state
  (PutObjectRetention, PutObjectLegalHold) are the only things S3 lets a client replace,
  so a cache of records keyed by version id must not cache them.
* Times are integer milliseconds since the Unix epoch (``*_ms``); sizes are bytes.
* Errors are typed; the gateway maps each to exactly one S3 error code in one table
  (``gateway.errors``). An error that reaches the gateway untyped is a bug (500).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import os
import re
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from storage import limits as limits  # re-exported: the gateway reads bounds from here

__all__ = [
    "BucketInfo",
    "ObjectVersion",
    "ListedVersion",
    "PutSpec",
    "WriteConditions",
    "ListPage",
    "ListVersionsPage",
    "DeleteResult",
    "MultipartUploadInfo",
    "PartInfo",
    "CompletedPart",
    "ListPartsPage",
    "ListUploadsPage",
    "OBJECT_LOCK_MODES",
    "DefaultRetention",
    "ObjectLockUpdate",
    "LifecycleRule",
    "LifecycleConfiguration",
    "LIFECYCLE_RULES_CONFIG",
    "LIFECYCLE_DAY_MS",
    "lifecycle_due_ms",
    "current_version_expiry",
    "CHANGES_OBJECTS",
    "CHANGES_CONFIGURATION",
    "SYSTEM_BUCKET",
    "SYSTEM_OWNER_ID",
    "OBJECT_ACL_PUT_EVENT",
    "Upload",
    "PartUpload",
    "StorageClient",
    "StorageError",
    "NoSuchBucket",
    "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "BucketNotEmpty",
    "NoSuchKey",
    "NoSuchVersion",
    "PreconditionFailed",
    "KeyTooLong",
    "Overloaded",
    "InvalidArgument",
    "NoSuchUpload",
    "InvalidPart",
    "InvalidPartOrder",
    "EntityTooSmall",
    "InvalidBucketState",
    "ObjectLockNotEnabled",
    "ObjectLocked",
    "NodeUnavailable",
    "NotShardLeader",
    "ReplicationUnavailable",
    "SSE_CUSTOMER_ALGORITHM",
    "CustomerKey",
    "CustomerKeyRecord",
    "check_customer_key",
    "CustomerKeyRequired",
    "CustomerKeyMismatch",
    "CustomerKeyNotApplicable",
    "limits",
    # pre-commit hook (ML triggers)
    "OBJECT_CREATED_EVENTS",
    "NotificationRule",
    "NotificationConfiguration",
    "WriteEvent",
    "Verdict",
    "WriteRejected",
    "WriteDiscarded",
    "PreCommitHook",
    "FunctionAdmin",
    # post-commit notifications (durable outbox)
    "NOTIFICATION_CONFIG",
    "TEST_EVENT",
    "webhook_target_id",
    "EventOrigin",
    "OutboxEvent",
    "OutboxPage",
    "OutboxStatus",
    "EventDelivery",
]


# --- records -----------------------------------------------------------------------------


# S3 Object Lock retention modes: GOVERNANCE can be lifted by a request with
# x-amz-bypass-governance-retention: true; COMPLIANCE by nobody until it expires.
OBJECT_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


@dataclass(frozen=True, slots=True)
class DefaultRetention:
    """A bucket's default retention (Object Lock): given to every new version written
    without a retention of its own. Exactly one of ``days`` and ``years`` is set."""

    mode: str  # one of OBJECT_LOCK_MODES
    days: int | None = None
    years: int | None = None

    def retain_until_ms(self, now_ms: int) -> int:
        days = self.days if self.days is not None else (self.years or 0) * limits.object_lock_year_days
        return now_ms + days * limits.object_lock_day_ms


@dataclass(frozen=True, slots=True)
class BucketInfo:
    name: str
    created_ms: int
    owner_id: str
    # '' for a bucket that never had versioning, else 'Enabled' or 'Suspended'.
    versioning: str = ""
    # Object Lock: once enabled never disabled, and versioning stays Enabled.
    object_lock_enabled: bool = False
    default_retention: DefaultRetention | None = None


# --- SSE-C: server-side encryption with customer-provided keys ---------------------------
#
# A client may give a 32-byte AES-256 key with a request (the
# x-amz-server-side-encryption-customer-* headers). The key travels with the write or the
# read from the gateway to the engine, which encrypts (or decrypts) the object's chunks
# with keys derived from it (``storage.engine.cipher``), and is then forgotten: storage
# keeps only a ``CustomerKeyRecord`` (a salted HMAC of the key, which proves a key given
# later is the same one, and the key's MD5, which S3 answers with). Losing the key loses
# the object: nothing in the store can decrypt it.

SSE_CUSTOMER_ALGORITHM = "AES256"  # the one algorithm SSE-C takes
CUSTOMER_KEY_BYTES = 32
CUSTOMER_KEY_SALT_BYTES = 16
_CUSTOMER_KEY_CHECK_LABEL = b"squall sse-c key check\x00"
_CUSTOMER_ETAG_LABEL = b"squall sse-c etag\x00"


@dataclass(frozen=True, slots=True)
class CustomerKeyRecord:
    """What the store keeps of an SSE-C key: never the key itself.

    ``verifier`` is HMAC-SHA256(key, label || ``salt``) with a random salt per object
    (per multipart upload: its parts and its object share it), so a key given later is
    checked without keeping it, and two objects under the same key are not linkable by
    their records. ``key_md5`` (base64 MD5 of the key) is what S3 echoes in
    x-amz-server-side-encryption-customer-key-MD5."""

    key_md5: str
    salt: bytes
    verifier: bytes


@dataclass(frozen=True, slots=True)
class CustomerKey:
    """An SSE-C key given with one request. Never stored and never shown (``repr``
    leaves it out); ``key_md5`` is the base64 MD5 the client sent with it, which the
    gateway checked against the key."""

    key: bytes = field(repr=False)
    key_md5: str

    def __post_init__(self) -> None:
        assert len(self.key) == CUSTOMER_KEY_BYTES, "an SSE-C key is 32 bytes"

    @classmethod
    def of(cls, key: bytes) -> CustomerKey:
        digest = hashlib.md5(key, usedforsecurity=False).digest()
        return cls(bytes(key), base64.b64encode(digest).decode("ascii"))

    def _verifier(self, salt: bytes) -> bytes:
        return hmac.new(self.key, _CUSTOMER_KEY_CHECK_LABEL + salt, hashlib.sha256).digest()

    def new_record(self) -> CustomerKeyRecord:
        """A record of this key with a fresh random salt (a new object or upload)."""
        salt = os.urandom(CUSTOMER_KEY_SALT_BYTES)
        return CustomerKeyRecord(self.key_md5, salt, self._verifier(salt))

    def opens(self, record: CustomerKeyRecord) -> bool:
        """Whether this is the key ``record`` was made of (constant-time comparison)."""
        return hmac.compare_digest(self._verifier(record.salt), record.verifier)

    def etag(self, record: CustomerKeyRecord, md5_digest: bytes) -> str:
        """The ETag of a body (or part) written under this key: 32 hex digits, like an
        MD5, but keyed, so it does not give away the MD5 of the plaintext (AWS: an SSE-C
        object's ETag is not the MD5 of its data). Deterministic for a given body and
        record, so a part's ETag at UploadPart is the one CompleteMultipartUpload names."""
        return hmac.new(self.key, _CUSTOMER_ETAG_LABEL + record.salt + md5_digest,
                        hashlib.sha256).hexdigest()[:32]


def check_customer_key(record: CustomerKeyRecord | None, key: CustomerKey | None) -> None:
    """That ``key`` (given with a request, or None) opens what ``record`` (None: the data
    is not SSE-C) protects: CustomerKeyRequired, CustomerKeyMismatch or
    CustomerKeyNotApplicable otherwise."""
    if record is None:
        if key is not None:
            raise CustomerKeyNotApplicable("the data is not encrypted with a customer key")
        return
    if key is None:
        raise CustomerKeyRequired("the data is encrypted with a customer-provided key "
                                  "(SSE-C): the request must give it")
    if not key.opens(record):
        raise CustomerKeyMismatch("the customer-provided key is not the one the data is "
                                  "encrypted with")


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One immutable version of one key (an object or a delete marker)."""

    bucket: str
    key: str
    version_id: str  # opaque, sortable string; 'null' is never used internally
    last_modified_ms: int
    size_bytes: int
    etag: str  # without quotes: hex MD5 of the body, or '<md5-of-md5s>-N' for multipart
    is_delete_marker: bool = False
    content_type: str = "binary/octet-stream"
    # Content-Encoding, Content-Disposition, Content-Language, Cache-Control, Expires,
    # under their canonical HTTP header names, exactly as given by the writer.
    system_metadata: Mapping[str, str] = field(default_factory=dict)
    # x-amz-meta-* without the prefix; names lower-case as S3 stores them.
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    # 'CRC32' | 'CRC32C' | 'CRC64NVME' | 'SHA1' | 'SHA256' -> base64 digest of the body.
    checksums: Mapping[str, str] = field(default_factory=dict)
    # The version id as S3 shows it: the real id in a versioning-enabled bucket,
    # 'null' for a write made while versioning was never enabled or Suspended.
    s3_version_id: str = "null"
    is_latest: bool = True
    storage_class: str = "STANDARD"
    # Sizes of the parts of an object made by CompleteMultipartUpload, in part order;
    # () for an object written in one piece. Part N is bytes
    # [sum(part_sizes[:N-1]), sum(part_sizes[:N])) of the body.
    part_sizes: tuple[int, ...] = ()
    # Each part's own checksum (base64, of the upload's checksum algorithm), in part
    # order; () when the parts carried none or the object was written in one piece.
    part_checksums: tuple[str, ...] = ()
    # The object's tag set (key -> value); replaceable per version, see replace_tags.
    tags: Mapping[str, str] = field(default_factory=dict)
    # The canonical id of the version's writer ('' for versions written before owners
    # were recorded), and its ACL as the gateway serialised it (opaque to storage; None:
    # private to the owner), replaceable per version, see replace_acl.
    owner_id: str = ""
    acl: bytes | None = None
    # Object Lock state, replaceable per version (update_object_lock): the retention
    # mode ('' none, else one of OBJECT_LOCK_MODES) and until when (ms; 0 with no
    # mode), and the legal hold.
    lock_mode: str = ""
    lock_retain_until_ms: int = 0
    legal_hold: bool = False
    # SSE-C: the record of the customer key its body is encrypted with; None when the
    # body is not (reading it then takes that key: ``read_body``).
    customer_key: CustomerKeyRecord | None = None
    # Set only on the version a commit returns when a pre-commit function judged it (the
    # judgement itself is stored as 'squall-*' user metadata when the function annotates).
    verdict: Verdict | None = None
    # Set only by get_version, from the same snapshot as the version (neither takes part
    # in equality): the bucket's versioning state ('' never versioned, 'Enabled',
    # 'Suspended'; None where not known), and the whole body when it was asked for
    # (``inline_body_bytes_max``) and is no larger, so a small GET needs no body stream.
    bucket_versioning: str | None = field(default=None, compare=False, repr=False)
    inline_body: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def checksum_algorithms(self) -> tuple[str, ...]:
        """As ``ListedVersion.checksum_algorithms``, so that code rendering a listing
        entry takes either type."""
        return tuple(self.checksums)


class ListedVersion(NamedTuple):
    """One entry of a listing page: what ListObjects and ListObjectVersions show of a
    version (an object or a delete marker), and nothing more.

    No metadata, tags or part sizes (no S3 listing shows them; ``get_version`` does).
    A named tuple, not a dataclass: a page holds up to 1000 of them, and building a
    full ``ObjectVersion`` per key was most of a page's cost. The fields have the
    meaning and the names of ``ObjectVersion``'s.
    """

    key: str
    version_id: str
    s3_version_id: str
    last_modified_ms: int
    size_bytes: int
    etag: str
    storage_class: str
    checksum_algorithms: tuple[str, ...]  # the keys of ObjectVersion.checksums
    is_delete_marker: bool
    is_latest: bool
    owner_id: str = ""  # as ObjectVersion.owner_id ("" when not recorded)


@dataclass(frozen=True, slots=True)
class PutSpec:
    """Everything about a new object that is not its bytes.

    The gateway computes ``etag`` and the ``checksums`` while the body streams through it
    and has verified any that the client sent; storage records them as given.
    """

    etag: str
    content_type: str = "binary/octet-stream"
    system_metadata: Mapping[str, str] = field(default_factory=dict)
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    checksums: Mapping[str, str] = field(default_factory=dict)
    storage_class: str = "STANDARD"
    tags: Mapping[str, str] = field(default_factory=dict)  # validated by the gateway
    owner_id: str = ""  # the writer's canonical id (ObjectVersion.owner_id)
    acl: bytes | None = None  # the version's ACL, opaque to storage (None: private)
    # Object Lock asked for by the write (x-amz-object-lock-*): with no mode, the
    # bucket's default retention (if any) applies at the commit point.
    lock_mode: str = ""
    lock_retain_until_ms: int = 0
    legal_hold: bool = False
    # SSE-C: the record of the key the body is written with (the same key must be given
    # to ``open_upload``, or for an upload to every ``upload_part``); None: no SSE-C.
    customer_key: CustomerKeyRecord | None = None

    @property
    def asks_for_lock(self) -> bool:
        return bool(self.lock_mode) or self.legal_hold


@dataclass(frozen=True, slots=True)
class ObjectLockUpdate:
    """A change to one version's Object Lock state (PutObjectRetention or
    PutObjectLegalHold), checked against the current state at the commit point.

    ``retention``: None leaves the retention as it is; ``("", 0)`` removes it;
    ``(mode, retain_until_ms)`` replaces it. ``legal_hold``: None leaves it as it is.
    ``bypass_governance``: the request carried x-amz-bypass-governance-retention: true.
    """

    retention: tuple[str, int] | None = None
    legal_hold: bool | None = None
    bypass_governance: bool = False


@dataclass(frozen=True, slots=True)
class WriteConditions:
    """Checked atomically at the commit point, against the key's current version."""

    if_match: str | None = None  # ETag (no quotes) the current version must have
    if_none_match_any: bool = False  # 'If-None-Match: *': the key must not exist


@dataclass(frozen=True, slots=True)
class ListPage:
    objects: tuple[ListedVersion, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    # The last key or common prefix this page covered: the next page starts after it.
    next_marker: str | None


@dataclass(frozen=True, slots=True)
class ListVersionsPage:
    """A page of ListObjectVersions: every version and delete marker, newest first per
    key, keys in UTF-8 byte order; ``is_latest`` is set on each key's newest version."""

    versions: tuple[ListedVersion, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    # Where the next page starts (set only when truncated): after this key, and when
    # next_version_id_marker is set (an S3 version id, maybe 'null'), after that version.
    next_key_marker: str | None
    next_version_id_marker: str | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    # Set when the delete made a delete marker (versioned bucket) or removed one.
    delete_marker: bool = False
    # The S3-visible version id that was created (marker) or removed; None if nothing.
    s3_version_id: str | None = None


@dataclass(frozen=True, slots=True)
class MultipartUploadInfo:
    """An upload started by CreateMultipartUpload and not yet completed or aborted."""

    bucket: str
    key: str
    upload_id: str  # opaque and unguessable
    initiated_ms: int
    # The new object's metadata as given at Create; its ``etag`` and ``checksums`` are
    # empty (Complete supplies them).
    spec: PutSpec
    # '' or 'CRC32' | 'CRC32C' | 'CRC64NVME' | 'SHA1' | 'SHA256' (x-amz-checksum-algorithm)
    checksum_algorithm: str = ""
    # '' or 'COMPOSITE' | 'FULL_OBJECT' (x-amz-checksum-type), set with the algorithm.
    checksum_type: str = ""

    @property
    def customer_key(self) -> CustomerKeyRecord | None:
        """SSE-C: the record of the key every part must be written with (from Create)."""
        return self.spec.customer_key


@dataclass(frozen=True, slots=True)
class PartInfo:
    part_number: int
    size_bytes: int
    etag: str  # hex MD5 of the part, without quotes
    last_modified_ms: int
    checksum: str = ""  # base64 digest of the upload's checksum algorithm, '' if none


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """One entry of CompleteMultipartUpload: the part must exist with this ETag (and this
    checksum when one is given), checked at the commit point."""

    part_number: int
    etag: str  # without quotes
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class ListPartsPage:
    upload: MultipartUploadInfo
    parts: tuple[PartInfo, ...]
    is_truncated: bool
    next_part_number_marker: int | None  # the last part listed when truncated


@dataclass(frozen=True, slots=True)
class ListUploadsPage:
    """Uploads in (key UTF-8 byte order, initiation order); common prefixes with a
    delimiter, as ListObjects rolls them up."""

    uploads: tuple[MultipartUploadInfo, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_key_marker: str | None
    next_upload_id_marker: str | None


# --- bucket configuration documents that storage itself reads ----------------------------

# The config name under which the gateway stores a bucket's lifecycle rules in the form
# below (it keeps the client's XML under 'lifecycle' for GetBucketLifecycleConfiguration).
LIFECYCLE_RULES_CONFIG = "lifecycle-rules"
LIFECYCLE_RULES_FORMAT = 1


# A lifecycle "day": 24 hours, unless a test shortens it (``squall serve
# --lifecycle-day-seconds``) to watch expiry in seconds.
LIFECYCLE_DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class LifecycleRule:
    """One validated lifecycle rule, as the sweeper (``storage.lifecycle``) applies it.

    The filter is the conjunction of every field set (an empty filter matches every
    object). Days count from the version's creation (``expiration_days``) or from when it
    became noncurrent (``noncurrent_days``) and, as on AWS, a due time is rounded up to
    the next midnight UTC.
    """

    rule_id: str
    enabled: bool
    prefix: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    object_size_greater_than_bytes: int | None = None
    object_size_less_than_bytes: int | None = None
    expiration_days: int | None = None
    expiration_date_ms: int | None = None
    expired_object_delete_marker: bool = False
    noncurrent_days: int | None = None
    newer_noncurrent_versions: int | None = None
    abort_incomplete_multipart_days: int | None = None

    def matches(self, key: str, size_bytes: int, tags: Mapping[str, str]) -> bool:
        """Whether the filter (prefix AND tags AND size bounds) selects this version."""
        if not key.startswith(self.prefix):
            return False
        if any(tags.get(name) != value for name, value in self.tags.items()):
            return False
        greater = self.object_size_greater_than_bytes
        less = self.object_size_less_than_bytes
        if greater is not None and not size_bytes > greater:
            return False
        return less is None or size_bytes < less

    def current_expiry_ms(self, created_ms: int, day_ms: int = LIFECYCLE_DAY_MS) -> int | None:
        """When this rule expires a current version created at ``created_ms`` (whatever
        its filter), or None if the rule expires no current version."""
        if self.expiration_days is not None:
            return lifecycle_due_ms(created_ms, self.expiration_days, day_ms)
        return self.expiration_date_ms


def lifecycle_due_ms(start_ms: int, days: int, day_ms: int = LIFECYCLE_DAY_MS) -> int:
    """``days`` after ``start_ms``, rounded up to the next midnight UTC (as AWS does);
    ``day_ms`` is the length of a day (shorter only in tests)."""
    assert days > 0 and day_ms > 0
    return -(-(start_ms + days * day_ms) // day_ms) * day_ms


def current_version_expiry(
    rules: Iterable[LifecycleRule], version: ObjectVersion, day_ms: int = LIFECYCLE_DAY_MS
) -> tuple[int, str] | None:
    """(when, rule id) of the earliest enabled rule that will expire ``version`` as the
    current version of its key: what S3's ``x-amz-expiration`` header tells. None when
    no rule does (or the version is a delete marker)."""
    if version.is_delete_marker:
        return None
    earliest: tuple[int, str] | None = None
    for rule in rules:
        if not rule.enabled or not rule.matches(version.key, version.size_bytes, version.tags):
            continue
        due_ms = rule.current_expiry_ms(version.last_modified_ms, day_ms)
        if due_ms is not None and (earliest is None or due_ms < earliest[0]):
            earliest = (due_ms, rule.rule_id)
    return earliest


@dataclass(frozen=True, slots=True)
class LifecycleConfiguration:
    """A bucket's lifecycle rules and their storage-readable document (JSON)."""

    rules: tuple[LifecycleRule, ...]

    def to_document(self) -> bytes:
        rules = []
        for rule in self.rules:
            fields = {name: getattr(rule, name) for name in LifecycleRule.__slots__}
            fields["tags"] = dict(rule.tags)
            rules.append(fields)
        document = {"format": LIFECYCLE_RULES_FORMAT, "rules": rules}
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_document(cls, document: bytes) -> LifecycleConfiguration:
        parsed = json.loads(document)
        assert parsed["format"] == LIFECYCLE_RULES_FORMAT, "unknown lifecycle rules format"
        known = set(LifecycleRule.__slots__)
        return cls(
            tuple(
                LifecycleRule(**{name: value for name, value in rule.items() if name in known})
                for rule in parsed["rules"]
            )
        )


# --- the system bucket ----------------------------------------------------------------

# Squall's own objects (function definitions, users): a name no S3 client can create (it
# starts with a dot), owned by no user.
SYSTEM_BUCKET = ".squall"
SYSTEM_OWNER_ID = "squall-system"

# The event of a replaced object ACL (replace_acl).
OBJECT_ACL_PUT_EVENT = "s3:ObjectAcl:Put"

# --- change counters (caches of lookups; see StorageClient.change_count) ---------------

# The versions of a bucket's keys: PUT, copy, delete, tags, multipart, lifecycle.
CHANGES_OBJECTS = "objects"
# The bucket itself: create, delete, versioning state, configuration documents.
CHANGES_CONFIGURATION = "configuration"


# --- errors ------------------------------------------------------------------------------


class StorageError(Exception):
    """Base of every operating error storage raises. Carries a human message."""


class NoSuchBucket(StorageError):
    pass


class BucketAlreadyExists(StorageError):
    pass


class BucketAlreadyOwnedByYou(StorageError):
    pass


class BucketNotEmpty(StorageError):
    pass


class NoSuchKey(StorageError):
    pass


class NoSuchVersion(StorageError):
    pass


class PreconditionFailed(StorageError):
    """A WriteConditions check failed at the commit point."""


class KeyTooLong(StorageError):
    pass


class Overloaded(StorageError):
    """A bounded queue is full; the client should retry later (S3 SlowDown)."""


class InvalidArgument(StorageError):
    pass


class NoSuchUpload(StorageError):
    """The multipart upload does not exist (never did, completed, or aborted)."""


class InvalidPart(StorageError):
    """A part named in Complete was not uploaded, or its ETag/checksum differs."""


class InvalidPartOrder(StorageError):
    """Complete named its parts out of ascending order (or one twice)."""


class EntityTooSmall(StorageError):
    """A part other than the last is smaller than ``limits.part_size_bytes_min``."""


class InvalidBucketState(StorageError):
    """The bucket's state forbids the request: versioning Suspended on an Object Lock
    bucket, or Object Lock enabled on a bucket whose versioning is not Enabled."""


class ObjectLockNotEnabled(StorageError):
    """An Object Lock request (or lock state on a write) for a bucket without Object
    Lock."""


class ObjectLocked(StorageError):
    """A retention or legal hold forbids removing this version, or shortening,
    weakening or removing its retention."""


class NodeUnavailable(StorageError):
    """A storage node could not be reached, its connection broke with the call in
    flight, or it did not answer in time (network transports). A write's outcome is then
    unknown: it may have been committed. S3 ServiceUnavailable (503); retrying is the
    caller's decision."""


class NotShardLeader(NodeUnavailable):
    """A cluster node does not lead the shard (or is not ready to): nothing was done.
    ``leader`` names the leader it knows. A cluster client sends the request there; one
    that reaches the gateway is ServiceUnavailable (503)."""

    def __init__(self, message: str = "", leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class ReplicationUnavailable(Overloaded):
    """A write was not acknowledged by every replica of its shard in time, or could not
    be logged (the message says whether it may still be stored): SlowDown (503)."""


class CustomerKeyRequired(StorageError):
    """The data is encrypted with a customer-provided key (SSE-C) and none was given."""


class CustomerKeyMismatch(StorageError):
    """The customer-provided key given is not the one the data is encrypted with."""


class CustomerKeyNotApplicable(StorageError):
    """A customer-provided key was given for data that is not encrypted with one."""


# --- protocols ---------------------------------------------------------------------------


class Upload(Protocol):
    """A body being staged for one key. Use as ``async with client.open_upload(...)``.

    Bytes are staged in chunks as they arrive (nothing holds the whole body); nothing is
    visible to readers until ``commit``. Leaving the ``async with`` block without a
    commit aborts and frees what was staged.
    """

    async def write(self, data: bytes | memoryview) -> None: ...

    @property
    def size_bytes(self) -> int: ...

    async def commit(
        self,
        spec: PutSpec,
        conditions: WriteConditions | None = None,
        *,
        event_name: str = "s3:ObjectCreated:Put",
        origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        """Commit the staged body. With a pre-commit hook, the functions the bucket binds
        to ``event_name`` judge it first: the result may carry a ``verdict`` (and a new
        bucket/key when routed), or this raises WriteRejected / WriteDiscarded.

        The post-commit events the bucket's notification configuration asks for
        (``event_name`` for the key finally written; ``origin`` says who asked) are
        written to the outbox in the same transaction as the version; a full outbox
        refuses the write with Overloaded."""
        ...

    async def abort(self) -> None: ...

    async def __aenter__(self) -> Upload: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class PartUpload(Protocol):
    """A part's body being staged, as ``Upload`` stages an object's. Use as
    ``async with client.upload_part(...)``; ``commit`` makes it the upload's part
    ``part_number`` (replacing any earlier one, whose bytes are freed)."""

    async def write(self, data: bytes | memoryview) -> None: ...

    @property
    def size_bytes(self) -> int: ...

    async def commit(self, etag: str, checksum: str = "") -> PartInfo: ...

    async def abort(self) -> None: ...

    async def __aenter__(self) -> PartUpload: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class StorageClient(Protocol):
    """What the gateway calls. Every method may raise the typed errors above."""

    # buckets
    async def create_bucket(
        self, name: str, owner_id: str, object_lock_enabled: bool = False
    ) -> BucketInfo:
        """With ``object_lock_enabled`` the bucket starts versioning-Enabled with Object
        Lock (x-amz-bucket-object-lock-enabled)."""
        ...
    async def delete_bucket(self, name: str) -> None: ...
    async def get_bucket(self, name: str) -> BucketInfo: ...
    async def list_buckets(self, owner_id: str) -> list[BucketInfo]: ...

    async def put_bucket_config(
        self, bucket: str, name: str, document: bytes | None, origin: EventOrigin | None = None
    ) -> None:
        """Store a bucket's configuration document ``name`` ('tagging', 'cors',
        'lifecycle', 'policy', 'notification', ...) as opaque bytes; None removes it.
        The gateway validates and serialises; storage keeps and replicates it.

        For the notification document (``NOTIFICATION_CONFIG``) with ``origin`` given, one
        ``TEST_EVENT`` per queue/topic destination the document names goes to the outbox
        in the same transaction (AWS's test message); without ``origin``, none."""
        ...

    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        """The document stored under ``name``, or None. NoSuchBucket if no bucket."""
        ...

    def change_count(self, bucket: str, scope: str) -> int | None:
        """A number that changes when a write may have changed ``scope``
        (``CHANGES_OBJECTS`` or ``CHANGES_CONFIGURATION``) of ``bucket``; read without
        I/O, so a cache can check it on every request.

        The guarantee: it has changed BEFORE such a write is acknowledged, and it never
        returns to a value it had. So a cache that reads it BEFORE a lookup, keeps
        (value, result), and reuses the result only while the value is the same, never
        serves what an acknowledged write replaced. It may change without a relevant
        write (any write to the same bucket and scope, or a reset of all counters), which
        only costs a lookup. None: this client cannot tell without asking a remote node
        (the cache must look up every time)."""
        ...

    # objects
    def open_upload(self, bucket: str, key: str, customer_key: CustomerKey | None = None
                    ) -> Upload:
        """Stage a body for ``bucket/key``; with ``customer_key`` (SSE-C) its chunks are
        encrypted with keys derived from it, and the commit's ``spec.customer_key`` must
        be a record of that key (CustomerKeyMismatch / CustomerKeyRequired /
        CustomerKeyNotApplicable otherwise)."""
        ...

    async def get_version(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        as_of_ms: int | None = None,
        inline_body_bytes_max: int = 0,
    ) -> ObjectVersion:
        """The latest version (or the one named, or the one current at ``as_of_ms``).

        May return a delete marker; the caller decides what that means for its
        operation. Raises NoSuchKey when the key has no version at all, NoSuchVersion
        when ``version_id`` names none. The result's ``bucket_versioning`` is set; so is
        its ``inline_body`` (``bytes``, read in the same snapshot) when the version is
        an object of at most ``inline_body_bytes_max`` bytes.
        """
        ...

    def read_body(
        self, version: ObjectVersion, start: int = 0, end_exclusive: int | None = None,
        customer_key: CustomerKey | None = None,
    ) -> AsyncIterator[bytes | memoryview]:
        """Stream ``[start, end_exclusive)`` of a version's body, chunk by chunk. An SSE-C
        version needs its ``customer_key`` (``check_customer_key``'s errors, raised before
        any byte)."""
        ...

    # backups
    @property
    def shard_count(self) -> int: ...

    def snapshot(self, shard: int) -> AsyncIterator[bytes | memoryview]:
        """A consistent copy of one shard's store (what ``squall backup`` writes): the
        first step raises Overloaded when that shard already streams its limit."""
        ...

    async def delete_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        origin: EventOrigin | None = None,
        bypass_governance: bool = False,
    ) -> DeleteResult:
        """Remove a version, or write a delete marker; its s3:ObjectRemoved:* event goes to
        the outbox in the same transaction (see ``Upload.commit``). Removing a version
        that a legal hold or an unexpired retention protects raises ObjectLocked
        (GOVERNANCE yields to ``bypass_governance``); a delete marker is always allowed."""
        ...

    async def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = 1000,
        as_of_ms: int | None = None,
    ) -> ListPage:
        """Keys in UTF-8 byte order after ``start_after``; delete markers hidden. Each
        key's current version as a ``ListedVersion`` (what a listing shows; read the
        rest with ``get_version``), all from one snapshot."""
        ...

    async def list_object_versions(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = 1000,
    ) -> ListVersionsPage:
        """All versions and delete markers after the (key, version id) marker, as
        ``ListedVersion``s, all from one snapshot."""
        ...

    async def set_bucket_versioning(self, name: str, versioning: str) -> BucketInfo:
        """``versioning`` is 'Enabled' or 'Suspended' (a bucket never returns to '').
        InvalidBucketState for Suspended on an Object Lock bucket."""
        ...

    async def put_object_lock_configuration(
        self, name: str, default_retention: DefaultRetention | None
    ) -> BucketInfo:
        """Enable Object Lock (for good) with this default retention (None: none).
        InvalidBucketState unless versioning is Enabled."""
        ...

    # multipart uploads
    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        spec: PutSpec,
        checksum_algorithm: str = "",
        checksum_type: str = "",
    ) -> MultipartUploadInfo: ...

    def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                    customer_key: CustomerKey | None = None) -> PartUpload:
        """Stage one part's body; NoSuchUpload surfaces at ``commit``, and so do the
        errors of ``check_customer_key`` when ``customer_key`` does not open the upload's
        (SSE-C: every part is written with the key given at Create)."""
        ...

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        etag: str,
        checksums: Mapping[str, str] | None = None,
        conditions: WriteConditions | None = None,
        origin: EventOrigin | None = None,
        customer_key: CustomerKey | None = None,
    ) -> ObjectVersion:
        """Make the named parts, in order, the key's new version without copying them
        (the version's body is the list of their blobs); parts not named are freed.
        ``etag`` and ``checksums`` are the object's, computed by the caller from the
        parts. Raises NoSuchUpload, InvalidPart, InvalidPartOrder, EntityTooSmall.

        An SSE-C upload completes without its key; given (``customer_key``), it must be
        the upload's, and pre-commit functions read the parts in plaintext with it.
        Without it, functions cannot read the body: CustomerKeyRequired, and the upload
        stays as it was."""
        ...

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None: ...

    async def list_parts(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number_marker: int = 0,
        max_parts: int = 1000,
    ) -> ListPartsPage: ...

    async def list_multipart_uploads(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> ListUploadsPage: ...

    async def replace_tags(
        self,
        bucket: str,
        key: str,
        version_id: str,
        tags: Mapping[str, str],
        *,
        event_name: str = "s3:ObjectTagging:Put",
        origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        """Replace the tag set of one version (``version_id`` as ``get_version`` returned
        it, never 'null') atomically; an empty mapping removes every tag. Raises
        NoSuchVersion when the version is gone, InvalidArgument for a delete marker.
        Returns the version with its new tags. Its ``event_name`` event
        (s3:ObjectTagging:Put or :Delete) goes to the outbox in the same transaction."""
        ...

    async def replace_acl(
        self, bucket: str, key: str, version_id: str, acl: bytes | None,
        origin: EventOrigin | None = None,
    ) -> ObjectVersion:
        """Replace the ACL document of one version (``version_id`` as ``get_version``
        returned it) atomically, in place like ``replace_tags``; None is the default
        (private). NoSuchVersion when the version is gone, InvalidArgument for a delete
        marker. When the document changes, its s3:ObjectAcl:Put event (``origin``: who
        asked) goes to the outbox in the same transaction; the same document again
        changes nothing and makes no event."""
        ...

    async def update_object_lock(
        self, bucket: str, key: str, version_id: str, update: ObjectLockUpdate
    ) -> ObjectVersion:
        """Change one version's retention and/or legal hold in place (as ``replace_tags``,
        no new version), checked at the commit point against the server's clock:
        ObjectLockNotEnabled for a bucket without Object Lock, ObjectLocked when an
        unexpired retention would be shortened, weakened or removed (COMPLIANCE never;
        GOVERNANCE only with ``update.bypass_governance``), NoSuchVersion,
        InvalidArgument for a delete marker."""
        ...

    # post-commit notifications: the durable outbox of each shard
    async def outbox_status(self) -> list[OutboxStatus]:
        """One entry per shard: how many events wait for delivery, and the bound."""
        ...

    async def outbox_read(
        self,
        shard: int,
        after_sequence: int,
        limit: int,
        target_arns: Collection[str] | None = None,
    ) -> OutboxPage:
        """Events of ``shard`` after ``after_sequence`` in commit order, at most ``limit``
        (clamped to ``limits.outbox_read_events_max``), only those for ``target_arns``
        when given. Looks at most ``limits.outbox_scan_entries_max`` entries."""
        ...

    async def outbox_wait(self, shard: int, after_sequence: int, timeout_ms: int) -> bool:
        """Wait until ``shard``'s outbox may hold an event after ``after_sequence`` (True)
        or ``timeout_ms`` passes (False): a dispatcher waits instead of polling."""
        ...

    async def outbox_ack(self, shard: int, sequences: Sequence[int]) -> None:
        """Remove delivered events (idempotent: a sequence already removed is ignored)."""
        ...

    async def close(self) -> None: ...


# --- the pre-commit hook (ML triggers) -----------------------------------------------------
#
# A hook object (``triggers.hook:TriggerHook`` by default) is built by the composition root
# and handed to the storage node. On the shard leader, after a body is staged and before it
# is committed, the node asks the hook which functions the bucket binds to the write
# (``bindings``), and if any, calls ``judge`` with zero-copy views of the staged body. The
# verdict is applied atomically with the commit (metadata in the same version record, a
# new bucket/key for a route) or instead of it (reject, discard). Storage never imports
# the hook's implementation.

OBJECT_CREATED_EVENTS = (
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
)


@dataclass(frozen=True, slots=True)
class NotificationRule:
    """One entry of a bucket's notification configuration (S3's NotificationConfiguration).

    ``kind`` is 'function' (CloudFunction/LambdaFunction: a pre-commit trigger whose ARN
    is ``arn:squall:function:NAME``), 'queue' or 'topic' (kept for post-commit delivery).
    """

    kind: str
    id: str
    arn: str
    events: tuple[str, ...]
    # (Name, Value) as the client sent them; Name is 'prefix' or 'suffix' in any case.
    filter_rules: tuple[tuple[str, str], ...] = ()

    @property
    def prefix(self) -> str | None:
        return next((v for n, v in self.filter_rules if n.lower() == "prefix"), None)

    @property
    def suffix(self) -> str | None:
        return next((v for n, v in self.filter_rules if n.lower() == "suffix"), None)

    def matches(self, key: str, event_name: str) -> bool:
        if self.prefix is not None and not key.startswith(self.prefix):
            return False
        if self.suffix is not None and not key.endswith(self.suffix):
            return False
        category = event_name.rsplit(":", 1)[0] + ":*"
        return event_name in self.events or category in self.events


@dataclass(frozen=True, slots=True)
class NotificationConfiguration:
    rules: tuple[NotificationRule, ...] = ()
    event_bridge: bool = False

    def to_json(self) -> bytes:
        rules = [
            {"kind": r.kind, "id": r.id, "arn": r.arn, "events": list(r.events),
             "filter_rules": [list(pair) for pair in r.filter_rules]}
            for r in self.rules
        ]
        document = {"rules": rules, "event_bridge": self.event_bridge}
        return json.dumps(document, sort_keys=True).encode()

    @classmethod
    def from_json(cls, document: bytes | memoryview) -> NotificationConfiguration:
        parsed = json.loads(bytes(document))
        rules = tuple(
            NotificationRule(r["kind"], r["id"], r["arn"], tuple(r["events"]),
                             tuple((name, value) for name, value in r["filter_rules"]))
            for r in parsed["rules"]
        )
        return cls(rules, bool(parsed.get("event_bridge", False)))


@dataclass(frozen=True, slots=True)
class WriteEvent:
    """An object about to be committed, as a function sees it.

    ``body`` is a sequence of zero-copy views of the staged chunks (each at most
    ``limits.chunk_size_bytes``), valid only until ``judge`` returns: copy to keep.
    """

    bucket: str
    key: str
    event_name: str  # one of OBJECT_CREATED_EVENTS
    size_bytes: int
    content_type: str
    user_metadata: Mapping[str, str]
    body: Sequence[memoryview]

    def body_view(self) -> memoryview | bytes:
        """The body as one buffer: a view when it is one chunk, else a joined copy."""
        if len(self.body) == 1:
            return self.body[0]
        return b"".join(self.body)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the functions bound to a write decided about it.

    ``action`` is 'store', 'reject' or 'discard'. ``annotations`` ('squall-label' ...)
    are stored with the version as user metadata (without 'x-amz-meta-') when
    ``store_annotations``, and as object tags when ``tag_annotations`` (merged into the
    request's tags: ``annotation_tags``); the response carries them either way.
    ``bucket``/``key`` name where the object is stored (a route changes them).
    ``summary`` is a JSON-serialisable account of every step.
    """

    function: str
    action: str = "store"
    label: str = ""
    score: float | None = None
    model_version: str = ""
    reason: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    store_annotations: bool = False
    tag_annotations: bool = False
    bucket: str | None = None
    key: str | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)

    def summary_json(self) -> str:
        """One line of ASCII JSON (an HTTP header value)."""
        return json.dumps(self.summary, sort_keys=True, separators=(",", ":"))


def annotation_tags(
    tags: Mapping[str, str], annotations: Mapping[str, str], function: str
) -> dict[str, str]:
    """A version's tags with a verdict's annotations stored as tags (they replace tags of
    the same key). InvalidArgument, naming the function, when the result breaks S3's tag
    limits: more than ``limits.object_tags_max`` tags, or a value (a long label) over
    ``limits.tag_value_chars_max`` characters."""
    merged = {**tags, **annotations}
    if len(merged) > limits.object_tags_max:
        raise InvalidArgument(
            f"function {function!r} tags the object with {len(annotations)} tags "
            f"({', '.join(annotations)}): with the request's {len(tags)} the object would "
            f"have {len(merged)}, more than {limits.object_tags_max} (annotate: metadata "
            "stores the judgement without tags)")
    for key, value in annotations.items():
        if len(value) > limits.tag_value_chars_max:
            raise InvalidArgument(
                f"function {function!r}: its {key} ({len(value)} characters) is longer than "
                f"a tag value may be ({limits.tag_value_chars_max})")
    return merged


class WriteRejected(StorageError):
    """A pre-commit function rejected the object; nothing was stored."""

    def __init__(
        self, message: str = "a function rejected the object", verdict: Verdict | None = None
    ) -> None:
        super().__init__(message)
        self.verdict = verdict or Verdict(function="", action="reject", reason=message)


class WriteDiscarded(StorageError):
    """A pre-commit function answered and discarded the object: success, nothing stored.
    The gateway answers 200 with the verdict; it is an error only in that no version
    exists."""

    def __init__(self, verdict: Verdict | None = None) -> None:
        self.verdict = verdict or Verdict(function="", action="discard")
        super().__init__(f"function {self.verdict.function!r} discarded the object")


@runtime_checkable
class PreCommitHook(Protocol):
    async def start(self, storage: StorageClient) -> None:
        """Called once the storage client exists (the hook reads configs and models
        through it)."""
        ...

    async def bindings(self, bucket: str, key: str, event_name: str) -> Sequence[str]:
        """The functions this bucket binds to this write, in order; () for none. Cheap:
        called for every write."""
        ...

    async def judge(self, event: WriteEvent, functions: Sequence[str]) -> Verdict:
        """Run the functions; may raise Overloaded or InvalidArgument."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class FunctionAdmin(Protocol):
    """Registration of functions (what ``squall function put/ls/rm`` reaches). Definitions
    are JSON or YAML documents; errors are InvalidArgument (with what is wrong) or
    NoSuchKey (no such function)."""

    async def put_function(self, name: str, document: bytes) -> Mapping[str, Any]: ...

    async def get_function(self, name: str) -> Mapping[str, Any]: ...

    async def list_functions(self) -> list[Mapping[str, Any]]: ...

    async def delete_function(self, name: str) -> None: ...



# --- post-commit notifications -------------------------------------------------------------
#
# A bucket's queue and topic configurations (in its 'notification' document, written by the
# gateway) whose ARN names a webhook target (``arn:squall:sqs::ID:webhook`` or
# ``arn:squall:sns::ID:webhook``) make the engine write one ``OutboxEvent`` per matching
# rule into the shard's outbox, in the SAME transaction as the write that caused it. A
# dispatcher (``triggers.events``) reads the outbox in commit order, delivers, and acks.

# The config name of a bucket's notification configuration (``NotificationConfiguration
# .to_json``); storage reads it at the commit point to decide which events a write makes.
NOTIFICATION_CONFIG = "notification"
NOTIFICATION_DELIVERY_KINDS = ("queue", "topic")
# AWS's test message, sent to each queue/topic destination when a configuration is put.
# Its outbox entry has no object key ('' is never one: S3 keys have at least one byte).
TEST_EVENT = "s3:TestEvent"
_WEBHOOK_ARN = re.compile(r"^arn:squall:(?:sqs|sns)::(?P<id>[A-Za-z0-9_.-]{1,64}):webhook$")


def webhook_target_id(arn: str) -> str | None:
    """The webhook ID an ARN names (``arn:squall:sqs::ID:webhook``), else None."""
    match = _WEBHOOK_ARN.match(arn)
    return None if match is None else match["id"]


@dataclass(frozen=True, slots=True)
class EventOrigin:
    """Who caused a write, as an S3 event reports it (all optional)."""

    principal_id: str = ""  # the requester's canonical id
    source_ip: str = ""
    request_id: str = ""  # x-amz-request-id of the request that made the event
    host_id: str = ""  # x-amz-id-2


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event for one target (one matching queue/topic rule), waiting for delivery."""

    sequence: int  # position in the shard's outbox: commit order, never reused
    target_arn: str
    configuration_id: str  # the rule's Id
    event_name: str  # with the 's3:' prefix, e.g. 's3:ObjectCreated:Put'
    event_time_ms: int
    bucket: str
    bucket_owner_id: str
    key: str  # '' for a TEST_EVENT (it names no object)
    size_bytes: int | None  # only ObjectCreated events carry a size (None for the others)
    etag: str  # '' for removals and the test event (their messages carry no eTag)
    s3_version_id: str  # 'null' when the write made a null version
    # 16 upper-case hex digits (the HLC of the write): orders the events of one key.
    sequencer: str
    origin: EventOrigin = field(default_factory=EventOrigin)


@dataclass(frozen=True, slots=True)
class OutboxPage:
    events: tuple[OutboxEvent, ...]
    # The last sequence this read looked at (0 if none): the next read starts after it,
    # even when the entries it skipped were for other targets.
    scanned_through: int


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    shard: int
    depth: int  # events waiting (all targets)
    depth_max: int  # the bound: a write that would add more is refused (SlowDown)
    next_sequence: int
    oldest_event_time_ms: int | None


# Duration buckets of every Squall histogram, seconds: a 4 KiB GET on loopback takes
# ~0.3 ms, a MobileNetV2 inference on a CPU core ~25 ms, a 1 GiB upload tens of seconds.
DURATION_BUCKETS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                            0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Counts of observed durations per bucket (``DURATION_BUCKETS_SECONDS``, then +Inf)
    and their sum: a Prometheus histogram's state. Not thread-safe: one thread (the event
    loop) observes."""

    __slots__ = ("counts", "sum_seconds")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS_SECONDS) + 1)
        self.sum_seconds = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(DURATION_BUCKETS_SECONDS, seconds)] += 1
        self.sum_seconds += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """One Prometheus metric family (``GET /_squall/metrics``): its name (``squall_``
    first, unit and ``_total`` last), ``kind`` 'counter', 'gauge' or 'histogram', help
    text, and its samples: (label pairs, value), a ``Histogram`` as the value of a
    histogram's samples."""

    name: str
    kind: str
    help: str
    samples: tuple[tuple[tuple[tuple[str, str], ...], float | Histogram], ...]


@runtime_checkable
class MetricsSource(Protocol):
    """A component that shows its state as metrics (the triggers hook): read at each
    scrape, on the event loop, without I/O."""

    def metric_families(self) -> Sequence[MetricFamily]: ...


@runtime_checkable
class EventDelivery(Protocol):
    """What a notification dispatcher reports (``GET /_squall/outbox``)."""

    def delivery_status(self) -> Mapping[str, Any]: ...
