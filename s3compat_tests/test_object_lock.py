"""S3 Object Lock as AWS documents it, driven by boto3 against a live server.

Sources: the S3 API reference (CreateBucket's x-amz-bucket-object-lock-enabled,
PutObjectLockConfiguration, GetObjectLockConfiguration, PutObjectRetention,
GetObjectRetention, PutObjectLegalHold, GetObjectLegalHold, the x-amz-object-lock-*
headers of PutObject / CopyObject / CreateMultipartUpload / GetObject / HeadObject,
x-amz-bypass-governance-retention on DeleteObject / DeleteObjects / PutObjectRetention),
the user guide "Locking objects with Object Lock", and the behaviour the ceph s3-tests
check (test_object_lock_*). Where AWS and the ceph tests differ (a period of 0 days: AWS
answers InvalidArgument, ceph expects InvalidRetentionPeriod) these tests follow AWS.

Retention dates compare against the server's wall clock; the tests that need one to
pass use a few seconds.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    Endpoint,
    content_md5_header,
    error_code,
    http_status,
    parse_error_body,
    signed_request,
    unique_bucket_name,
)

FAR_FUTURE = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)
SHORT_RETENTION_SECONDS = 2
COMPLIANCE_WAIT_SECONDS_MAX = 10  # a teardown waits this long at most for a short retention


def _expect_error(call: Callable, status: int, code: str, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    assert http_status(caught.value) == status, caught.value.response
    assert error_code(caught.value) == code, caught.value.response
    return caught.value


def _soon(seconds: float = SHORT_RETENTION_SECONDS) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)


def _unlock_and_delete(s3, bucket: str) -> None:
    """Lift every legal hold, delete every version with the governance bypass, wait for
    short COMPLIANCE retentions; a bucket still held by a long one is left (as on AWS)."""
    deadline = time.monotonic() + COMPLIANCE_WAIT_SECONDS_MAX
    while True:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        entries = [e for page in pages for e in page.get("Versions", []) + page.get(
            "DeleteMarkers", [])]
        left = []
        for entry in entries:
            key, version_id = entry["Key"], entry["VersionId"]
            try:
                s3.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=version_id,
                                         LegalHold={"Status": "OFF"})
            except ClientError:
                pass  # a delete marker has no legal hold
            try:
                s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id,
                                 BypassGovernanceRetention=True)
            except ClientError as error:
                if error_code(error) != "AccessDenied":
                    raise
                left.append(key)
        if not left:
            s3.delete_bucket(Bucket=bucket)
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)


@pytest.fixture
def make_lock_bucket(s3, s3_endpoint: Endpoint) -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def make() -> str:
        name = unique_bucket_name("lock")
        kwargs = {} if s3_endpoint.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": s3_endpoint.region}}
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True, **kwargs)
        created.append(name)
        return name

    yield make
    for name in created:
        _unlock_and_delete(s3, name)


@pytest.fixture
def lock_bucket(make_lock_bucket) -> str:
    return make_lock_bucket()


def _configuration(mode: str = "GOVERNANCE", **period: int) -> dict:
    return {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": mode, **(period or {"Days": 1})}}}


# --- bucket configuration ----------------------------------------------------------------


def test_lock_bucket_is_versioned_and_cannot_be_suspended(s3, lock_bucket) -> None:
    assert s3.get_bucket_versioning(Bucket=lock_bucket)["Status"] == "Enabled"
    _expect_error(s3.put_bucket_versioning, 409, "InvalidBucketState", Bucket=lock_bucket,
                  VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=lock_bucket)["Status"] == "Enabled"
    configuration = s3.get_object_lock_configuration(Bucket=lock_bucket)
    assert configuration["ObjectLockConfiguration"] == {"ObjectLockEnabled": "Enabled"}


def test_put_get_lock_configuration(s3, lock_bucket) -> None:
    for configuration in (_configuration("GOVERNANCE", Days=1),
                          _configuration("COMPLIANCE", Years=1)):
        s3.put_object_lock_configuration(Bucket=lock_bucket,
                                         ObjectLockConfiguration=configuration)
        got = s3.get_object_lock_configuration(Bucket=lock_bucket)
        assert got["ObjectLockConfiguration"] == configuration
    # Without a Rule: Object Lock stays enabled, with no default retention.
    s3.put_object_lock_configuration(Bucket=lock_bucket,
                                     ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    got = s3.get_object_lock_configuration(Bucket=lock_bucket)
    assert got["ObjectLockConfiguration"] == {"ObjectLockEnabled": "Enabled"}


def test_lock_configuration_on_a_plain_bucket(s3, bucket) -> None:
    _expect_error(s3.get_object_lock_configuration, 404, "ObjectLockConfigurationNotFoundError",
                  Bucket=bucket)
    # Not versioned: 409, as AWS.
    _expect_error(s3.put_object_lock_configuration, 409, "InvalidBucketState", Bucket=bucket,
                  ObjectLockConfiguration=_configuration())


def test_lock_enabled_on_an_existing_versioned_bucket(s3, bucket) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="before", Body=b"x")
    s3.put_object_lock_configuration(Bucket=bucket,
                                     ObjectLockConfiguration=_configuration(Days=1))
    version_id = s3.put_object(Bucket=bucket, Key="after", Body=b"x")["VersionId"]
    head = s3.head_object(Bucket=bucket, Key="after")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    _expect_error(s3.put_bucket_versioning, 409, "InvalidBucketState", Bucket=bucket,
                  VersioningConfiguration={"Status": "Suspended"})
    # Clean up for the shared fixture: lift the default retention's lock.
    s3.delete_object(Bucket=bucket, Key="after", VersionId=version_id,
                     BypassGovernanceRetention=True)


@pytest.mark.parametrize(("configuration", "status", "code"), [
    (_configuration(Days=1, Years=1), 400, "MalformedXML"),
    (_configuration(Days=0), 400, "InvalidArgument"),
    (_configuration(Years=-1), 400, "InvalidArgument"),
    (_configuration(Days=36_501), 400, "InvalidArgument"),
    (_configuration(Years=101), 400, "InvalidArgument"),
    (_configuration("abc", Years=1), 400, "MalformedXML"),
    (_configuration("governance", Years=1), 400, "MalformedXML"),
    ({"ObjectLockEnabled": "Disabled", "Rule": {"DefaultRetention": {
        "Mode": "GOVERNANCE", "Years": 1}}}, 400, "MalformedXML"),
    ({"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {
        "Mode": "GOVERNANCE"}}}, 400, "MalformedXML"),
])
def test_invalid_lock_configurations(s3, lock_bucket, configuration, status, code) -> None:
    _expect_error(s3.put_object_lock_configuration, status, code, Bucket=lock_bucket,
                  ObjectLockConfiguration=configuration)


def test_lock_configuration_needs_integrity_data(http, s3_endpoint, lock_bucket) -> None:
    body = (b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
            b"</ObjectLockConfiguration>")
    response = signed_request(http, s3_endpoint, "PUT", f"/{lock_bucket}", query="object-lock",
                              body=body)
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidRequest"
    response = signed_request(http, s3_endpoint, "PUT", f"/{lock_bucket}", query="object-lock",
                              body=body, headers={"Content-MD5": content_md5_header(body)})
    assert response.status_code == 200, response.text


# --- retention and legal hold per version ------------------------------------------------


def test_retention_put_get_and_delete_with_bypass(s3, lock_bucket) -> None:
    version_id = s3.put_object(Bucket=lock_bucket, Key="k", Body=b"abc")["VersionId"]
    _expect_error(s3.get_object_retention, 404, "NoSuchObjectLockConfiguration",
                  Bucket=lock_bucket, Key="k")
    retention = {"Mode": "GOVERNANCE", "RetainUntilDate": FAR_FUTURE}
    s3.put_object_retention(Bucket=lock_bucket, Key="k", Retention=retention)
    assert s3.get_object_retention(Bucket=lock_bucket, Key="k")["Retention"] == retention
    head = s3.head_object(Bucket=lock_bucket, Key="k", VersionId=version_id)
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == (
        "GOVERNANCE", FAR_FUTURE)
    assert head["ResponseMetadata"]["HTTPHeaders"][
        "x-amz-object-lock-retain-until-date"] == "2099-01-01T00:00:00.000Z"
    _expect_error(s3.delete_object, 403, "AccessDenied", Bucket=lock_bucket, Key="k",
                  VersionId=version_id)
    # A delete without a version id only adds a delete marker: allowed.
    marker = s3.delete_object(Bucket=lock_bucket, Key="k")
    assert marker["DeleteMarker"] is True
    assert s3.get_object(Bucket=lock_bucket, Key="k", VersionId=version_id)["Body"].read() == b"abc"
    response = s3.delete_object(Bucket=lock_bucket, Key="k", VersionId=version_id,
                                BypassGovernanceRetention=True)
    assert http_status(response) == 204


def test_retention_by_version_id_and_overwrites(s3, lock_bucket) -> None:
    first = s3.put_object(Bucket=lock_bucket, Key="k", Body=b"1")["VersionId"]
    retention = {"Mode": "GOVERNANCE", "RetainUntilDate": FAR_FUTURE}
    s3.put_object_retention(Bucket=lock_bucket, Key="k", VersionId=first, Retention=retention)
    second = s3.put_object(Bucket=lock_bucket, Key="k", Body=b"2")["VersionId"]  # allowed
    assert second != first
    assert s3.get_object_retention(Bucket=lock_bucket, Key="k", VersionId=first)[
        "Retention"] == retention
    _expect_error(s3.get_object_retention, 404, "NoSuchObjectLockConfiguration",
                  Bucket=lock_bucket, Key="k")
    s3.delete_object(Bucket=lock_bucket, Key="k", VersionId=second)


def test_governance_can_be_extended_not_shortened_without_bypass(s3, lock_bucket) -> None:
    s3.put_object(Bucket=lock_bucket, Key="k", Body=b"x")
    later = datetime.datetime(2099, 1, 3, tzinfo=datetime.UTC)
    s3.put_object_retention(Bucket=lock_bucket, Key="k",
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": FAR_FUTURE})
    s3.put_object_retention(Bucket=lock_bucket, Key="k",
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later})
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": FAR_FUTURE}
    _expect_error(s3.put_object_retention, 403, "AccessDenied", Bucket=lock_bucket, Key="k",
                  Retention=shorter)
    # Changing the mode, even to the stricter COMPLIANCE, needs the bypass (ceph's tests).
    _expect_error(s3.put_object_retention, 403, "AccessDenied", Bucket=lock_bucket, Key="k",
                  Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    s3.put_object_retention(Bucket=lock_bucket, Key="k", Retention=shorter,
                            BypassGovernanceRetention=True)
    assert s3.get_object_retention(Bucket=lock_bucket, Key="k")["Retention"] == shorter


def test_compliance_cannot_be_shortened_weakened_or_bypassed(s3, lock_bucket) -> None:
    until = _soon()
    version_id = s3.put_object(Bucket=lock_bucket, Key="k", Body=b"x",
                               ObjectLockMode="COMPLIANCE",
                               ObjectLockRetainUntilDate=until)["VersionId"]
    for retention in ({"Mode": "GOVERNANCE", "RetainUntilDate": until + datetime.timedelta(
            days=1)}, {"Mode": "COMPLIANCE", "RetainUntilDate": until - datetime.timedelta(
            seconds=1)}):
        _expect_error(s3.put_object_retention, 403, "AccessDenied", Bucket=lock_bucket,
                      Key="k", Retention=retention, BypassGovernanceRetention=True)
    _expect_error(s3.delete_object, 403, "AccessDenied", Bucket=lock_bucket, Key="k",
                  VersionId=version_id, BypassGovernanceRetention=True)
    # Extending is allowed.
    extended = until + datetime.timedelta(seconds=1)
    s3.put_object_retention(Bucket=lock_bucket, Key="k",
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": extended})
    # Once the date has passed, the version can be removed.
    time.sleep(max(0.0, (extended - datetime.datetime.now(datetime.UTC)).total_seconds()) + 0.2)
    s3.delete_object(Bucket=lock_bucket, Key="k", VersionId=version_id)


def test_retention_in_the_past_is_refused(s3, lock_bucket) -> None:
    s3.put_object(Bucket=lock_bucket, Key="k", Body=b"x")
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    _expect_error(s3.put_object_retention, 400, "InvalidArgument", Bucket=lock_bucket,
                  Key="k", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": past})
    _expect_error(s3.put_object, 400, "InvalidArgument", Bucket=lock_bucket, Key="k2",
                  Body=b"x", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=past)


@pytest.mark.parametrize("mode", ["governance", "abc"])
def test_retention_with_invalid_mode(s3, lock_bucket, mode) -> None:
    s3.put_object(Bucket=lock_bucket, Key="k", Body=b"x")
    _expect_error(s3.put_object_retention, 400, "MalformedXML", Bucket=lock_bucket, Key="k",
                  Retention={"Mode": mode, "RetainUntilDate": FAR_FUTURE})


def test_legal_hold(s3, lock_bucket) -> None:
    version_id = s3.put_object(Bucket=lock_bucket, Key="k", Body=b"x")["VersionId"]
    assert s3.get_object_legal_hold(Bucket=lock_bucket, Key="k")["LegalHold"] == {
        "Status": "OFF"}
    s3.put_object_legal_hold(Bucket=lock_bucket, Key="k", LegalHold={"Status": "ON"})
    assert s3.get_object_legal_hold(Bucket=lock_bucket, Key="k")["LegalHold"] == {"Status": "ON"}
    assert s3.head_object(Bucket=lock_bucket, Key="k")["ObjectLockLegalHoldStatus"] == "ON"
    # A legal hold is not lifted by the governance bypass.
    _expect_error(s3.delete_object, 403, "AccessDenied", Bucket=lock_bucket, Key="k",
                  VersionId=version_id, BypassGovernanceRetention=True)
    _expect_error(s3.put_object_legal_hold, 400, "MalformedXML", Bucket=lock_bucket, Key="k",
                  LegalHold={"Status": "abc"})
    s3.put_object_legal_hold(Bucket=lock_bucket, Key="k", LegalHold={"Status": "OFF"})
    assert "ObjectLockLegalHoldStatus" not in s3.head_object(Bucket=lock_bucket, Key="k")
    assert http_status(s3.delete_object(Bucket=lock_bucket, Key="k",
                                        VersionId=version_id)) == 204


def test_lock_requests_on_a_bucket_without_lock(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    retention = {"Mode": "GOVERNANCE", "RetainUntilDate": FAR_FUTURE}
    calls = [
        (s3.put_object_retention, {"Retention": retention}),
        (s3.get_object_retention, {}),
        (s3.put_object_legal_hold, {"LegalHold": {"Status": "ON"}}),
        (s3.get_object_legal_hold, {}),
        (s3.put_object, {"Body": b"x", "ObjectLockMode": "GOVERNANCE",
                         "ObjectLockRetainUntilDate": FAR_FUTURE}),
        (s3.put_object, {"Body": b"x", "ObjectLockLegalHoldStatus": "ON"}),
        (s3.create_multipart_upload, {"ObjectLockLegalHoldStatus": "ON"}),
    ]
    for call, kwargs in calls:
        error = _expect_error(call, 400, "InvalidRequest", Bucket=bucket, Key="k", **kwargs)
        assert error.response["Error"]["Message"] == "Bucket is missing Object Lock Configuration"


# --- writes with lock headers, default retention -----------------------------------------


def test_put_object_with_lock_headers(s3, lock_bucket) -> None:
    s3.put_object(Bucket=lock_bucket, Key="k", Body=b"abc", ObjectLockMode="GOVERNANCE",
                  ObjectLockRetainUntilDate=FAR_FUTURE, ObjectLockLegalHoldStatus="ON")
    for response in (s3.head_object(Bucket=lock_bucket, Key="k"),
                     s3.get_object(Bucket=lock_bucket, Key="k")):
        assert response["ObjectLockMode"] == "GOVERNANCE"
        assert response["ObjectLockRetainUntilDate"] == FAR_FUTURE
        assert response["ObjectLockLegalHoldStatus"] == "ON"


@pytest.mark.parametrize("headers", [
    {"x-amz-object-lock-mode": "GOVERNANCE"},
    {"x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"},
    {"x-amz-object-lock-mode": "WORM", "x-amz-object-lock-retain-until-date":
        "2099-01-01T00:00:00Z"},
    {"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": "tomorrow"},
    {"x-amz-object-lock-legal-hold": "on"},
])
def test_put_object_with_bad_lock_headers(http, s3_endpoint, lock_bucket, headers) -> None:
    body = b"x"
    response = signed_request(http, s3_endpoint, "PUT", f"/{lock_bucket}/k", body=body,
                              headers={**headers, "Content-MD5": content_md5_header(body)})
    assert response.status_code == 400, response.text
    assert parse_error_body(response.content)["Code"] == "InvalidArgument"


def test_retention_upload_needs_integrity_data(http, s3_endpoint, lock_bucket) -> None:
    headers = {"x-amz-object-lock-mode": "GOVERNANCE",
               "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"}
    response = signed_request(http, s3_endpoint, "PUT", f"/{lock_bucket}/k", body=b"x",
                              headers=headers)
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidRequest"


def test_default_retention_applies_to_new_versions(s3, lock_bucket) -> None:
    s3.put_object_lock_configuration(Bucket=lock_bucket,
                                     ObjectLockConfiguration=_configuration("GOVERNANCE", Days=1))
    before = datetime.datetime.now(datetime.UTC)
    version_id = s3.put_object(Bucket=lock_bucket, Key="k", Body=b"x")["VersionId"]
    retention = s3.get_object_retention(Bucket=lock_bucket, Key="k")["Retention"]
    assert retention["Mode"] == "GOVERNANCE"
    expected = before + datetime.timedelta(days=1)
    assert abs((retention["RetainUntilDate"] - expected).total_seconds()) < 60
    _expect_error(s3.delete_object, 403, "AccessDenied", Bucket=lock_bucket, Key="k",
                  VersionId=version_id)
    # An explicit retention on the write wins over the default.
    s3.put_object(Bucket=lock_bucket, Key="k2", Body=b"x", ObjectLockMode="GOVERNANCE",
                  ObjectLockRetainUntilDate=FAR_FUTURE)
    assert s3.get_object_retention(Bucket=lock_bucket, Key="k2")["Retention"][
        "RetainUntilDate"] == FAR_FUTURE


def test_copy_and_multipart_take_lock_headers(s3, lock_bucket) -> None:
    s3.put_object(Bucket=lock_bucket, Key="source", Body=b"abc", ObjectLockLegalHoldStatus="ON")
    s3.copy_object(Bucket=lock_bucket, Key="copy", CopySource={"Bucket": lock_bucket,
                                                               "Key": "source"},
                   ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=FAR_FUTURE)
    head = s3.head_object(Bucket=lock_bucket, Key="copy")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert "ObjectLockLegalHoldStatus" not in head  # the source's hold is not copied
    upload = s3.create_multipart_upload(Bucket=lock_bucket, Key="mp",
                                        ObjectLockMode="COMPLIANCE",
                                        ObjectLockRetainUntilDate=_soon(),
                                        ObjectLockLegalHoldStatus="ON")
    part = s3.upload_part(Bucket=lock_bucket, Key="mp", UploadId=upload["UploadId"],
                          PartNumber=1, Body=b"part")
    s3.complete_multipart_upload(Bucket=lock_bucket, Key="mp", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": part["ETag"]}]})
    head = s3.head_object(Bucket=lock_bucket, Key="mp")
    assert (head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == ("COMPLIANCE", "ON")


def test_multi_delete_reports_locked_versions(s3, lock_bucket) -> None:
    locked = s3.put_object(Bucket=lock_bucket, Key="locked", Body=b"x")["VersionId"]
    free = s3.put_object(Bucket=lock_bucket, Key="free", Body=b"x")["VersionId"]
    s3.put_object_retention(Bucket=lock_bucket, Key="locked",
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": FAR_FUTURE})
    objects = [{"Key": "locked", "VersionId": locked}, {"Key": "free", "VersionId": free}]
    response = s3.delete_objects(Bucket=lock_bucket, Delete={"Objects": objects})
    assert [(d["Key"], d["VersionId"]) for d in response["Deleted"]] == [("free", free)]
    assert [(e["Key"], e["VersionId"], e["Code"]) for e in response["Errors"]] == [
        ("locked", locked, "AccessDenied")]
    response = s3.delete_objects(Bucket=lock_bucket, Delete={"Objects": objects[:1]},
                                 BypassGovernanceRetention=True)
    assert not response.get("Errors")
    assert [(d["Key"], d["VersionId"]) for d in response["Deleted"]] == [("locked", locked)]


def test_delete_marker_has_no_lock_state(s3, lock_bucket) -> None:
    s3.put_object(Bucket=lock_bucket, Key="k", Body=b"x")
    marker = s3.delete_object(Bucket=lock_bucket, Key="k")["VersionId"]
    _expect_error(s3.get_object_retention, 405, "MethodNotAllowed", Bucket=lock_bucket,
                  Key="k", VersionId=marker)
    # Removing a delete marker by id is always allowed.
    s3.delete_object(Bucket=lock_bucket, Key="k", VersionId=marker)


# --- bad input: 4xx with an XML body, never a 500 ----------------------------------------


_BAD_BODIES = [
    b"", b"not xml", b"<Retention>", b"<Wrong/>",
    b"<Retention><Mode>GOVERNANCE</Mode></Retention>",
    b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>soon</RetainUntilDate></Retention>",
    b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>99999-01-01T00:00:00Z"
    b"</RetainUntilDate></Retention>",
    b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2099-13-45T00:00:00Z"
    b"</RetainUntilDate></Retention>",
    b"<LegalHold><Status></Status></LegalHold>", b"<LegalHold/>",
    b"<ObjectLockConfiguration/>",
    b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule/>"
    b"</ObjectLockConfiguration>",
    b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
    b"<DefaultRetention><Mode>GOVERNANCE</Mode><Days>1.5</Days></DefaultRetention></Rule>"
    b"</ObjectLockConfiguration>",
    b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
    b"<DefaultRetention><Mode>GOVERNANCE</Mode><Days>99999999999999999999</Days>"
    b"</DefaultRetention></Rule></ObjectLockConfiguration>",
    b"<!DOCTYPE x [<!ENTITY a 'b'>]><Retention>&a;</Retention>",
]


@pytest.mark.parametrize("body", _BAD_BODIES)
def test_bad_lock_documents_are_4xx_xml(http, s3_endpoint, lock_bucket, s3, body) -> None:
    s3.put_object(Bucket=lock_bucket, Key="k", Body=b"x")
    targets = [(f"/{lock_bucket}", "object-lock"), (f"/{lock_bucket}/k", "retention"),
               (f"/{lock_bucket}/k", "legal-hold")]
    for path, query in targets:
        response = signed_request(http, s3_endpoint, "PUT", path, query=query, body=body,
                                  headers={"Content-MD5": content_md5_header(body)})
        assert 400 <= response.status_code < 500, (path, query, body, response.text)
        assert parse_error_body(response.content)["Code"]


def test_create_bucket_with_bad_lock_header(http, s3_endpoint) -> None:
    name = unique_bucket_name("badlock")
    response = signed_request(http, s3_endpoint, "PUT", f"/{name}",
                              headers={"x-amz-bucket-object-lock-enabled": "maybe"})
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "InvalidArgument"


def test_plain_bucket_delete_ignores_the_bypass_header(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="k", BypassGovernanceRetention=True)
    _expect_error(s3.head_object, 404, "404", Bucket=bucket, Key="k")
