"""Object key names: any UTF-8 up to 1024 bytes must round-trip exactly.

Reference: https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import error_code, http_status

special_keys = {
    "unicode": "unicode/ключ-键-κλειδί-🙂",
    "spaces": "with spaces/and  two",
    "plus": "plus+sign+",
    "percent": "percent%25and%",
    "question": "question?mark=1&x",
    "hash": "hash#fragment",
    "tilde": "~tilde~",
    "double_slash": "double//slash",
    "leading_slash": "/leading-slash",
    "trailing_slash": "trailing-slash/",
    "punctuation": "p!$&'()*,;=:@[]{}^`|<>\"\\",
    "combining_accent": "e\u0301 not normalised",  # NFD; S3 must not normalise to NFC
    "tab_and_newline": "tab\tnewline\nend",
}


@pytest.mark.parametrize("key", list(special_keys.values()), ids=list(special_keys.keys()))
def test_special_key_round_trip(s3, bucket, key):
    body = key.encode() + b"!"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [entry["Key"] for entry in listed["Contents"]] == [key]
    listed_v1 = s3.list_objects(Bucket=bucket)
    assert [entry["Key"] for entry in listed_v1["Contents"]] == [key]
    assert http_status(s3.delete_object(Bucket=bucket, Key=key)) == 204
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_similar_keys_are_distinct(s3, bucket):
    keys = ["a b", "a+b", "a%20b", "a%2Bb", "a/b", "a//b", "A b"]
    for index, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=str(index).encode())
    for index, key in enumerate(keys):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == str(index).encode()
    listed = [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())


@pytest.mark.parametrize(
    "key",
    ["k" * 1024, "é" * 512, "seg/" * 256],
    ids=["ascii_1024", "two_byte_1024", "slashes_1024"],
)
def test_key_of_1024_bytes(s3, bucket, key):
    assert len(key.encode()) == 1024
    s3.put_object(Bucket=bucket, Key=key, Body=b"long")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"long"
    assert [e["Key"] for e in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]


@pytest.mark.parametrize("key", ["k" * 1025, "é" * 512 + "k"], ids=["ascii", "utf8_bytes"])
def test_key_of_1025_bytes_is_too_long(s3, bucket, key):
    assert len(key.encode()) == 1025
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert http_status(caught.value) == 400
    assert error_code(caught.value) == "KeyTooLongError"
