"""Streaming body checksums: the MD5 ETag and the ``x-amz-checksum-*`` algorithms.

Theory of operation
-------------------
S3 lets a client attach integrity data to an upload in three ways:

* ``Content-MD5``: base64 of the body's MD5 (malformed -> ``InvalidDigest``, wrong ->
  ``BadDigest``). The MD5 is also the ETag of a single-part object, so it is always
  computed.
* ``x-amz-checksum-<algorithm>`` header: base64 of the big-endian digest of one of
  CRC32, CRC32C, CRC64NVME, SHA1, SHA256, optionally announced by
  ``x-amz-sdk-checksum-algorithm``.
* ``x-amz-trailer: x-amz-checksum-<algorithm>``: the same value, sent as an aws-chunked
  trailer after the body (what boto3 does by default); ``gateway.auth.chunked`` hands
  over the trailers.

The body is read once: the gateway feeds every piece to one :class:`Checksummer`, which
updates the MD5 and the requested algorithm together, then calls :func:`verify`. The
CRCs are kept as integers and advanced with the previous value (zlib for CRC32, awscrt
for CRC32C and CRC64NVME, the same functions botocore uses), so any split of the body
gives the same digest.

Rules
-----
* No I/O. Every client error is a :class:`ChecksumError` with the S3 code, message and
  HTTP status AWS uses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from awscrt import checksums as crt_checksums

from gateway.errors import CodedError

Piece = bytes | bytearray | memoryview


class ChecksumError(CodedError):
    """Integrity data that is malformed or does not match; maps to one S3 error."""


class ChecksumAlgorithm(Enum):
    CRC32 = "CRC32"
    CRC32C = "CRC32C"
    CRC64NVME = "CRC64NVME"
    SHA1 = "SHA1"
    SHA256 = "SHA256"

    @property
    def header_name(self) -> str:
        return f"x-amz-checksum-{self.value.lower()}"

    @property
    def digest_bytes(self) -> int:
        return _DIGEST_BYTES[self]


_DIGEST_BYTES = {
    ChecksumAlgorithm.CRC32: 4,
    ChecksumAlgorithm.CRC32C: 4,
    ChecksumAlgorithm.CRC64NVME: 8,
    ChecksumAlgorithm.SHA1: 20,
    ChecksumAlgorithm.SHA256: 32,
}
_BY_HEADER = {algorithm.header_name: algorithm for algorithm in ChecksumAlgorithm}
# x-amz-checksum-* request headers that are not checksums.
_NOT_CHECKSUM_HEADERS = frozenset({"x-amz-checksum-type", "x-amz-checksum-mode"})


class Hasher(Protocol):
    def update(self, piece: Piece, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A CRC advanced piece by piece; ``function(data, previous) -> int``."""

    def __init__(self, function: Callable[[Piece, int], int], width_bytes: int) -> None:
        self._function = function
        self._width_bytes = width_bytes
        self._mask = (1 << (8 * width_bytes)) - 1
        self._value = 0

    def update(self, piece: Piece, /) -> None:
        self._value = self._function(piece, self._value) & self._mask

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width_bytes, "big")


def new_hasher(algorithm: ChecksumAlgorithm) -> Hasher:
    if algorithm is ChecksumAlgorithm.CRC32:
        return _Crc(zlib.crc32, 4)
    if algorithm is ChecksumAlgorithm.CRC32C:
        return _Crc(crt_checksums.crc32c, 4)
    if algorithm is ChecksumAlgorithm.CRC64NVME:
        return _Crc(crt_checksums.crc64nvme, 8)
    if algorithm is ChecksumAlgorithm.SHA1:
        return hashlib.sha1(usedforsecurity=False)
    return hashlib.sha256()


class Checksummer:
    """Feed the body once; read the MD5 (ETag), the sha256 and the requested checksums."""

    def __init__(self, algorithms: frozenset[ChecksumAlgorithm] = frozenset()) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._hashers = {algorithm: new_hasher(algorithm) for algorithm in algorithms}
        self.size_bytes = 0

    def update(self, piece: Piece) -> None:
        self._md5.update(piece)
        for hasher in self._hashers.values():
            hasher.update(piece)
        self.size_bytes += piece.nbytes if isinstance(piece, memoryview) else len(piece)

    def md5_digest(self) -> bytes:
        return self._md5.digest()

    def etag(self) -> str:
        """The quoted ETag of a single-part object."""
        return f'"{self._md5.hexdigest()}"'

    def digest(self, algorithm: ChecksumAlgorithm) -> bytes:
        return self._hashers[algorithm].digest()

    def b64(self, algorithm: ChecksumAlgorithm) -> str:
        """The value S3 returns in ``x-amz-checksum-<algorithm>``."""
        return base64.b64encode(self.digest(algorithm)).decode()


@dataclass(frozen=True, slots=True)
class ChecksumRequest:
    """What the client asked to be checked: at most one algorithm, plus Content-MD5."""

    algorithm: ChecksumAlgorithm | None
    expected_b64: str | None  # from a header; None when it comes in a trailer or not at all
    in_trailer: bool
    content_md5: bytes | None

    @property
    def algorithms(self) -> frozenset[ChecksumAlgorithm]:
        return frozenset() if self.algorithm is None else frozenset({self.algorithm})


def parse_request(headers: Mapping[str, str]) -> ChecksumRequest:
    """Read ``Content-MD5``, ``x-amz-sdk-checksum-algorithm``, ``x-amz-checksum-*`` and
    ``x-amz-trailer`` from lower-case request headers (Starlette's ``Headers`` will do)."""
    content_md5 = parse_content_md5(headers["content-md5"]) if "content-md5" in headers else None
    announced = _announced_algorithm(headers.get("x-amz-sdk-checksum-algorithm"))
    in_header = _header_checksums(headers)
    in_trailer = _trailer_checksum(headers.get("x-amz-trailer", ""))
    if len(in_header) + (in_trailer is not None) > 1:
        raise _invalid(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    algorithm, expected = in_header[0] if in_header else (in_trailer, None)
    if announced is not None and algorithm is not None and announced is not algorithm:
        raise _invalid(
            f"Value for x-amz-sdk-checksum-algorithm header is invalid: it names "
            f"{announced.value} but the checksum sent is {algorithm.value}."
        )
    return ChecksumRequest(algorithm or announced, expected, in_trailer is not None, content_md5)


def parse_content_md5(value: str) -> bytes:
    digest = _b64decode(value)
    if digest is None or len(digest) != 16:
        raise ChecksumError("InvalidDigest", "The Content-MD5 you specified was invalid.")
    return digest


def verify(
    request: ChecksumRequest, checksummer: Checksummer, trailers: Mapping[str, str] | None = None
) -> None:
    """After the body: check Content-MD5 and the requested checksum, raising ``BadDigest``."""
    if request.content_md5 is not None and request.content_md5 != checksummer.md5_digest():
        raise ChecksumError(
            "BadDigest",
            "The Content-MD5 you specified did not match what we received.",
            details={
                "ExpectedDigest": base64.b64encode(request.content_md5).decode(),
                "CalculatedDigest": base64.b64encode(checksummer.md5_digest()).decode(),
            },
        )
    algorithm = request.algorithm
    if algorithm is None:
        return
    expected = request.expected_b64
    if request.in_trailer:
        expected = _trailer_value(algorithm, trailers or {})
    if expected is None:
        return  # only announced (x-amz-sdk-checksum-algorithm): computed, nothing to compare
    if expected != checksummer.b64(algorithm):
        raise ChecksumError(
            "BadDigest",
            f"The {algorithm.value} you specified did not match the calculated checksum.",
        )


def _announced_algorithm(value: str | None) -> ChecksumAlgorithm | None:
    if value is None:
        return None
    try:
        return ChecksumAlgorithm(value.strip().upper())
    except ValueError:
        raise _invalid("Value for x-amz-sdk-checksum-algorithm header is invalid.") from None


def _header_checksums(headers: Mapping[str, str]) -> list[tuple[ChecksumAlgorithm, str]]:
    found = []
    for name in headers:
        lower = name.lower()
        if not lower.startswith("x-amz-checksum-") or lower in _NOT_CHECKSUM_HEADERS:
            continue
        algorithm = _BY_HEADER.get(lower)
        if algorithm is None:
            raise _invalid(f"The checksum header {lower} names an unsupported algorithm.")
        found.append((algorithm, _checked_value(algorithm, headers[name], "header")))
    return found


def _trailer_checksum(value: str) -> ChecksumAlgorithm | None:
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    checksums = [name for name in names if name.startswith("x-amz-checksum-")]
    if len(checksums) > 1:
        raise _invalid(
            "Expecting a single x-amz-checksum- trailer. Multiple checksum Types are not allowed."
        )
    if not checksums:
        return None
    algorithm = _BY_HEADER.get(checksums[0])
    if algorithm is None:
        raise _invalid(f"The trailer {checksums[0]} names an unsupported checksum algorithm.")
    return algorithm


def _trailer_value(algorithm: ChecksumAlgorithm, trailers: Mapping[str, str]) -> str:
    value = trailers.get(algorithm.header_name)
    if value is None:
        raise _invalid(f"The {algorithm.header_name} trailer declared in x-amz-trailer is missing.")
    return _checked_value(algorithm, value, "trailing header")


def _checked_value(algorithm: ChecksumAlgorithm, value: str, where: str) -> str:
    value = value.strip()
    digest = _b64decode(value)
    if digest is None or len(digest) != algorithm.digest_bytes:
        raise _invalid(f"Value for {algorithm.header_name} {where} is invalid.")
    return value


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _invalid(message: str) -> ChecksumError:
    return ChecksumError("InvalidRequest", message)
