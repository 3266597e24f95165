"""Virtual-hosted-style addressing: the bucket is in the Host header, not the path.

`*.localhost` does not resolve on every machine, so no test relies on DNS: requests are
signed for Host `<bucket>.<vhost_domain>:<port>` and sent to the endpoint's address with
that Host header. Set S3COMPAT_VHOST_DOMAIN for an endpoint whose base domain is not
"localhost". Reference:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from s3compat_tests.support import Endpoint, make_client, parse_error_body, signed_request


def _vhost(endpoint: Endpoint, bucket: str) -> str:
    return f"{bucket}.{endpoint.vhost_domain}:{endpoint.port}"


def test_virtual_host_put_get_list(s3, s3_endpoint, http, bucket):
    host = _vhost(s3_endpoint, bucket)
    put = signed_request(http, s3_endpoint, "PUT", "/dir/v.txt", body=b"vhost", host_header=host)
    assert put.status_code == 200
    got = signed_request(http, s3_endpoint, "GET", "/dir/v.txt", host_header=host)
    assert got.status_code == 200
    assert got.content == b"vhost"
    listed = signed_request(http, s3_endpoint, "GET", "/", query="list-type=2", host_header=host)
    assert listed.status_code == 200
    assert "<Key>dir/v.txt</Key>" in listed.text
    # The same object through path-style addressing.
    assert s3.get_object(Bucket=bucket, Key="dir/v.txt")["Body"].read() == b"vhost"


def test_virtual_host_missing_key(s3_endpoint, http, bucket):
    response = signed_request(
        http, s3_endpoint, "GET", "/absent", host_header=_vhost(s3_endpoint, bucket)
    )
    assert response.status_code == 404
    error = parse_error_body(response.content)
    assert error["Code"] == "NoSuchKey"
    assert error["Key"] == "absent"


@pytest.fixture
def virtual_client(s3_endpoint):
    """boto3 with addressing_style='virtual': each request goes to the endpoint's address
    but keeps the Host header (and signature) botocore computed for bucket.<domain>."""
    domain_url = f"http://{s3_endpoint.vhost_domain}:{s3_endpoint.port}"
    client = make_client(s3_endpoint, addressing_style="virtual", endpoint_url=domain_url)
    real_netloc = s3_endpoint.netloc

    def send_to_endpoint(request, **_):
        parts = urlsplit(request.url)
        request.headers["Host"] = parts.netloc
        request.url = urlunsplit(parts._replace(netloc=real_netloc))

    client.meta.events.register_first("before-send.s3", send_to_endpoint)
    yield client
    client.close()


def test_boto3_virtual_addressing(virtual_client, bucket):
    virtual_client.put_object(Bucket=bucket, Key="via boto3", Body=b"virtual")
    assert virtual_client.get_object(Bucket=bucket, Key="via boto3")["Body"].read() == b"virtual"
    keys = [e["Key"] for e in virtual_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["via boto3"]
    virtual_client.delete_object(Bucket=bucket, Key="via boto3")
