"""Authorization: may this principal do this operation on this bucket or object?

Rules and theory of operation (AWS: "Access control list (ACL) overview", the
permission -> operation mapping; "How Amazon S3 authorizes a request"):

* ONE table (``REQUIREMENTS``) gives every operation the router names what it needs:
  the resource the permission is checked on (the service, the bucket, or the object)
  and the permission: an ACL permission (READ, WRITE, READ_ACP, WRITE_ACP), OWNER (the
  resource's owner only: bucket configuration, DeleteBucket, object tags), SIGNED (any
  user who signs: ListBuckets, CreateBucket) or ADMIN (root: ``/_squall/*``). It also
  names the IAM action, for the bucket policy hook. A test holds the table to the
  router's operations: an operation without a row is refused, never let through.
* ``authorize`` runs in ``Gateway._handle`` after authentication, before the handler.
  Service and bucket permissions are decided there; an object permission needs the
  version's owner and ACL, which the handler reads anyway (one read, not two): the
  handler calls ``check_object`` with the version it is about to serve, and the gateway
  asserts that it did (``RequestContext.object_checked``), so a handler that forgets
  fails loudly instead of serving an object unchecked.
* Bucket ACL: READ lists, WRITE creates and deletes objects (PUT, POST, copy
  destination, multipart, DELETE, DeleteObjects), READ_ACP / WRITE_ACP read and write
  the ACL, FULL_CONTROL is all four. The bucket owner may always read and write the
  bucket's ACL and delete objects in it, whatever the ACL says (AWS). Object ACL: READ
  is GET/HEAD (and a copy's source), READ_ACP / WRITE_ACP the object's ACL; an object's
  owner may always read and write its ACL. Object permissions do not need any bucket
  permission, as on AWS.
* Grantees: a canonical user, AllUsers (anyone, signed or not), AuthenticatedUsers
  (anyone who signs). An unsigned request is allowed only where AllUsers is granted;
  otherwise 403 AccessDenied, as before ACLs were enforced.
* Object Ownership BucketOwnerEnforced (the stored ``ownership-controls`` document):
  ACLs are disabled, the bucket owner owns and controls everything in the bucket and
  nobody else has any access through ACLs.
* The system bucket ``.squall`` (users' secrets, function definitions) is root's only.
* Bucket policies are decided before this module, in ``Gateway._authorize``
  (``gateway/bucket_policy.py``): an explicit Deny refuses there, an Allow admits the
  request without ``authorize`` (``RequestContext.policy_allowed``: ``check_object``
  then passes), and no word leaves the decision here. AWS evaluates the union of policy
  and ACL with explicit denies first; that is this order.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import S3Error
from gateway.router import Endpoint
from gateway.s3.acl import (
    ACL_CONFIG,
    READ,
    READ_ACP,
    WRITE,
    WRITE_ACP,
    bucket_owner_enforced,
    ignores_public_acls,
    stored_acl,
)
from gateway.s3.common import Principal, RequestContext
from storage import api

SERVICE, BUCKET, OBJECT = "service", "bucket", "object"
OWNER = "OWNER"  # the resource's owner (a grant of FULL_CONTROL does not stand in)
SIGNED = "SIGNED"  # any user who signs the request
ADMIN = "ADMIN"  # root: Squall's admin API



@dataclass(frozen=True, slots=True)
class Requirement:
    resource: str  # SERVICE, BUCKET or OBJECT
    permission: str  # READ, WRITE, READ_ACP, WRITE_ACP, OWNER, SIGNED or ADMIN
    action: str  # the IAM action a bucket policy names

    @property
    def deletes(self) -> bool:
        """An object deletion: the bucket owner may always do it."""
        return self.action in ("s3:DeleteObject", "s3:DeleteObjectVersion")


def _bucket(permission: str, action: str) -> Requirement:
    return Requirement(BUCKET, permission, action)


def _object(permission: str, action: str) -> Requirement:
    return Requirement(OBJECT, permission, action)


REQUIREMENTS: dict[str, Requirement] = {
    "ListBuckets": Requirement(SERVICE, SIGNED, "s3:ListAllMyBuckets"),
    "CreateBucket": Requirement(SERVICE, SIGNED, "s3:CreateBucket"),
    "SquallAdmin": Requirement(SERVICE, ADMIN, "squall:Admin"),
    "SquallMetrics": Requirement(SERVICE, ADMIN, "squall:Metrics"),
    "DeleteBucket": _bucket(OWNER, "s3:DeleteBucket"),
    "HeadBucket": _bucket(READ, "s3:ListBucket"),
    "GetBucketLocation": _bucket(OWNER, "s3:GetBucketLocation"),
    "ListObjects": _bucket(READ, "s3:ListBucket"),
    "ListObjectsV2": _bucket(READ, "s3:ListBucket"),
    "ListObjectVersions": _bucket(READ, "s3:ListBucketVersions"),
    "ListMultipartUploads": _bucket(READ, "s3:ListBucketMultipartUploads"),
    "PutObject": _bucket(WRITE, "s3:PutObject"),
    "PostObject": _bucket(WRITE, "s3:PutObject"),
    "CopyObject": _bucket(WRITE, "s3:PutObject"),  # and READ on the source object
    "DeleteObject": _bucket(WRITE, "s3:DeleteObject"),
    "DeleteObjects": _bucket(WRITE, "s3:DeleteObject"),
    "CreateMultipartUpload": _bucket(WRITE, "s3:PutObject"),
    "UploadPart": _bucket(WRITE, "s3:PutObject"),
    "UploadPartCopy": _bucket(WRITE, "s3:PutObject"),  # and READ on the source object
    "CompleteMultipartUpload": _bucket(WRITE, "s3:PutObject"),
    "AbortMultipartUpload": _bucket(WRITE, "s3:AbortMultipartUpload"),
    "ListParts": _bucket(WRITE, "s3:ListMultipartUploadParts"),
    "GetObject": _object(READ, "s3:GetObject"),
    "HeadObject": _object(READ, "s3:GetObject"),
    "GetObjectAttributes": _object(READ, "s3:GetObjectAttributes"),
    "GetObjectAcl": _object(READ_ACP, "s3:GetObjectAcl"),
    "PutObjectAcl": _object(WRITE_ACP, "s3:PutObjectAcl"),
    "GetObjectTagging": _object(OWNER, "s3:GetObjectTagging"),
    "PutObjectTagging": _object(OWNER, "s3:PutObjectTagging"),
    "DeleteObjectTagging": _object(OWNER, "s3:DeleteObjectTagging"),
    # Object Lock is not ACL-grantable: the bucket owner's (AWS: IAM permissions).
    "PutObjectLockConfiguration": _bucket(OWNER, "s3:PutBucketObjectLockConfiguration"),
    "GetObjectLockConfiguration": _bucket(OWNER, "s3:GetBucketObjectLockConfiguration"),
    "PutObjectRetention": _bucket(OWNER, "s3:PutObjectRetention"),
    "GetObjectRetention": _bucket(OWNER, "s3:GetObjectRetention"),
    "PutObjectLegalHold": _bucket(OWNER, "s3:PutObjectLegalHold"),
    "GetObjectLegalHold": _bucket(OWNER, "s3:GetObjectLegalHold"),
    "GetBucketAcl": _bucket(READ_ACP, "s3:GetBucketAcl"),
    "PutBucketAcl": _bucket(WRITE_ACP, "s3:PutBucketAcl"),
    "PutBucketCors": _bucket(OWNER, "s3:PutBucketCORS"),
    "GetBucketCors": _bucket(OWNER, "s3:GetBucketCORS"),
    "DeleteBucketCors": _bucket(OWNER, "s3:PutBucketCORS"),
    "PutBucketLifecycleConfiguration": _bucket(OWNER, "s3:PutLifecycleConfiguration"),
    "GetBucketLifecycleConfiguration": _bucket(OWNER, "s3:GetLifecycleConfiguration"),
    "DeleteBucketLifecycle": _bucket(OWNER, "s3:PutLifecycleConfiguration"),
    "PutBucketPolicy": _bucket(OWNER, "s3:PutBucketPolicy"),
    "GetBucketPolicy": _bucket(OWNER, "s3:GetBucketPolicy"),
    "DeleteBucketPolicy": _bucket(OWNER, "s3:DeleteBucketPolicy"),
    "GetBucketEncryption": _bucket(OWNER, "s3:GetEncryptionConfiguration"),
    "PutBucketEncryption": _bucket(OWNER, "s3:PutEncryptionConfiguration"),
    "DeleteBucketEncryption": _bucket(OWNER, "s3:PutEncryptionConfiguration"),
    "GetBucketRequestPayment": _bucket(OWNER, "s3:GetBucketRequestPayment"),
    "PutBucketRequestPayment": _bucket(OWNER, "s3:PutBucketRequestPayment"),
    "GetBucketAccelerateConfiguration": _bucket(OWNER, "s3:GetAccelerateConfiguration"),
    "GetBucketLogging": _bucket(OWNER, "s3:GetBucketLogging"),
    "PutBucketLogging": _bucket(OWNER, "s3:PutBucketLogging"),
    "GetBucketWebsite": _bucket(OWNER, "s3:GetBucketWebsite"),
    "DeleteBucketWebsite": _bucket(OWNER, "s3:DeleteBucketWebsite"),
    "GetBucketReplication": _bucket(OWNER, "s3:GetReplicationConfiguration"),
    "DeleteBucketReplication": _bucket(OWNER, "s3:PutReplicationConfiguration"),
    "ListBucketAnalyticsConfigurations": _bucket(OWNER, "s3:GetAnalyticsConfiguration"),
    "ListBucketInventoryConfigurations": _bucket(OWNER, "s3:GetInventoryConfiguration"),
    "ListBucketMetricsConfigurations": _bucket(OWNER, "s3:GetMetricsConfiguration"),
    "ListBucketIntelligentTieringConfigurations": _bucket(
        OWNER, "s3:GetIntelligentTieringConfiguration"),
    "GetBucketOwnershipControls": _bucket(OWNER, "s3:GetBucketOwnershipControls"),
    "PutBucketOwnershipControls": _bucket(OWNER, "s3:PutBucketOwnershipControls"),
    "DeleteBucketOwnershipControls": _bucket(OWNER, "s3:PutBucketOwnershipControls"),
    "GetPublicAccessBlock": _bucket(OWNER, "s3:GetBucketPublicAccessBlock"),
    "PutPublicAccessBlock": _bucket(OWNER, "s3:PutBucketPublicAccessBlock"),
    "DeletePublicAccessBlock": _bucket(OWNER, "s3:PutBucketPublicAccessBlock"),
    "GetBucketPolicyStatus": _bucket(OWNER, "s3:GetBucketPolicyStatus"),
    "GetBucketVersioning": _bucket(OWNER, "s3:GetBucketVersioning"),
    "PutBucketVersioning": _bucket(OWNER, "s3:PutBucketVersioning"),
    "GetBucketTagging": _bucket(OWNER, "s3:GetBucketTagging"),
    "PutBucketTagging": _bucket(OWNER, "s3:PutBucketTagging"),
    "DeleteBucketTagging": _bucket(OWNER, "s3:PutBucketTagging"),
    "PutBucketNotificationConfiguration": _bucket(OWNER, "s3:PutBucketNotification"),
    "GetBucketNotificationConfiguration": _bucket(OWNER, "s3:GetBucketNotification"),
}


# The operations whose permission is on the object (checked by the handler).
OBJECT_OPERATIONS = frozenset(
    operation for operation, requirement in REQUIREMENTS.items()
    if requirement.resource == OBJECT)


def access_denied() -> S3Error:
    return S3Error("AccessDenied", "Access Denied", 403)


def settled_without_reads(endpoint: Endpoint) -> bool:
    """Whether ``authorize`` would read nothing and allow (an object operation: its check
    is the handler's). Lets the gateway skip a coroutine on the path of every GET;
    ``authorize`` decides the same way without it."""
    return (endpoint.operation in OBJECT_OPERATIONS
            and endpoint.bucket != api.SYSTEM_BUCKET)


async def authorize(ctx: RequestContext) -> None:
    """Decide a request's service or bucket permission (AccessDenied when it lacks it);
    an object permission is left to the handler's ``check_object``."""
    requirement = REQUIREMENTS.get(ctx.endpoint.operation)
    if requirement is None:
        raise access_denied()  # an operation nobody has classified is nobody's
    principal = ctx.principal
    bucket = ctx.endpoint.bucket
    if bucket == api.SYSTEM_BUCKET:
        if not principal.is_admin:
            raise access_denied()
        ctx.object_checked = True  # root's own bucket: no ACLs apply
        return
    if requirement.resource == SERVICE:
        admitted = principal.is_admin if requirement.permission == ADMIN else (
            principal.access_key is not None)
        if not admitted:
            raise access_denied()
        return
    if requirement.resource == BUCKET:
        assert bucket is not None, "the router gives bucket operations a bucket"
        if not await bucket_allows(ctx.storage, bucket, principal, requirement):
            raise access_denied()


async def bucket_allows(
    storage: api.StorageClient, bucket: str, principal: Principal, requirement: Requirement
) -> bool:
    """Whether ``principal`` has ``requirement``'s permission on ``bucket``.
    NoSuchBucket propagates (a missing bucket is 404 for everyone, as on AWS)."""
    info = await storage.get_bucket(bucket)
    is_owner = principal.canonical_id == info.owner_id
    permission = requirement.permission
    if is_owner and (permission in (OWNER, READ_ACP, WRITE_ACP) or requirement.deletes):
        return True
    if permission == OWNER:
        return False
    document = await storage.get_bucket_config(bucket, ACL_CONFIG)
    if document is None:  # the default ACL: the owner's FULL_CONTROL (the common case)
        return is_owner
    if await bucket_owner_enforced(storage, bucket):
        return is_owner
    return permission in stored_acl(document, info.owner_id).permissions_of(
        principal.canonical_id, ignore_public=await ignores_public_acls(storage, bucket))


def owns_private_object(ctx: RequestContext, version: api.ObjectVersion) -> bool:
    """The common case, decided without a read or a coroutine: the requester owns the
    version and its ACL is the default. Marks an object operation checked when true."""
    if version.acl is None and version.owner_id and (
            version.owner_id == ctx.principal.canonical_id):
        ctx.object_checked = True
        return True
    return False


async def check_object(
    ctx: RequestContext, version: api.ObjectVersion, permission: str | None = None
) -> str:
    """AccessDenied unless the principal has ``permission`` (the operation's, by
    default) on ``version``; returns the version's owner id. Marks the request checked."""
    if permission is None:
        requirement = REQUIREMENTS[ctx.endpoint.operation]
        assert requirement.resource == OBJECT, f"{ctx.endpoint.operation} is not on an object"
        permission = requirement.permission
        ctx.object_checked = True
    principal_id = ctx.principal.canonical_id
    owner_id = version.owner_id
    if owner_id and principal_id == owner_id and version.acl is None:
        return owner_id  # the owner of a private object: the common case, no reads
    if ctx.policy_allowed:  # the bucket policy's Allow stands in for the ACL
        return owner_id or (await ctx.storage.get_bucket(version.bucket)).owner_id
    if ctx.principal.is_admin and version.bucket == api.SYSTEM_BUCKET:
        return owner_id
    info = await ctx.storage.get_bucket(version.bucket)
    if not owner_id:  # written before owners were recorded: the bucket owner's
        owner_id = info.owner_id
    if await bucket_owner_enforced(ctx.storage, version.bucket):
        if principal_id != info.owner_id:
            raise access_denied()
        return info.owner_id
    if principal_id == owner_id and permission in (OWNER, READ_ACP, WRITE_ACP):
        return owner_id
    if permission == OWNER:
        raise access_denied()
    if permission not in stored_acl(version.acl, owner_id).permissions_of(
            principal_id, ignore_public=await ignores_public_acls(ctx.storage, version.bucket)):
        raise access_denied()
    return owner_id


async def missing_object_error(ctx: RequestContext, error: S3Error) -> S3Error:
    """What a read of a missing object answers: ``error`` (404) to whom may list the
    bucket, AccessDenied to others, so that nobody learns which keys exist (AWS)."""
    if ctx.principal.is_admin and ctx.endpoint.bucket == api.SYSTEM_BUCKET:
        return error
    if ctx.policy_allows_listing:
        return error
    try:
        may_list = await bucket_allows(ctx.storage, ctx.bucket, ctx.principal,
                                       REQUIREMENTS["ListObjects"])
    except api.NoSuchBucket:
        return error
    return error if may_list else access_denied()
