"""POST Object: an upload through an HTML form (``POST /bucket``, multipart/form-data).

What a browser (or boto3's ``generate_presigned_post``) sends is a form whose fields
carry the key, the object's metadata, the response wanted and the credentials: a signed
policy (``gateway.auth.post_policy``). The file is the field named ``file``; fields after
it are ignored, as AWS ignores them.

Theory of operation
-------------------
1. The router names every ``POST /bucket`` without a sub-resource ``PostObject``. It
   skips header authentication (``gateway/app.py``): the credentials are in the body.
   A body that is not ``multipart/form-data`` is 412, as AWS answers.
2. ``gateway.form.FormReader`` reads the fields before the file (each, their number and
   their total bounded by ``limits.post_form_*``) and stops at the file's first byte.
3. The form is authenticated and the key's ``${filename}`` expanded; the bucket policy
   decides on s3:PutObject for that key (a Deny refuses any form, an Allow admits it),
   else the bucket's ACL (WRITE, ``gateway/authz.py``; a form without credentials needs
   AllUsers WRITE or a policy's Allow); the form's policy is checked against the fields;
   metadata, tags, ACL, storage class and checksums are validated; the bucket must
   exist. All of it before staging one byte.
4. The file streams into ``storage.open_upload`` exactly as a PutObject body does
   (hashed once per piece, staged chunk by chunk, nothing held whole), the size checked
   against ``content-length-range`` and the 5 GiB single-PUT limit as it grows, then
   committed with ``event_name="s3:ObjectCreated:Post"``: pre-commit functions and
   notification rules bound to ``s3:ObjectCreated:*`` or ``:Post`` see it.
5. The rest of the body is read and ignored (up to ``post_form_trailing_bytes_max``), so
   the connection can be kept; the answer is a 303 to ``success_action_redirect``, or
   ``success_action_status`` 200 / 201 (a ``PostResponse`` document) / 204 (default).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import aclosing
from urllib.parse import quote, urlsplit

from starlette.responses import Response

from gateway import authz
from gateway import checksums as integrity
from gateway.auth import PayloadMode
from gateway.auth.post_policy import (
    Policy,
    check_policy,
    check_size,
    form_credentials_present,
    missing_field,
    parse_policy,
    verify_form_signature,
)
from gateway.auth.sigv4 import AuthContext
from gateway.bucket_policy import RequestFacts, policy_decision, request_tag_keys
from gateway.checksums import Checksummer
from gateway.errors import S3Error, invalid_argument
from gateway.form import FILE_FIELD, FormReader, boundary_from_content_type, split_header_value
from gateway.policy_eval import ALLOW, ANONYMOUS, DENY, NONE, Decision, principal_for_account
from gateway.router import bucket_from_host
from gateway.s3.acl import requested_object_acl
from gateway.s3.common import (
    SYSTEM_METADATA_HEADERS,
    USER_METADATA_PREFIX,
    Owner,
    RequestContext,
    check_user_metadata_size,
)
from gateway.s3.encryption import (
    body_etag,
    check_encryption,
    new_key_record,
    requested_customer_keys,
)
from gateway.s3.objects import check_key, stored_checksums, written_headers
from gateway.s3.policy import public_policy_restricted
from gateway.s3.tagging import parse_tagging_xml
from gateway.xml import render
from storage import api

OPERATION = "PostObject"
POST_AUTHENTICATION_TYPE = "POST"  # s3:authType of a browser form
EVENT_NAME = "s3:ObjectCreated:Post"
FORM_CONTENT_TYPE = "multipart/form-data"
FILENAME_VARIABLE = "${filename}"
SUCCESS_STATUSES = {"200": 200, "201": 201, "204": 204}
DEFAULT_SUCCESS_STATUS = 204
# AWS's storage classes; Squall keeps one tier and records the name asked for.
STORAGE_CLASSES = frozenset({
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "SNOW", "EXPRESS_ONEZONE",
})  # fmt: skip
# The form's own fields that carry checksums (the same names as PutObject's headers).
_CHECKSUM_FIELDS = ("content-md5", *(a.header_name for a in integrity.ChecksumAlgorithm))

# The body of a form is read as sent: no aws-chunked framing, no signed payload hash.
FORM_BODY_AUTH = AuthContext(
    access_key="", region="", timestamp="", scope="", signing_key=b"", seed_signature="",
    payload_mode=PayloadMode.UNSIGNED, payload_sha256_hex=None, presigned=False,
)  # fmt: skip
# Who a form request is until its policy's signature is checked.
UNAUTHENTICATED = Owner("", "")


async def post_object(ctx: RequestContext) -> Response:
    boundary = _form_boundary(ctx)
    ctx.body.declared_length()  # 411 without a Content-Length, as PutObject
    async with aclosing(ctx.body.pieces()) as pieces:
        reader = FormReader(pieces, boundary)
        head = await reader.read_head()
        fields = {name: field.value for name, field in head.fields.items()}
        access_key, policy = await _authenticate(ctx, fields)
        if head.file is None:
            raise invalid_argument("POST requires exactly one file upload per request.",
                                   FILE_FIELD, "0")
        key = _expanded_key(fields, head.file.filename)
        await _authorize(ctx, fields, key, access_key)
        if policy is not None:
            check_policy(policy, {**fields, "key": key}, ctx.bucket, time.time())
        version, checksums = await _store_file(ctx, reader, key, fields, policy)
        await reader.drain(api.limits.post_form_trailing_bytes_max)
    return _success_response(ctx, fields, version, checksums)


def _form_boundary(ctx: RequestContext) -> bytes:
    content_type = ctx.headers.get("content-type", "")
    if split_header_value(content_type)[0] != FORM_CONTENT_TYPE:
        condition = "Bucket POST must be of the enclosure-type multipart/form-data"
        raise S3Error("PreconditionFailed", condition, 412, Condition=condition)
    return boundary_from_content_type(content_type)


async def _authenticate(
    ctx: RequestContext, fields: Mapping[str, str]
) -> tuple[str | None, Policy | None]:
    """(the signer's access key, the form's verified policy), ``ctx.owner`` and
    ``ctx.principal`` set; both None for an anonymous form (``_authorize`` decides)."""
    if "key" not in fields:
        raise missing_field("key")
    if not form_credentials_present(fields):
        ctx.anonymous = True
        ctx.owner = ctx.principal.owner  # ANONYMOUS_PRINCIPAL's
        return None, None
    if ctx.users.needs_refresh():
        await ctx.users.refresh()
    access_key = verify_form_signature(fields, ctx.users.secret_for, ctx.config.region)
    ctx.principal = ctx.users.principal(access_key)
    ctx.owner = ctx.principal.owner
    return access_key, parse_policy(fields["policy"])


async def _authorize(ctx: RequestContext, fields: Mapping[str, str], key: str,
                     access_key: str | None) -> None:
    """The bucket policy's word on this upload (s3:PutObject on the key): an explicit
    Deny refuses anyone, an Allow admits; with no word, the bucket's ACL decides (WRITE,
    as for a PUT; an anonymous form needs AllUsers WRITE). The form's fields stand for a
    PUT's headers as condition keys."""
    if ctx.policies is None:
        decision: Decision = NONE
    else:
        client = ctx.request.client
        headers = {**ctx.headers, **fields}
        if "acl" in fields:
            headers["x-amz-acl"] = fields["acl"]
        tagging = fields.get("tagging")  # an XML Tagging document in a form
        request_tags = {} if tagging is None else request_tag_keys(parse_tagging_xml(
            tagging.encode(), api.limits.object_tags_max, "Object"))
        facts = RequestFacts(
            operation=OPERATION, bucket=ctx.bucket, key=key,
            principal=principal_for_account(access_key, ctx.owner.id)
            if access_key is not None else ANONYMOUS,
            access_key=access_key, auth=None, query=ctx.query, headers=headers,
            source_ip=client.host if client is not None else "",
            secure_transport=ctx.secure_transport,
            now_seconds=time.time(), authentication_type=POST_AUTHENTICATION_TYPE,
            extra_keys=request_tags,
        )  # fmt: skip
        try:
            decision = await policy_decision(ctx.storage, ctx.policies, facts)
        except api.NoSuchBucket:
            decision = NONE  # the upload answers NoSuchBucket before staging a byte
    if decision == DENY:
        raise S3Error("AccessDenied", "Access Denied", 403)
    if decision == ALLOW:
        if access_key is None and await public_policy_restricted(ctx.storage, ctx.bucket):
            raise S3Error("AccessDenied", "Access Denied", 403)
        return
    try:
        await authz.authorize(ctx)
    except api.NoSuchBucket:
        raise S3Error("NoSuchBucket", "The specified bucket does not exist", 404,
                      BucketName=ctx.bucket) from None


def _expanded_key(fields: Mapping[str, str], filename: str | None) -> str:
    key = fields["key"].replace(FILENAME_VARIABLE, filename or "")
    if not key:
        raise invalid_argument("User key must have a length greater than 0.", "key", "")
    check_key(key)
    return key


def _object_spec(fields: Mapping[str, str], etag: str, checksums: dict[str, str],
                 owner: tuple[str, bytes | None] = ("", None),
                 customer_key: api.CustomerKeyRecord | None = None) -> api.PutSpec:
    content_type = fields.get("content-type") or "binary/octet-stream"
    system = {name: fields[name.lower()] for name in SYSTEM_METADATA_HEADERS
              if name.lower() in fields}
    user = {name[len(USER_METADATA_PREFIX):]: value for name, value in fields.items()
            if name.startswith(USER_METADATA_PREFIX)}
    check_user_metadata_size(user)
    tagging = fields.get("tagging")
    tags = {} if tagging is None else parse_tagging_xml(
        tagging.encode(), api.limits.object_tags_max, "Object")
    return api.PutSpec(etag=etag, content_type=content_type, system_metadata=system,
                       user_metadata=user, checksums=checksums, tags=tags,
                       storage_class=fields.get("x-amz-storage-class", "STANDARD"),
                       owner_id=owner[0], acl=owner[1], customer_key=customer_key)


def _check_fields(fields: Mapping[str, str], encryption_at_rest: bool) -> None:
    """What a form may ask for that Squall cannot do, refused before any byte is staged."""
    check_encryption(fields, encryption_at_rest)
    storage_class = fields.get("x-amz-storage-class")
    if storage_class is not None and storage_class not in STORAGE_CLASSES:
        raise S3Error("InvalidStorageClass", "The storage class you specified is not valid",
                      400, StorageClassRequested=storage_class)
    _object_spec(fields, "", {})  # metadata size, tags: AWS's errors, before the upload


async def _store_file(
    ctx: RequestContext,
    reader: FormReader,
    key: str,
    fields: Mapping[str, str],
    policy: Policy | None,
) -> tuple[api.ObjectVersion, dict[str, str]]:
    # SSE-C: the form's fields carry the key as a PUT's headers do (HTTPS only).
    customer_key = requested_customer_keys(fields, OPERATION, secure=ctx.secure_transport,
                                           over_http_allowed=ctx.config.sse_c_over_http,
                                           cluster=ctx.config.cluster).target
    key_record = new_key_record(customer_key)
    _check_fields(fields, ctx.config.encryption_at_rest)
    wanted = integrity.parse_request({n: fields[n] for n in _CHECKSUM_FIELDS if n in fields})
    bucket = await ctx.storage.get_bucket(ctx.bucket)  # fail before staging any byte
    canned = {"x-amz-acl": fields["acl"]} if "acl" in fields else {}
    owner = await requested_object_acl(ctx, bucket, canned)
    checksummer = Checksummer(wanted.algorithms)
    async with ctx.storage.open_upload(ctx.bucket, key, customer_key) as upload:
        size_bytes = 0
        async for piece in reader.file_pieces():
            size_bytes += len(piece)
            check_size(policy, size_bytes, complete=False)
            checksummer.update(piece)
            await upload.write(piece)
        check_size(policy, size_bytes, complete=True)
        integrity.verify(wanted, checksummer)
        checksums = stored_checksums(checksummer, wanted.algorithms)
        spec = _object_spec(fields, body_etag(checksummer.md5_digest(), customer_key, key_record),
                            checksums, owner, key_record)
        try:
            version = await upload.commit(spec, None, event_name=EVENT_NAME,
                                          origin=ctx.event_origin())
        except api.WriteDiscarded:
            # A function answered and discarded the object: still a success (the gateway
            # answers 200 with its verdict), so read the rest of the form first.
            await reader.drain(api.limits.post_form_trailing_bytes_max)
            raise
    ctx.answered_customer_key = version.customer_key
    return version, checksums


# --- the answer ----------------------------------------------------------------------------


def object_url(ctx: RequestContext, bucket: str, key: str) -> str:
    """The URL of the new object, in the addressing style the form was posted with (a
    function may have routed it to another bucket)."""
    host = ctx.headers.get("host", "")
    scheme = ctx.request.url.scheme
    path = quote(key, safe="~")  # AWS escapes '/' here too: .../uploads%2Fcat.jpg
    if bucket == ctx.bucket and bucket_from_host(host, ctx.config.domains) is not None:
        return f"{scheme}://{host}/{path}"
    return f"{scheme}://{host}/{quote(bucket, safe='')}/{path}"


def redirect_location(redirect: str, bucket: str, key: str, etag: str) -> str | None:
    """``success_action_redirect`` with bucket, key and ETag added; None if not a URL."""
    parts = urlsplit(redirect)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in
                     (("bucket", bucket), ("key", key), ("etag", f'"{etag}"')))
    separator = "&" if parts.query else "?"
    return f"{redirect}{separator}{query}"


def _success_response(
    ctx: RequestContext,
    fields: Mapping[str, str],
    version: api.ObjectVersion,
    checksums: Mapping[str, str],
) -> Response:
    location = object_url(ctx, version.bucket, version.key)
    headers = {**written_headers(version, checksums), "Location": location}
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        target = redirect_location(redirect, version.bucket, version.key, version.etag)
        if target is not None:
            headers["Location"] = target
            return Response(status_code=303, headers=headers)
    status = SUCCESS_STATUSES.get(fields.get("success_action_status", ""), DEFAULT_SUCCESS_STATUS)
    if status != 201:
        return Response(status_code=status, headers=headers)
    body = render("PostResponse", [("Location", location), ("Bucket", version.bucket),
                                   ("Key", version.key), ("ETag", f'"{version.etag}"')],
                  namespace=False)
    return Response(body, status_code=201, headers=headers, media_type="application/xml")

