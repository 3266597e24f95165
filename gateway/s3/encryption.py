"""Server-side encryption: SSE-S3 when the store encrypts at rest, refused otherwise.

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

Always refused (501): SSE-KMS (``aws:kms``, ``aws:kms:dsse``, the KMS key and context
headers: Squall has no KMS) and SSE-C (``x-amz-server-side-encryption-customer-*``: a
key per request, which the store does not use). An ``x-amz-server-side-encryption``
value that is none of these is 400 InvalidArgument. Requests are checked before any
byte is staged.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from gateway.errors import S3Error, malformed_xml
from gateway.requests import IndexedHeaders
from gateway.s3.common import RequestContext
from gateway.s3.documents import delete_documents, read_document
from gateway.xml import bool_text, children, local_name, parse, render

ENCRYPTION_CONFIG = "encryption"
SSE_HEADER = "x-amz-server-side-encryption"
SSE_S3 = "AES256"
_KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
# The operations whose requests may carry SSE headers (the object writes, and GET / HEAD
# / the copy source with an SSE-C key).
OPERATIONS = frozenset({
    "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "GetObject", "HeadObject",
})
# Their successful responses say AES256 when the store encrypts at rest (as AWS's do).
SSE_RESPONSE_OPERATIONS = frozenset({
    "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "CompleteMultipartUpload", "GetObject", "HeadObject", "PostObject",
})
_HEADERS = (
    SSE_HEADER,
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
    "x-amz-copy-source-server-side-encryption-customer-algorithm",
    "x-amz-copy-source-server-side-encryption-customer-key",
    "x-amz-copy-source-server-side-encryption-customer-key-md5",
)
_HEADER_SET = frozenset(_HEADERS)
# Settings documents are a few hundred bytes; anything near this is not one.
_DOCUMENT_BYTES_MAX = 64 * 1024


def check_encryption(headers: Mapping[str, str], at_rest: bool) -> None:
    """Refuse what a request asks of server-side encryption that this server cannot do
    (see the module docstring); ``at_rest``: the store encrypts its data. Asked of every
    GET, HEAD and PUT: a request's indexed headers answer "none of them" in one set
    operation."""
    if isinstance(headers, IndexedHeaders) and not headers.has_any(_HEADER_SET):
        return
    for name in _HEADERS:
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


def say_encrypted(response: Response, operation: str, at_rest: bool) -> None:
    """The header AWS answers object writes and reads of an SSE-S3 object with."""
    if at_rest and operation in SSE_RESPONSE_OPERATIONS and 200 <= response.status_code < 400:
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
