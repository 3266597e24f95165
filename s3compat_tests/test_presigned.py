"""Presigned URLs (SigV4 query-string authentication), used through plain httpx.

Reference: https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3compat_tests.support import parse_error_body


def _replace_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_presigned_get(s3, http, bucket):
    s3.put_object(Bucket=bucket, Key="shared file.txt", Body=b"presigned content")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared file.txt"}, ExpiresIn=300
    )
    assert "X-Amz-Signature=" in url
    response = http.get(url)
    assert response.status_code == 200
    assert response.content == b"presigned content"


def test_presigned_get_with_response_overrides(s3, http, bucket):
    s3.put_object(Bucket=bucket, Key="f", Body=b"x")
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "f", "ResponseContentDisposition": "attachment"},
        ExpiresIn=300,
    )
    response = http.get(url)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == "attachment"


def test_presigned_put(s3, http, bucket):
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "uploaded"}, ExpiresIn=300
    )
    response = http.put(url, content=b"sent via presigned PUT")
    assert response.status_code == 200
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == (
        b"sent via presigned PUT"
    )


def test_presigned_head(s3, http, bucket):
    s3.put_object(Bucket=bucket, Key="h", Body=b"12345")
    url = s3.generate_presigned_url(
        "head_object", Params={"Bucket": bucket, "Key": "h"}, ExpiresIn=300
    )
    response = http.head(url)
    assert response.status_code == 200
    assert response.headers["content-length"] == "5"


def test_presigned_url_expired(s3, http, bucket):
    s3.put_object(Bucket=bucket, Key="soon-gone", Body=b"x")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "soon-gone"}, ExpiresIn=1
    )
    time.sleep(2.1)
    response = http.get(url)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/xml")
    assert parse_error_body(response.content)["Code"] == "AccessDenied"


def test_presigned_url_tampered_signature(s3, http, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300
    )
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = "0" if signature[-1] != "0" else "1"
    response = http.get(_replace_query(url, **{"X-Amz-Signature": signature[:-1] + flipped}))
    assert response.status_code == 403
    assert parse_error_body(response.content)["Code"] == "SignatureDoesNotMatch"


def test_presigned_url_for_other_key_does_not_match(s3, http, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "a"}, ExpiresIn=300
    )
    response = http.get(url.replace(f"/{bucket}/a?", f"/{bucket}/b?"))
    assert response.status_code == 403
    assert parse_error_body(response.content)["Code"] == "SignatureDoesNotMatch"


def test_presigned_url_longer_than_a_week_is_rejected(s3, http, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=604801
    )
    response = http.get(url)
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "AuthorizationQueryParametersError"


def _presigned_url(s3_endpoint, url: str, expires_seconds: int) -> str:
    """A SigV4 presigned GET URL with any lifetime. botocore's own signer is used, not
    generate_presigned_url: with awscrt installed that refuses a lifetime below 1."""
    credentials = Credentials(s3_endpoint.access_key, s3_endpoint.secret_key)
    request = AWSRequest(method="GET", url=url)
    S3SigV4QueryAuth(credentials, "s3", s3_endpoint.region, expires=expires_seconds).add_auth(
        request)
    return request.url


def test_presigned_url_with_a_zero_lifetime_has_expired(s3, s3_endpoint, http, bucket):
    """X-Amz-Expires=0 is a lifetime that is already over (403), not a malformed one."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    response = http.get(_presigned_url(s3_endpoint, f"{s3_endpoint.url}/{bucket}/k", 0))
    assert response.status_code == 403
    error = parse_error_body(response.content)
    assert (error["Code"], error["Message"]) == ("AccessDenied", "Request has expired")


def test_presigned_url_with_a_negative_lifetime_is_malformed(s3, s3_endpoint, http, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    response = http.get(_presigned_url(s3_endpoint, f"{s3_endpoint.url}/{bucket}/k", -7))
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "AuthorizationQueryParametersError"
