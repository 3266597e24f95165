"""Authentication failures: each has its own documented error code.

Reference: https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
"""

from __future__ import annotations

import datetime
from dataclasses import replace

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    error_code,
    http_status,
    make_client,
    parse_error_body,
    sign_headers,
    signed_request,
)


@pytest.fixture
def client_factory(s3_endpoint):
    clients = []

    def make(**options):
        client = make_client(s3_endpoint, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_wrong_secret_is_signature_does_not_match(client_factory, s3_endpoint, bucket):
    wrong = client_factory(secret_key=s3_endpoint.secret_key + "x")
    with pytest.raises(ClientError) as caught:
        wrong.list_objects_v2(Bucket=bucket)
    assert http_status(caught.value) == 403
    assert error_code(caught.value) == "SignatureDoesNotMatch"


def test_unknown_access_key_is_invalid_access_key_id(client_factory, bucket):
    stranger = client_factory(access_key="AKIANOSUCHKEY0000000", secret_key="whatever-secret")
    with pytest.raises(ClientError) as caught:
        stranger.list_buckets()
    assert http_status(caught.value) == 403
    assert error_code(caught.value) == "InvalidAccessKeyId"


@pytest.mark.parametrize(
    ("method", "path_template"),
    [
        ("GET", "/{bucket}/private"),
        ("GET", "/{bucket}"),
        ("PUT", "/{bucket}/anon"),
        ("DELETE", "/{bucket}/private"),
    ],
    ids=["get_object", "list_objects", "put_object", "delete_object"],
)
def test_anonymous_request_is_access_denied(s3, http, s3_endpoint, bucket, method, path_template):
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    response = http.request(
        method, s3_endpoint.url + path_template.format(bucket=bucket), content=b""
    )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/xml")
    error = parse_error_body(response.content)
    assert error["Code"] == "AccessDenied"
    assert error["Message"]
    assert error["RequestId"]
    assert s3.get_object(Bucket=bucket, Key="private")["Body"].read() == b"secret"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_anonymous_request_to_a_missing_bucket_is_no_such_bucket(s3_endpoint, http, bucket,
                                                                  method):
    """AWS answers an unsigned request for a bucket that does not exist NoSuchBucket: no
    bucket, so nothing could have granted access."""
    response = http.request(method, f"{s3_endpoint.url}/{bucket}-gone/k")
    assert response.status_code == 404
    assert parse_error_body(response.content)["Code"] == "NoSuchBucket"


def test_sigv2_date_before_the_epoch_is_access_denied(s3_endpoint, http, bucket):
    """A Date before 1970 is refused as an unreadable one is (AccessDenied), where a date
    merely far from now is RequestTimeTooSkewed."""
    url = f"{s3_endpoint.url}/{bucket}/k"
    for date, code in (("Tue, 07 Jul 1950 21:53:04 GMT", "AccessDenied"),
                       ("Tue, 07 Jul 2010 21:53:04 GMT", "RequestTimeTooSkewed")):
        request = AWSRequest(method="PUT", url=url, data=b"bar", headers={"x-amz-date": date})
        botocore.auth.HmacV1Auth(
            Credentials(s3_endpoint.access_key, s3_endpoint.secret_key)).add_auth(request)
        response = http.put(url, content=b"bar", headers=dict(request.headers.items()))
        assert response.status_code == 403
        assert parse_error_body(response.content)["Code"] == code


def test_request_time_too_skewed(s3_endpoint, http, bucket, monkeypatch):
    """AWS rejects a signature whose x-amz-date is more than 15 minutes off."""
    an_hour_ago = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
        hours=1
    )
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: an_hour_ago)
    response = signed_request(http, s3_endpoint, "GET", f"/{bucket}", query="list-type=2")
    assert response.status_code == 403
    assert parse_error_body(response.content)["Code"] == "RequestTimeTooSkewed"


def test_content_sha256_mismatch(s3_endpoint, http, bucket):
    url = f"{s3_endpoint.url}/{bucket}/k"
    headers = sign_headers(s3_endpoint, "PUT", url, body=b"signed body")
    response = http.put(url, headers=headers, content=b"other body!")  # same length
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "XAmzContentSHA256Mismatch"


def test_wrong_region_in_credential_scope(s3_endpoint, http, bucket):
    """A SigV4 scope naming another region: AuthorizationHeaderMalformed (400)."""
    other_region = "eu-west-1" if s3_endpoint.region != "eu-west-1" else "us-west-2"
    elsewhere = replace(s3_endpoint, region=other_region)
    response = signed_request(http, elsewhere, "GET", f"/{bucket}", query="list-type=2")
    assert response.status_code == 400
    error = parse_error_body(response.content)
    assert error["Code"] == "AuthorizationHeaderMalformed"
    assert error.get("Region") == s3_endpoint.region


def test_other_user_cannot_read_private_object(s3, alt, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    with pytest.raises(ClientError) as caught:
        alt.get_object(Bucket=bucket, Key="private")
    assert http_status(caught.value) == 403
    assert error_code(caught.value) == "AccessDenied"


def test_bucket_name_taken_by_other_user(s3_endpoint, alt, bucket):
    """BucketAlreadyExists (409): the name belongs to someone else, in every region."""
    with pytest.raises(ClientError) as caught:
        if s3_endpoint.region == "us-east-1":
            alt.create_bucket(Bucket=bucket)
        else:
            alt.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": s3_endpoint.region},
            )
    assert http_status(caught.value) == 409
    assert error_code(caught.value) == "BucketAlreadyExists"
