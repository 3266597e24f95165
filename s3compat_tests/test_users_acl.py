"""Two users and ACLs: ownership, grants, anonymous access, as AWS's ACL overview says.

References: "Access control list (ACL) overview" (grantees, permissions, canned ACLs,
the permission -> operation mapping), CreateBucket (BucketAlreadyExists /
BucketAlreadyOwnedByYou), ListBuckets, Get/PutBucketAcl, Get/PutObjectAcl. The ceph
s3-tests names these areas test_bucket_acl_*, test_object_acl_*, test_access_bucket_*,
test_bucket_list_objects_anonymous* and test_object_raw_get*.

Needs the second user (``alt``; Squall's own server gets one through the admin API).
Buckets that take ACLs are created with ObjectOwnership=ObjectWriter: AWS (and a server
that follows its 2023 default) disables ACLs on new buckets otherwise.
"""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    empty_and_delete_bucket,
    error_code,
    http_status,
    make_client,
    unique_bucket_name,
)

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def _denied(call, *args, **kwargs) -> None:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    assert (error_code(caught.value), http_status(caught.value)) == ("AccessDenied", 403), (
        caught.value.response)


def _create(client, endpoint, name: str, **options) -> None:
    location = {}
    if endpoint.region != "us-east-1":
        location = {"CreateBucketConfiguration": {"LocationConstraint": endpoint.region}}
    client.create_bucket(Bucket=name, ObjectOwnership="ObjectWriter", **location, **options)


@pytest.fixture
def acl_bucket(s3, s3_endpoint):
    """A bucket of the main user that takes ACLs; emptied and deleted after."""
    name = unique_bucket_name("acl")
    _create(s3, s3_endpoint, name)
    yield name
    empty_and_delete_bucket(s3, name)


@pytest.fixture
def alt_bucket(s3, alt, s3_endpoint):
    """A bucket of the alt user; the main user has no rights on it."""
    name = unique_bucket_name("alt")
    _create(alt, s3_endpoint, name)
    yield name
    empty_and_delete_bucket(alt, name)


def _id(client) -> str:
    return client.list_buckets()["Owner"]["ID"]


# --- ownership ---------------------------------------------------------------------------


def test_each_user_lists_only_its_own_buckets(s3, alt, acl_bucket, alt_bucket):
    mine = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    theirs = alt.list_buckets()
    assert acl_bucket in mine and alt_bucket not in mine
    assert {b["Name"] for b in theirs["Buckets"]} >= {alt_bucket}
    assert acl_bucket not in {b["Name"] for b in theirs["Buckets"]}
    assert theirs["Owner"]["ID"] != _id(s3)


def test_recreating_your_own_bucket_is_not_an_error_in_us_east_1(s3, s3_endpoint, acl_bucket):
    if s3_endpoint.region != "us-east-1":
        pytest.skip("us-east-1 semantics")
    assert http_status(s3.create_bucket(Bucket=acl_bucket)) == 200


def test_another_users_bucket_is_denied_to_every_operation(s3, alt, acl_bucket):
    s3.put_object(Bucket=acl_bucket, Key="k", Body=b"private")
    _denied(alt.list_objects_v2, Bucket=acl_bucket)
    _denied(alt.list_objects, Bucket=acl_bucket)
    _denied(alt.get_object, Bucket=acl_bucket, Key="k")
    with pytest.raises(ClientError) as caught:  # HEAD: a status, no body to name a code
        alt.head_object(Bucket=acl_bucket, Key="k")
    assert http_status(caught.value) == 403
    _denied(alt.put_object, Bucket=acl_bucket, Key="new", Body=b"x")
    _denied(alt.delete_object, Bucket=acl_bucket, Key="k")
    _denied(alt.get_bucket_acl, Bucket=acl_bucket)
    _denied(alt.put_bucket_acl, Bucket=acl_bucket, ACL="public-read")
    _denied(alt.get_object_acl, Bucket=acl_bucket, Key="k")
    _denied(alt.delete_bucket, Bucket=acl_bucket)
    _denied(alt.get_bucket_versioning, Bucket=acl_bucket)
    assert s3.get_object(Bucket=acl_bucket, Key="k")["Body"].read() == b"private"


def test_a_missing_key_is_access_denied_to_whom_may_not_list(s3, alt, acl_bucket):
    _denied(alt.get_object, Bucket=acl_bucket, Key="missing")
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=acl_bucket, Key="missing")
    assert error_code(caught.value) == "NoSuchKey"


# --- grants ------------------------------------------------------------------------------


def test_bucket_grants_by_id_let_the_other_user_list_and_write(s3, alt, acl_bucket):
    alt_id, owner_id = _id(alt), _id(s3)
    s3.put_bucket_acl(Bucket=acl_bucket, GrantRead=f'id="{alt_id}"',
                      GrantWrite=f'id="{alt_id}"', GrantFullControl=f'id="{owner_id}"')
    grants = s3.get_bucket_acl(Bucket=acl_bucket)["Grants"]
    assert [(g["Grantee"].get("ID"), g["Permission"]) for g in grants] == [
        (alt_id, "READ"), (alt_id, "WRITE"), (owner_id, "FULL_CONTROL")]
    alt.put_object(Bucket=acl_bucket, Key="from-alt", Body=b"alt wrote this")
    listed = alt.list_objects_v2(Bucket=acl_bucket, FetchOwner=True)["Contents"]
    assert [(o["Key"], o["Owner"]["ID"]) for o in listed] == [("from-alt", alt_id)]
    v1 = s3.list_objects(Bucket=acl_bucket)["Contents"]
    assert v1[0]["Owner"]["ID"] == alt_id
    versions = s3.list_object_versions(Bucket=acl_bucket)["Versions"]
    assert versions[0]["Owner"]["ID"] == alt_id
    # The object is alt's and private: the bucket owner may not read it, but may delete it.
    _denied(s3.get_object, Bucket=acl_bucket, Key="from-alt")
    assert alt.get_object_acl(Bucket=acl_bucket, Key="from-alt")["Owner"]["ID"] == alt_id
    s3.delete_object(Bucket=acl_bucket, Key="from-alt")
    assert "Contents" not in s3.list_objects_v2(Bucket=acl_bucket)


def test_bucket_owner_full_control_lets_the_bucket_owner_read(s3, alt, acl_bucket):
    s3.put_bucket_acl(Bucket=acl_bucket, GrantWrite=f'id="{_id(alt)}"',
                      GrantFullControl=f'id="{_id(s3)}"')
    alt.put_object(Bucket=acl_bucket, Key="shared", Body=b"x",
                   ACL="bucket-owner-full-control")
    assert s3.get_object(Bucket=acl_bucket, Key="shared")["Body"].read() == b"x"
    grants = s3.get_object_acl(Bucket=acl_bucket, Key="shared")["Grants"]
    assert {(g["Grantee"]["ID"], g["Permission"]) for g in grants} == {
        (_id(alt), "FULL_CONTROL"), (_id(s3), "FULL_CONTROL")}


def test_an_object_grant_lets_the_other_user_read_and_copy(s3, alt, acl_bucket, alt_bucket):
    s3.put_object(Bucket=acl_bucket, Key="k", Body=b"granted")
    _denied(alt.copy_object, Bucket=alt_bucket, Key="copy",
            CopySource={"Bucket": acl_bucket, "Key": "k"})
    s3.put_object_acl(Bucket=acl_bucket, Key="k", GrantRead=f'id="{_id(alt)}"')
    assert alt.get_object(Bucket=acl_bucket, Key="k")["Body"].read() == b"granted"
    alt.copy_object(Bucket=alt_bucket, Key="copy", CopySource={"Bucket": acl_bucket, "Key": "k"})
    assert alt.get_object(Bucket=alt_bucket, Key="copy")["Body"].read() == b"granted"
    _denied(alt.list_objects_v2, Bucket=acl_bucket)  # object READ is not bucket READ
    _denied(alt.put_object_acl, Bucket=acl_bucket, Key="k", ACL="public-read")


def test_authenticated_read_admits_any_signed_user_but_not_anonymous(
        s3, alt, anonymous, acl_bucket):
    s3.put_object(Bucket=acl_bucket, Key="k", Body=b"signed only", ACL="authenticated-read")
    assert alt.get_object(Bucket=acl_bucket, Key="k")["Body"].read() == b"signed only"
    _denied(anonymous.get_object, Bucket=acl_bucket, Key="k")


def test_get_acl_returns_exactly_what_was_put(s3, alt, acl_bucket):
    s3.put_object(Bucket=acl_bucket, Key="k", Body=b"x")
    policy = {
        "Owner": {"ID": _id(s3)},
        "Grants": [
            {"Grantee": {"Type": "Group", "URI": AUTHENTICATED_USERS}, "Permission": "READ"},
            {"Grantee": {"Type": "CanonicalUser", "ID": _id(alt)}, "Permission": "READ_ACP"},
        ],
    }
    s3.put_object_acl(Bucket=acl_bucket, Key="k", AccessControlPolicy=policy)
    acl = s3.get_object_acl(Bucket=acl_bucket, Key="k")
    assert acl["Owner"]["ID"] == _id(s3)
    assert [(g["Grantee"]["Type"], g["Grantee"].get("URI") or g["Grantee"].get("ID"),
             g["Permission"]) for g in acl["Grants"]] == [
        ("Group", AUTHENTICATED_USERS, "READ"), ("CanonicalUser", _id(alt), "READ_ACP")]
    # The owner keeps READ_ACP and WRITE_ACP without a grant; alt has READ_ACP only.
    assert alt.get_object_acl(Bucket=acl_bucket, Key="k")["Owner"]["ID"] == _id(s3)
    _denied(alt.put_object_acl, Bucket=acl_bucket, Key="k", ACL="private")
    s3.put_object_acl(Bucket=acl_bucket, Key="k", ACL="private")
    _denied(alt.get_object, Bucket=acl_bucket, Key="k")


def test_a_grant_to_an_unknown_id_is_invalid_argument(s3, acl_bucket):
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_acl(Bucket=acl_bucket, GrantRead='id="' + "0" * 64 + '"')
    assert (error_code(caught.value), http_status(caught.value)) == ("InvalidArgument", 400)


def test_more_than_100_grants_are_refused(s3, acl_bucket):
    grants = [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}] * 101
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_acl(Bucket=acl_bucket,
                          AccessControlPolicy={"Owner": {"ID": _id(s3)}, "Grants": grants})
    assert http_status(caught.value) == 400


# --- anonymous ---------------------------------------------------------------------------


def test_public_read_object_is_readable_unsigned(s3, anonymous, acl_bucket):
    s3.put_object(Bucket=acl_bucket, Key="public", Body=b"for everyone", ACL="public-read")
    s3.put_object(Bucket=acl_bucket, Key="private", Body=b"mine")
    assert anonymous.get_object(Bucket=acl_bucket, Key="public")["Body"].read() == (
        b"for everyone")
    assert anonymous.head_object(Bucket=acl_bucket, Key="public")["ContentLength"] == 12
    _denied(anonymous.get_object, Bucket=acl_bucket, Key="private")
    _denied(anonymous.list_objects_v2, Bucket=acl_bucket)  # the bucket itself is private
    _denied(anonymous.put_object, Bucket=acl_bucket, Key="anon", Body=b"x")


def test_raw_unsigned_http_get_of_a_public_object(s3, http, s3_endpoint, acl_bucket):
    s3.put_object(Bucket=acl_bucket, Key="raw", Body=b"raw bytes", ACL="public-read")
    response = http.get(f"{s3_endpoint.url}/{acl_bucket}/raw")
    assert (response.status_code, response.content) == (200, b"raw bytes")
    assert http.get(f"{s3_endpoint.url}/{acl_bucket}").status_code == 403


def test_public_read_bucket_lists_anonymously_but_objects_stay_private(
        s3, anonymous, acl_bucket):
    s3.put_bucket_acl(Bucket=acl_bucket, ACL="public-read")
    s3.put_object(Bucket=acl_bucket, Key="k", Body=b"x")
    assert [o["Key"] for o in anonymous.list_objects(Bucket=acl_bucket)["Contents"]] == ["k"]
    _denied(anonymous.get_object, Bucket=acl_bucket, Key="k")
    grants = s3.get_bucket_acl(Bucket=acl_bucket)["Grants"]
    assert ({"Type": "Group", "URI": ALL_USERS}, "READ") in [
        (g["Grantee"], g["Permission"]) for g in grants]


def test_ignore_public_acls_makes_public_grants_grant_nothing(s3, anonymous, acl_bucket):
    """Block Public Access's IgnorePublicAcls: the bucket's and its objects' grants to
    AllUsers count for nothing while it is on (stored, not rewritten: they come back when
    it is off); the owner is not affected."""
    s3.put_bucket_acl(Bucket=acl_bucket, ACL="public-read")
    s3.put_object(Bucket=acl_bucket, Key="k", Body=b"x", ACL="public-read")
    assert anonymous.get_object(Bucket=acl_bucket, Key="k")["Body"].read() == b"x"
    s3.put_public_access_block(Bucket=acl_bucket, PublicAccessBlockConfiguration={
        "IgnorePublicAcls": True})
    _denied(anonymous.get_object, Bucket=acl_bucket, Key="k")
    _denied(anonymous.list_objects_v2, Bucket=acl_bucket)
    assert s3.get_object(Bucket=acl_bucket, Key="k")["Body"].read() == b"x"
    s3.delete_public_access_block(Bucket=acl_bucket)
    assert anonymous.get_object(Bucket=acl_bucket, Key="k")["Body"].read() == b"x"
    assert anonymous.list_objects_v2(Bucket=acl_bucket)["KeyCount"] == 1


def test_public_read_write_bucket_takes_anonymous_writes(s3, anonymous, acl_bucket):
    s3.put_bucket_acl(Bucket=acl_bucket, ACL="public-read-write")
    anonymous.put_object(Bucket=acl_bucket, Key="dropped", Body=b"anonymous")
    keys = [o["Key"] for o in anonymous.list_objects_v2(Bucket=acl_bucket)["Contents"]]
    assert keys == ["dropped"]
    # The anonymous writer owns it (and no one else may read it) but the bucket owner
    # may delete it.
    listed = s3.list_objects(Bucket=acl_bucket)["Contents"]
    assert listed[0]["Owner"]["ID"] != _id(s3)
    _denied(s3.get_object, Bucket=acl_bucket, Key="dropped")
    s3.delete_object(Bucket=acl_bucket, Key="dropped")
    _denied(anonymous.put_bucket_acl, Bucket=acl_bucket, ACL="private")


def test_an_unsigned_form_needs_all_users_write(s3, http, s3_endpoint, acl_bucket):
    """A browser form without credentials (no policy, no signature) is an anonymous
    upload: refused into a private bucket, taken into a public-read-write one, as AWS."""
    url = f"{s3_endpoint.url}/{acl_bucket}"
    refused = http.post(url, data={"key": "anon-form"}, files={"file": ("f", b"form")})
    assert refused.status_code == 403 and b"<Code>AccessDenied</Code>" in refused.content
    s3.put_bucket_acl(Bucket=acl_bucket, ACL="public-read-write")
    taken = http.post(url, data={"key": "anon-form"}, files={"file": ("f", b"form")})
    assert taken.status_code == 204, taken.text
    listed = s3.list_objects(Bucket=acl_bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["anon-form"] and listed[0]["Owner"]["ID"] != _id(s3)


def test_unsigned_list_buckets_and_create_bucket_are_denied(anonymous):
    _denied(anonymous.list_buckets)
    _denied(anonymous.create_bucket, Bucket=unique_bucket_name("anon"))


# --- other signature kinds ---------------------------------------------------------------


def test_the_second_user_signs_presigned_urls_and_sigv2(alt, http, s3_endpoint, alt_bucket):
    alt.put_object(Bucket=alt_bucket, Key="k", Body=b"presigned")
    url = alt.generate_presigned_url("get_object", Params={"Bucket": alt_bucket, "Key": "k"},
                                     ExpiresIn=300)
    assert http.get(url).content == b"presigned"
    sigv2 = make_client(s3_endpoint, access_key=s3_endpoint.alt_access_key,
                        secret_key=s3_endpoint.alt_secret_key, signature_version="s3")
    try:
        assert sigv2.get_object(Bucket=alt_bucket, Key="k")["Body"].read() == b"presigned"
    finally:
        sigv2.close()


def test_the_second_user_posts_a_form_with_a_canned_acl(alt, anonymous, http, alt_bucket):
    key = f"form-{uuid.uuid4().hex[:8]}"
    post = alt.generate_presigned_post(alt_bucket, key, Fields={"acl": "public-read"},
                                       Conditions=[{"acl": "public-read"}], ExpiresIn=300)
    response = http.post(post["url"], data=post["fields"], files={"file": ("f", b"form")})
    assert response.status_code == 204, response.text
    assert anonymous.get_object(Bucket=alt_bucket, Key=key)["Body"].read() == b"form"


def test_create_bucket_with_a_canned_acl(s3, anonymous, s3_endpoint):
    name = unique_bucket_name("pub")
    _create(s3, s3_endpoint, name, ACL="public-read")
    try:
        s3.put_object(Bucket=name, Key="k", Body=b"x")
        assert [o["Key"] for o in anonymous.list_objects_v2(Bucket=name)["Contents"]] == ["k"]
        grants = s3.get_bucket_acl(Bucket=name)["Grants"]
        assert [g["Permission"] for g in grants] == ["FULL_CONTROL", "READ"]
    finally:
        empty_and_delete_bucket(s3, name)


def test_an_acl_without_grants_leaves_the_owner_its_acl_and_its_objects(s3, acl_bucket):
    """ceph/s3-tests' test_bucket_acl_no_grants: the owner keeps READ_ACP and WRITE_ACP
    (and its own private objects) but loses WRITE on the bucket."""
    s3.put_object(Bucket=acl_bucket, Key="foo", Body=b"bar")
    owner = s3.get_bucket_acl(Bucket=acl_bucket)["Owner"]
    s3.put_bucket_acl(Bucket=acl_bucket, AccessControlPolicy={"Owner": owner, "Grants": []})
    assert s3.get_object(Bucket=acl_bucket, Key="foo")["Body"].read() == b"bar"
    _denied(s3.put_object, Bucket=acl_bucket, Key="baz", Body=b"a")
    assert s3.get_bucket_acl(Bucket=acl_bucket)["Grants"] == []
    s3.put_bucket_acl(Bucket=acl_bucket, ACL="private")
    s3.put_object(Bucket=acl_bucket, Key="baz", Body=b"a")


@pytest.mark.parametrize(("permission", "may_list", "may_read_acl", "may_write_acl"), [
    ("READ", True, False, False),
    ("READ_ACP", False, True, False),
    ("WRITE_ACP", False, False, True),
    ("FULL_CONTROL", True, True, True),
])
def test_each_bucket_permission_grants_what_aws_maps_to_it(
        s3, alt, acl_bucket, permission, may_list, may_read_acl, may_write_acl):
    owner = s3.get_bucket_acl(Bucket=acl_bucket)["Owner"]
    grants = [{"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]},
               "Permission": "FULL_CONTROL"},
              {"Grantee": {"Type": "CanonicalUser", "ID": _id(alt)}, "Permission": permission}]
    policy = {"Owner": {"ID": owner["ID"]}, "Grants": grants}
    s3.put_bucket_acl(Bucket=acl_bucket, AccessControlPolicy=policy)
    checks = [
        (may_list, lambda: alt.list_objects_v2(Bucket=acl_bucket)),
        (may_read_acl, lambda: alt.get_bucket_acl(Bucket=acl_bucket)),
        (may_write_acl, lambda: alt.put_bucket_acl(Bucket=acl_bucket,
                                                   AccessControlPolicy=policy)),
    ]
    for allowed, call in checks:
        if allowed:
            call()
        else:
            _denied(call)
    # Whatever alt was granted, the bucket stays the main user's.
    assert s3.get_bucket_acl(Bucket=acl_bucket)["Owner"]["ID"] == owner["ID"]
