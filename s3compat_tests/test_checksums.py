"""Flexible checksums: x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}.

Reference: https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
"""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest
from awscrt import checksums as crt_checksums
from botocore.exceptions import ClientError

from s3compat_tests.support import error_code, http_status

body = b"The quick brown fox jumps over the lazy dog\n" * 37


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


expected_checksums = {
    "CRC32": _b64(zlib.crc32(body).to_bytes(4, "big")),
    "CRC32C": _b64(crt_checksums.crc32c(body).to_bytes(4, "big")),
    "CRC64NVME": _b64(crt_checksums.crc64nvme(body).to_bytes(8, "big")),
    "SHA1": _b64(hashlib.sha1(body).digest()),
    "SHA256": _b64(hashlib.sha256(body).digest()),
}


@pytest.mark.parametrize("algorithm", list(expected_checksums))
def test_checksum_stored_and_returned(s3, bucket, algorithm):
    field = f"Checksum{algorithm}"
    put = s3.put_object(Bucket=bucket, Key="obj", Body=body, ChecksumAlgorithm=algorithm)
    assert put.get(field) == expected_checksums[algorithm]

    head = s3.head_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert head.get(field) == expected_checksums[algorithm]
    got = s3.get_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert got.get(field) == expected_checksums[algorithm]
    assert got["Body"].read() == body


@pytest.mark.parametrize("algorithm", list(expected_checksums))
def test_checksum_value_supplied_by_caller(s3, bucket, algorithm):
    field = f"Checksum{algorithm}"
    put = s3.put_object(
        Bucket=bucket, Key="obj", Body=body, **{field: expected_checksums[algorithm]}
    )
    assert http_status(put) == 200
    head = s3.head_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert head.get(field) == expected_checksums[algorithm]


@pytest.mark.parametrize("algorithm", list(expected_checksums))
def test_wrong_checksum_is_bad_digest(s3, bucket, algorithm):
    field = f"Checksum{algorithm}"
    wrong_body = body + b"tampered"
    with pytest.raises(ClientError) as caught:
        s3.put_object(
            Bucket=bucket, Key="obj", Body=wrong_body, **{field: expected_checksums[algorithm]}
        )
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "BadDigest"
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="obj")
    assert http_status(missing.value) == 404  # nothing was stored


def test_checksum_not_returned_without_checksum_mode(s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=body, ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert "ChecksumSHA256" not in head
