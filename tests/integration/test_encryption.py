"""SSE-S3 through a real ``squall serve --encryption-key-file`` on real LMDB, with boto3
and the aws cli: objects come back as written and say AES256, nothing written is found
in plaintext in the store's files, the bucket's default encryption reads and writes as
on AWS, SSE-KMS stays refused, SSE-C over plain HTTP is refused as on AWS (SSE-C itself:
test_sse_c.py), a pre-commit function reads plaintext, and the store restarts only with
its key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from squall.launcher import ServerProcess
from tests.integration import triggers_support as support

pytestmark = pytest.mark.slow

MARKER = b"squall-sse-marker-4b2e9"
MIB = 1024 * 1024


def marked(size: int) -> bytes:
    data = bytearray(os.urandom(size))
    for at in range(0, size - len(MARKER), 32 * 1024):
        data[at:at + len(MARKER)] = MARKER
    return bytes(data)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "squall.key"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("encrypted-store")


@pytest.fixture(scope="module")
def process(data_dir: Path, key_file: Path) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir, access_key=support.ACCESS_KEY, secret_key=support.SECRET_KEY,
                       extra_args=("--encryption-key-file", str(key_file))) as server:
        yield server


@pytest.fixture(scope="module")
def s3(process: ServerProcess):  # type: ignore[no-untyped-def]
    client = support.s3_client(process.url)
    client.create_bucket(Bucket="vault")
    return client


def stored_files_contain(data_dir: Path, needle: bytes) -> bool:
    return any(needle in path.read_bytes() for path in data_dir.rglob("*") if path.is_file())


def test_objects_are_encrypted_at_rest_and_read_back(s3, data_dir) -> None:  # type: ignore[no-untyped-def]
    small, large = marked(40_000), marked(2 * MIB + 777)
    asked = s3.put_object(Bucket="vault", Key="small", Body=small, ServerSideEncryption="AES256")
    assert asked["ServerSideEncryption"] == "AES256"
    # As on AWS since 2023, an object written without asking is encrypted all the same.
    unasked = s3.put_object(Bucket="vault", Key="large", Body=large)
    assert unasked["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="vault", Key="large")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == large
    assert s3.get_object(Bucket="vault", Key="small")["Body"].read() == small
    ranged = s3.get_object(Bucket="vault", Key="large", Range="bytes=1048570-1048600")
    assert ranged["Body"].read() == large[1048570:1048601]
    assert s3.head_object(Bucket="vault", Key="small")["ServerSideEncryption"] == "AES256"
    assert not stored_files_contain(data_dir, MARKER)


def test_multipart_and_copy(s3) -> None:  # type: ignore[no-untyped-def]
    parts = [marked(5 * MIB), marked(1234)]
    created = s3.create_multipart_upload(Bucket="vault", Key="mp", ServerSideEncryption="AES256")
    assert created["ServerSideEncryption"] == "AES256"
    completed = []
    for number, body in enumerate(parts, start=1):
        part = s3.upload_part(Bucket="vault", Key="mp", UploadId=created["UploadId"],
                              PartNumber=number, Body=body)
        assert part["ServerSideEncryption"] == "AES256"
        completed.append({"PartNumber": number, "ETag": part["ETag"]})
    done = s3.complete_multipart_upload(Bucket="vault", Key="mp", UploadId=created["UploadId"],
                                        MultipartUpload={"Parts": completed})
    assert done["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket="vault", Key="mp")["Body"].read() == b"".join(parts)
    copied = s3.copy_object(Bucket="vault", Key="mp-copy", CopySource={"Bucket": "vault",
                                                                       "Key": "mp"},
                            ServerSideEncryption="AES256")
    assert copied["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket="vault", Key="mp-copy")["Body"].read() == b"".join(parts)


@pytest.mark.parametrize(("extra", "code", "status", "message"), [
    ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/k"}, "NotImplemented", 501,
     "aws:kms"),
    # This server speaks plain HTTP and was not told a TLS proxy fronts it: AWS's answer.
    ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}, "InvalidRequest", 400,
     "must be made over a secure connection"),
])
def test_kms_and_customer_keys_over_http_are_refused(s3, extra, code, status, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket="vault", Key="refused", Body=b"x", **extra)
    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    assert message in error["Error"]["Message"]
    with pytest.raises(ClientError):
        s3.head_object(Bucket="vault", Key="refused")


def test_an_unknown_algorithm_is_invalid_argument(process) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from s3compat_tests.support import Endpoint, sign_headers

    endpoint = Endpoint(url=process.url, region="us-east-1", access_key=support.ACCESS_KEY,
                        secret_key=support.SECRET_KEY)
    headers = sign_headers(endpoint, "PUT", f"{process.url}/vault/odd",
                           headers={"x-amz-server-side-encryption": "AES128"}, body=b"x")
    with httpx.Client() as http:
        answer = http.put(f"{process.url}/vault/odd", headers=headers, content=b"x")
    assert answer.status_code == 400 and "<Code>InvalidArgument</Code>" in answer.text


def test_bucket_default_encryption(s3) -> None:  # type: ignore[no-untyped-def]
    def rule() -> dict:  # type: ignore[type-arg]
        rules = s3.get_bucket_encryption(Bucket="vault")["ServerSideEncryptionConfiguration"][
            "Rules"]
        assert len(rules) == 1
        return rules[0]  # type: ignore[no-any-return]

    assert rule() == {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                      "BucketKeyEnabled": False}
    s3.put_bucket_encryption(Bucket="vault", ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
        "BucketKeyEnabled": True}]})
    assert rule()["BucketKeyEnabled"] is True
    with pytest.raises(ClientError) as raised:
        s3.put_bucket_encryption(Bucket="vault", ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    assert raised.value.response["Error"]["Code"] == "NotImplemented"
    s3.delete_bucket_encryption(Bucket="vault")
    assert rule()["BucketKeyEnabled"] is False


def test_aws_cli_copies_with_sse(process, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "report.bin"
    source.write_bytes(marked(300_000))
    home = tmp_path / "home"
    home.mkdir()
    copied = support.aws_cli(process, home, "s3", "cp", "--sse", "AES256", str(source),
                             "s3://vault/cli/report.bin")
    assert copied.returncode == 0, copied.stderr
    head = support.aws_cli(process, home, "s3api", "head-object", "--bucket", "vault", "--key",
                           "cli/report.bin")
    assert head.returncode == 0, head.stderr
    assert json.loads(head.stdout)["ServerSideEncryption"] == "AES256"


def test_a_function_reads_the_body_in_plaintext(process, s3) -> None:  # type: ignore[no-untyped-def]
    support.register(process, "first-byte", {
        "kind": "python", "entry_point": "triggers.examples:first_byte",
        "actions": [{"annotate": "metadata"}]})
    support.bind(s3, "vault", "first-byte", prefix="judged/")
    # Larger than a chunk: the function's first view is a staged (encrypted) chunk.
    answer = s3.put_object(Bucket="vault", Key="judged/a", Body=b"A" * (MIB + 10))
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-squall-label"] == "byte-41"
    assert answer["ServerSideEncryption"] == "AES256"


def test_the_store_restarts_only_with_its_key(tmp_path, key_file) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "store"
    with ServerProcess(data, access_key=support.ACCESS_KEY, secret_key=support.SECRET_KEY,
                       extra_args=("--encryption-key-file", str(key_file))) as server:
        client = support.s3_client(server.url)
        client.create_bucket(Bucket="kept")
        client.put_object(Bucket="kept", Key="k", Body=MARKER)
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    for extra, message in (((), "is encrypted at rest"),
                           (("--encryption-key-file", str(other)), "not with the given key")):
        server = ServerProcess(data, access_key=support.ACCESS_KEY,
                               secret_key=support.SECRET_KEY, extra_args=extra)
        try:
            with pytest.raises(RuntimeError, match=message):
                server.start()
        finally:
            server.close()
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    refused = subprocess.run(
        [sys.executable, "-m", "squall", "serve", "--data-dir", str(tmp_path / "fresh"),
         "--encryption-key-file", str(bad)], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--encryption-key-file" in refused.stderr
    with ServerProcess(data, access_key=support.ACCESS_KEY, secret_key=support.SECRET_KEY,
                       extra_args=("--encryption-key-file", str(key_file))) as server:
        client = support.s3_client(server.url)
        assert client.get_object(Bucket="kept", Key="k")["Body"].read() == MARKER


def test_a_browser_form_upload_with_sse(s3) -> None:  # type: ignore[no-untyped-def]
    import httpx

    fields = {"x-amz-server-side-encryption": "AES256"}
    presigned = s3.generate_presigned_post("vault", "form/${filename}", Fields=fields,
                                           Conditions=[fields])
    response = httpx.post(presigned["url"], data=presigned["fields"],
                          files={"file": ("f.bin", MARKER)}, timeout=30)
    assert response.status_code == 204, response.text
    assert response.headers["x-amz-server-side-encryption"] == "AES256"
    assert s3.get_object(Bucket="vault", Key="form/f.bin")["Body"].read() == MARKER
    fields = {"x-amz-server-side-encryption": "aws:kms"}
    presigned = s3.generate_presigned_post("vault", "form/kms", Fields=fields,
                                           Conditions=[fields])
    refused = httpx.post(presigned["url"], data=presigned["fields"],
                         files={"file": ("f.bin", b"x")}, timeout=30)
    assert refused.status_code == 501 and "<Code>NotImplemented</Code>" in refused.text


def test_without_a_key_sse_requests_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A store started without --encryption-key-file encrypts nothing, so it says so:
    SSE-S3 is 501 (naming the flag that would make it work), nothing is stored, and the
    bucket has no default encryption."""
    with ServerProcess(tmp_path / "plain", access_key=support.ACCESS_KEY,
                       secret_key=support.SECRET_KEY, extra_args=("--volatile",)) as server:
        s3 = support.s3_client(server.url, retries=1)
        s3.create_bucket(Bucket="plain")
        with pytest.raises(ClientError) as raised:
            s3.put_object(Bucket="plain", Key="k", Body=b"x", ServerSideEncryption="AES256")
        error = raised.value.response
        assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
            "NotImplemented", 501)
        assert "--encryption-key-file" in error["Error"]["Message"]
        assert "Contents" not in s3.list_objects_v2(Bucket="plain")
        plain = s3.put_object(Bucket="plain", Key="k", Body=b"x")
        assert "ServerSideEncryption" not in plain
        with pytest.raises(ClientError) as raised:
            s3.get_bucket_encryption(Bucket="plain")
        assert raised.value.response["Error"]["Code"] == (
            "ServerSideEncryptionConfigurationNotFoundError")
        with pytest.raises(ClientError) as raised:
            s3.put_bucket_encryption(Bucket="plain", ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        assert raised.value.response["Error"]["Code"] == "NotImplemented"


def test_a_tensorflow_model_stored_encrypted_judges(process, s3) -> None:  # type: ignore[no-untyped-def]
    """The model object is read back (decrypted) by the model cache, and judges."""
    pytest.importorskip("tensorflow")
    from tests.integration import tf_models

    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="colours.keras", Body=tf_models.colour_model())
    support.register(process, "colours", {
        "kind": "tensorflow", "model": "s3://models/colours.keras",
        "input": {"format": "image", "scale": 1 / 255}, "labels": ["red", "green", "blue"],
        "actions": [{"annotate": "metadata"}]})
    support.bind(s3, "vault", "colours", prefix="photos/")
    answer = s3.put_object(Bucket="vault", Key="photos/g.png",
                           Body=tf_models.png(tf_models.COLOURS["green"]))
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-squall-label"] == "green"
    assert answer["ServerSideEncryption"] == "AES256"
