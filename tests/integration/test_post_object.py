"""POST Object through a real ``squall serve``: boto3's presigned posts (SigV4 and SigV2)
and hand-signed policies sent as real multipart forms by httpx, the answers AWS documents,
CORS, versioning, a pre-commit function judging a POST and its notification event."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.integration.test_gateway_fuzz as fuzz
import tests.integration.test_notifications as notifications
from squall.launcher import ServerProcess
from tests.integration import triggers_support as support

REGION = "us-east-1"
WEBHOOK_ID = "hooks"
TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="module")
def webhook() -> Iterator[notifications.Webhook]:
    hook = notifications.Webhook().start()
    yield hook
    hook.stop()


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory,
            webhook: notifications.Webhook) -> Iterator[ServerProcess]:
    yield from support.server(tmp_path_factory, "--webhook", f"{WEBHOOK_ID}={webhook.url}")


@pytest.fixture(scope="module")
def s3(process: ServerProcess) -> Any:
    return support.s3_client(process.url, retries=1)


@pytest.fixture(scope="module")
def s3v4(process: ServerProcess) -> Any:
    """A client whose generate_presigned_post makes SigV4 forms (boto3's default: SigV2)."""
    return boto3.client("s3", endpoint_url=process.url, region_name=REGION,
                        aws_access_key_id=support.ACCESS_KEY,
                        aws_secret_access_key=support.SECRET_KEY,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


_numbers = itertools.count()


@pytest.fixture
def bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.replace("_", "-").lower())[:40]
    name = f"p-{base}-{next(_numbers)}"
    s3.create_bucket(Bucket=name)
    return name


def post(url: str, fields: dict[str, str], file: tuple[str, bytes] = ("f.txt", b"hello"),
         **options: Any) -> httpx.Response:
    """The form as a browser sends it: the fields, then the file."""
    return httpx.post(url, data=fields, files={"file": file}, timeout=TIMEOUT_SECONDS,
                      **options)


def error_code(response: httpx.Response) -> str:
    return ET.fromstring(response.content).findtext("Code") or ""


def sigv4_form(bucket: str, key: str, conditions: list[Any], *, fields: dict[str, str] | None = None,
               expires: timedelta = timedelta(hours=1), access_key: str = support.ACCESS_KEY,
               secret_key: str = support.SECRET_KEY, raw_policy: bytes | None = None,
               ) -> dict[str, str]:
    """A form signed by hand as AWS's "Creating a POST policy" describes (no boto3);
    ``raw_policy`` replaces the policy document (signed all the same)."""
    now = datetime.now(UTC)
    date, amz_date = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
    credential = f"{access_key}/{date}/{REGION}/s3/aws4_request"
    auth = {"x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-credential": credential,
            "x-amz-date": amz_date}
    document = {
        "expiration": (now + expires).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [{"bucket": bucket}, *conditions, *({n: v} for n, v in auth.items())],
    }
    policy = base64.b64encode(raw_policy or json.dumps(document).encode()).decode()
    signing_key = ("AWS4" + secret_key).encode()
    for part in (date, REGION, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, policy.encode(), hashlib.sha256).hexdigest()
    return {"key": key, **(fields or {}), **auth, "policy": policy, "x-amz-signature": signature}


# --- success -------------------------------------------------------------------------------


def test_presigned_post_stores_the_file_with_its_fields(s3: Any, s3v4: Any, bucket: str) -> None:
    tagging = ("<Tagging><TagSet><Tag><Key>team</Key><Value>blue</Value></Tag></TagSet>"
               "</Tagging>")
    fields = {"Content-Type": "text/plain", "Cache-Control": "max-age=60",
              "x-amz-meta-owner": "ana", "tagging": tagging, "x-amz-storage-class": "STANDARD_IA",
              "success_action_status": "201", "acl": "private"}
    presigned = s3v4.generate_presigned_post(
        bucket, "uploads/${filename}", Fields=fields,
        Conditions=[{name: value} for name, value in fields.items()])
    response = post(presigned["url"], presigned["fields"], ("photo 1.txt", b"hello post"))
    assert response.status_code == 201, response.text
    etag = '"' + hashlib.md5(b"hello post").hexdigest() + '"'
    document = ET.fromstring(response.content)
    assert document.tag == "PostResponse"
    assert (document.findtext("Bucket"), document.findtext("Key"),
            document.findtext("ETag")) == (bucket, "uploads/photo 1.txt", etag)
    location = f"{presigned['url']}/uploads%2Fphoto%201.txt"  # as AWS writes it
    assert document.findtext("Location") == location
    assert response.headers["ETag"] == etag and response.headers["Location"] == location
    stored = s3.get_object(Bucket=bucket, Key="uploads/photo 1.txt")
    assert stored["Body"].read() == b"hello post"
    assert (stored["ContentType"], stored["CacheControl"]) == ("text/plain", "max-age=60")
    assert stored["Metadata"] == {"owner": "ana"}
    assert s3.get_object_tagging(Bucket=bucket, Key="uploads/photo 1.txt")["TagSet"] == [
        {"Key": "team", "Value": "blue"}]
    [listed] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert listed["StorageClass"] == "STANDARD_IA"


def test_sigv2_form_and_the_default_answer(s3: Any, bucket: str) -> None:
    presigned = s3.generate_presigned_post(bucket, "v2.txt")  # boto3's default: SigV2
    assert "signature" in presigned["fields"]
    response = post(presigned["url"], presigned["fields"], ("a", b"two"))
    assert (response.status_code, response.content) == (204, b"")
    assert s3.get_object(Bucket=bucket, Key="v2.txt")["Body"].read() == b"two"
    assert s3.head_object(Bucket=bucket, Key="v2.txt")["ContentType"] == "binary/octet-stream"


def test_redirect_and_status_200(s3: Any, bucket: str) -> None:
    redirect = "https://app.example/done?from=form"
    form = sigv4_form(bucket, "r k", [{"key": "r k"}, {"success_action_redirect": redirect}],
                      fields={"success_action_redirect": redirect})
    response = post(f"{s3.meta.endpoint_url}/{bucket}", form, ("x", b"r"))
    etag = hashlib.md5(b"r").hexdigest()
    assert response.status_code == 303
    assert response.headers["Location"] == (
        f"{redirect}&bucket={bucket}&key=r%20k&etag=%22{etag}%22")
    form = sigv4_form(bucket, "ok", [{"key": "ok"}, ["starts-with", "$success_action_status", ""]],
                      fields={"success_action_status": "200"})
    response = post(f"{s3.meta.endpoint_url}/{bucket}", form)
    assert (response.status_code, response.content) == (200, b"")
    form = sigv4_form(bucket, "odd", [{"key": "odd"}, {"success_action_status": "404"}],
                      fields={"success_action_status": "404"})
    assert post(f"{s3.meta.endpoint_url}/{bucket}", form).status_code == 204  # AWS: default
    assert sorted(support.keys(s3, bucket)) == ["odd", "ok", "r k"]


def test_a_multi_mib_file_streams_in_and_fields_after_it_are_ignored(s3: Any, bucket: str) -> None:
    data = os.urandom(24 * 1024 * 1024 + 3)
    form = sigv4_form(bucket, "big.bin", [{"key": "big.bin"},
                                          ["content-length-range", 1, 32 * 1024 * 1024]])
    url = f"{s3.meta.endpoint_url}/{bucket}"
    # httpx puts the files after the data fields; a field after the file is added by hand.
    request = httpx.Request("POST", url, data=form, files={"file": ("big.bin", data)})
    body = request.read()
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    late = (b'--' + boundary + b'\r\nContent-Disposition: form-data; name="x-amz-meta-late"'
            b'\r\n\r\nignored\r\n--' + boundary + b'--\r\n')
    body = body.removesuffix(b"--" + boundary + b"--\r\n") + late
    response = httpx.post(url, content=body, timeout=TIMEOUT_SECONDS,
                          headers={"content-type": request.headers["content-type"]})
    assert response.status_code == 204, response.text
    assert response.headers["ETag"] == '"' + hashlib.md5(data).hexdigest() + '"'
    stored = s3.get_object(Bucket=bucket, Key="big.bin")
    assert stored["Body"].read() == data and stored["Metadata"] == {}


def test_virtual_host_versioning_and_cors(s3: Any, bucket: str, process: ServerProcess) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": ["https://app.example"], "AllowedMethods": ["POST"],
        "ExposeHeaders": ["ETag"]}]})
    form = sigv4_form(bucket, "v.txt", [{"key": "v.txt"}])
    host = f"{bucket}.localhost:{process.port}"
    response = post(f"{process.url}/", form, headers={"Host": host,
                                                      "Origin": "https://app.example"})
    assert response.status_code == 204, response.text
    assert response.headers["Location"] == f"http://{host}/v.txt"
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]
    version_id = response.headers["x-amz-version-id"]
    assert s3.head_object(Bucket=bucket, Key="v.txt")["VersionId"] == version_id
    # An error answer to a browser carries the CORS headers too.
    denied = post(f"{process.url}/{bucket}", {"key": "v.txt"},
                  headers={"Origin": "https://app.example"})
    assert denied.status_code == 403
    assert denied.headers["Access-Control-Allow-Origin"] == "https://app.example"


# --- errors ----------------------------------------------------------------------------------


def test_errors_answer_as_aws_and_store_nothing(s3: Any, bucket: str) -> None:
    url = f"{s3.meta.endpoint_url}/{bucket}"
    key_only = [{"key": "k"}]

    def form(conditions: list[Any] = key_only, **options: Any) -> dict[str, str]:
        return sigv4_form(bucket, "k", conditions, **options)

    wrong_signature = {**form(), "x-amz-signature": "0" * 64}
    no_key = {name: value for name, value in form().items() if name != "key"}
    no_signature = {name: value for name, value in form().items() if name != "x-amz-signature"}
    bad_policy = form(raw_policy=b'{"expiration": "2099-01-01T00:00:00Z", "conditions": [{}]}')
    cases: list[tuple[str, httpx.Response, int, str, str]] = [
        ("anonymous", post(url, {"key": "k"}), 403, "AccessDenied", ""),
        ("wrong signature", post(url, wrong_signature), 403, "SignatureDoesNotMatch", ""),
        ("unknown key", post(url, form(access_key="NOSUCHKEY0000000000")), 403,
         "InvalidAccessKeyId", ""),
        ("expired", post(url, form(expires=timedelta(seconds=-5))), 403, "AccessDenied",
         "Invalid according to Policy: Policy expired."),
        ("extra field", post(url, {**form(), "x-amz-meta-a": "1"}), 403, "AccessDenied",
         "Invalid according to Policy: Extra input fields: x-amz-meta-a"),
        ("condition", post(url, form([["starts-with", "$key", "user/"]])), 403, "AccessDenied",
         'Policy Condition failed: ["starts-with", "$key", "user/"]'),
        ("too large", post(url, form([*key_only, ["content-length-range", 0, 4]])), 400,
         "EntityTooLarge", ""),
        ("too small", post(url, form([*key_only, ["content-length-range", 6, 9]])), 400,
         "EntityTooSmall", ""),
        ("no key", post(url, no_key), 400, "InvalidArgument",
         "Bucket POST must contain a field named 'key'"),
        ("no signature", post(url, no_signature), 400, "InvalidArgument", "x-amz-signature"),
        ("bad policy", post(url, bad_policy), 400, "InvalidPolicyDocument", "Invalid Policy"),
        ("no file", httpx.post(url, files={"x-ignore-a": (None, "")}, data=form(),
                               timeout=TIMEOUT_SECONDS), 400, "InvalidArgument", "file"),
        ("bad md5", post(url, {**form([*key_only, ["starts-with", "$content-md5", ""]]),
                               "Content-MD5": base64.b64encode(b"0" * 16).decode()}),
         400, "BadDigest", ""),
        ("unknown acl", post(url, {**form([*key_only, ["starts-with", "$acl", ""]]),
                                   "acl": "public-everything"}), 400, "InvalidArgument",
         "canned ACL"),
        ("not a form", httpx.post(url, content=b"k=v", timeout=TIMEOUT_SECONDS), 412,
         "PreconditionFailed", "multipart/form-data"),
        ("no bucket", post(f"{url}-none", sigv4_form(f"{bucket}-none", "k", key_only)), 404,
         "NoSuchBucket", ""),
    ]
    for name, response, status, code, message in cases:
        assert (response.status_code, error_code(response)) == (status, code), (name, response.text)
        assert message in (ET.fromstring(response.content).findtext("Message") or ""), name
    assert support.keys(s3, bucket) == []


# --- triggers and notifications ------------------------------------------------------------


def test_a_function_bound_to_post_judges_form_uploads(
    s3: Any, bucket: str, process: ServerProcess
) -> None:
    support.register(process, "post-sizes", {
        "kind": "python", "entry_point": "triggers.examples:size_class",
        "actions": [{"annotate": True},
                    {"when": {"label": "empty"}, "reject": "empty uploads are refused"},
                    {"when": {"label": "large"}, "discard": "too big to keep"}],
    })
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{
            "Id": "judge-posts", "LambdaFunctionArn": support.FUNCTION_ARN.format("post-sizes"),
            "Events": ["s3:ObjectCreated:Post"]}]})
    url = f"{s3.meta.endpoint_url}/{bucket}"
    stored = post(url, sigv4_form(bucket, "small", [{"key": "small"}]), ("s", b"hello"))
    assert stored.status_code == 204, stored.text
    assert json.loads(stored.headers["x-squall-verdict"])["action"] == "store"
    assert s3.head_object(Bucket=bucket, Key="small")["Metadata"]["squall-label"] == "small"
    rejected = post(url, sigv4_form(bucket, "empty", [{"key": "empty"}]), ("e", b""))
    assert (rejected.status_code, error_code(rejected)) == (403, "RejectedByFunction")
    assert "empty uploads are refused" in rejected.text
    discarded = post(url, sigv4_form(bucket, "large", [{"key": "large"}]), ("l", b"x" * 5000))
    assert discarded.status_code == 200
    assert json.loads(discarded.headers["x-squall-verdict"])["action"] == "discard"
    # A PutObject is not an ObjectCreated:Post: the function does not judge it.
    put = s3.put_object(Bucket=bucket, Key="put-empty", Body=b"")
    assert "x-squall-verdict" not in put["ResponseMetadata"]["HTTPHeaders"]
    assert sorted(support.keys(s3, bucket)) == ["put-empty", "small"]


def test_queue_configurations_get_object_created_post(
    s3: Any, bucket: str, webhook: notifications.Webhook
) -> None:
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"Id": "posts", "QueueArn": f"arn:squall:sqs::{WEBHOOK_ID}:webhook",
                                 "Events": ["s3:ObjectCreated:Post"]}]})
    s3.put_object(Bucket=bucket, Key="by-put", Body=b"not a post")
    response = post(f"{s3.meta.endpoint_url}/{bucket}",
                    sigv4_form(bucket, "by-form", [{"key": "by-form"}]), ("f", b"form"))
    assert response.status_code == 204

    def mine(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r["s3"]["bucket"]["name"] == bucket]

    [record] = mine(webhook.wait_until(lambda records: bool(mine(records))))
    assert record["eventName"] == "ObjectCreated:Post"
    assert record["s3"]["object"]["key"] == "by-form"
    assert record["s3"]["object"]["eTag"] == hashlib.md5(b"form").hexdigest()
    assert record["responseElements"]["x-amz-request-id"] == response.headers["x-amz-request-id"]


# --- never a 500 -----------------------------------------------------------------------------

FUZZ_FIELD_NAMES = ["key", "policy", "x-amz-signature", "x-amz-credential", "x-amz-date",
                    "x-amz-algorithm", "AWSAccessKeyId", "signature", "success_action_status",
                    "success_action_redirect", "tagging", "acl", "x-amz-storage-class",
                    "Content-MD5", "x-amz-checksum-crc32", "x-amz-meta-a", "Content-Type",
                    "KEY", "file", "x-ignore-z", "Expires"]
fuzz_edits = st.lists(st.tuples(st.sampled_from(["drop", "set"]), st.sampled_from(FUZZ_FIELD_NAMES),
                                st.text(max_size=30)), max_size=3)


def _multipart(fields: dict[str, str], file: bytes | None, boundary: str) -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
             + value.encode() + b"\r\n" for name, value in fields.items()]
    if file is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                     'filename="f.bin"\r\n\r\n'.encode() + file + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def test_random_forms_never_get_a_500() -> None:
    """Forms through the real gateway and store in process: valid ones, then fields
    dropped or replaced with random text, bodies cut or spliced, wrong boundaries."""
    harness = fuzz._Harness()
    statuses: list[int] = []
    try:
        @settings(max_examples=250, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(fuzz_edits, st.one_of(st.none(), st.binary(max_size=300)),
               st.one_of(st.none(), st.integers(min_value=0, max_value=2000)),
               st.binary(max_size=8), st.sampled_from(["good", "good", "other", "none"]))
        def check(edits: list[tuple[str, str, str]], file: bytes | None, cut: int | None,
                  splice: bytes, boundary_header: str) -> None:
            fields = sigv4_form(fuzz.BUCKET, "up/${filename}",
                                [["starts-with", "$key", "up/"],
                                 ["content-length-range", 0, 200]],
                                access_key=fuzz.ACCESS_KEY, secret_key=fuzz.SECRET_KEY)
            for operation, name, value in edits:
                if operation == "drop":
                    fields.pop(name, None)
                else:
                    fields[name] = value
            body = _multipart(fields, file, "fuzzBoundary")
            if cut is not None:
                body = body[:cut] + splice + body[cut:]
            content_type = {"good": "multipart/form-data; boundary=fuzzBoundary",
                            "other": "multipart/form-data; boundary=x",
                            "none": "text/plain"}[boundary_header]
            status, answer = harness.request("POST", f"/{fuzz.BUCKET}", [],
                                             {"content-type": content_type}, body)
            statuses.append(status)
            assert status < 500 or status == 501, (status, answer[:300])
            if status >= 400:
                assert answer.startswith(b"<?xml") and b"<Code>" in answer, answer[:200]

        check()
        # Valid forms were stored, and the broken ones refused by the form's own checks.
        assert 204 in statuses and {400, 403, 412} <= set(statuses)
    finally:
        harness.close()
    asyncio.set_event_loop(None)
