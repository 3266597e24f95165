"""HTTPS: ``squall serve --tls-cert-file --tls-key-file`` with a self-signed certificate
made here (cryptography), through boto3, presigned URLs and the aws cli; requests over
TLS are aws:SecureTransport to bucket policies; plain HTTP gets no answer; and bad TLS
flags stop the server before it opens the store."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from squall.launcher import ServerProcess
from tests.certificates import self_signed
from tests.integration import triggers_support as support

pytestmark = pytest.mark.slow




@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory,
            tls_files: tuple[Path, Path]) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("tls-data"), access_key=support.ACCESS_KEY,
                       secret_key=support.SECRET_KEY, extra_args=("--volatile",),
                       tls=tls_files) as server:
        yield server


def test_boto3_and_presigned_urls_over_https(process, tls_files) -> None:  # type: ignore[no-untyped-def]
    assert process.url.startswith("https://")
    s3 = support.s3_client(process.url, verify=str(tls_files[0]))
    s3.create_bucket(Bucket="secure")
    s3.put_object(Bucket="secure", Key="k", Body=b"over tls")
    assert s3.get_object(Bucket="secure", Key="k")["Body"].read() == b"over tls"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "secure", "Key": "k"})
    assert url.startswith("https://")
    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    assert httpx.get(url, verify=trusted, timeout=30).content == b"over tls"
    # The server's certificate is checked: a client that does not trust it gets nowhere.
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=30)


def test_tls_requests_are_secure_transport_to_a_policy(process, tls_files) -> None:  # type: ignore[no-untyped-def]
    s3 = support.s3_client(process.url, verify=str(tls_files[0]), retries=1)
    s3.create_bucket(Bucket="policed")
    s3.put_object(Bucket="policed", Key="k", Body=b"x")

    def deny_get_when(secure: str) -> None:
        s3.put_bucket_policy(Bucket="policed", Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::policed/*",
                "Condition": {"Bool": {"aws:SecureTransport": secure}}}]}))

    deny_get_when("false")  # the usual "TLS only" policy: this request passes it
    assert s3.get_object(Bucket="policed", Key="k")["Body"].read() == b"x"
    deny_get_when("true")  # and this one proves the request was seen as TLS
    with pytest.raises(ClientError) as denied:
        s3.get_object(Bucket="policed", Key="k")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    s3.delete_bucket_policy(Bucket="policed")


def test_aws_cli_over_https(process, tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir()
    made = support.aws_cli(process, home, "s3", "mb", "s3://cli-tls")
    assert made.returncode == 0, made.stderr
    listed = support.aws_cli(process, home, "s3", "ls")
    assert listed.returncode == 0 and "cli-tls" in listed.stdout, listed.stderr


def test_plain_http_gets_no_answer(process) -> None:  # type: ignore[no-untyped-def]
    plain = process.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):  # any HTTP answer at all fails this test
        httpx.get(plain + "/", timeout=10)


@pytest.mark.parametrize("case", ["cert only", "key of another certificate", "missing file"])
def test_bad_tls_flags_stop_the_server(tmp_path, tls_files, case) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    other_cert, other_key = self_signed(tmp_path, "other")
    flags = {
        "cert only": ["--tls-cert-file", str(cert)],
        "key of another certificate": ["--tls-cert-file", str(cert), "--tls-key-file",
                                        str(other_key)],
        "missing file": ["--tls-cert-file", str(tmp_path / "nope.crt"), "--tls-key-file",
                         str(key)],
    }[case]
    data_dir = tmp_path / "data"
    refused = subprocess.run(
        [sys.executable, "-m", "squall", "serve", "--data-dir", str(data_dir), *flags],
        capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert "tls" in refused.stderr
    assert not data_dir.exists()  # refused before the store was opened
    assert other_cert.exists()


def test_a_backup_over_https(process, tls_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """squall backup --endpoint https://...: the CLI trusts SSL_CERT_FILE (as the chart's
    backup CronJob sets it from backup.caSecret)."""
    import os

    s3 = support.s3_client(process.url, verify=str(tls_files[0]))
    s3.create_bucket(Bucket="backed-up")
    env = {**os.environ, "SQUALL_ROOT_USER": support.ACCESS_KEY,
           "SQUALL_ROOT_PASSWORD": support.SECRET_KEY, "SSL_CERT_FILE": str(tls_files[0])}
    taken = subprocess.run([sys.executable, "-m", "squall", "backup", "--endpoint",
                            process.url, str(tmp_path / "copy")], capture_output=True,
                           text=True, timeout=120, env=env, check=False)
    assert taken.returncode == 0, taken.stderr
    untrusted = subprocess.run([sys.executable, "-m", "squall", "backup", "--endpoint",
                                process.url, str(tmp_path / "untrusted")],
                               capture_output=True, text=True, timeout=120,
                               env={k: v for k, v in env.items() if k != "SSL_CERT_FILE"},
                               check=False)
    assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert not (tmp_path / "untrusted").exists()
