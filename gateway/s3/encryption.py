"""Server-side encryption requests, refused: Squall does not encrypt objects at rest.

A client that asks for SSE-S3 (``x-amz-server-side-encryption: AES256``), SSE-KMS
(``aws:kms``, ``aws:kms:dsse``) or SSE-C (a customer key in
``x-amz-server-side-encryption-customer-*``) expects the object to be stored encrypted,
and with SSE-C to be unreadable without its key. Storing it in plaintext and answering
200 would break that promise silently, so such a request is ``501 NotImplemented``,
naming the header, before any byte is staged (as MinIO answers when no KMS is set up).
GetBucketEncryption answers that no default encryption is configured
(``settings.get_bucket_encryption``); PutBucketEncryption is not routed (501).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import S3Error
from gateway.requests import IndexedHeaders

# The operations whose requests may carry SSE headers (the object writes, and GET / HEAD
# / the copy source with an SSE-C key).
OPERATIONS = frozenset({
    "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "GetObject", "HeadObject",
})
_HEADERS = (
    "x-amz-server-side-encryption",
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


def refuse_encryption(headers: Mapping[str, str]) -> None:
    """NotImplemented when a request asks for server-side encryption. Asked of every
    GET, HEAD and PUT: a request's indexed headers answer "none of them" in one set
    operation."""
    if isinstance(headers, IndexedHeaders) and not headers.has_any(_HEADER_SET):
        return
    for name in _HEADERS:
        if name in headers:
            raise S3Error(
                "NotImplemented",
                f"Server-side encryption ({name}: {headers[name][:64]}) is not supported by "
                "this server: the object would be stored unencrypted.", 501, Header=name)
