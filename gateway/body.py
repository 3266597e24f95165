"""A request's payload as verified pieces, whatever way the client framed and signed it.

* ``x-amz-content-sha256: <hex>``: the body as sent; its sha256 is checked at the end.
* ``UNSIGNED-PAYLOAD``: the body as sent.
* ``STREAMING-*``: the ``aws-chunked`` framing is removed on the fly by
  ``gateway.auth.chunked`` (chunk signatures checked, trailers collected).

In every mode the byte count must equal the declared length (Content-Length or
x-amz-decoded-content-length), and nothing is buffered beyond one network read.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator

from starlette.requests import Request

from gateway.auth import AuthContext, PayloadMode, check_payload_sha256, decode_stream, decoder_for
from gateway.errors import S3Error

Piece = bytes | memoryview


def _incomplete_body(received: int, declared: int) -> S3Error:
    return S3Error(
        "IncompleteBody",
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        400,
        NumberBytesExpected=str(declared),
        NumberBytesProvided=str(received),
    )


class RequestBody:
    """Read once: ``pieces()`` or ``read_all()``; ``trailers`` are set after the end."""

    def __init__(self, request: Request, auth: AuthContext) -> None:
        self._request = request
        self._auth = auth
        self.trailers: dict[str, str] = {}
        self._buffered: bytes | None = None

    def declared_length(self) -> int:
        """The payload's length as the client declared it; 411 when it did not."""
        if self._auth.payload_mode.is_streaming:
            declared = self._auth.decoded_content_length_bytes
            if declared is None:
                raise S3Error("MissingContentLength",
                              "You must provide the x-amz-decoded-content-length HTTP header.",
                              411)
            return declared
        raw = self._request.headers.get("content-length")
        if raw is None and "transfer-encoding" in self._request.headers:
            # S3 takes no HTTP chunked body (aws-chunked, above, is how a body of
            # unknown length is sent); this is its answer, naming the header.
            raise S3Error("NotImplemented", "A header you provided implies functionality "
                          "that is not implemented", 501, Header="Transfer-Encoding")
        if raw is None:
            raise S3Error("MissingContentLength",
                          "You must provide the Content-Length HTTP header.", 411)
        if not raw.isdigit():
            raise S3Error("InvalidArgument", "Content-Length is not a number.", 400)
        return int(raw)

    async def pieces(self) -> AsyncGenerator[Piece, None]:
        """The payload, piece by piece; raises an S3 error at the end if it fails a check."""
        if self._buffered is not None:  # read and checked already (buffer)
            buffered, self._buffered = self._buffered, None
            if buffered:
                yield buffered
            return
        declared = self._declared_or_none()
        received = 0
        if self._auth.payload_mode.is_streaming:
            decoder = decoder_for(self._auth)
            async for piece in decode_stream(decoder, self._request.stream()):
                received += piece.nbytes
                yield piece
            self.trailers = dict(decoder.trailers)
        else:
            sha256 = hashlib.sha256() if self._auth.payload_mode is PayloadMode.SIGNED else None
            async for data in self._request.stream():
                if sha256 is not None:
                    sha256.update(data)
                received += len(data)
                yield data
            if sha256 is not None:
                check_payload_sha256(self._auth, sha256.hexdigest())
        if declared is not None and received != declared:
            raise _incomplete_body(received, declared)

    async def read_all(self, max_bytes: int) -> bytes:
        """The whole (small) payload; larger than ``max_bytes`` -> MaxMessageLengthExceeded."""
        parts: list[bytes] = []
        total = 0
        async for piece in self.pieces():
            total += len(piece)
            if total > max_bytes:
                raise S3Error("MaxMessageLengthExceeded", "Your request was too big.", 400)
            parts.append(bytes(piece))
        return b"".join(parts)

    async def buffer(self, max_bytes: int) -> bytes:
        """``read_all(max_bytes)``, kept so that ``pieces()`` yields it once more: for a
        request whose body must be read before its handler runs (a bucket policy that
        asks for the tags of a PutObjectTagging body)."""
        body = await self.read_all(max_bytes)
        self._buffered = body
        return body

    def _declared_or_none(self) -> int | None:
        try:
            return self.declared_length()
        except S3Error:
            return None
