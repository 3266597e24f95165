"""POST policies: signatures (against botocore's signer) and the condition evaluator."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import boto3
import pytest
from botocore.config import Config

from gateway.auth import AuthError
from gateway.auth.post_policy import (
    check_policy,
    check_size,
    form_credentials_present,
    parse_policy,
    verify_form_signature,
)
from storage.api import limits

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = 1_800_000_000.0
FUTURE = "2099-01-01T00:00:00.000Z"


def lookup(access_key: str) -> str | None:
    return SECRET_KEY if access_key == ACCESS_KEY else None


def presigned_fields(signature_version: str | None) -> dict[str, str]:
    """What boto3's generate_presigned_post produces (no network), names lower-cased."""
    config = Config(signature_version=signature_version) if signature_version else None
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                          config=config)
    post = client.generate_presigned_post("bucket", "a/${filename}",
                                          Fields={"acl": "private"},
                                          Conditions=[{"acl": "private"}])
    client.close()
    return {name.lower(): value for name, value in post["fields"].items()}


@pytest.mark.parametrize("version", ["s3v4", None])  # boto3's default is the SigV2 form
def test_boto3_presigned_post_verifies(version: str | None) -> None:
    fields = presigned_fields(version)
    assert ("x-amz-signature" in fields) == (version == "s3v4")
    assert form_credentials_present(fields)
    assert verify_form_signature(fields, lookup, "us-east-1") == ACCESS_KEY
    policy = parse_policy(fields["policy"])
    check_policy(policy, {**fields, "key": "a/photo.jpg"}, "bucket", time.time())


@pytest.mark.parametrize("version", ["s3v4", None])
def test_a_changed_policy_or_signature_does_not_match(version: str | None) -> None:
    fields = presigned_fields(version)
    signature_field = "x-amz-signature" if version else "signature"
    tampered_policy = {**fields, "policy": base64.b64encode(b'{"x": 1}').decode()}
    for tampered in (tampered_policy, {**fields, signature_field: fields[signature_field][::-1]}):
        with pytest.raises(AuthError) as caught:
            verify_form_signature(tampered, lookup, "us-east-1")
        assert (caught.value.code, caught.value.status) == ("SignatureDoesNotMatch", 403)


def test_unknown_key_missing_fields_wrong_region() -> None:
    v4, v2 = presigned_fields("s3v4"), presigned_fields(None)
    with pytest.raises(AuthError) as caught:
        verify_form_signature({**v2, "awsaccesskeyid": "NOBODY"}, lookup, None)
    assert (caught.value.code, caught.value.status) == ("InvalidAccessKeyId", 403)
    for fields, name in ((v2, "signature"), (v4, "x-amz-signature"), (v4, "policy"),
                         (v4, "x-amz-date")):
        partial = {k: v for k, v in fields.items() if k != name}
        with pytest.raises(AuthError) as caught:
            verify_form_signature(partial, lookup, None)
        assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)
        assert "Bucket POST must contain a field named" in caught.value.message
    with pytest.raises(AuthError) as caught:
        verify_form_signature(v4, lookup, "eu-west-1")
    assert caught.value.code == "InvalidArgument"
    assert not form_credentials_present({"key": "k", "acl": "private"})


def encode(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


@pytest.mark.parametrize(
    "policy",
    [
        "not base64!",
        base64.b64encode(b"{not json").decode(),
        encode(["a", "list"]),
        encode({"conditions": []}),
        encode({"expiration": FUTURE}),
        encode({"EXPIRATION": FUTURE, "conditions": []}),
        encode({"expiration": FUTURE, "CONDITIONS": []}),
        encode({"expiration": "2099-01-01 00:00:00.123+00:00", "conditions": []}),
        encode({"expiration": "2099-13-01T00:00:00Z", "conditions": []}),
        encode({"expiration": 4102444800, "conditions": []}),
        encode({"expiration": FUTURE, "conditions": {"bucket": "b"}}),
        encode({"expiration": FUTURE, "conditions": [{}]}),
        encode({"expiration": FUTURE, "conditions": [{"a": "1", "b": "2"}]}),
        encode({"expiration": FUTURE, "conditions": [{"acl": 1}]}),
        encode({"expiration": FUTURE, "conditions": [["matches", "$key", "a"]]}),
        encode({"expiration": FUTURE, "conditions": [["eq", "$key"]]}),
        encode({"expiration": FUTURE, "conditions": [["eq", "key", "a"]]}),
        encode({"expiration": FUTURE, "conditions": [["starts-with", "$key", 5]]}),
        encode({"expiration": FUTURE, "conditions": [["content-length-range", 0]]}),
        encode({"expiration": FUTURE, "conditions": [["content-length-range", -1, 0]]}),
        encode({"expiration": FUTURE, "conditions": [["content-length-range", "a", 9]]}),
        encode({"expiration": FUTURE, "conditions": [[]]}),
        encode({"expiration": FUTURE, "conditions": ["eq"]}),
        encode({"expiration": FUTURE,
                "conditions": [{"x-ignore-a": ""}] * (limits.post_policy_conditions_max + 1)}),
    ],
)
def test_malformed_policies_are_invalid_policy_documents(policy: str) -> None:
    with pytest.raises(AuthError) as caught:
        parse_policy(policy)
    assert (caught.value.code, caught.value.status) == ("InvalidPolicyDocument", 400)
    assert caught.value.message.startswith("Invalid Policy: ")


def check(conditions: list[Any], fields: dict[str, str], *, bucket: str = "bkt",
          expiration: str = FUTURE) -> None:
    policy = parse_policy(encode({"expiration": expiration, "conditions": conditions}))
    check_policy(policy, fields, bucket, NOW)


def denied(conditions: list[Any], fields: dict[str, str], **options: str) -> str:
    with pytest.raises(AuthError) as caught:
        check(conditions, fields, **options)
    assert (caught.value.code, caught.value.status) == ("AccessDenied", 403)
    return caught.value.message


BASE = [{"bucket": "bkt"}, ["starts-with", "$key", "user/"]]


def test_conditions_that_hold() -> None:
    check(BASE, {"key": "user/a.txt"})
    check([{"bUcKeT": "bkt"}, ["StArTs-WiTh", "$KeY", "user/"], {"AcL": "private"},
           ["EQ", "$Content-Type", "text/plain"]],
          {"key": "user/a", "acl": "private", "content-type": "text/plain"})
    # An empty prefix allows anything; Content-Type may be a list, each entry matching.
    check([*BASE, ["starts-with", "$x-amz-meta-a", ""], ["starts-with", "$content-type", "image/"]],
          {"key": "user/b", "x-amz-meta-a": "whatever", "content-type": "image/png, image/jpeg"})
    # Exempt fields need no condition.
    check(BASE, {"key": "user/c", "policy": "p", "x-amz-signature": "s", "awsaccesskeyid": "a",
                 "signature": "s", "file": "", "x-ignore-me": "1"})
    # A condition on a field the form lacks compares the empty string.
    check([*BASE, ["eq", "$x-amz-meta-absent", ""]], {"key": "user/d"})


def test_conditions_that_fail() -> None:
    assert denied(BASE, {"key": "other/a"}) == (
        'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "user/"]')
    assert "Policy Condition failed" in denied(BASE, {"key": "user/a"}, bucket="another")
    assert "Policy Condition failed" in denied(
        [*BASE, ["starts-with", "$content-type", "image/"]],
        {"key": "user/a", "content-type": "image/png,text/html"})
    assert "Policy Condition failed" in denied(
        [*BASE, ["starts-with", "$x-amz-meta-foo", "bar"]], {"key": "user/a"})
    assert "Policy Condition failed" in denied(
        [*BASE, {"acl": "private"}], {"key": "user/a", "acl": "Private"})
    assert denied(BASE, {"key": "user/a", "x-amz-meta-a": "1", "acl": "private"}) == (
        "Invalid according to Policy: Extra input fields: x-amz-meta-a, acl")
    assert denied([["starts-with", "$key", ""]], {"key": "a"}) == (
        "Invalid according to Policy: Extra input fields: bucket")
    assert denied(BASE, {"key": "user/a"}, expiration="2020-01-01T00:00:00Z") == (
        "Invalid according to Policy: Policy expired.")


def test_size_range() -> None:
    policy = parse_policy(encode({"expiration": FUTURE,
                                  "conditions": [["content-length-range", 10, "20"]]}))
    check_size(policy, 20, complete=True)
    check_size(policy, 5, complete=False)  # still growing
    with pytest.raises(AuthError) as caught:
        check_size(policy, 21, complete=False)
    assert (caught.value.code, caught.value.details["MaxSizeAllowed"]) == ("EntityTooLarge", "20")
    with pytest.raises(AuthError) as caught:
        check_size(policy, 9, complete=True)
    assert (caught.value.code, caught.value.details["MinSizeAllowed"]) == ("EntityTooSmall", "10")
    check_size(None, limits.object_size_bytes_max, complete=True)
    with pytest.raises(AuthError) as caught:
        check_size(None, limits.object_size_bytes_max + 1, complete=False)
    assert caught.value.code == "EntityTooLarge"
