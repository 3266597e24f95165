"""ACLs: the three request forms, what is stored and rendered, and the permission table.

Pure: no server. The enforcement end to end (two real users, anonymous requests) is in
s3compat_tests/test_users_acl.py.
"""

from __future__ import annotations

import pytest

from gateway import authz
from gateway.app import HANDLERS
from gateway.errors import S3Error
from gateway.router import METRICS_OPERATION, ROUTES
from gateway.s3.acl import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    CANONICAL_USER,
    FULL_CONTROL,
    GROUP,
    PERMISSIONS,
    READ,
    READ_ACP,
    WRITE,
    AccessControlList,
    Grant,
    acl_from_headers,
    acl_from_policy,
    canned_acl,
    document_for,
    ownership_enforced,
    private_acl,
    render_acl,
    stored_acl,
)
from gateway.s3.common import Owner
from gateway.xml import render
from storage import api

OWNER_ID = "a" * 64
OTHER_ID = "b" * 64
OWNERS = {OWNER_ID: Owner(OWNER_ID, "owner"), OTHER_ID: Owner(OTHER_ID, "other")}


def _known(canonical_id: str) -> bool:
    return canonical_id in OWNERS


def _owner_by_id(canonical_id: str) -> Owner:
    return OWNERS[canonical_id]


@pytest.mark.parametrize(("name", "extra"), [
    ("private", ()),
    ("public-read", ((GROUP, ALL_USERS, READ),)),
    ("public-read-write", ((GROUP, ALL_USERS, READ), (GROUP, ALL_USERS, WRITE))),
    ("authenticated-read", ((GROUP, AUTHENTICATED_USERS, READ),)),
    ("bucket-owner-read", ((CANONICAL_USER, OTHER_ID, READ),)),
    ("bucket-owner-full-control", ((CANONICAL_USER, OTHER_ID, FULL_CONTROL),)),
])
def test_canned_acls_grant_what_aws_documents(name: str, extra: tuple) -> None:
    acl = canned_acl(name, OWNER_ID, bucket_owner_id=OTHER_ID)
    assert acl.owner_id == OWNER_ID
    assert acl.grants == (Grant(CANONICAL_USER, OWNER_ID, FULL_CONTROL),
                          *(Grant(*grant) for grant in extra))


def test_bucket_owner_canned_acls_add_nothing_when_the_writer_owns_the_bucket() -> None:
    assert canned_acl("bucket-owner-full-control", OWNER_ID, OWNER_ID) == private_acl(OWNER_ID)


def test_an_unknown_canned_acl_is_invalid_argument() -> None:
    with pytest.raises(S3Error) as caught:
        canned_acl("public-everything", OWNER_ID, OWNER_ID)
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)


def test_grant_headers_are_exactly_the_acl() -> None:
    headers = {
        "x-amz-grant-read": f'id="{OTHER_ID}", uri="{ALL_USERS}"',
        "x-amz-grant-full-control": f"id={OWNER_ID}",
    }
    acl = acl_from_headers(headers, OWNER_ID, OWNER_ID, _known)
    assert acl == AccessControlList(OWNER_ID, (
        Grant(CANONICAL_USER, OTHER_ID, READ), Grant(GROUP, ALL_USERS, READ),
        Grant(CANONICAL_USER, OWNER_ID, FULL_CONTROL)))


@pytest.mark.parametrize(("headers", "code", "status"), [
    ({"x-amz-grant-read": 'id="nobody"'}, "InvalidArgument", 400),
    ({"x-amz-grant-read": 'uri="http://example.com/group"'}, "InvalidArgument", 400),
    ({"x-amz-grant-read": "id"}, "InvalidArgument", 400),
    ({"x-amz-grant-read": 'emailAddress="a@example.com"'}, "NotImplemented", 501),
    ({"x-amz-acl": "private", "x-amz-grant-read": f'id="{OTHER_ID}"'}, "InvalidRequest", 400),
    ({"x-amz-grant-read": ", ".join(f'uri="{ALL_USERS}"'
                                    for _ in range(api.limits.acl_grants_max + 1))},
     "MalformedACLError", 400),
])
def test_bad_grant_headers_are_clear_4xx(headers: dict[str, str], code: str, status: int) -> None:
    with pytest.raises(S3Error) as caught:
        acl_from_headers(headers, OWNER_ID, OWNER_ID, _known)
    assert (caught.value.code, caught.value.status) == (code, status)


def test_no_acl_headers_is_none() -> None:
    assert acl_from_headers({"content-type": "x"}, OWNER_ID, OWNER_ID, _known) is None


def test_a_policy_body_round_trips_through_rendering() -> None:
    acl = AccessControlList(OWNER_ID, (Grant(CANONICAL_USER, OTHER_ID, READ_ACP),
                                       Grant(GROUP, AUTHENTICATED_USERS, WRITE)))
    rendered = render_acl(acl, _owner_by_id)
    assert acl_from_policy(rendered, OWNER_ID, _known) == acl
    assert b"<DisplayName>other</DisplayName>" in rendered


def test_a_policy_may_not_change_the_owner() -> None:
    rendered = render_acl(private_acl(OTHER_ID), _owner_by_id)
    with pytest.raises(S3Error) as caught:
        acl_from_policy(rendered, OWNER_ID, _known)
    assert (caught.value.code, caught.value.status) == ("AccessDenied", 403)


@pytest.mark.parametrize("body", [
    b"<AccessControlPolicy/>",
    b"<NotAPolicy/>",
    b"<AccessControlPolicy><AccessControlList><Grant><Permission>READ</Permission>"
    b"</Grant></AccessControlList></AccessControlPolicy>",
    b'<AccessControlPolicy><AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/'
    b'2001/XMLSchema-instance" xsi:type="Group"><URI>' + ALL_USERS.encode() + b"</URI>"
    b"</Grantee><Permission>EVERYTHING</Permission></Grant></AccessControlList>"
    b"</AccessControlPolicy>",
])
def test_malformed_policies_are_malformed_acl_errors(body: bytes) -> None:
    with pytest.raises(S3Error) as caught:
        acl_from_policy(body, OWNER_ID, _known)
    assert (caught.value.code, caught.value.status) == ("MalformedACLError", 400)


def test_the_default_acl_is_stored_as_nothing_and_read_back_as_private() -> None:
    assert document_for(private_acl(OWNER_ID)) is None
    assert stored_acl(None, OWNER_ID) == private_acl(OWNER_ID)
    public = canned_acl("public-read", OWNER_ID, OWNER_ID)
    document = document_for(public)
    assert document is not None and stored_acl(document, OWNER_ID) == public


def test_grantee_matching() -> None:
    acl = AccessControlList(OWNER_ID, (
        Grant(CANONICAL_USER, OWNER_ID, FULL_CONTROL), Grant(CANONICAL_USER, OTHER_ID, READ),
        Grant(GROUP, AUTHENTICATED_USERS, READ_ACP), Grant(GROUP, ALL_USERS, WRITE)))
    assert acl.permissions_of(OWNER_ID) == frozenset(PERMISSIONS)
    assert acl.permissions_of(OTHER_ID) == {READ, READ_ACP, WRITE}
    assert acl.permissions_of("c" * 64) == {READ_ACP, WRITE}
    assert acl.permissions_of(None) == {WRITE}  # anonymous: AllUsers only


def test_every_routed_operation_has_a_permission() -> None:
    """An operation without a row would be refused to everyone: the table must cover
    the router, and name nothing the router does not."""
    routed = {route.operation for route in ROUTES} | {"ListObjectsV2", "SquallAdmin",
                                                       METRICS_OPERATION}
    routed.discard("PreflightCors")  # answered before authentication
    assert routed == set(authz.REQUIREMENTS)
    assert set(HANDLERS) <= set(authz.REQUIREMENTS)


@pytest.mark.parametrize(("operation", "resource", "permission"), [
    ("ListObjects", authz.BUCKET, READ),
    ("ListObjectVersions", authz.BUCKET, READ),
    ("PutObject", authz.BUCKET, WRITE),
    ("DeleteObject", authz.BUCKET, WRITE),
    ("CopyObject", authz.BUCKET, WRITE),
    ("GetObject", authz.OBJECT, READ),
    ("HeadObject", authz.OBJECT, READ),
    ("GetBucketAcl", authz.BUCKET, READ_ACP),
    ("PutObjectAcl", authz.OBJECT, "WRITE_ACP"),
    ("PutBucketPolicy", authz.BUCKET, authz.OWNER),
    ("DeleteBucket", authz.BUCKET, authz.OWNER),
    ("ListBuckets", authz.SERVICE, authz.SIGNED),
    ("SquallAdmin", authz.SERVICE, authz.ADMIN),
])
def test_aws_permission_mapping(operation: str, resource: str, permission: str) -> None:
    requirement = authz.REQUIREMENTS[operation]
    assert (requirement.resource, requirement.permission) == (resource, permission)


@pytest.mark.parametrize(("mode", "enforced"), [
    ("BucketOwnerEnforced", True), ("BucketOwnerPreferred", False), ("ObjectWriter", False)])
def test_object_ownership_documents_as_their_handlers_store_them(mode: str, enforced: bool) -> None:
    """The stored document is the OwnershipControls XML (with the S3 namespace)."""
    document = render("OwnershipControls", [("Rule", [("ObjectOwnership", mode)])])
    assert ownership_enforced(document) is enforced
    assert ownership_enforced(None) is False
