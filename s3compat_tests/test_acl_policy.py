"""ACLs, bucket policies, and the bucket settings tools commonly probe.

References: GetBucketAcl / PutBucketAcl / GetObjectAcl / PutObjectAcl,
Put/Get/DeleteBucketPolicy, GetBucketEncryption, GetBucketOwnershipControls and
GetPublicAccessBlock in the S3 API reference.

What the owner alone sees of ACLs; grants to others and their enforcement are in
test_users_acl.py. New AWS buckets have ACLs disabled (BucketOwnerEnforced): an ACL
that grants anything beyond the owner's full control is refused there (400
AccessControlListNotSupported). Object Ownership and Block Public Access themselves:
``test_bucket_settings.py``.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    empty_and_delete_bucket,
    error_code,
    http_status,
    make_client,
    unique_bucket_name,
)

ACL_REFUSALS = {("AccessControlListNotSupported", 400), ("NotImplemented", 501)}


def _owner(s3):
    return s3.list_buckets()["Owner"]


def _assert_owner_full_control(acl, owner):
    assert acl["Owner"]["ID"] == owner["ID"]
    (grant,) = acl["Grants"]
    assert grant["Permission"] == "FULL_CONTROL"
    assert grant["Grantee"]["Type"] == "CanonicalUser"
    assert grant["Grantee"]["ID"] == owner["ID"]


def test_get_bucket_acl_is_the_owner_with_full_control(s3, bucket):
    _assert_owner_full_control(s3.get_bucket_acl(Bucket=bucket), _owner(s3))


def test_get_object_acl_is_the_owner_with_full_control(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    _assert_owner_full_control(s3.get_object_acl(Bucket=bucket, Key="k"), _owner(s3))


def test_get_object_acl_of_a_missing_key(s3, bucket):
    with pytest.raises(ClientError) as caught:
        s3.get_object_acl(Bucket=bucket, Key="missing")
    assert (error_code(caught.value), http_status(caught.value)) == ("NoSuchKey", 404)


def test_get_bucket_acl_of_a_missing_bucket(s3):
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_acl(Bucket="s3compat-no-such-bucket-acl")
    assert (error_code(caught.value), http_status(caught.value)) == ("NoSuchBucket", 404)


def test_private_canned_acl_is_accepted_everywhere(s3, s3_endpoint):
    name = unique_bucket_name("acl")
    location = {}
    if s3_endpoint.region != "us-east-1":
        location = {"CreateBucketConfiguration": {"LocationConstraint": s3_endpoint.region}}
    s3.create_bucket(Bucket=name, ACL="private", **location)
    try:
        s3.put_object(Bucket=name, Key="k", Body=b"x", ACL="private")
        assert http_status(s3.put_bucket_acl(Bucket=name, ACL="private")) == 200
        assert http_status(s3.put_object_acl(Bucket=name, Key="k", ACL="private")) == 200
        _assert_owner_full_control(s3.get_object_acl(Bucket=name, Key="k"), _owner(s3))
    finally:
        empty_and_delete_bucket(s3, name)


def test_an_owner_full_control_policy_is_accepted(s3, bucket):
    owner = _owner(s3)
    policy = {
        "Owner": {"ID": owner["ID"]},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]},
                    "Permission": "FULL_CONTROL"}],
    }
    assert http_status(s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy=policy)) == 200


# Grants beyond the owner's, and their enforcement between two users: test_users_acl.py.


def _with_header(client, operation: str, name: str, value: str):
    """``client`` sending ``name: value`` on ``operation`` (botocore validates the
    ACL enum, so a made-up name has to be put on the wire by hand)."""
    client.meta.events.register(f"before-call.s3.{operation}",
                                lambda params, **_: params["headers"].update({name: value}))
    return client


@pytest.mark.parametrize("operation", ["PutBucketAcl", "PutObjectAcl", "PutObject"])
def test_an_unknown_canned_acl_is_invalid_argument(s3_endpoint, bucket, operation):
    """A misspelt canned ACL ('public-ready') is a malformed request: 400, not 501."""
    client = make_client(s3_endpoint)
    client.put_object(Bucket=bucket, Key="k", Body=b"x")
    _with_header(client, operation, "x-amz-acl", "public-ready")
    calls = {
        "PutBucketAcl": lambda: client.put_bucket_acl(Bucket=bucket, ACL="private"),
        "PutObjectAcl": lambda: client.put_object_acl(Bucket=bucket, Key="k", ACL="private"),
        "PutObject": lambda: client.put_object(Bucket=bucket, Key="k", Body=b"y"),
    }
    with pytest.raises(ClientError) as caught:
        calls[operation]()
    client.close()
    assert (http_status(caught.value), error_code(caught.value)) == (400, "InvalidArgument")


# --- bucket policy -----------------------------------------------------------------------


def _policy(bucket: str) -> str:
    # Deliberately not compact: GetBucketPolicy must return the document as stored.
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecure",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }, indent=2)


def test_put_get_delete_bucket_policy(s3, bucket):
    document = _policy(bucket)
    assert http_status(s3.put_bucket_policy(Bucket=bucket, Policy=document)) in (200, 204)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(document)
    assert http_status(s3.delete_bucket_policy(Bucket=bucket)) == 204
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_policy(Bucket=bucket)
    assert (error_code(caught.value), http_status(caught.value)) == ("NoSuchBucketPolicy", 404)


def test_get_bucket_policy_without_one(s3, bucket):
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_policy(Bucket=bucket)
    assert (error_code(caught.value), http_status(caught.value)) == ("NoSuchBucketPolicy", 404)


@pytest.mark.parametrize(
    "document",
    [
        "this is not json",
        '{"Version": "2012-10-17"}',
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Perhaps", "Principal": "*", '
        '"Action": "s3:GetObject", "Resource": "arn:aws:s3:::BUCKET/*"}]}',
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Action": "s3:GetObject", "Resource": "arn:aws:s3:::BUCKET/*"}]}',
    ],
    ids=["not-json", "no-statement", "bad-effect", "no-principal"],
)
def test_malformed_policies_are_rejected(s3, bucket, document):
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_policy(Bucket=bucket, Policy=document.replace("BUCKET", bucket))
    assert (error_code(caught.value), http_status(caught.value)) == ("MalformedPolicy", 400)
    assert caught.value.response["Error"]["Message"]


# --- commonly probed settings ------------------------------------------------------------


def test_get_bucket_encryption(s3, bucket):
    # AWS encrypts every bucket by default (SSE-S3) and answers that rule, as Squall does
    # when it encrypts at rest (this suite's server does; one that does not answers 404
    # ServerSideEncryptionConfigurationNotFoundError: tests/integration/test_encryption.py).
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_get_bucket_ownership_controls(s3, bucket):
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_get_public_access_block(s3, bucket):
    try:
        configuration = s3.get_public_access_block(Bucket=bucket)
    except ClientError as error:
        assert (error_code(error), http_status(error)) == (
            "NoSuchPublicAccessBlockConfiguration", 404)
    else:  # AWS blocks public access on new buckets by default
        assert all(configuration["PublicAccessBlockConfiguration"].values())
