"""Request authentication: SigV4 verification and the aws-chunked body decoder.

Pure and I/O-free; the gateway passes request parts in and maps the typed errors
(:class:`AuthError`, :class:`ChunkedError`, each with ``code``, ``message``, ``status``
and ``details``) to S3 error responses.
"""

from gateway.auth.chunked import (
    AwsChunkedDecoder,
    ChunkedError,
    ChunkSignatureChain,
    decode_stream,
    decoder_for,
)
from gateway.auth.sigv4 import (
    Anonymous,
    AuthContext,
    AuthError,
    PayloadMode,
    authenticate,
    check_payload_sha256,
    parse_query_pairs,
)

__all__ = [
    "Anonymous",
    "AuthContext",
    "AuthError",
    "AwsChunkedDecoder",
    "ChunkSignatureChain",
    "ChunkedError",
    "PayloadMode",
    "authenticate",
    "parse_query_pairs",
    "check_payload_sha256",
    "decode_stream",
    "decoder_for",
]
