"""POST Object: browser-based uploads with an HTML form (presigned posts), sent by httpx.

References: https://docs.aws.amazon.com/AmazonS3/latest/API/RESTObjectPOST.html,
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html and
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-post-example.html. The SigV2 form
follows the legacy "Browser-Based Uploads Using POST" guide (HMAC-SHA1 of the policy).

Peers (2026-11-28): Ceph RGW 16.2.15 passes 10 of 13; it sends no ETag header with a 204,
writes the PostResponse ETag without its quotes (AWS quotes it, as everywhere), and
answers a wrong SigV4 form signature AccessDenied instead of SignatureDoesNotMatch.
moto checks neither policies nor signatures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from s3compat_tests.support import parse_error_body


def _post(http, url: str, fields: dict[str, str], file: tuple[str, bytes] = ("f.txt", b"data")):
    """Fields first, then the file, as a browser sends the form."""
    return http.post(url, data=fields, files={"file": file})


def _url(s3_endpoint, bucket: str) -> str:
    return f"{s3_endpoint.url}/{bucket}"


def _sigv2_form(s3_endpoint, bucket: str, key: str, conditions: list,
                expires: timedelta = timedelta(minutes=10)) -> dict[str, str]:
    expiration = (datetime.now(UTC) + expires).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    document = {"expiration": expiration, "conditions": [{"bucket": bucket}, *conditions]}
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    digest = hmac.new(s3_endpoint.secret_key.encode(), policy.encode(), hashlib.sha1).digest()
    return {"key": key, "AWSAccessKeyId": s3_endpoint.access_key, "policy": policy,
            "signature": base64.b64encode(digest).decode()}


def test_presigned_post_with_filename_metadata_and_content_type(s3, http, bucket):
    fields = {"Content-Type": "text/plain", "x-amz-meta-origin": "form"}
    post = s3.generate_presigned_post(bucket, "uploads/${filename}", Fields=fields,
                                      Conditions=[{"Content-Type": "text/plain"},
                                                  ["starts-with", "$x-amz-meta-origin", ""]],
                                      ExpiresIn=600)
    assert "x-amz-signature" in post["fields"]  # the suite's client signs SigV4
    response = _post(http, post["url"], post["fields"], ("report.txt", b"posted"))
    assert (response.status_code, response.content) == (204, b"")
    etag = '"' + hashlib.md5(b"posted").hexdigest() + '"'
    assert response.headers["etag"] == etag
    stored = s3.get_object(Bucket=bucket, Key="uploads/report.txt")
    assert stored["Body"].read() == b"posted"
    assert stored["ContentType"] == "text/plain"
    assert stored["Metadata"] == {"origin": "form"}


def test_success_action_status_201_answers_a_post_response(s3, http, bucket):
    post = s3.generate_presigned_post(bucket, "k201", Fields={"success_action_status": "201"},
                                      Conditions=[{"success_action_status": "201"}])
    response = _post(http, post["url"], post["fields"], ("x", b"abc"))
    assert response.status_code == 201
    document = ET.fromstring(response.content)
    assert document.tag.rsplit("}", 1)[-1] == "PostResponse"
    values = {child.tag.rsplit("}", 1)[-1]: child.text for child in document}
    assert values["Bucket"] == bucket and values["Key"] == "k201"
    assert values["ETag"] == '"' + hashlib.md5(b"abc").hexdigest() + '"'
    assert values["Location"].endswith("/k201")


def test_success_action_redirect_is_a_303_with_bucket_key_and_etag(s3, http, bucket):
    redirect = "https://app.example/uploaded"
    post = s3.generate_presigned_post(bucket, "redirected",
                                      Fields={"success_action_redirect": redirect},
                                      Conditions=[{"success_action_redirect": redirect}])
    response = _post(http, post["url"], post["fields"], ("x", b"r"))
    assert response.status_code == 303
    etag = hashlib.md5(b"r").hexdigest()
    assert response.headers["location"] == (
        f"{redirect}?bucket={bucket}&key=redirected&etag=%22{etag}%22")


def test_sigv2_form(s3, s3_endpoint, http, bucket):
    form = _sigv2_form(s3_endpoint, bucket, "v2", [{"key": "v2"}])
    response = _post(http, _url(s3_endpoint, bucket), form, ("x", b"v2 body"))
    assert response.status_code == 204
    assert s3.get_object(Bucket=bucket, Key="v2")["Body"].read() == b"v2 body"


def test_tagging_field(s3, http, bucket):
    tagging = "<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"
    post = s3.generate_presigned_post(bucket, "tagged", Fields={"tagging": tagging},
                                      Conditions=[{"tagging": tagging}])
    assert _post(http, post["url"], post["fields"]).status_code == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == [
        {"Key": "k", "Value": "v"}]


def test_a_file_of_several_mib(s3, http, bucket):
    data = os.urandom(3 * 1024 * 1024 + 1)
    post = s3.generate_presigned_post(bucket, "big",
                                      Conditions=[["content-length-range", 1, 4 * 1024 * 1024]])
    response = _post(http, post["url"], post["fields"], ("big", data))
    assert response.status_code == 204
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data


def _error(response) -> dict[str, str]:
    assert response.headers["content-type"].startswith("application/xml")
    return parse_error_body(response.content)


def test_file_larger_than_content_length_range_is_entity_too_large(s3, http, bucket):
    post = s3.generate_presigned_post(bucket, "k", Conditions=[["content-length-range", 0, 3]])
    response = _post(http, post["url"], post["fields"], ("x", b"four"))
    assert response.status_code == 400
    assert _error(response)["Code"] == "EntityTooLarge"


def test_expired_policy_is_access_denied(s3, s3_endpoint, http, bucket):
    form = _sigv2_form(s3_endpoint, bucket, "k", [{"key": "k"}], expires=timedelta(minutes=-5))
    response = _post(http, _url(s3_endpoint, bucket), form)
    assert response.status_code == 403
    assert _error(response)["Code"] == "AccessDenied"


def test_a_field_no_condition_names_is_access_denied(s3, http, bucket):
    post = s3.generate_presigned_post(bucket, "k")
    response = _post(http, post["url"], {**post["fields"], "x-amz-meta-extra": "1"})
    assert response.status_code == 403
    assert _error(response)["Code"] == "AccessDenied"


def test_a_condition_that_fails_is_access_denied(s3, http, bucket):
    post = s3.generate_presigned_post(bucket, "user/${filename}")  # starts-with $key user/
    response = _post(http, post["url"], {**post["fields"], "key": "other/x"})
    assert response.status_code == 403
    assert _error(response)["Code"] == "AccessDenied"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_wrong_signature(s3, http, bucket):
    post = s3.generate_presigned_post(bucket, "k")
    fields = {**post["fields"], "x-amz-signature": "0" * 64}
    response = _post(http, post["url"], fields)
    assert response.status_code == 403
    assert _error(response)["Code"] == "SignatureDoesNotMatch"


def test_anonymous_post_to_a_private_bucket_is_access_denied(s3_endpoint, http, bucket):
    response = _post(http, _url(s3_endpoint, bucket), {"key": "anonymous"})
    assert response.status_code == 403
    assert _error(response)["Code"] == "AccessDenied"


def test_missing_key_is_invalid_argument(s3, http, bucket):
    post = s3.generate_presigned_post(bucket, "k")
    fields = {name: value for name, value in post["fields"].items() if name != "key"}
    response = _post(http, post["url"], fields)
    assert response.status_code == 400
    assert _error(response)["Code"] == "InvalidArgument"
