"""Checksums cross-checked against botocore's implementations; header parsing and errors."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from botocore.httpchecksum import (
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.checksums import (
    ChecksumAlgorithm,
    ChecksumError,
    Checksummer,
    new_hasher,
    parse_content_md5,
    parse_request,
    verify,
)

BOTOCORE = {
    ChecksumAlgorithm.CRC32: Crc32Checksum,
    ChecksumAlgorithm.CRC32C: CrtCrc32cChecksum,
    ChecksumAlgorithm.CRC64NVME: CrtCrc64NvmeChecksum,
    ChecksumAlgorithm.SHA1: Sha1Checksum,
    ChecksumAlgorithm.SHA256: Sha256Checksum,
}
ALL = frozenset(ChecksumAlgorithm)


def botocore_b64(algorithm: ChecksumAlgorithm, data: bytes) -> str:
    checksum = BOTOCORE[algorithm]()
    checksum.update(data)
    return checksum.b64digest()


def expect(code: str, call: Callable[[], object]) -> ChecksumError:
    with pytest.raises(ChecksumError) as info:
        call()
    assert info.value.code == code, info.value.message
    assert info.value.status == 400
    return info.value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_known_values() -> None:
    # Published check values of each CRC over "123456789".
    data = b"123456789"
    assert new_hasher(ChecksumAlgorithm.CRC32).digest().hex() == "00000000"
    for algorithm, check in (
        (ChecksumAlgorithm.CRC32, "cbf43926"),
        (ChecksumAlgorithm.CRC32C, "e3069283"),
        (ChecksumAlgorithm.CRC64NVME, "ae8b14860a799888"),
    ):
        hasher = new_hasher(algorithm)
        hasher.update(data)
        assert hasher.digest().hex() == check, algorithm


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_matches_botocore_for_any_split(data: bytes, cuts: list[int]) -> None:
    checksummer = Checksummer(ALL)
    view = memoryview(data)
    points = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    for start, end in zip(points, points[1:], strict=False):
        checksummer.update(view[start:end])
    for algorithm in ChecksumAlgorithm:
        assert checksummer.b64(algorithm) == botocore_b64(algorithm, data), algorithm
    assert checksummer.md5_digest() == hashlib.md5(data).digest()
    assert checksummer.etag() == f'"{hashlib.md5(data).hexdigest()}"'
    assert checksummer.size_bytes == len(data)


def test_digest_lengths() -> None:
    checksummer = Checksummer(ALL)
    checksummer.update(b"x")
    for algorithm in ChecksumAlgorithm:
        assert len(checksummer.digest(algorithm)) == algorithm.digest_bytes


def test_header_checksum_round_trip_and_mismatch() -> None:
    for algorithm in ChecksumAlgorithm:
        headers = {
            algorithm.header_name: botocore_b64(algorithm, b"hello"),
            "x-amz-sdk-checksum-algorithm": algorithm.value,
        }
        request = parse_request(headers)
        assert request.algorithm is algorithm and not request.in_trailer
        good = Checksummer(request.algorithms)
        good.update(b"hello")
        verify(request, good)
        bad = Checksummer(request.algorithms)
        bad.update(b"hellO")
        error = expect("BadDigest", lambda r=request, b=bad: verify(r, b))
        assert (
            error.message
            == f"The {algorithm.value} you specified did not match the calculated checksum."
        )


def test_trailer_checksum() -> None:
    request = parse_request(
        {"x-amz-trailer": "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm": "CRC32"}
    )
    assert request.algorithm is ChecksumAlgorithm.CRC32 and request.in_trailer
    checksummer = Checksummer(request.algorithms)
    checksummer.update(b"hello")
    verify(
        request,
        checksummer,
        {"x-amz-checksum-crc32": botocore_b64(ChecksumAlgorithm.CRC32, b"hello")},
    )
    expect("BadDigest", lambda: verify(request, checksummer, {"x-amz-checksum-crc32": "AAAAAA=="}))
    expect("InvalidRequest", lambda: verify(request, checksummer, {}))
    expect(
        "InvalidRequest",
        lambda: verify(request, checksummer, {"x-amz-checksum-crc32": "not base64!"}),
    )


def test_content_md5() -> None:
    digest = hashlib.md5(b"hello").digest()
    assert parse_content_md5(b64(digest)) == digest
    for bad in ("", "abc", b64(b"short"), "!!!!", hashlib.md5(b"hello").hexdigest()):
        expect("InvalidDigest", lambda v=bad: parse_content_md5(v))
    request = parse_request({"content-md5": b64(digest)})
    checksummer = Checksummer(request.algorithms)
    checksummer.update(b"hello")
    verify(request, checksummer)
    other = Checksummer()
    other.update(b"world")
    error = expect("BadDigest", lambda: verify(request, other))
    assert error.details["ExpectedDigest"] == b64(digest)


def test_only_announced_algorithm_is_computed_not_compared() -> None:
    request = parse_request({"x-amz-sdk-checksum-algorithm": "crc32c"})
    assert request.algorithm is ChecksumAlgorithm.CRC32C and request.expected_b64 is None
    checksummer = Checksummer(request.algorithms)
    checksummer.update(b"data")
    verify(request, checksummer)
    assert checksummer.b64(ChecksumAlgorithm.CRC32C) == botocore_b64(
        ChecksumAlgorithm.CRC32C, b"data"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"x-amz-sdk-checksum-algorithm": "MD5"},
        {"x-amz-checksum-md5": "AAAAAA=="},
        {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": b64(bytes(20))},
        {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-trailer": "x-amz-checksum-crc32c"},
        {"x-amz-checksum-crc32": "AAAAAAAA"},  # 6 bytes, not 4
        {"x-amz-checksum-sha256": "zzz"},
        {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-sdk-checksum-algorithm": "SHA256"},
        {"x-amz-trailer": "x-amz-checksum-crc32,x-amz-checksum-sha1"},
        {"x-amz-trailer": "x-amz-checksum-whirlpool"},
    ],
)
def test_invalid_requests(headers: dict[str, str]) -> None:
    expect("InvalidRequest", lambda: parse_request(headers))


def test_other_checksum_headers_are_ignored() -> None:
    request = parse_request(
        {"x-amz-checksum-type": "FULL_OBJECT", "x-amz-checksum-mode": "ENABLED"}
    )
    assert request.algorithm is None and request.content_md5 is None
    verify(request, Checksummer())
