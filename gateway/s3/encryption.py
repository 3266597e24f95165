"""Server-side encryption: SSE-S3 when the store encrypts at rest, SSE-C always.

A store started with ``squall serve --encryption-key-file`` encrypts every object's data
at rest (``storage/engine/cipher.py``): what AWS has done to every new object since
2023 (SSE-S3). Then, as on AWS:

* ``x-amz-server-side-encryption: AES256`` on a write (PutObject, CopyObject,
  CreateMultipartUpload, a POST form) is honoured (the data is encrypted like all
  data), and the responses of object writes and reads (PutObject, CopyObject, the
  multipart operations, GetObject, HeadObject, POST) say ``x-amz-server-side-encryption:
  AES256`` (``SSE_RESPONSE_OPERATIONS``);
* GetBucketEncryption answers the default SSE-S3 rule, or the rule PutBucketEncryption
  stored (``AES256`` only; ``BucketKeyEnabled`` kept as given), and DeleteBucketEncryption
  goes back to the default.

Without a key nothing is encrypted, and a client that asks for encryption expects its
object stored encrypted: answering 200 would break that promise silently. So SSE-S3
requests and PutBucketEncryption are ``501 NotImplemented``, naming the header and the
flag that would make them work, and GetBucketEncryption is 404
ServerSideEncryptionConfigurationNotFoundError (MinIO answers the same without a KMS).

SSE-C (a customer-provided key, ``x-amz-server-side-encryption-customer-algorithm``,
``-key``, ``-key-MD5``; ``x-amz-copy-source-server-side-encryption-customer-*`` for a
copy's source) works with or without a master key, as AWS documents it
("Using server-side encryption with customer-provided keys (SSE-C)"):

* accepted on the operations of ``CUSTOMER_KEY_OPERATIONS`` (and a POST form's fields);
  the copy-source headers on CopyObject and UploadPartCopy
  (``COPY_SOURCE_KEY_OPERATIONS``); elsewhere ignored;
* only over HTTPS: over plain HTTP they are 400 InvalidRequest, unless the server is
  told it sits behind a TLS-terminating proxy (``GatewayConfig.sse_c_over_http``,
  ``squall serve --allow-sse-c-over-http``);
* checked as AWS checks them (``parse_customer_key``: algorithm AES256, a base64 key
  of 32 bytes, its base64 MD5; 400 InvalidArgument otherwise), before any byte is
  staged; ``x-amz-server-side-encryption`` beside them is 400 InvalidArgument;
* the key goes to storage with the write or the read (``storage.api.CustomerKey``),
  which encrypts with keys derived from it and keeps only a salted HMAC of it and its
  MD5 (``storage.api.CustomerKeyRecord``); an object's ETag is then keyed, not the MD5
  of its plaintext (``body_etag``);
* reading an SSE-C object without its key is 400 InvalidRequest, with another key 403
  AccessDenied; a key for an object that has none is 400 InvalidRequest
  (``check_object_key``; a multipart upload's parts: ``check_upload_key``);
* responses echo the algorithm and the key's MD5, never the key, and say nothing of
  SSE-S3 (``say_encrypted``).

Always refused (501): SSE-KMS (``aws:kms``, ``aws:kms:dsse``, the KMS key and context
headers: Squall has no KMS). An ``x-amz-server-side-encryption`` value that is none of
these is 400 InvalidArgument. Requests are checked before any byte is staged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import NamedTuple

from starlette.responses import Response

from gateway.errors import S3Error, malformed_xml
from gateway.requests import IndexedHeaders
from gateway.s3.common import RequestContext
from gateway.s3.documents import delete_documents, read_document
from gateway.xml import bool_text, children, local_name, parse, render
from storage import api

ENCRYPTION_CONFIG = "encryption"
SSE_HEADER = "x-amz-server-side-encryption"
SSE_S3 = "AES256"
_KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
# The operations whose requests may carry SSE headers (the object writes and reads).
OPERATIONS = frozenset({
    "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "CompleteMultipartUpload", "GetObject", "HeadObject", "GetObjectAttributes",
})
# Their successful responses say AES256 when the store encrypts at rest (as AWS's do).
SSE_RESPONSE_OPERATIONS = frozenset({
    "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "CompleteMultipartUpload", "GetObject", "HeadObject", "PostObject",
})
# SSE-C: where a request's customer key (the object written or read) is taken, where a
# copy source's, and which responses echo the key's algorithm and MD5 (the outputs
# AWS's API model gives SSECustomerAlgorithm and SSECustomerKeyMD5).
CUSTOMER_KEY_OPERATIONS = OPERATIONS | {"PostObject"}
COPY_SOURCE_KEY_OPERATIONS = frozenset({"CopyObject", "UploadPartCopy"})
CUSTOMER_KEY_ECHO_OPERATIONS = frozenset({
    "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "GetObject", "HeadObject", "PostObject",
})
CUSTOMER_ALGORITHM_HEADER = "x-amz-server-side-encryption-customer-algorithm"
CUSTOMER_KEY_HEADER = "x-amz-server-side-encryption-customer-key"
CUSTOMER_KEY_MD5_HEADER = "x-amz-server-side-encryption-customer-key-md5"
_CUSTOMER_HEADERS = (CUSTOMER_ALGORITHM_HEADER, CUSTOMER_KEY_HEADER, CUSTOMER_KEY_MD5_HEADER)
# A copy's source: x-amz-copy-source-server-side-encryption-customer-algorithm, ...
_COPY_SOURCE_CUSTOMER_HEADERS = tuple(name.replace("x-amz-", "x-amz-copy-source-", 1)
                                      for name in _CUSTOMER_HEADERS)
# The names AWS's errors and responses spell them with.
_SPELLED = {CUSTOMER_ALGORITHM_HEADER: CUSTOMER_ALGORITHM_HEADER,
            CUSTOMER_KEY_HEADER: CUSTOMER_KEY_HEADER,
            CUSTOMER_KEY_MD5_HEADER: "x-amz-server-side-encryption-customer-key-MD5"}
_SSE_HEADERS = (
    SSE_HEADER,
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
)
_HEADER_SET = frozenset(_SSE_HEADERS + _CUSTOMER_HEADERS + _COPY_SOURCE_CUSTOMER_HEADERS)
# Settings documents are a few hundred bytes; anything near this is not one.
_DOCUMENT_BYTES_MAX = 64 * 1024

# AWS's messages (MinIO and Ceph RGW answer with the same words).
INSECURE_MESSAGE = ("Requests specifying Server Side Encryption with Customer provided keys "
                    "must be made over a secure connection.")
_ALGORITHM_MESSAGE = ("Requests specifying Server Side Encryption with Customer provided keys "
                      "must provide a valid encryption algorithm.")
_MISSING_KEY_MESSAGE = ("Requests specifying Server Side Encryption with Customer provided "
                        "keys must provide an appropriate secret key.")
_INVALID_KEY_MESSAGE = "The secret key was invalid for the specified algorithm."
_MISSING_MD5_MESSAGE = ("Requests specifying Server Side Encryption with Customer provided "
                        "keys must provide the client calculated MD5 of the secret key.")
_MD5_MISMATCH_MESSAGE = ("The calculated MD5 hash of the key did not match the hash that "
                         "was provided.")
_INCOMPATIBLE_MESSAGE = ("Server Side Encryption with Customer provided key is incompatible "
                         "with the encryption method specified")
CLUSTER_MESSAGE = ("SSE-C (customer-provided keys) is not available on a replicated cluster "
                   "yet: its storage links are not encrypted (docs/cluster.md).")
ENCRYPTED_OBJECT_MESSAGE = ("The object was stored using a form of Server Side Encryption. "
                            "The correct parameters must be provided to retrieve the object.")
NOT_APPLICABLE_MESSAGE = "The encryption parameters are not applicable to this object."
_UPLOAD_KEY_MISSING_MESSAGE = ("The multipart upload initiate requested encryption. "
                               "Subsequent part requests must include the appropriate "
                               "encryption parameters.")
_UPLOAD_KEY_MISMATCH_MESSAGE = ("The provided encryption parameters did not match the ones "
                                "used originally.")


class CustomerKeys(NamedTuple):
    """A request's SSE-C keys: of the object it writes or reads, and of a copy's source."""

    target: api.CustomerKey | None = None
    source: api.CustomerKey | None = None


NO_CUSTOMER_KEYS = CustomerKeys()


def _customer_argument_error(message: str, name: str, value: str | None = None) -> S3Error:
    error = S3Error("InvalidArgument", message, 400, ArgumentName=_SPELLED.get(name, name))
    if value is not None:
        error.fields["ArgumentValue"] = value[:64]
    return error


def parse_customer_key(headers: Mapping[str, str], *, copy_source: bool = False
                       ) -> api.CustomerKey | None:
    """The key of the three SSE-C headers (``copy_source``: of the x-amz-copy-source-
    ones), None when none is there; 400 InvalidArgument, with AWS's message, when one is
    missing or wrong. The key itself never appears in an error."""
    names = _COPY_SOURCE_CUSTOMER_HEADERS if copy_source else _CUSTOMER_HEADERS
    algorithm, encoded, digest = (headers.get(name) for name in names)
    if algorithm is None and encoded is None and digest is None:
        return None
    if algorithm is None or algorithm.strip() != api.SSE_CUSTOMER_ALGORITHM:
        raise _customer_argument_error(_ALGORITHM_MESSAGE, CUSTOMER_ALGORITHM_HEADER,
                                       "null" if algorithm is None else algorithm)
    if not encoded:
        raise _customer_argument_error(_MISSING_KEY_MESSAGE, CUSTOMER_KEY_HEADER)
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != api.CUSTOMER_KEY_BYTES:
        raise _customer_argument_error(_INVALID_KEY_MESSAGE, CUSTOMER_KEY_HEADER)
    if not digest:
        raise _customer_argument_error(_MISSING_MD5_MESSAGE, CUSTOMER_KEY_MD5_HEADER)
    customer_key = api.CustomerKey.of(key)
    if not hmac.compare_digest(digest.strip().encode("latin-1"),
                               customer_key.key_md5.encode("ascii")):
        raise _customer_argument_error(_MD5_MISMATCH_MESSAGE, CUSTOMER_KEY_MD5_HEADER)
    return customer_key


def requested_customer_keys(headers: Mapping[str, str], operation: str, *, secure: bool,
                            over_http_allowed: bool, cluster: bool = False) -> CustomerKeys:
    """The SSE-C keys an object operation's headers carry (``NO_CUSTOMER_KEYS`` for
    most requests: one set operation tells). Over plain HTTP they are 400 InvalidRequest
    (AWS), unless ``over_http_allowed`` (a TLS-terminating proxy in front). A key for the
    written object beside ``x-amz-server-side-encryption`` is 400 InvalidArgument. A
    replicated ``cluster`` does not take them yet (501): its storage links carry no TLS,
    and a key never crosses a network unencrypted."""
    if isinstance(headers, IndexedHeaders) and not headers.has_any(_HEADER_SET):
        return NO_CUSTOMER_KEYS
    named = [name for name in _CUSTOMER_HEADERS if name in headers]
    if operation in COPY_SOURCE_KEY_OPERATIONS:
        named += [name for name in _COPY_SOURCE_CUSTOMER_HEADERS if name in headers]
    if not named or operation not in CUSTOMER_KEY_OPERATIONS:
        return NO_CUSTOMER_KEYS
    if cluster:
        raise S3Error("NotImplemented", CLUSTER_MESSAGE, 501, Header=named[0])
    if not secure and not over_http_allowed:
        raise S3Error("InvalidRequest", INSECURE_MESSAGE, 400)
    target = parse_customer_key(headers)
    source = (parse_customer_key(headers, copy_source=True)
              if operation in COPY_SOURCE_KEY_OPERATIONS else None)
    if target is not None and SSE_HEADER in headers:
        raise S3Error("InvalidArgument", _INCOMPATIBLE_MESSAGE, 400, ArgumentName=SSE_HEADER,
                      ArgumentValue=headers[SSE_HEADER][:64])
    return CustomerKeys(target, source)


def new_key_record(key: api.CustomerKey | None) -> api.CustomerKeyRecord | None:
    """The record a new SSE-C object (or upload) keeps of its key (a fresh salt)."""
    return None if key is None else key.new_record()


def body_etag(md5_digest: bytes, key: api.CustomerKey | None,
              record: api.CustomerKeyRecord | None) -> str:
    """The ETag of a body (or part) written with ``key`` under ``record``: the hex MD5 of
    the plaintext without SSE-C, a keyed value with it (AWS: not the MD5)."""
    if key is None or record is None:
        assert key is None and record is None, "an SSE-C write has a key and its record"
        return md5_digest.hex()
    return key.etag(record, md5_digest)


def check_object_key(record: api.CustomerKeyRecord | None, key: api.CustomerKey | None) -> None:
    """A read of an object (GET, HEAD, GetObjectAttributes, a copy's source): its SSE-C key
    given when it has one (400 InvalidRequest), the right one (403 AccessDenied), and
    none when it has none (400 InvalidRequest)."""
    try:
        api.check_customer_key(record, key)
    except api.CustomerKeyRequired:
        raise S3Error("InvalidRequest", ENCRYPTED_OBJECT_MESSAGE, 400) from None
    except api.CustomerKeyMismatch:
        raise S3Error("AccessDenied", "Access Denied", 403) from None
    except api.CustomerKeyNotApplicable:
        raise S3Error("InvalidRequest", NOT_APPLICABLE_MESSAGE, 400) from None


def check_upload_key(record: api.CustomerKeyRecord | None, key: api.CustomerKey | None) -> None:
    """A part of a multipart upload (UploadPart, UploadPartCopy): the key given at Create,
    every time (400 InvalidRequest without it, 400 InvalidArgument with another key);
    none for an upload created without one (400 InvalidRequest)."""
    try:
        api.check_customer_key(record, key)
    except api.CustomerKeyRequired:
        raise S3Error("InvalidRequest", _UPLOAD_KEY_MISSING_MESSAGE, 400) from None
    except api.CustomerKeyMismatch:
        raise S3Error("InvalidArgument", _UPLOAD_KEY_MISMATCH_MESSAGE, 400) from None
    except api.CustomerKeyNotApplicable:
        raise S3Error("InvalidRequest", NOT_APPLICABLE_MESSAGE, 400) from None


def check_encryption(headers: Mapping[str, str], at_rest: bool) -> None:
    """Refuse what a request asks of SSE-S3 and SSE-KMS that this server cannot do
    (see the module docstring); ``at_rest``: the store encrypts its data. Asked of every
    GET, HEAD and PUT: a request's indexed headers answer "none of them" in one set
    operation. (SSE-C headers are ``requested_customer_keys``' business.)"""
    if isinstance(headers, IndexedHeaders) and not headers.has_any(_HEADER_SET):
        return
    for name in _SSE_HEADERS:
        if name not in headers:
            continue
        value = headers[name]
        if name == SSE_HEADER:
            if value == SSE_S3 and at_rest:
                continue
            if value != SSE_S3 and value not in _KMS_ALGORITHMS:
                raise S3Error("InvalidArgument", "The encryption method specified is not "
                              "supported", 400, ArgumentName=name, ArgumentValue=value[:64])
        hint = (" Start squall serve with --encryption-key-file to store objects encrypted."
                if name == SSE_HEADER and value == SSE_S3 else "")
        raise S3Error(
            "NotImplemented",
            f"Server-side encryption ({name}: {value[:64]}) is not supported by this "
            f"server: the object would not be stored as asked.{hint}", 501, Header=name)


def say_encrypted(response: Response, operation: str, at_rest: bool,
                  customer_key: api.CustomerKeyRecord | None = None) -> None:
    """The headers AWS answers object writes and reads with: for an SSE-C object (its
    key's ``customer_key`` record) the algorithm and the key's MD5 (never the key), and
    nothing of SSE-S3; else ``x-amz-server-side-encryption: AES256`` when the store
    encrypts at rest."""
    if not 200 <= response.status_code < 400:
        return
    if customer_key is not None:
        if operation in CUSTOMER_KEY_ECHO_OPERATIONS:
            response.headers[CUSTOMER_ALGORITHM_HEADER] = api.SSE_CUSTOMER_ALGORITHM
            response.headers[_SPELLED[CUSTOMER_KEY_MD5_HEADER]] = customer_key.key_md5
        return
    if at_rest and operation in SSE_RESPONSE_OPERATIONS:
        response.headers[SSE_HEADER] = SSE_S3


# --- the bucket's default encryption -----------------------------------------------------


def render_encryption(bucket_key_enabled: bool) -> bytes:
    return render("ServerSideEncryptionConfiguration", [("Rule", [
        ("ApplyServerSideEncryptionByDefault", [("SSEAlgorithm", SSE_S3)]),
        ("BucketKeyEnabled", bool_text(bucket_key_enabled)),
    ])])


def parse_encryption(body: bytes) -> bool:
    """BucketKeyEnabled of a ServerSideEncryptionConfiguration whose one rule is SSE-S3;
    SSE-KMS is NotImplemented, anything else MalformedXML or InvalidArgument."""
    root = parse(body)
    rules = children(root, "Rule")
    if local_name(root) != "ServerSideEncryptionConfiguration" or len(rules) != 1:
        raise malformed_xml()
    rule = rules[0]
    defaults = children(rule, "ApplyServerSideEncryptionByDefault")
    flags = children(rule, "BucketKeyEnabled")
    if len(defaults) != 1 or len(flags) > 1:
        raise malformed_xml()
    algorithms = children(defaults[0], "SSEAlgorithm")
    if len(algorithms) != 1:
        raise malformed_xml()
    algorithm = (algorithms[0].text or "").strip()
    if algorithm in _KMS_ALGORITHMS:
        raise S3Error("NotImplemented", f"SSE-KMS ({algorithm}) is not supported by this "
                      "server: it encrypts with SSE-S3 (AES256).", 501)
    if algorithm != SSE_S3:
        raise malformed_xml()
    if children(defaults[0], "KMSMasterKeyID"):
        raise S3Error("InvalidArgument", "a KMSMasterKeyID is not applicable if the default "
                      "sse algorithm is not aws:kms or aws:kms:dsse", 400)
    enabled = (flags[0].text or "").strip() if flags else "false"
    if enabled not in ("true", "false"):
        raise malformed_xml()
    return enabled == "true"


def _not_encrypting() -> S3Error:
    return S3Error("NotImplemented", "This server does not encrypt objects at rest: start "
                   "squall serve with --encryption-key-file.", 501)


async def put_bucket_encryption(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    body = await read_document(ctx, _DOCUMENT_BYTES_MAX, integrity_required=False)
    bucket_key_enabled = parse_encryption(body)
    if not ctx.config.encryption_at_rest:
        raise _not_encrypting()
    await ctx.storage.put_bucket_config(ctx.bucket, ENCRYPTION_CONFIG,
                                        render_encryption(bucket_key_enabled))
    return Response(status_code=200)


async def get_bucket_encryption(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    if not ctx.config.encryption_at_rest:
        raise S3Error("ServerSideEncryptionConfigurationNotFoundError",
                      "The server side encryption configuration was not found", 404,
                      BucketName=ctx.bucket)
    document = await ctx.storage.get_bucket_config(ctx.bucket, ENCRYPTION_CONFIG)
    return Response(render_encryption(False) if document is None else bytes(document),
                    media_type="application/xml")


async def delete_bucket_encryption(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    if not ctx.config.encryption_at_rest:
        raise _not_encrypting()
    return await delete_documents(ctx, ENCRYPTION_CONFIG)
