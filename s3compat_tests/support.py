"""Helpers shared by the S3 compatibility suite.

The suite judges an endpoint by what AWS documents, so it needs two ways to talk to it:

* a boto3 client (path-style, SigV4), the way most users will;
* hand-built SigV4 requests sent with httpx, for what boto3 hides or refuses to send:
  raw error bodies, HEAD bodies, malformed XML, tampered signatures, an explicit Host
  header for virtual-hosted-style addressing.

Nothing here asserts; tests do.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import hashlib
import io
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit

import boto3
import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.client import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

# A test that waits on the network never waits longer than this.
request_timeout_seconds = 30.0
bucket_name_prefix = "s3compat-"
upload_threads_max = 8


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the endpoint under test listens and whom it trusts."""

    url: str  # e.g. http://127.0.0.1:9000, no trailing slash
    access_key: str
    secret_key: str
    region: str
    # Base domain for virtual-hosted-style requests: bucket.<vhost_domain>:<port>.
    vhost_domain: str = "localhost"
    # A second, unprivileged user, for cross-account tests; empty when none is configured.
    alt_access_key: str = ""
    alt_secret_key: str = ""
    # The endpoint takes SSE-C keys over plain HTTP (a server told it sits behind a
    # TLS-terminating proxy: squall serve --allow-sse-c-over-http). AWS takes them over
    # HTTPS only, so the SSE-C tests need this or an https:// url.
    sse_c_over_http: bool = False

    @property
    def takes_sse_c(self) -> bool:
        return self.url.startswith("https://") or self.sse_c_over_http

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        if parts.port is not None:
            return parts.port
        return 443 if parts.scheme == "https" else 80

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc


def make_client(
    endpoint: Endpoint,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    addressing_style: str = "path",
    endpoint_url: str | None = None,
    signature_version: object = "s3v4",
    **config_options: object,
):
    """A boto3 S3 client with SigV4 (or ``botocore.UNSIGNED``) and no retries (a retry
    would hide the first answer)."""
    config = Config(
        signature_version=signature_version,
        s3={"addressing_style": addressing_style},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=request_timeout_seconds,
        read_timeout=request_timeout_seconds,
        **config_options,
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or endpoint.url,
        aws_access_key_id=access_key or endpoint.access_key,
        aws_secret_access_key=secret_key or endpoint.secret_key,
        region_name=endpoint.region,
        config=config,
    )
    client.meta.events.register("after-call.s3.GetObject", _buffer_body)
    return client


def _buffer_body(parsed, **_) -> None:
    """Read a GetObject body at once and release its connection.

    An unread body keeps its socket out of the pool; when a test never reads it (it only
    checks headers, or an assertion fails first) the socket is closed by the garbage
    collector, whose ResourceWarning then fails some unrelated later test under -W error.
    Reading here also runs botocore's checksum validation inside the call."""
    body = parsed.get("Body")
    if body is None:
        return
    data = body.read()
    body.close()
    parsed["Body"] = StreamingBody(io.BytesIO(data), len(data))


def unique_bucket_name(tag: str = "") -> str:
    """A valid, unique bucket name (<= 63 characters) so that runs never collide."""
    tag = "".join(c for c in tag.lower() if c.isalnum())[:20]
    name = (
        f"{bucket_name_prefix}{tag}-{uuid.uuid4().hex[:20]}"
        if tag
        else (f"{bucket_name_prefix}{uuid.uuid4().hex[:24]}")
    )
    assert 3 <= len(name) <= 63
    return name


def create_bucket(client, endpoint: Endpoint, name: str) -> None:
    """CreateBucket as AWS wants it: no LocationConstraint in us-east-1, one elsewhere."""
    if endpoint.region == "us-east-1":
        client.create_bucket(Bucket=name)
    else:
        client.create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": endpoint.region}
        )


def error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def http_status(error_or_response) -> int:
    response = (
        error_or_response.response
        if isinstance(error_or_response, ClientError)
        else (error_or_response)
    )
    return response["ResponseMetadata"]["HTTPStatusCode"]


def _xml_1_0_can_carry(text: str) -> bool:
    return all(
        char in "\t\n\r" or 0x20 <= ord(char) <= 0xD7FF or 0xE000 <= ord(char) <= 0x10FFFF
        for char in text
    )


def _delete_keys(client, bucket: str, objects: list[dict]) -> None:
    # A key XML 1.0 cannot carry (e.g. "\x01") cannot be named in a DeleteObjects body.
    # S3 would reject that XML too, so such keys go one by one.
    unsendable = [o for o in objects if not _xml_1_0_can_carry(o["Key"])]
    for entry in unsendable:
        client.delete_object(Bucket=bucket, **entry)
    objects = [o for o in objects if _xml_1_0_can_carry(o["Key"])]
    # DeleteObjects takes at most 1000 keys per request (AWS limit).
    for start in range(0, len(objects), 1000):
        batch = objects[start : start + 1000]
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        errors = response.get("Errors", [])
        assert not errors, f"cleanup of {bucket} failed: {errors[:3]}"


def _all_object_versions(client, bucket: str) -> list[dict]:
    """Every version and delete marker; plain listing if the server has no versioning API."""
    try:
        found: list[dict] = []
        paginator = client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket):
            for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
                found.append({"Key": entry["Key"], "VersionId": entry["VersionId"]})
        return found
    except ClientError as error:
        # No versioning API, or one that fails on odd keys (moto answers 500 for "\x01"):
        # the plain listing still finds every current object.
        unsupported = {"NotImplemented", "MethodNotAllowed", "InvalidRequest"}
        if error_code(error) not in unsupported and http_status(error) < 500:
            raise
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.extend({"Key": entry["Key"]} for entry in page.get("Contents", []))
    return found


def _abort_multipart_uploads(client, bucket: str) -> None:
    try:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    except ClientError as error:
        if error_code(error) in {"NotImplemented", "MethodNotAllowed"}:
            return
        raise
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def empty_and_delete_bucket(client, bucket: str) -> None:
    """Remove every object, version and upload, then the bucket. Missing bucket: no-op."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        if http_status(error) == 404:
            return
        raise
    _abort_multipart_uploads(client, bucket)
    _delete_keys(client, bucket, _all_object_versions(client, bucket))
    client.delete_bucket(Bucket=bucket)


def put_objects(client, bucket: str, keys: Iterable[str], body: bytes = b"x") -> None:
    """Upload many small objects concurrently (boto3 clients are thread-safe)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=upload_threads_max) as pool:
        futures = [pool.submit(client.put_object, Bucket=bucket, Key=k, Body=body) for k in keys]
        for future in futures:
            future.result()


# ---- multipart uploads ----------------------------------------------------------------


def multipart_etag(parts: list[bytes]) -> str:
    """The ETag AWS gives a multipart object: MD5 of the part MD5s, '-', part count."""
    digests = b"".join(hashlib.md5(part).digest() for part in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def upload_parts(client, bucket: str, key: str, parts: list[bytes], **create_args):
    """CreateMultipartUpload (with ``create_args``) and UploadPart of each body in order;
    returns (upload id, the Parts list CompleteMultipartUpload takes)."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **create_args)["UploadId"]
    checksum = create_args.get("ChecksumAlgorithm")
    completed = []
    for number, body in enumerate(parts, start=1):
        extra = {"ChecksumAlgorithm": checksum} if checksum else {}
        response = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, **extra
        )
        entry = {"PartNumber": number, "ETag": response["ETag"]}
        if checksum:
            entry[f"Checksum{checksum}"] = response[f"Checksum{checksum}"]
        completed.append(entry)
    return upload_id, completed


def complete_upload(client, bucket: str, key: str, upload_id: str, completed: list, **extra):
    return client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": completed}, **extra
    )


# ---- hand-signed requests -------------------------------------------------------------


def quote_key(key: str) -> str:
    """Percent-encode an object key for a URL path the way SigV4 canonicalises it."""
    return quote(key, safe="/~")


def sign_headers(
    endpoint: Endpoint,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    access_key: str | None = None,
    secret_key: str | None = None,
) -> dict[str, str]:
    """Headers that carry a SigV4 signature for this exact request (url as sent)."""
    credentials = Credentials(access_key or endpoint.access_key, secret_key or endpoint.secret_key)
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    S3SigV4Auth(credentials, "s3", endpoint.region).add_auth(request)
    return dict(request.headers.items())


def signed_request(
    http: httpx.Client,
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    access_key: str | None = None,
    secret_key: str | None = None,
    host_header: str | None = None,
) -> httpx.Response:
    """Send one SigV4-signed request. `path` must already be percent-encoded.

    With `host_header`, the request is signed for that Host and sent to the endpoint's
    address, which is how virtual-hosted-style is tested without DNS.
    """
    suffix = path + (f"?{query}" if query else "")
    scheme = urlsplit(endpoint.url).scheme
    signed_url = f"{scheme}://{host_header}{suffix}" if host_header else endpoint.url + suffix
    signed = sign_headers(
        endpoint,
        method,
        signed_url,
        headers=headers,
        body=body,
        access_key=access_key,
        secret_key=secret_key,
    )
    if host_header:
        signed["Host"] = host_header
    return http.request(method, endpoint.url + suffix, headers=signed, content=body)


def content_md5_header(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def parse_error_body(body: bytes) -> dict[str, str]:
    """The children of an S3 <Error> document, by tag name (S3 errors have no namespace)."""
    root = ElementTree.fromstring(body)
    assert root.tag == "Error", f"error body root is {root.tag!r}, not 'Error': {body[:300]!r}"
    return {child.tag: (child.text or "") for child in root}


def xml_namespace_free(element: ElementTree.Element) -> ElementTree.Element:
    """Strip '{namespace}' from every tag so tests can use plain names."""
    for node in element.iter():
        if node.tag.startswith("{"):
            node.tag = node.tag.split("}", 1)[1]
    return element
