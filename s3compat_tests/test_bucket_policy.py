"""Bucket policies, enforced: public reads, denies that bind the owner, conditions.

References: "Policy evaluation logic" (IAM), "Amazon S3 condition key examples",
"Actions, resources, and condition keys for Amazon S3", PutBucketPolicy. The scenarios
follow ceph/s3-tests' ``test_bucket_policy*`` family. Principals are named by the owner's
canonical id (``{"CanonicalUser": ...}``) or ``"*"``, which every S3 implementation
understands; unsigned requests come from a boto3 client with ``UNSIGNED`` and from
plain httpx requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore import UNSIGNED
from botocore.client import Config
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    Endpoint,
    error_code,
    http_status,
    request_timeout_seconds,
)

DENIED = ("AccessDenied", 403)


@pytest.fixture(scope="module")
def anonymous(s3_endpoint: Endpoint):
    """A boto3 client that signs nothing: every request is anonymous."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint.url,
        region_name=s3_endpoint.region,
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"},
                      connect_timeout=request_timeout_seconds,
                      read_timeout=request_timeout_seconds),
    )
    yield client
    client.close()


@pytest.fixture
def set_policy(s3, bucket) -> Iterator[Callable[..., None]]:
    """Put a policy (statements) on ``bucket``; it is deleted again before the bucket is
    emptied, so a test's Deny never blocks the cleanup."""

    def put(*statements: dict, name: str | None = None) -> None:
        document = {"Version": "2012-10-17", "Statement": list(statements)}
        s3.put_bucket_policy(Bucket=name or bucket, Policy=json.dumps(document))
        touched.add(name or bucket)

    touched: set[str] = set()
    yield put
    for name in touched:
        s3.delete_bucket_policy(Bucket=name)


def _statement(effect: str, action, resource, principal=None, **extra) -> dict:
    statement = {"Effect": effect, "Principal": "*" if principal is None else principal,
                 "Action": action, "Resource": resource}
    statement.update(extra)
    return statement


def _objects(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}/*"


def _bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def _denied(call, *args, **kwargs) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return error_code(caught.value), http_status(caught.value)


def _owner_id(s3) -> str:
    return s3.list_buckets()["Owner"]["ID"]


# --- public read ---------------------------------------------------------------------------


def test_anonymous_requests_are_denied_without_a_policy(s3, anonymous, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    assert _denied(anonymous.get_object, Bucket=bucket, Key="k") == DENIED
    assert _denied(anonymous.list_objects_v2, Bucket=bucket) == DENIED
    assert _denied(anonymous.list_buckets) == DENIED


def test_public_read_by_policy(s3, anonymous, bucket, set_policy, http, s3_endpoint):
    s3.put_object(Bucket=bucket, Key="dir/k", Body=b"public body")
    set_policy(_statement("Allow", "s3:GetObject", _objects(bucket), {"AWS": "*"}))
    assert anonymous.get_object(Bucket=bucket, Key="dir/k")["Body"].read() == b"public body"
    assert anonymous.head_object(Bucket=bucket, Key="dir/k")["ContentLength"] == 11
    plain = http.get(f"{s3_endpoint.url}/{bucket}/dir/k")  # no SDK at all
    assert (plain.status_code, plain.content) == (200, b"public body")
    # GetObject is all the policy allows: listing, writing and deleting stay denied.
    assert _denied(anonymous.list_objects, Bucket=bucket) == DENIED
    assert _denied(anonymous.put_object, Bucket=bucket, Key="new", Body=b"x") == DENIED
    assert _denied(anonymous.delete_object, Bucket=bucket, Key="dir/k") == DENIED
    assert _denied(anonymous.get_object_tagging, Bucket=bucket, Key="dir/k") == DENIED
    # A missing key: 403 to whom may not list the bucket (AWS, GetObject), 404 once the
    # policy also allows s3:ListBucket.
    missing = http.get(f"{s3_endpoint.url}/{bucket}/missing")
    assert missing.status_code == 403 and b"<Code>AccessDenied</Code>" in missing.content
    set_policy(_statement("Allow", "s3:GetObject", _objects(bucket), {"AWS": "*"}),
               _statement("Allow", "s3:ListBucket", _bucket_arn(bucket), {"AWS": "*"}))
    missing = http.get(f"{s3_endpoint.url}/{bucket}/missing")
    assert missing.status_code == 404 and b"<Code>NoSuchKey</Code>" in missing.content


def test_public_listing_by_policy(s3, anonymous, bucket, set_policy):
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    set_policy(_statement("Allow", "s3:ListBucket", [_bucket_arn(bucket), _objects(bucket)]))
    assert [o["Key"] for o in anonymous.list_objects(Bucket=bucket)["Contents"]] == ["a"]
    assert [o["Key"] for o in anonymous.list_objects_v2(Bucket=bucket)["Contents"]] == ["a"]
    assert http_status(anonymous.head_bucket(Bucket=bucket)) == 200
    assert _denied(anonymous.get_object, Bucket=bucket, Key="a") == DENIED


def test_a_policy_change_applies_to_the_next_request(s3, anonymous, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    policy = {"Version": "2012-10-17", "Statement": [
        _statement("Allow", "s3:GetObject", _objects(bucket))]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.delete_bucket_policy(Bucket=bucket)
    assert _denied(anonymous.get_object, Bucket=bucket, Key="k") == DENIED


def test_anonymous_write_by_policy_with_a_request_tag_condition(s3, anonymous, bucket,
                                                                 set_policy):
    set_policy(_statement("Allow", "s3:PutObject", _objects(bucket), Condition={
        "StringEquals": {"s3:RequestObjectTag/origin": "upload"}}))
    anonymous.put_object(Bucket=bucket, Key="tagged", Body=b"from anyone",
                         Tagging="origin=upload")
    assert s3.get_object(Bucket=bucket, Key="tagged")["Body"].read() == b"from anyone"
    assert _denied(anonymous.put_object, Bucket=bucket, Key="untagged", Body=b"x") == DENIED
    assert _denied(anonymous.put_object, Bucket=bucket, Key="other", Body=b"x",
                   Tagging="origin=elsewhere") == DENIED


# --- explicit deny ---------------------------------------------------------------------------


def test_deny_delete_object_stops_the_owner(s3, bucket, set_policy):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    set_policy(_statement("Deny", "s3:DeleteObject", _objects(bucket)))
    assert _denied(s3.delete_object, Bucket=bucket, Key="keep") == DENIED
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep"}]})
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("keep", "AccessDenied")]
    assert "Deleted" not in result
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"
    s3.put_object(Bucket=bucket, Key="keep", Body=b"overwritten")  # PutObject is not denied


def test_deny_everything_leaves_the_owner_its_policy(s3, bucket):
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        _statement("Deny", "s3:*", [_bucket_arn(bucket), _objects(bucket)])]})
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    try:
        assert _denied(s3.put_object, Bucket=bucket, Key="k", Body=b"x") == DENIED
        assert _denied(s3.list_objects_v2, Bucket=bucket) == DENIED
        assert _denied(s3.get_bucket_versioning, Bucket=bucket) == DENIED
        # AWS's rule for the account owning the bucket: its policy stays in its hands.
        assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(policy)
        s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    finally:
        s3.delete_bucket_policy(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")


def test_insecure_transport_is_denied_on_http(s3, bucket, set_policy, s3_endpoint):
    if not s3_endpoint.url.startswith("http://"):
        pytest.skip("the endpoint is not plain http")
    set_policy(_statement("Deny", "s3:*", [_bucket_arn(bucket), _objects(bucket)],
                          Condition={"Bool": {"aws:SecureTransport": "false"}}))
    assert _denied(s3.put_object, Bucket=bucket, Key="k", Body=b"x") == DENIED


def test_not_principal_denies_everyone_else(s3, anonymous, bucket, set_policy):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy(
        _statement("Allow", "s3:GetObject", _objects(bucket)),
        {"Effect": "Deny", "NotPrincipal": {"CanonicalUser": _owner_id(s3)},
         "Action": "s3:GetObject", "Resource": _objects(bucket)},
    )
    assert _denied(anonymous.get_object, Bucket=bucket, Key="k") == DENIED
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_not_action_denies_every_other_action(s3, bucket, set_policy):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy({"Effect": "Deny", "Principal": "*", "NotAction": ["s3:GetObject", "s3:List*"],
                "Resource": _objects(bucket)})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    assert _denied(s3.put_object, Bucket=bucket, Key="k", Body=b"y") == DENIED
    assert _denied(s3.put_object_tagging, Bucket=bucket, Key="k",
                   Tagging={"TagSet": []}) == DENIED


def test_copy_needs_get_object_on_the_source(s3, make_bucket, set_policy):
    source, target = make_bucket("src"), make_bucket("dst")
    s3.put_object(Bucket=source, Key="secret", Body=b"x")
    s3.put_object(Bucket=source, Key="open", Body=b"y")
    set_policy(_statement("Deny", "s3:GetObject", f"arn:aws:s3:::{source}/secret"),
               name=source)
    assert _denied(s3.copy_object, Bucket=target, Key="c",
                   CopySource={"Bucket": source, "Key": "secret"}) == DENIED
    s3.copy_object(Bucket=target, Key="c", CopySource={"Bucket": source, "Key": "open"})
    assert s3.get_object(Bucket=target, Key="c")["Body"].read() == b"y"


# --- conditions --------------------------------------------------------------------------------


def test_prefix_condition_on_list_bucket(s3, anonymous, bucket, set_policy):
    for key in ("public/a", "private/b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    set_policy(_statement("Allow", "s3:ListBucket", _bucket_arn(bucket),
                          Condition={"StringLike": {"s3:prefix": "public/*"}}))
    listed = anonymous.list_objects_v2(Bucket=bucket, Prefix="public/")
    assert [o["Key"] for o in listed["Contents"]] == ["public/a"]
    assert _denied(anonymous.list_objects_v2, Bucket=bucket, Prefix="private/") == DENIED
    assert _denied(anonymous.list_objects_v2, Bucket=bucket) == DENIED


@pytest.mark.parametrize(("network", "allowed"), [("127.0.0.0/8", True),
                                                  ("10.20.0.0/16", False)])
def test_source_ip_condition(s3, anonymous, bucket, set_policy, s3_endpoint, network, allowed):
    if s3_endpoint.host not in ("127.0.0.1", "localhost"):
        pytest.skip("the client's address is only known for a local endpoint")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy(_statement("Allow", "s3:GetObject", _objects(bucket),
                          Condition={"IpAddress": {"aws:SourceIp": network}}))
    if allowed:
        assert anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    else:
        assert _denied(anonymous.get_object, Bucket=bucket, Key="k") == DENIED


def test_deny_by_source_ip_binds_the_owner(s3, bucket, set_policy, s3_endpoint):
    if s3_endpoint.host not in ("127.0.0.1", "localhost"):
        pytest.skip("the client's address is only known for a local endpoint")
    set_policy(_statement("Deny", "s3:PutObject", _objects(bucket),
                          Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert _denied(s3.put_object, Bucket=bucket, Key="k", Body=b"x") == DENIED


def test_existing_object_tag_condition(s3, anonymous, bucket, set_policy):
    s3.put_object(Bucket=bucket, Key="public", Body=b"p", Tagging="security=public")
    s3.put_object(Bucket=bucket, Key="private", Body=b"q", Tagging="security=private")
    s3.put_object(Bucket=bucket, Key="untagged", Body=b"r")
    set_policy(_statement("Allow", ["s3:GetObject", "s3:GetObjectTagging"], _objects(bucket),
                          Condition={"StringEquals": {"s3:ExistingObjectTag/security":
                                                      "public"}}))
    assert anonymous.get_object(Bucket=bucket, Key="public")["Body"].read() == b"p"
    assert anonymous.get_object_tagging(Bucket=bucket, Key="public")["TagSet"] == [
        {"Key": "security", "Value": "public"}]
    assert _denied(anonymous.get_object, Bucket=bucket, Key="private") == DENIED
    assert _denied(anonymous.get_object, Bucket=bucket, Key="untagged") == DENIED
    # Retagging the object changes the answer at once.
    s3.put_object_tagging(Bucket=bucket, Key="private",
                          Tagging={"TagSet": [{"Key": "security", "Value": "public"}]})
    assert anonymous.get_object(Bucket=bucket, Key="private")["Body"].read() == b"q"


def test_request_tags_of_a_put_object_tagging_body(s3, bucket, set_policy):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy(_statement("Deny", "s3:PutObjectTagging", _objects(bucket), Condition={
        "ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": "secret"}}))
    assert _denied(s3.put_object_tagging, Bucket=bucket, Key="k", Tagging={"TagSet": [
        {"Key": "a", "Value": "1"}, {"Key": "secret", "Value": "2"}]}) == DENIED
    allowed = {"TagSet": [{"Key": "a", "Value": "1"}]}
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=allowed)  # its body still arrives
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == allowed["TagSet"]


def test_referer_condition_if_exists(s3, bucket, set_policy, http, s3_endpoint):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy(_statement("Allow", "s3:GetObject", _objects(bucket), Condition={
        "StringLikeIfExists": {"aws:Referer": "http://www.example.com/*"}}))
    url = f"{s3_endpoint.url}/{bucket}/k"
    assert http.get(url, headers={"Referer": "http://www.example.com/index.html"}
                    ).status_code == 200
    assert http.get(url).status_code == 200  # no Referer: IfExists holds
    refused = http.get(url, headers={"Referer": "http://example.com/"})
    assert refused.status_code == 403 and b"<Code>AccessDenied</Code>" in refused.content


def test_owner_is_unaffected_by_an_allow_it_does_not_match(s3, bucket, set_policy):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy(_statement("Allow", "s3:GetObject", _objects(bucket),
                          Condition={"StringEquals": {"aws:Referer": "nowhere"}}))
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


# --- MalformedPolicy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::BUCKET/*",
         "Condition": {"StringSometimes": {"aws:Referer": "x"}}},
        {"Effect": "Allow", "NotPrincipal": {"AWS": "*"}, "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::BUCKET/*"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::BUCKET/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "not-an-address"}}},
        {"Effect": "Allow", "Principal": {"Robot": "r2d2"}, "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::BUCKET/*"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::BUCKET/*",
         "Condition": {"NumericLessThan": {"s3:max-keys": "ten"}}},
    ],
    ids=["unknown-operator", "allow-not-principal", "bad-ip", "bad-principal-type",
         "bad-number"],
)
def test_malformed_policies(s3, bucket, statement):
    document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    assert _denied(s3.put_bucket_policy, Bucket=bucket,
                   Policy=document.replace("BUCKET", bucket)) == ("MalformedPolicy", 400)


# --- POST Object (browser forms) ------------------------------------------------------------


def test_an_anonymous_form_needs_the_policy_allow(s3, bucket, set_policy, http, s3_endpoint):
    url = f"{s3_endpoint.url}/{bucket}"
    form = {"key": "drop/${filename}"}
    refused = http.post(url, data=form, files={"file": ("a.txt", b"anonymous")})
    assert refused.status_code == 403 and b"<Code>AccessDenied</Code>" in refused.content
    set_policy(_statement("Allow", "s3:PutObject", f"arn:aws:s3:::{bucket}/drop/*"))
    accepted = http.post(url, data=form, files={"file": ("a.txt", b"anonymous")})
    assert accepted.status_code == 204, accepted.text
    assert s3.get_object(Bucket=bucket, Key="drop/a.txt")["Body"].read() == b"anonymous"
    outside = http.post(url, data={"key": "elsewhere"}, files={"file": ("a", b"x")})
    assert outside.status_code == 403


def test_a_form_s_tags_are_request_tags(s3, bucket, set_policy, http, s3_endpoint):
    set_policy(_statement("Allow", "s3:PutObject", _objects(bucket), Condition={
        "StringEquals": {"s3:RequestObjectTag/origin": "form"}}))
    url = f"{s3_endpoint.url}/{bucket}"
    tagging = ("<Tagging><TagSet><Tag><Key>origin</Key><Value>{}</Value></Tag></TagSet>"
               "</Tagging>")
    accepted = http.post(url, data={"key": "t", "tagging": tagging.format("form")},
                         files={"file": ("a", b"x")})
    assert accepted.status_code == 204, accepted.text
    refused = http.post(url, data={"key": "u", "tagging": tagging.format("other")},
                        files={"file": ("a", b"x")})
    assert refused.status_code == 403


def test_a_signed_form_is_refused_by_a_deny(s3, bucket, set_policy, http):
    set_policy(_statement("Deny", "s3:PutObject", f"arn:aws:s3:::{bucket}/locked/*"))
    locked = s3.generate_presigned_post(bucket, "locked/k")
    refused = http.post(locked["url"], data=locked["fields"], files={"file": ("f", b"x")})
    assert refused.status_code == 403 and b"<Code>AccessDenied</Code>" in refused.content
    open_form = s3.generate_presigned_post(bucket, "open/k")
    accepted = http.post(open_form["url"], data=open_form["fields"],
                         files={"file": ("f", b"x")})
    assert accepted.status_code == 204


def test_restrict_public_buckets_ignores_a_public_policy(s3, anonymous, bucket, set_policy):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy(_statement("Allow", "s3:GetObject", _objects(bucket)))
    assert anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": True})
    try:
        assert _denied(anonymous.get_object, Bucket=bucket, Key="k") == DENIED
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    finally:
        s3.delete_public_access_block(Bucket=bucket)
    assert anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
