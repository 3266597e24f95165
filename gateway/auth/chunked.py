"""An incremental decoder for ``Content-Encoding: aws-chunked`` request bodies.

Theory of operation
-------------------
When ``x-amz-content-sha256`` is one of the ``STREAMING-*`` values the body is framed
in chunks (on top of, and independent from, HTTP's own chunked transfer coding, which
uvicorn has already removed)::

    signed:    <hex-size>;chunk-signature=<64 hex>\\r\\n <data> \\r\\n ... 0;chunk-signature=<sig>\\r\\n
    unsigned:  <hex-size>\\r\\n <data> \\r\\n ... 0\\r\\n

followed by ``\\r\\n`` (no trailer) or by trailer lines ``name:value\\r\\n`` and an empty
line (the ``-TRAILER`` modes; a signed trailer ends with
``x-amz-trailer-signature:<sig>\\r\\n``). botocore sends the unsigned-trailer form for
PutObject/UploadPart by default, e.g. ``5\\r\\nhello\\r\\n0\\r\\nx-amz-checksum-crc32:...\\r\\n\\r\\n``.

Signed chunks form a chain that starts at the request's own (seed) signature::

    chunk signature = HMAC(signing_key, "AWS4-HMAC-SHA256-PAYLOAD\\n" timestamp "\\n" scope
                           "\\n" previous signature "\\n" sha256("") "\\n" sha256(chunk data))
    trailer signature = HMAC(signing_key, "AWS4-HMAC-SHA256-TRAILER\\n" timestamp "\\n"
                             scope "\\n" final chunk signature "\\n" sha256(trailer lines))

where the trailer lines are ``name:value\\n`` for each trailer, in the order sent.

The decoder is a state machine in the h11 manner: :meth:`AwsChunkedDecoder.feed` takes
whatever bytes arrived and returns the payload pieces they complete, as memoryviews into
the bytes it was given (no copy of the payload, ever); :meth:`finish` says the body
ended and returns the trailers. Only header and trailer lines are buffered, each under a
named bound from ``limits``.

Rules
-----
* A chunk's data is released as it arrives, *before* that chunk's signature can be
  checked (the signature follows the data). The caller must treat the body as
  untrusted, and commit nothing, until :meth:`finish` returns.
* Every malformed input is a :class:`ChunkedError` with an S3 code; the decoder is
  unusable after one.
* ``x-amz-decoded-content-length``, when given, must equal the decoded byte count.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from enum import Enum, auto

from gateway.auth.sigv4 import EMPTY_SHA256_HEX, AuthContext
from gateway.errors import CodedError
from storage.api import limits

_CHUNK_SIGNATURE_PREFIX = b"chunk-signature="
_TRAILER_SIGNATURE_NAME = "x-amz-trailer-signature"
_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNATURE = re.compile(rb"[0-9a-f]{64}")
_CRLF = b"\r\n"


class ChunkedError(CodedError):
    """An ``aws-chunked`` body that cannot be accepted; maps to one S3 error response."""


@dataclass(slots=True)
class ChunkSignatureChain:
    """Verifies chunk and trailer signatures, each against the one before it."""

    signing_key: bytes = field(repr=False)
    timestamp: str
    scope: str
    previous_signature: str

    def verify_chunk(self, chunk_sha256_hex: str, provided: bytes) -> None:
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.timestamp,
                self.scope,
                self.previous_signature,
                EMPTY_SHA256_HEX,
                chunk_sha256_hex,
            )
        )
        self.previous_signature = self._verify(to_sign, provided)

    def verify_trailer(self, canonical_trailer: bytes, provided: bytes) -> None:
        digest = hashlib.sha256(canonical_trailer).hexdigest()
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-TRAILER",
                self.timestamp,
                self.scope,
                self.previous_signature,
                digest,
            )
        )
        self.previous_signature = self._verify(to_sign, provided)

    def _verify(self, to_sign: str, provided: bytes) -> str:
        expected = hmac.new(self.signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), provided):
            raise ChunkedError(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you "
                "provided. Check your key and signing method.",
                403,
                {"StringToSign": to_sign, "SignatureProvided": provided.decode("latin-1")},
            )
        return expected


class _State(Enum):
    CHUNK_HEADER = auto()
    CHUNK_DATA = auto()
    CHUNK_DATA_END = auto()  # the CRLF after a chunk's data
    FINAL_LINE = auto()  # the empty line that ends a body without trailers
    TRAILER = auto()
    DONE = auto()
    FAILED = auto()


class AwsChunkedDecoder:
    """Feed raw body bytes, get payload pieces; call :meth:`finish` at end of body."""

    def __init__(
        self,
        *,
        chain: ChunkSignatureChain | None,
        trailer_expected: bool,
        decoded_length_bytes: int | None = None,
        trailer_names: frozenset[str] | None = None,
    ) -> None:
        """``chain`` is None for the unsigned modes; ``trailer_names``, when given, must
        be exactly the trailers that arrive (``x-amz-trailer``)."""
        self._chain = chain
        self._trailer_expected = trailer_expected
        self._decoded_length_bytes = decoded_length_bytes
        self._trailer_names = trailer_names
        self._state = _State.CHUNK_HEADER
        self._line = bytearray()  # a partial header or trailer line
        self._chunk_remaining_bytes = 0
        self._chunk_signature = b""
        self._chunk_hash = hashlib.sha256()
        self._crlf_matched = 0
        self._trailer_bytes = 0
        self._trailer_lines: list[bytes] = []
        self.decoded_bytes = 0
        self.trailers: dict[str, str] = {}

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def feed(self, data: bytes) -> list[memoryview]:
        """Consume ``data``; return the payload pieces it completes, in order."""
        view = memoryview(data)
        pieces: list[memoryview] = []
        position = 0
        try:
            while position < len(data):
                position = self._step(data, view, position, pieces)
        except ChunkedError:
            self._state = _State.FAILED
            raise
        return pieces

    def finish(self) -> dict[str, str]:
        """The body ended: check it was complete and return the trailers (lower-case)."""
        if self._state is _State.FINAL_LINE and self._crlf_matched == 0:
            self._state = _State.DONE  # tolerated: the last empty line never came
        elif self._state is _State.TRAILER and not self._line:
            self._end_trailer()  # tolerated: the empty line after the trailers never came
        if self._state is not _State.DONE:
            self._state = _State.FAILED
            raise _incomplete()
        return self.trailers

    # --- one state at a time; each returns the new position ---------------------------

    def _step(self, data: bytes, view: memoryview, position: int, pieces: list[memoryview]) -> int:
        state = self._state
        if state is _State.CHUNK_DATA:
            return self._take_data(view, position, pieces)
        if state in (_State.CHUNK_DATA_END, _State.FINAL_LINE):
            return self._take_crlf(data, position)
        if state is _State.CHUNK_HEADER:
            line, position = self._take_line(data, position, limits.aws_chunk_header_bytes_max)
            if line is not None:
                self._start_chunk(line)
            return position
        if state is _State.TRAILER:
            line, position = self._take_line(data, position, limits.aws_trailer_bytes_max)
            if line is not None:
                self._trailer_line(line)
            return position
        if state is _State.FAILED:
            raise _malformed("the body already failed to decode")
        raise ChunkedError("InvalidRequest", "Data was sent after the end of the aws-chunked body.")

    def _take_line(self, data: bytes, position: int, bound_bytes: int) -> tuple[bytes | None, int]:
        end = data.find(b"\n", position)
        stop = len(data) if end < 0 else end + 1
        if self._state is _State.TRAILER:
            self._trailer_bytes += stop - position
            if self._trailer_bytes > limits.aws_trailer_bytes_max:
                raise ChunkedError(
                    "MalformedTrailerError", "The aws-chunked trailers are too large."
                )
        if len(self._line) + stop - position > bound_bytes:
            raise ChunkedError("InvalidRequest", "An aws-chunked chunk header is too long.")
        self._line += data[position:stop]
        if end < 0:
            return None, stop
        line = bytes(self._line)
        self._line.clear()
        if not line.endswith(_CRLF):
            raise _malformed("a line must end with CRLF")
        return line[:-2], stop

    def _take_data(self, view: memoryview, position: int, pieces: list[memoryview]) -> int:
        size = min(self._chunk_remaining_bytes, len(view) - position)
        piece = view[position : position + size]
        if self._chain is not None:
            self._chunk_hash.update(piece)
        pieces.append(piece)
        self._chunk_remaining_bytes -= size
        if self._chunk_remaining_bytes == 0:
            self._state = _State.CHUNK_DATA_END
        return position + size

    def _take_crlf(self, data: bytes, position: int) -> int:
        while position < len(data) and self._crlf_matched < 2:
            if data[position] != _CRLF[self._crlf_matched]:
                raise _malformed("chunk data must be followed by CRLF")
            self._crlf_matched += 1
            position += 1
        if self._crlf_matched == 2:
            self._crlf_matched = 0
            self._end_crlf()
        return position

    def _end_crlf(self) -> None:
        if self._state is _State.FINAL_LINE:
            self._state = _State.DONE
            return
        if self._chain is not None:
            self._chain.verify_chunk(self._chunk_hash.hexdigest(), self._chunk_signature)
        self._state = _State.CHUNK_HEADER

    # --- chunk headers -----------------------------------------------------------------

    def _start_chunk(self, line: bytes) -> None:
        size_field, separator, extension = line.partition(b";")
        if not _HEX_SIZE.fullmatch(size_field):
            raise _malformed(f"invalid chunk size {size_field[:20]!r}")
        size_bytes = int(size_field, 16)
        if size_bytes > limits.aws_chunk_size_bytes_max:
            raise ChunkedError(
                "InvalidRequest",
                f"An aws-chunked chunk may hold at most {limits.aws_chunk_size_bytes_max} bytes.",
            )
        self._chunk_signature = self._parse_extension(extension, bool(separator))
        self._check_length(self.decoded_bytes + size_bytes)
        self.decoded_bytes += size_bytes
        if size_bytes > 0:
            self._chunk_remaining_bytes = size_bytes
            self._chunk_hash = hashlib.sha256()
            self._state = _State.CHUNK_DATA
            return
        if self._chain is not None:
            self._chain.verify_chunk(EMPTY_SHA256_HEX, self._chunk_signature)
        self._check_complete()
        self._state = _State.TRAILER if self._trailer_expected else _State.FINAL_LINE

    def _parse_extension(self, extension: bytes, present: bool) -> bytes:
        if self._chain is None:
            if present:
                raise _malformed("an unsigned aws-chunked body carries no chunk extensions")
            return b""
        signature = extension.removeprefix(_CHUNK_SIGNATURE_PREFIX)
        if signature is extension or not _SIGNATURE.fullmatch(signature):
            raise _malformed("each chunk must carry chunk-signature=<64 lower-case hex>")
        return signature

    def _check_length(self, total_bytes: int) -> None:
        expected = self._decoded_length_bytes
        if expected is not None and total_bytes > expected:
            raise ChunkedError(
                "InvalidRequest",
                "The aws-chunked body holds more bytes than x-amz-decoded-content-length.",
                details={"ExpectedBytes": str(expected)},
            )

    def _check_complete(self) -> None:
        expected = self._decoded_length_bytes
        if expected is not None and self.decoded_bytes != expected:
            raise _incomplete()

    # --- trailers ------------------------------------------------------------------------

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._end_trailer()
            return
        if self._chain is not None and any(
            t.startswith(_TRAILER_SIGNATURE_NAME.encode()) for t in self._trailer_lines
        ):
            raise _malformed_trailer("x-amz-trailer-signature must be the last trailer")
        self._trailer_lines.append(line)

    def _end_trailer(self) -> None:
        trailers: dict[str, str] = {}
        signature: bytes | None = None
        canonical = bytearray()
        for line in self._trailer_lines:
            name, value = _split_trailer(line)
            if name == _TRAILER_SIGNATURE_NAME:
                signature = value.encode("latin-1")
                continue
            if name in trailers:
                raise _malformed_trailer(f"the trailer {name} is sent twice")
            trailers[name] = value
            canonical += f"{name}:{value}\n".encode("latin-1")
        self._check_trailer_names(trailers)
        if self._chain is not None:
            if signature is None:
                raise _malformed_trailer("the signed trailer lacks x-amz-trailer-signature")
            self._chain.verify_trailer(bytes(canonical), signature)
        elif signature is not None:
            raise _malformed_trailer("an unsigned body cannot carry x-amz-trailer-signature")
        self.trailers = trailers
        self._state = _State.DONE

    def _check_trailer_names(self, trailers: dict[str, str]) -> None:
        if self._trailer_names is not None and set(trailers) != self._trailer_names:
            raise _malformed_trailer(
                f"the trailers sent ({', '.join(sorted(trailers)) or 'none'}) are not the ones "
                f"declared in x-amz-trailer ({', '.join(sorted(self._trailer_names)) or 'none'})"
            )


def decoder_for(context: AuthContext) -> AwsChunkedDecoder:
    """The decoder for a request whose payload mode is one of the ``STREAMING-*`` ones."""
    mode = context.payload_mode
    assert mode.is_streaming, "only streaming payloads are aws-chunked"
    chain = None
    if mode.chunks_signed:
        chain = ChunkSignatureChain(
            context.signing_key, context.timestamp, context.scope, context.seed_signature
        )
    return AwsChunkedDecoder(
        chain=chain,
        trailer_expected=mode.has_trailer,
        decoded_length_bytes=context.decoded_content_length_bytes,
        trailer_names=frozenset(context.trailer_names),
    )


async def decode_stream(
    decoder: AwsChunkedDecoder, body: AsyncIterable[bytes]
) -> AsyncIterator[memoryview]:
    """Adapt a body stream (Starlette's ``request.stream()``) into payload pieces.

    Ends by calling :meth:`AwsChunkedDecoder.finish`, so a truncated or forged body
    raises here, after the last piece and before the caller's loop completes.
    """
    async for data in body:
        for piece in decoder.feed(data):
            yield piece
    decoder.finish()


def _split_trailer(line: bytes) -> tuple[str, str]:
    name, colon, value = line.decode("latin-1").partition(":")
    name = name.strip().lower()
    if not colon or not name:
        raise _malformed_trailer(f"the trailer line {line[:40]!r} is not name:value")
    return name, value.strip()


def _malformed(reason: str) -> ChunkedError:
    return ChunkedError("InvalidRequest", f"The aws-chunked body is malformed: {reason}.")


def _malformed_trailer(reason: str) -> ChunkedError:
    return ChunkedError(
        "MalformedTrailerError",
        "The request contained trailing data that was not well-formed or did not conform "
        f"to our published schema: {reason}.",
    )


def _incomplete() -> ChunkedError:
    return ChunkedError(
        "IncompleteBody",
        "The request body terminated unexpectedly or did not hold the number of bytes "
        "given in x-amz-decoded-content-length.",
    )
