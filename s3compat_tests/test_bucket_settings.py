"""Object Ownership, Block Public Access and the policy status of a bucket.

References: Put/Get/DeleteBucketOwnershipControls, Put/Get/DeletePublicAccessBlock,
GetBucketPolicyStatus and CreateBucket (``x-amz-object-ownership``) in the S3 API
reference; "Controlling ownership of objects and disabling ACLs" and "Blocking public
access to your Amazon S3 storage" (its section "The meaning of public") in the user
guide.

New AWS buckets get BucketOwnerEnforced: ACLs are disabled, and one that grants more
than the owner's full control is refused with 400 (AccessControlListNotSupported; on
CreateBucket InvalidBucketAclWithObjectOwnership). Block Public Access refuses a public
canned ACL (BlockPublicAcls) or a public policy (BlockPublicPolicy) with 403
AccessDenied. Tests never depend on AWS's default Block Public Access of new buckets:
they set the configuration they need.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    empty_and_delete_bucket,
    error_code,
    http_status,
    unique_bucket_name,
)

ALL_FLAGS_OFF = {"BlockPublicAcls": False, "IgnorePublicAcls": False,
                 "BlockPublicPolicy": False, "RestrictPublicBuckets": False}


def _refusal(call, **arguments) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call(**arguments)
    return error_code(caught.value), http_status(caught.value)


def _create(s3, s3_endpoint, name: str, **arguments) -> None:
    if s3_endpoint.region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": s3_endpoint.region}
    s3.create_bucket(Bucket=name, **arguments)


@pytest.fixture
def writer_bucket(s3, s3_endpoint):
    """A bucket created with ObjectWriter ownership (ACLs enabled)."""
    name = unique_bucket_name("writer")
    _create(s3, s3_endpoint, name, ObjectOwnership="ObjectWriter")
    yield name
    empty_and_delete_bucket(s3, name)


def _ownership(s3, bucket: str) -> str:
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert len(rules) == 1
    return rules[0]["ObjectOwnership"]


# --- Object Ownership --------------------------------------------------------------------


def test_new_bucket_is_bucket_owner_enforced(s3, bucket):
    assert _ownership(s3, bucket) == "BucketOwnerEnforced"


@pytest.mark.parametrize("mode", ["BucketOwnerPreferred", "ObjectWriter", "BucketOwnerEnforced"])
def test_put_bucket_ownership_controls_round_trip(s3, bucket, mode):
    response = s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": mode}]})
    assert http_status(response) == 200
    assert _ownership(s3, bucket) == mode


def test_delete_bucket_ownership_controls(s3, bucket):
    assert http_status(s3.delete_bucket_ownership_controls(Bucket=bucket)) == 204
    assert _refusal(s3.get_bucket_ownership_controls, Bucket=bucket) == (
        "OwnershipControlsNotFoundError", 404)


def test_an_ownership_change_governs_the_very_next_acl_request(s3, bucket):
    """The gateway caches each bucket's Object Ownership against the configuration's
    change counter: switching it takes effect on the next request, both ways."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert _refusal(s3.put_object_acl, Bucket=bucket, Key="k", ACL="public-read") == (
        "AccessControlListNotSupported", 400)
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    assert http_status(s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")) == 200
    s3.put_bucket_ownership_controls(
        Bucket=bucket,
        OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert _refusal(s3.put_object, Bucket=bucket, Key="k2", Body=b"y",
                    ACL="public-read") == ("AccessControlListNotSupported", 400)


def test_put_bucket_ownership_controls_unknown_mode(s3, bucket):
    refusal = _refusal(s3.put_bucket_ownership_controls, Bucket=bucket,
                       OwnershipControls={"Rules": [{"ObjectOwnership": "Everyone"}]})
    assert refusal == ("MalformedXML", 400)
    assert _ownership(s3, bucket) == "BucketOwnerEnforced"


def test_ownership_controls_of_a_missing_bucket(s3):
    name = unique_bucket_name("nobucket")
    assert _refusal(s3.put_bucket_ownership_controls, Bucket=name, OwnershipControls={
        "Rules": [{"ObjectOwnership": "ObjectWriter"}]}) == ("NoSuchBucket", 404)
    assert _refusal(s3.get_bucket_ownership_controls, Bucket=name) == ("NoSuchBucket", 404)


def test_create_bucket_with_object_ownership(s3, writer_bucket):
    assert _ownership(s3, writer_bucket) == "ObjectWriter"


@pytest.mark.parametrize("ownership", [{}, {"ObjectOwnership": "BucketOwnerEnforced"}],
                         ids=["default", "explicit"])
def test_create_bucket_with_public_acl_and_acls_disabled(s3, s3_endpoint, ownership):
    name = unique_bucket_name("aclcreate")
    try:
        refusal = _refusal(_create, s3=s3, s3_endpoint=s3_endpoint, name=name,
                           ACL="public-read", **ownership)
        assert refusal == ("InvalidBucketAclWithObjectOwnership", 400)
        assert _refusal(s3.head_bucket, Bucket=name)[1] == 404
    finally:
        empty_and_delete_bucket(s3, name)


@pytest.mark.parametrize("canned", ["public-read", "public-read-write", "authenticated-read"])
def test_put_bucket_acl_with_acls_disabled(s3, bucket, canned):
    refusal = _refusal(s3.put_bucket_acl, Bucket=bucket, ACL=canned)
    assert refusal == ("AccessControlListNotSupported", 400)


def test_put_object_acl_with_acls_disabled(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    refusal = _refusal(s3.put_object_acl, Bucket=bucket, Key="k", ACL="public-read")
    assert refusal == ("AccessControlListNotSupported", 400)
    # An ACL that changes nothing is still accepted with ACLs disabled.
    assert http_status(s3.put_object_acl(Bucket=bucket, Key="k",
                                         ACL="bucket-owner-full-control")) == 200


# --- Block Public Access -----------------------------------------------------------------


def test_public_access_block_round_trip(s3, bucket):
    configuration = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                     "BlockPublicPolicy": True, "RestrictPublicBuckets": False}
    response = s3.put_public_access_block(Bucket=bucket,
                                          PublicAccessBlockConfiguration=configuration)
    assert http_status(response) == 200
    stored = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert stored == configuration


def test_public_access_block_absent_flags_are_false(s3, bucket):
    s3.put_public_access_block(Bucket=bucket,
                               PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    stored = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert stored == {**ALL_FLAGS_OFF, "BlockPublicPolicy": True}


def test_delete_public_access_block(s3, bucket):
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=ALL_FLAGS_OFF)
    assert http_status(s3.delete_public_access_block(Bucket=bucket)) == 204
    assert _refusal(s3.get_public_access_block, Bucket=bucket) == (
        "NoSuchPublicAccessBlockConfiguration", 404)


@pytest.mark.parametrize("canned", ["public-read", "public-read-write", "authenticated-read"])
def test_block_public_acls_refuses_public_canned_acls(s3, writer_bucket, canned):
    s3.put_public_access_block(Bucket=writer_bucket, PublicAccessBlockConfiguration={
        **ALL_FLAGS_OFF, "BlockPublicAcls": True})
    refusal = _refusal(s3.put_bucket_acl, Bucket=writer_bucket, ACL=canned)
    assert refusal == ("AccessDenied", 403)
    assert http_status(s3.put_bucket_acl(Bucket=writer_bucket, ACL="private")) == 200


def _policy(bucket: str, principal, condition: dict | None = None,
            principal_field: str = "Principal") -> str:
    statement = {
        "Effect": "Allow", principal_field: principal, "Action": "s3:ListBucket",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }
    if condition is not None:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_block_public_policy_refuses_a_public_policy(s3, bucket):
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        **ALL_FLAGS_OFF, "BlockPublicPolicy": True})
    refusal = _refusal(s3.put_bucket_policy, Bucket=bucket, Policy=_policy(bucket, "*"))
    assert refusal == ("AccessDenied", 403)
    # A policy for a named principal is not public, so it is accepted.
    named = _policy(bucket, {"AWS": "arn:aws:iam::123456789012:root"})
    assert http_status(s3.put_bucket_policy(Bucket=bucket, Policy=named)) in (200, 204)


# --- GetBucketPolicyStatus ---------------------------------------------------------------


def _is_public(s3, bucket: str) -> bool:
    return s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"]


def test_policy_status_without_a_policy(s3, bucket):
    assert _is_public(s3, bucket) is False


@pytest.mark.parametrize(
    ("principal", "principal_field", "condition", "public"),
    [
        ("*", "Principal", None, True),
        ({"AWS": "*"}, "Principal", None, True),
        ({"AWS": "arn:aws:iam::123456789012:root"}, "Principal", None, False),
        ({"AWS": "*"}, "Principal", {"IpAddress": {"aws:SourceIp": "10.0.0.0/32"}}, False),
        ({"AWS": "*"}, "Principal", {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}, True),
        ("*", "Principal", {"StringLike": {"aws:Referer": "https://example.com/*"}}, True),
    ],
    ids=["star", "aws-star", "named", "source-ip", "any-ip", "referer"],
)
# (Allow with NotPrincipal is MalformedPolicy, as IAM documents it "not supported":
# test_bucket_policy.py::test_malformed_policies.)
def test_policy_status(s3, bucket, principal, principal_field, condition, public):
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, principal, condition,
                                                       principal_field))
    assert _is_public(s3, bucket) is public


def test_policy_status_of_a_missing_bucket(s3):
    refusal = _refusal(s3.get_bucket_policy_status, Bucket=unique_bucket_name("nobucket"))
    assert refusal == ("NoSuchBucket", 404)


@pytest.mark.parametrize("canned", ["public-read", "authenticated-read"])
def test_block_public_acls_refuses_writes_with_public_acls(s3, writer_bucket, canned):
    s3.put_public_access_block(Bucket=writer_bucket, PublicAccessBlockConfiguration={
        **ALL_FLAGS_OFF, "BlockPublicAcls": True})
    assert _refusal(s3.put_object, Bucket=writer_bucket, Key="k", Body=b"x",
                    ACL=canned) == ("AccessDenied", 403)
    assert _refusal(s3.create_multipart_upload, Bucket=writer_bucket, Key="m",
                    ACL=canned) == ("AccessDenied", 403)
    assert "Contents" not in s3.list_objects_v2(Bucket=writer_bucket)
    assert http_status(s3.put_object(Bucket=writer_bucket, Key="k", Body=b"x",
                                     ACL="private")) == 200


def test_writes_with_public_acls_and_acls_disabled(s3, bucket):
    assert _refusal(s3.put_object, Bucket=bucket, Key="k", Body=b"x",
                    ACL="public-read") == ("AccessControlListNotSupported", 400)
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    assert _refusal(s3.copy_object, Bucket=bucket, Key="dst", ACL="public-read",
                    CopySource={"Bucket": bucket, "Key": "src"}) == (
        "AccessControlListNotSupported", 400)
    # The ACL that changes nothing is what AWS accepts with ACLs disabled.
    assert http_status(s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                                     ACL="bucket-owner-full-control")) == 200


def test_create_bucket_with_an_acl_that_is_no_canned_acl(s3, s3_endpoint):
    # A malformed header is the first answer, before what ownership would say.
    name = unique_bucket_name("badacl")
    try:
        refusal = _refusal(_create, s3=s3, s3_endpoint=s3_endpoint, name=name,
                           ACL="public-ready")
        assert refusal == ("InvalidArgument", 400)
    finally:
        empty_and_delete_bucket(s3, name)
