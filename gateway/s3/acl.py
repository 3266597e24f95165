"""Access control lists: what a request asks for, what is stored, what Get*Acl answers.

AWS's ACL model ("Access control list (ACL) overview"): a bucket or object has an owner
and at most 100 grants; a grant gives one grantee one permission (READ, WRITE, READ_ACP,
WRITE_ACP, FULL_CONTROL). A grantee is a canonical user (by id) or a group (AllUsers:
anyone, signed or not; AuthenticatedUsers: anyone who signs; LogDelivery). An ACL
arrives in one of three forms, never two at once:

* a canned ACL, ``x-amz-acl`` (``CANNED_ACLS``: private, public-read,
  public-read-write, authenticated-read, bucket-owner-read,
  bucket-owner-full-control, log-delivery-write);
* grant headers, ``x-amz-grant-read`` ... ``x-amz-grant-full-control``, each a comma
  list of ``id="..."`` / ``uri="..."`` grantees: the ACL is exactly those grants (the
  owner gets nothing it is not granted, as on AWS). ``emailAddress=`` is 501
  NotImplemented: Squall users have no e-mail address;
* an ``AccessControlPolicy`` XML body (PutBucketAcl / PutObjectAcl only).

A canonical user id must name a known user (root or a stored one), else 400
InvalidArgument, as AWS answers for an unknown id. What is stored is the ACL as
parsed (``AccessControlList.to_document``: the owner and the grants, in order) and
Get*Acl renders exactly that. A bucket's ACL is its configuration document ``acl``; an
object's lives in its version record (``api.PutSpec.acl``, ``replace_acl``). None
stands for the default, ``private``: the owner's FULL_CONTROL. ``gateway/authz.py``
decides with these ACLs; this module only parses, stores and renders them.

When the bucket's Object Ownership is BucketOwnerEnforced (the stored
``ownership-controls`` document), ACLs are disabled as AWS documents: a request that
sets an ACL other than one granting the bucket owner full control is 400
AccessControlListNotSupported, and Get*Acl answers the bucket owner's FULL_CONTROL.

Block Public Access (``settings.py``): while BlockPublicAcls is on, a request that sets
an ACL granting AllUsers or AuthenticatedUsers is 403 AccessDenied, checked after the
canned ACL's name (400) and before Object Ownership (400), in AWS's order.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from starlette.responses import Response

from gateway.errors import S3Error, invalid_argument
from gateway.s3.common import Owner, RequestContext
from gateway.s3.settings import (
    OWNERSHIP_CONFIG,
    PUBLIC_ACCESS_BLOCK_CONFIG,
    PUBLIC_CANNED_ACLS,
    parse_ownership_controls,
    parse_public_access_block,
    public_access_block,
    public_access_blocked,
)
from gateway.xml import (
    S3_NAMESPACE,
    XML_DECLARATION,
    child_text,
    children,
    local_name,
    parse,
)
from storage import api

XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
ACL_CONFIG = "acl"  # the bucket configuration document holding a bucket's ACL
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})
CANONICAL_USER, GROUP = "CanonicalUser", "Group"
READ, WRITE, READ_ACP, WRITE_ACP, FULL_CONTROL = (
    "READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")
PERMISSIONS = (FULL_CONTROL, WRITE, WRITE_ACP, READ, READ_ACP)
GRANT_HEADERS: Mapping[str, str] = {
    "x-amz-grant-read": READ,
    "x-amz-grant-write": WRITE,
    "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write-acp": WRITE_ACP,
    "x-amz-grant-full-control": FULL_CONTROL,
}
# Every canned ACL AWS defines; any other x-amz-acl value is 400 InvalidArgument.
CANNED_ACLS = frozenset({"private", "public-read", "public-read-write", "authenticated-read",
                         "bucket-owner-read", "bucket-owner-full-control",
                         "log-delivery-write", "aws-exec-read"})


@dataclass(frozen=True, slots=True)
class Grant:
    grantee_type: str  # CANONICAL_USER or GROUP
    grantee: str  # a canonical id, or a group URI
    permission: str


@dataclass(frozen=True, slots=True)
class AccessControlList:
    owner_id: str
    grants: tuple[Grant, ...]

    def to_document(self) -> bytes:
        return json.dumps({"owner": self.owner_id,
                           "grants": [[g.grantee_type, g.grantee, g.permission]
                                      for g in self.grants]}).encode()

    def permissions_of(self, canonical_id: str | None, *,
                       ignore_public: bool = False) -> frozenset[str]:
        """The permissions this ACL grants a requester (None: an unsigned request).
        FULL_CONTROL stands for all the others. ``ignore_public``: grants to AllUsers and
        AuthenticatedUsers count for nothing (Block Public Access's IgnorePublicAcls)."""
        granted: set[str] = set()
        for grant in self.grants:
            if grant.grantee_type == CANONICAL_USER:
                applies = grant.grantee == canonical_id
            elif ignore_public:
                applies = False
            else:
                applies = grant.grantee == ALL_USERS or (
                    grant.grantee == AUTHENTICATED_USERS and canonical_id is not None)
            if applies:
                granted.add(grant.permission)
        if FULL_CONTROL in granted:
            return frozenset(PERMISSIONS)
        return frozenset(granted)


def private_acl(owner_id: str) -> AccessControlList:
    return AccessControlList(owner_id, (Grant(CANONICAL_USER, owner_id, FULL_CONTROL),))


@functools.lru_cache(maxsize=api.limits.acls_parsed_cached_max)
def _parse_document(document: bytes) -> AccessControlList:
    parsed = json.loads(document)
    return AccessControlList(parsed["owner"],
                             tuple(Grant(*grant) for grant in parsed["grants"]))


def stored_acl(document: bytes | None, owner_id: str) -> AccessControlList:
    """The ACL a stored document holds; None is the default (private to ``owner_id``).
    Parsed once per distinct document (they are read on every request that needs one)."""
    if document is None:
        return private_acl(owner_id)
    return _parse_document(bytes(document))


def document_for(acl: AccessControlList) -> bytes | None:
    """What to store: None for the default, so most versions carry no ACL bytes."""
    return None if acl == private_acl(acl.owner_id) else acl.to_document()


# --- parsing requests ------------------------------------------------------------------


def malformed_acl(reason: str = "") -> S3Error:
    return S3Error("MalformedACLError", "The XML you provided was not well-formed or did not "
                   "validate against our published schema." + (f" {reason}" if reason else ""),
                   400)


def acl_not_supported() -> S3Error:
    return S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs", 400)


def _check_grant_count(grants: tuple[Grant, ...]) -> None:
    if len(grants) > api.limits.acl_grants_max:
        raise malformed_acl(f"An ACL has at most {api.limits.acl_grants_max} grants.")


def canned_acl(name: str, owner_id: str, bucket_owner_id: str) -> AccessControlList:
    """AWS's canned ACLs ("Canned ACL" in the ACL overview). The bucket-owner-* ones
    grant the bucket owner only on objects (on a bucket they are the owner itself)."""
    owner = Grant(CANONICAL_USER, owner_id, FULL_CONTROL)
    extra: tuple[Grant, ...]
    if name == "private":
        extra = ()
    elif name == "public-read":
        extra = (Grant(GROUP, ALL_USERS, READ),)
    elif name == "public-read-write":
        extra = (Grant(GROUP, ALL_USERS, READ), Grant(GROUP, ALL_USERS, WRITE))
    elif name == "authenticated-read":
        extra = (Grant(GROUP, AUTHENTICATED_USERS, READ),)
    elif name == "log-delivery-write":
        extra = (Grant(GROUP, LOG_DELIVERY, WRITE), Grant(GROUP, LOG_DELIVERY, READ_ACP))
    elif name == "aws-exec-read":
        raise S3Error("NotImplemented", "The canned ACL 'aws-exec-read' grants Amazon EC2, "
                      "which has no identity in Squall.", 501)
    elif name in ("bucket-owner-read", "bucket-owner-full-control"):
        permission = READ if name == "bucket-owner-read" else FULL_CONTROL
        extra = () if bucket_owner_id == owner_id else (
            Grant(CANONICAL_USER, bucket_owner_id, permission),)
    else:
        raise S3Error("InvalidArgument", f"The canned ACL {name!r} is not one of "
                      f"{', '.join(sorted(CANNED_ACLS - {'aws-exec-read'}))}.", 400,
                      ArgumentName="x-amz-acl", ArgumentValue=name)
    return AccessControlList(owner_id, (owner, *extra))


def check_canned_acl_name(headers: Mapping[str, str]) -> None:
    """An ``x-amz-acl`` that names no canned ACL is malformed (400), checked before a
    write reads its body."""
    canned = headers.get("x-amz-acl")
    if canned is not None and canned.strip() not in CANNED_ACLS:
        raise invalid_argument("", "x-amz-acl", canned)


def _grantees(header: str, value: str, known_id: Callable[[str], bool]) -> list[tuple[str, str]]:
    """``id="...", uri="..."`` -> [(grantee type, grantee)]."""
    grantees: list[tuple[str, str]] = []
    for item in value.split(","):
        kind, separator, raw = item.strip().partition("=")
        grantee = raw.strip().strip('"')
        kind = kind.strip().lower()
        if not separator or not grantee:
            raise S3Error("InvalidArgument", f"{header}: {item.strip()!r} is not "
                          "id=\"...\" or uri=\"...\".", 400, ArgumentName=header,
                          ArgumentValue=value)
        if kind == "id":
            if not known_id(grantee):
                raise S3Error("InvalidArgument", "Invalid id", 400, ArgumentName="CanonicalUser/ID",
                              ArgumentValue=grantee)
            grantees.append((CANONICAL_USER, grantee))
        elif kind == "uri":
            if grantee not in GROUPS:
                raise S3Error("InvalidArgument", "Invalid group uri", 400,
                              ArgumentName="Group/URI", ArgumentValue=grantee)
            grantees.append((GROUP, grantee))
        elif kind == "emailaddress":
            raise S3Error("NotImplemented", "Grantees by e-mail address are not implemented: "
                          "Squall users have no e-mail address; grant by id=\"CANONICAL-ID\".",
                          501)
        else:
            raise S3Error("InvalidArgument", f"{header}: unknown grantee type {kind!r}.", 400,
                          ArgumentName=header, ArgumentValue=value)
    return grantees


def acl_from_headers(
    headers: Mapping[str, str], owner_id: str, bucket_owner_id: str,
    known_id: Callable[[str], bool],
) -> AccessControlList | None:
    """The ACL a write's headers ask for (canned or grants); None when it names none."""
    canned = headers.get("x-amz-acl")
    granted = [(name, headers[name]) for name in GRANT_HEADERS if name in headers]
    if canned is not None and granted:
        raise S3Error("InvalidRequest", "Specifying both Canned ACLs and Header Grants is not "
                      "allowed", 400)
    if canned is not None:
        return canned_acl(canned.strip(), owner_id, bucket_owner_id)
    if not granted:
        return None
    grants = tuple(Grant(kind, grantee, GRANT_HEADERS[name])
                   for name, value in granted
                   for kind, grantee in _grantees(name, value, known_id))
    _check_grant_count(grants)
    return AccessControlList(owner_id, grants)


def _grant_from_xml(grant: Element, known_id: Callable[[str], bool]) -> Grant:
    grantees = children(grant, "Grantee")
    permission = (child_text(grant, "Permission") or "").strip()
    if len(grantees) != 1 or permission not in PERMISSIONS:
        raise malformed_acl()
    grantee = grantees[0]
    grantee_type = grantee.get(f"{{{XSI_NAMESPACE}}}type")
    if grantee_type == CANONICAL_USER:
        canonical_id = (child_text(grantee, "ID") or "").strip()
        if not known_id(canonical_id):
            raise S3Error("InvalidArgument", "Invalid id", 400,
                          ArgumentName="CanonicalUser/ID", ArgumentValue=canonical_id)
        return Grant(CANONICAL_USER, canonical_id, permission)
    if grantee_type == GROUP:
        uri = (child_text(grantee, "URI") or "").strip()
        if uri not in GROUPS:
            raise S3Error("InvalidArgument", "Invalid group uri", 400,
                          ArgumentName="Group/URI", ArgumentValue=uri)
        return Grant(GROUP, uri, permission)
    if grantee_type == "AmazonCustomerByEmail":
        raise S3Error("NotImplemented", "Grantees by e-mail address are not implemented: "
                      "Squall users have no e-mail address.", 501)
    raise malformed_acl()


def acl_from_policy(body: bytes, owner_id: str, known_id: Callable[[str], bool]) -> AccessControlList:
    """An AccessControlPolicy document. Its Owner, when given, must be the resource's
    owner: an ACL cannot change who owns a bucket or an object."""
    root = parse(body)
    if local_name(root) != "AccessControlPolicy":
        raise malformed_acl()
    lists = children(root, "AccessControlList")
    if len(lists) != 1:
        raise malformed_acl()
    owners = children(root, "Owner")
    if owners:
        stated = (child_text(owners[0], "ID") or "").strip()
        if stated != owner_id:
            raise S3Error("AccessDenied", "An ACL cannot change the owner.", 403)
    grants = tuple(_grant_from_xml(g, known_id) for g in children(lists[0], "Grant"))
    _check_grant_count(grants)
    return AccessControlList(owner_id, grants)


# --- rendering -------------------------------------------------------------------------


def _identity_xml(owner: Owner) -> str:
    return f"<ID>{escape(owner.id)}</ID><DisplayName>{escape(owner.display_name)}</DisplayName>"


def render_acl(acl: AccessControlList, owner_by_id: Callable[[str], Owner]) -> bytes:
    """The AccessControlPolicy document of a stored ACL: its owner, then its grants in
    the order they were given."""
    grants = []
    for grant in acl.grants:
        if grant.grantee_type == CANONICAL_USER:
            who = _identity_xml(owner_by_id(grant.grantee))
        else:
            who = f"<URI>{escape(grant.grantee)}</URI>"
        grants.append(f'<Grant><Grantee xmlns:xsi="{XSI_NAMESPACE}" '
                      f'xsi:type="{grant.grantee_type}">{who}</Grantee>'
                      f"<Permission>{grant.permission}</Permission></Grant>")
    return XML_DECLARATION + (
        f'<AccessControlPolicy xmlns="{S3_NAMESPACE}">'
        f"<Owner>{_identity_xml(owner_by_id(acl.owner_id))}</Owner>"
        f"<AccessControlList>{''.join(grants)}</AccessControlList>"
        "</AccessControlPolicy>"
    ).encode()


def render_owner_acl(owner: Owner) -> bytes:
    """The default ACL: the owner's FULL_CONTROL and nobody else's."""
    return render_acl(private_acl(owner.id), lambda _id: owner)


# --- the handlers ----------------------------------------------------------------------


async def bucket_owner_enforced(storage: api.StorageClient, bucket: str) -> bool:
    """Whether the bucket's Object Ownership is BucketOwnerEnforced (ACLs disabled). Every
    PutObject asks: the storage client caches the document (``get_bucket_config``)."""
    return ownership_enforced(await storage.get_bucket_config(bucket, OWNERSHIP_CONFIG))


@functools.lru_cache(maxsize=api.limits.acls_parsed_cached_max)
def ownership_enforced(document: bytes | None) -> bool:
    """Whether a stored OwnershipControls document says BucketOwnerEnforced; no
    document: ACLs are enabled (a bucket made before Object Ownership was stored)."""
    return document is not None and (
        parse_ownership_controls(bytes(document)) == "BucketOwnerEnforced")


def _enforced_acl_allowed(acl: AccessControlList, bucket_owner_id: str) -> bool:
    """Under BucketOwnerEnforced only an ACL that gives the bucket owner full control
    and nobody anything is accepted (AWS: bucket-owner-full-control, or private by the
    bucket owner)."""
    return all(g.grantee_type == CANONICAL_USER and g.permission == FULL_CONTROL
               and g.grantee in (bucket_owner_id, acl.owner_id) for g in acl.grants)


async def requested_object_acl(
    ctx: RequestContext, bucket: api.BucketInfo, headers: Mapping[str, str] | None = None
) -> tuple[str, bytes | None]:
    """(owner id, stored ACL document) for an object a request writes: the writer owns
    it and its ACL comes from the request's headers (or a form's, ``headers``); with
    BucketOwnerEnforced the bucket owner owns it and only an ACL granting the bucket
    owner full control is accepted."""
    owner_id = ctx.owner.id
    acl = acl_from_headers(ctx.headers if headers is None else headers, owner_id,
                           bucket.owner_id, ctx.users.knows_id)
    if acl is None:
        if not await bucket_owner_enforced(ctx.storage, bucket.name):
            return owner_id, None
        return bucket.owner_id, None
    await refuse_public_acl(ctx, acl)
    if await bucket_owner_enforced(ctx.storage, bucket.name):
        if acl is not None and not _enforced_acl_allowed(acl, bucket.owner_id):
            raise acl_not_supported()
        return bucket.owner_id, None
    assert acl is not None
    return owner_id, document_for(acl)


def grants_public(acl: AccessControlList) -> bool:
    """Whether an ACL grants AllUsers or AuthenticatedUsers anything (AWS: public)."""
    return any(g.grantee_type == GROUP and g.grantee in (ALL_USERS, AUTHENTICATED_USERS)
               for g in acl.grants)


async def ignores_public_acls(storage: api.StorageClient, bucket: str) -> bool:
    """Whether the bucket's Block Public Access says IgnorePublicAcls: its public grants,
    and its objects', then grant nothing (read only where a grant could admit someone
    other than the owner)."""
    document = await storage.get_bucket_config(bucket, PUBLIC_ACCESS_BLOCK_CONFIG)
    return document is not None and parse_public_access_block(
        bytes(document))["IgnorePublicAcls"]


async def refuse_public_acl(ctx: RequestContext, acl: AccessControlList) -> None:
    """403 while the bucket's BlockPublicAcls is on and ``acl`` is public."""
    if grants_public(acl) and (await public_access_block(ctx))["BlockPublicAcls"]:
        canned = (ctx.headers.get("x-amz-acl") or "").strip()
        raise public_access_blocked(f"The canned ACL '{canned}'" if canned in PUBLIC_CANNED_ACLS
                                    else "An ACL granting public access")


async def _requested_acl(ctx: RequestContext, owner_id: str, bucket_owner_id: str
                         ) -> AccessControlList:
    body = await ctx.body.read_all(api.limits.request_xml_body_bytes_max)
    from_headers = acl_from_headers(ctx.headers, owner_id, bucket_owner_id,
                                    ctx.users.knows_id)
    if from_headers is not None and body.strip():
        raise S3Error("UnexpectedContent", "This request does not support content", 400)
    if from_headers is not None:
        return from_headers
    if body.strip():
        return acl_from_policy(body, owner_id, ctx.users.knows_id)
    raise S3Error("MissingSecurityHeader", "Your request was missing a required header",
                  400, MissingHeaderName="x-amz-acl")


async def _object_version(ctx: RequestContext) -> api.ObjectVersion:
    version = await ctx.storage.get_version(ctx.bucket, ctx.key, ctx.query_value("versionId"))
    if version.is_delete_marker:
        if ctx.query_value("versionId") is not None:
            raise S3Error("MethodNotAllowed", "The specified method is not allowed against "
                          "this resource.", 405, Method=ctx.request.method,
                          ResourceType="DeleteMarker")
        raise api.NoSuchKey(f"{ctx.bucket}/{ctx.key} is deleted")
    return version


async def get_bucket_acl(ctx: RequestContext) -> Response:
    info = await ctx.storage.get_bucket(ctx.bucket)
    if await bucket_owner_enforced(ctx.storage, ctx.bucket):
        acl = private_acl(info.owner_id)
    else:
        acl = stored_acl(await ctx.storage.get_bucket_config(ctx.bucket, ACL_CONFIG),
                         info.owner_id)
    return Response(render_acl(acl, ctx.users.owner_by_id), media_type="application/xml")


async def put_bucket_acl(ctx: RequestContext) -> Response:
    info = await ctx.storage.get_bucket(ctx.bucket)
    acl = await _requested_acl(ctx, info.owner_id, info.owner_id)
    await refuse_public_acl(ctx, acl)
    if await bucket_owner_enforced(ctx.storage, ctx.bucket):
        if not _enforced_acl_allowed(acl, info.owner_id):
            raise acl_not_supported()
        return Response(status_code=200)  # nothing to store: ACLs are disabled
    await ctx.storage.put_bucket_config(ctx.bucket, ACL_CONFIG, document_for(acl))
    return Response(status_code=200)


async def get_object_acl(ctx: RequestContext) -> Response:
    from gateway import authz  # authz renders nothing; it imports this module's model

    version = await _object_version(ctx)
    owner_id = await authz.check_object(ctx, version)
    if await bucket_owner_enforced(ctx.storage, ctx.bucket):
        acl = private_acl(owner_id)
    else:
        acl = stored_acl(version.acl, owner_id)
    headers = {"x-amz-version-id": version.s3_version_id} if (
        version.s3_version_id != "null") else {}
    return Response(render_acl(acl, ctx.users.owner_by_id), media_type="application/xml",
                    headers=headers)


async def put_object_acl(ctx: RequestContext) -> Response:
    from gateway import authz

    version = await _object_version(ctx)
    owner_id = await authz.check_object(ctx, version)
    info = await ctx.storage.get_bucket(ctx.bucket)
    acl = await _requested_acl(ctx, owner_id, info.owner_id)
    await refuse_public_acl(ctx, acl)
    if await bucket_owner_enforced(ctx.storage, ctx.bucket):
        if not _enforced_acl_allowed(acl, info.owner_id):
            raise acl_not_supported()
        return Response(status_code=200)
    await ctx.storage.replace_acl(ctx.bucket, ctx.key, version.version_id, document_for(acl),
                                  origin=ctx.event_origin())
    return Response(status_code=200)
