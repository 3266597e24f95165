"""CORS: Put/Get/DeleteBucketCors, preflight requests and CORS headers on responses.

References: the PutBucketCors / GetBucketCors / DeleteBucketCors API reference pages and
https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors.html (how S3 evaluates a
preflight against the rules). Browsers never sign a preflight, so it is sent unsigned.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    content_md5_header,
    error_code,
    http_status,
    parse_error_body,
    signed_request,
)

SITE = "http://www.example.com"
RULES = [
    {
        "ID": "site-writes",
        "AllowedOrigins": [SITE],
        "AllowedMethods": ["PUT", "POST", "DELETE"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag", "x-amz-request-id"],
        "MaxAgeSeconds": 3000,
    },
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]


def _preflight(http, s3_endpoint, bucket, origin=SITE, method="PUT", headers=None, key="k"):
    request_headers = {}
    if origin is not None:
        request_headers["Origin"] = origin
    if method is not None:
        request_headers["Access-Control-Request-Method"] = method
    if headers is not None:
        request_headers["Access-Control-Request-Headers"] = headers
    return http.options(f"{s3_endpoint.url}/{bucket}/{key}", headers=request_headers)


def test_put_get_delete_bucket_cors(s3, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rules[0] == RULES[0]
    assert rules[1]["AllowedOrigins"] == ["*"] and rules[1]["AllowedMethods"] == ["GET"]
    response = s3.delete_bucket_cors(Bucket=bucket)
    assert http_status(response) == 204
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_cors(Bucket=bucket)
    assert (error_code(caught.value), http_status(caught.value)) == (
        "NoSuchCORSConfiguration", 404)


def test_get_bucket_cors_without_configuration(s3, bucket):
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_cors(Bucket=bucket)
    assert (error_code(caught.value), http_status(caught.value)) == (
        "NoSuchCORSConfiguration", 404)


@pytest.mark.parametrize(
    "rule",
    [
        {"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]},
        {"AllowedOrigins": ["http://*.*.example.com"], "AllowedMethods": ["GET"]},
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["x-*-*"]},
    ],
    ids=["unsupported-method", "two-wildcards-origin", "two-wildcards-header"],
)
def test_invalid_cors_rules_are_rejected(s3, bucket, rule):
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})
    assert (error_code(caught.value), http_status(caught.value)) == ("InvalidRequest", 400)


def test_at_most_100_cors_rules(s3, bucket):
    rule = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule] * 100})
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule] * 101})
    assert http_status(caught.value) == 400


def test_put_bucket_cors_with_malformed_xml(http, s3_endpoint, bucket):
    body = b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"
    body += b"</CORSConfiguration>"
    response = signed_request(http, s3_endpoint, "PUT", f"/{bucket}", query="cors", body=body,
                              headers={"Content-MD5": content_md5_header(body)})
    assert response.status_code == 400
    assert parse_error_body(response.content)["Code"] == "MalformedXML"


def test_preflight_allowed_by_a_rule(s3, http, s3_endpoint, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    response = _preflight(http, s3_endpoint, bucket, headers="Content-Type, x-amz-meta-a")
    assert response.status_code == 200
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == SITE
    assert {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")} == {
        "PUT", "POST", "DELETE"}
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"content-type", "x-amz-meta-a"}
    assert headers["Access-Control-Max-Age"] == "3000"
    exposed = {h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"ETag", "x-amz-request-id"}
    assert "Origin" in headers["Vary"]


def test_preflight_for_the_bucket_and_any_subresource(s3, http, s3_endpoint, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    on_bucket = http.options(f"{s3_endpoint.url}/{bucket}",
                             headers={"Origin": "http://any.test",
                                      "Access-Control-Request-Method": "GET"})
    assert on_bucket.status_code == 200
    assert on_bucket.headers["Access-Control-Allow-Origin"] == "*"
    uploads = _preflight(http, s3_endpoint, bucket, method="POST", key="k?uploads")
    assert uploads.status_code == 200


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("http://evil.test", "PUT", None),  # origin not allowed for PUT
        (SITE, "HEAD", None),  # HEAD is in no rule
    ],
)
def test_preflight_not_allowed_is_403(s3, http, s3_endpoint, bucket, origin, method, headers):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    response = _preflight(http, s3_endpoint, bucket, origin=origin, method=method,
                          headers=headers)
    assert response.status_code == 403
    error = parse_error_body(response.content)
    assert error["Code"] == "CORSResponse"
    assert error["Message"].startswith("This CORS request is not allowed")


def test_preflight_with_headers_no_rule_allows(s3, http, s3_endpoint, bucket):
    rules = [{"AllowedOrigins": [SITE], "AllowedMethods": ["PUT"],
              "AllowedHeaders": ["x-amz-*"]}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    ok = _preflight(http, s3_endpoint, bucket, headers="x-amz-date")
    assert ok.status_code == 200
    refused = _preflight(http, s3_endpoint, bucket, headers="x-amz-date, authorization")
    assert refused.status_code == 403


def test_preflight_without_cors_configuration_is_403(http, s3_endpoint, bucket):
    response = _preflight(http, s3_endpoint, bucket)
    assert response.status_code == 403
    assert parse_error_body(response.content)["Code"] == "CORSResponse"


@pytest.mark.parametrize(("origin", "method"), [(None, "PUT"), (SITE, None)])
def test_preflight_missing_origin_or_method_is_400(s3, http, s3_endpoint, bucket, origin,
                                                   method):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    response = _preflight(http, s3_endpoint, bucket, origin=origin, method=method)
    assert response.status_code == 400


def test_a_rule_change_applies_at_once(s3, http, s3_endpoint, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    assert _preflight(http, s3_endpoint, bucket).status_code == 200
    only_get = [{"AllowedOrigins": [SITE], "AllowedMethods": ["GET"]}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": only_get})
    assert _preflight(http, s3_endpoint, bucket).status_code == 403
    assert _preflight(http, s3_endpoint, bucket, method="GET").status_code == 200
    s3.delete_bucket_cors(Bucket=bucket)
    assert _preflight(http, s3_endpoint, bucket, method="GET").status_code == 403


def test_cors_headers_on_an_authenticated_request(s3, http, s3_endpoint, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    get = signed_request(http, s3_endpoint, "GET", f"/{bucket}/k",
                         headers={"Origin": "http://any.test"})
    assert get.status_code == 200
    assert get.headers["Access-Control-Allow-Origin"] == "*"
    put = signed_request(http, s3_endpoint, "PUT", f"/{bucket}/k2", body=b"x",
                         headers={"Origin": SITE})
    assert put.status_code == 200
    assert put.headers["Access-Control-Allow-Origin"] == SITE
    assert "ETag" in put.headers["Access-Control-Expose-Headers"]
    # No matching rule (DELETE from another origin) and no Origin: no CORS headers.
    delete = signed_request(http, s3_endpoint, "DELETE", f"/{bucket}/k2",
                            headers={"Origin": "http://any.test"})
    assert delete.status_code == 204
    assert "Access-Control-Allow-Origin" not in delete.headers
    plain = signed_request(http, s3_endpoint, "GET", f"/{bucket}/k")
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_cors_headers_on_an_error_response(s3, http, s3_endpoint, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    missing = signed_request(http, s3_endpoint, "GET", f"/{bucket}/missing",
                             headers={"Origin": "http://any.test"})
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == "*"
