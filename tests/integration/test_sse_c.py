"""SSE-C (customer-provided keys) through a real ``squall serve`` over HTTPS (a
certificate made here, as test_tls.py does), with boto3, presigned URLs, httpx and the
aws cli: round trips and ranges, the answers to a missing or wrong key, multipart,
copies (and re-keying an object onto itself), a pre-commit function judging plaintext,
what lands on disk, and the HTTPS rule with the flag that lifts it. A second server,
with a master key, shows SSE-C works beside SSE-S3."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from squall.launcher import ServerProcess
from tests.certificates import self_signed
from tests.integration import triggers_support as support

pytestmark = pytest.mark.slow

MARKER = b"squall-sse-c-marker-51ad0"
MIB = 1024 * 1024
KEY = bytes(range(64, 96))
OTHER_KEY = bytes(range(128, 160))
ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"


def sse(key: bytes = KEY) -> dict[str, Any]:
    """boto3's SSE-C parameters (it base64-encodes the key and adds its MD5)."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def copy_source_sse(key: bytes = KEY) -> dict[str, Any]:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def key_md5(key: bytes = KEY) -> str:
    return base64.b64encode(hashlib.md5(key).digest()).decode()


def header_values(key: bytes = KEY) -> dict[str, str]:
    return {ALGORITHM: "AES256",
            "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
            "x-amz-server-side-encryption-customer-key-MD5": key_md5(key)}


def marked(size: int) -> bytes:
    data = bytearray(os.urandom(size))
    for at in range(0, size - len(MARKER), 32 * 1024):
        data[at:at + len(MARKER)] = MARKER
    return bytes(data)


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = raised.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def stored_files_contain(data_dir: Path, needle: bytes) -> bool:
    return any(needle in path.read_bytes() for path in data_dir.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sse-c-store")


@pytest.fixture(scope="module")
def process(data_dir: Path, tls_files: tuple[Path, Path]) -> Iterator[ServerProcess]:
    """HTTPS, no master key: SSE-C objects are the only encrypted ones."""
    with ServerProcess(data_dir, access_key=support.ACCESS_KEY, secret_key=support.SECRET_KEY,
                       tls=tls_files) as server:
        yield server


@pytest.fixture(scope="module")
def s3(process: ServerProcess, tls_files: tuple[Path, Path]) -> Any:
    client = support.s3_client(process.url, verify=str(tls_files[0]), retries=1)
    client.create_bucket(Bucket="sealed")
    return client


# --- PUT, GET, HEAD ---------------------------------------------------------------------------


def test_round_trip_with_ranges_and_what_the_answers_say(s3, data_dir) -> None:  # type: ignore[no-untyped-def]
    small, large = marked(40_000), marked(2 * MIB + 4321)
    put = s3.put_object(Bucket="sealed", Key="small", Body=small, **sse())
    assert (put["SSECustomerAlgorithm"], put["SSECustomerKeyMD5"]) == ("AES256", key_md5())
    assert "ServerSideEncryption" not in put
    assert put["ETag"].strip('"') != hashlib.md5(small).hexdigest()  # AWS: not the MD5
    s3.put_object(Bucket="sealed", Key="large", Body=large, ContentMD5=base64.b64encode(
        hashlib.md5(large).digest()).decode(), **sse())  # Content-MD5 is the plaintext's
    got = s3.get_object(Bucket="sealed", Key="large", **sse())
    assert got["Body"].read() == large
    assert (got["SSECustomerAlgorithm"], got["SSECustomerKeyMD5"]) == ("AES256", key_md5())
    assert s3.get_object(Bucket="sealed", Key="small", **sse())["Body"].read() == small
    for first, last in ((0, 0), (MIB - 7, MIB + 9), (17, 2 * MIB + 100), (2 * MIB + 1, None)):
        wanted = f"bytes={first}-{'' if last is None else last}"
        ranged = s3.get_object(Bucket="sealed", Key="large", Range=wanted, **sse())
        assert ranged["Body"].read() == large[first:None if last is None else last + 1]
    head = s3.head_object(Bucket="sealed", Key="large", **sse())
    assert head["ContentLength"] == len(large) and head["SSECustomerKeyMD5"] == key_md5()
    assert head["ETag"] == got["ETag"]
    assert not stored_files_contain(data_dir, MARKER)
    assert not stored_files_contain(data_dir, KEY)  # the key is never stored
    assert not stored_files_contain(data_dir, base64.b64encode(KEY))


def test_a_missing_key_is_400_and_another_key_403(s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket="sealed", Key="guarded", Body=b"guarded body", **sse())
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket="sealed", Key="guarded")
    assert error_of(raised) == ("InvalidRequest", 400)
    assert raised.value.response["Error"]["Message"] == (
        "The object was stored using a form of Server Side Encryption. The correct "
        "parameters must be provided to retrieve the object.")
    with pytest.raises(ClientError) as raised:
        s3.head_object(Bucket="sealed", Key="guarded")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as raised:
            call(Bucket="sealed", Key="guarded", **sse(OTHER_KEY))
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as raised:  # a range changes nothing
        s3.get_object(Bucket="sealed", Key="guarded", Range="bytes=0-3", **sse(OTHER_KEY))
    assert error_of(raised) == ("AccessDenied", 403)
    s3.put_object(Bucket="sealed", Key="plain", Body=b"plain")
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket="sealed", Key="plain", **sse())
    assert error_of(raised) == ("InvalidRequest", 400)
    assert "ServerSideEncryption" not in s3.get_object(Bucket="sealed", Key="plain")


def test_header_errors_are_aws_s(process, tls_files) -> None:  # type: ignore[no-untyped-def]
    from s3compat_tests.support import Endpoint, sign_headers

    endpoint = Endpoint(url=process.url, region="us-east-1", access_key=support.ACCESS_KEY,
                        secret_key=support.SECRET_KEY)
    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    cases = {
        "no md5": ({k: v for k, v in header_values().items() if not k.endswith("MD5")},
                   "must provide the client calculated MD5 of the secret key"),
        "wrong md5": ({**header_values(), "x-amz-server-side-encryption-customer-key-MD5":
                       key_md5(OTHER_KEY)}, "The calculated MD5 hash of the key did not match"),
        "short key": ({**header_values(), "x-amz-server-side-encryption-customer-key":
                       base64.b64encode(bytes(16)).decode()},
                      "The secret key was invalid for the specified algorithm"),
        "no algorithm": ({k: v for k, v in header_values().items() if k != ALGORITHM},
                         "must provide a valid encryption algorithm"),
        "with SSE-S3": ({**header_values(), "x-amz-server-side-encryption": "AES256"},
                        "incompatible with the encryption method"),
    }
    with httpx.Client(verify=trusted, timeout=30) as http:
        for name, (headers, message) in cases.items():
            url = f"{process.url}/sealed/bad-{name.replace(' ', '-')}"
            signed = sign_headers(endpoint, "PUT", url, headers=headers, body=b"x")
            answer = http.put(url, headers=signed, content=b"x")
            assert answer.status_code == 400, (name, answer.text)
            assert "<Code>InvalidArgument</Code>" in answer.text and message in answer.text
            assert base64.b64encode(KEY).decode() not in answer.text
    listed = [o["Key"] for o in support.s3_client(
        process.url, verify=str(tls_files[0])).list_objects_v2(
            Bucket="sealed", Prefix="bad-").get("Contents", [])]
    assert listed == []  # refused before a byte was staged


def test_a_presigned_get_takes_the_key_as_signed_headers(process, s3, tls_files) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket="sealed", Key="shared", Body=MARKER, **sse())
    v4 = boto3.client("s3", endpoint_url=process.url, verify=str(tls_files[0]),
                      aws_access_key_id=support.ACCESS_KEY,
                      aws_secret_access_key=support.SECRET_KEY, region_name="us-east-1",
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    url = v4.generate_presigned_url("get_object", Params={"Bucket": "sealed", "Key": "shared",
                                                          **sse()})
    assert "x-amz-server-side-encryption-customer-key" in url  # named as a signed header
    assert base64.b64encode(KEY).decode() not in url and "customer-key=" not in url
    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    answer = httpx.get(url, headers=header_values(), verify=trusted, timeout=30)
    assert answer.status_code == 200 and answer.content == MARKER
    assert answer.headers["x-amz-server-side-encryption-customer-key-md5"] == key_md5()
    assert httpx.get(url, verify=trusted, timeout=30).status_code == 403  # headers left out


# --- multipart ------------------------------------------------------------------------------


def test_multipart_parts_need_the_upload_s_key(s3, data_dir) -> None:  # type: ignore[no-untyped-def]
    parts = [marked(5 * MIB), marked(MIB + 17)]
    created = s3.create_multipart_upload(Bucket="sealed", Key="mp", **sse())
    assert created["SSECustomerKeyMD5"] == key_md5()
    upload_id = created["UploadId"]
    with pytest.raises(ClientError) as raised:
        s3.upload_part(Bucket="sealed", Key="mp", UploadId=upload_id, PartNumber=1,
                       Body=parts[0])
    assert error_of(raised) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as raised:
        s3.upload_part(Bucket="sealed", Key="mp", UploadId=upload_id, PartNumber=1,
                       Body=parts[0], **sse(OTHER_KEY))
    assert error_of(raised) == ("InvalidArgument", 400)
    completed = []
    for number, body in enumerate(parts, start=1):
        part = s3.upload_part(Bucket="sealed", Key="mp", UploadId=upload_id, PartNumber=number,
                              Body=body, **sse())
        assert part["SSECustomerKeyMD5"] == key_md5()
        assert part["ETag"].strip('"') != hashlib.md5(body).hexdigest()
        completed.append({"PartNumber": number, "ETag": part["ETag"]})
    # Complete needs no key.
    s3.complete_multipart_upload(Bucket="sealed", Key="mp", UploadId=upload_id,
                                 MultipartUpload={"Parts": completed})
    whole = b"".join(parts)
    assert s3.get_object(Bucket="sealed", Key="mp", **sse())["Body"].read() == whole
    second = s3.get_object(Bucket="sealed", Key="mp", PartNumber=2, **sse())
    assert second["Body"].read() == parts[1] and second["PartsCount"] == 2
    boundary = len(parts[0])
    ranged = s3.get_object(Bucket="sealed", Key="mp", Range=f"bytes={boundary - 5}-"
                           f"{boundary + 5}", **sse())
    assert ranged["Body"].read() == whole[boundary - 5:boundary + 6]
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket="sealed", Key="mp", PartNumber=1)
    assert error_of(raised) == ("InvalidRequest", 400)
    assert not stored_files_contain(data_dir, MARKER)


def test_upload_part_copy_from_an_sse_c_source(s3) -> None:  # type: ignore[no-untyped-def]
    source = marked(6 * MIB)
    s3.put_object(Bucket="sealed", Key="part-source", Body=source, **sse())
    created = s3.create_multipart_upload(Bucket="sealed", Key="assembled", **sse(OTHER_KEY))
    upload_id = created["UploadId"]
    copy_source = {"Bucket": "sealed", "Key": "part-source"}
    with pytest.raises(ClientError) as raised:  # the source's key left out
        s3.upload_part_copy(Bucket="sealed", Key="assembled", UploadId=upload_id,
                            PartNumber=1, CopySource=copy_source, **sse(OTHER_KEY))
    assert error_of(raised) == ("InvalidRequest", 400)
    first = s3.upload_part_copy(Bucket="sealed", Key="assembled", UploadId=upload_id,
                                PartNumber=1, CopySource=copy_source,
                                CopySourceRange=f"bytes=0-{5 * MIB - 1}",
                                **copy_source_sse(), **sse(OTHER_KEY))
    second = s3.upload_part_copy(Bucket="sealed", Key="assembled", UploadId=upload_id,
                                 PartNumber=2, CopySource=copy_source,
                                 CopySourceRange=f"bytes={5 * MIB}-{6 * MIB - 1}",
                                 **copy_source_sse(), **sse(OTHER_KEY))
    assert first["SSECustomerKeyMD5"] == key_md5(OTHER_KEY)
    s3.complete_multipart_upload(
        Bucket="sealed", Key="assembled", UploadId=upload_id, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
            {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]},
        **sse(OTHER_KEY))  # given (as s3transfer does), it must be the upload's
    assert s3.get_object(Bucket="sealed", Key="assembled", **sse(OTHER_KEY))[
        "Body"].read() == source
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket="sealed", Key="assembled", **sse())
    assert error_of(raised) == ("AccessDenied", 403)


# --- copies ---------------------------------------------------------------------------------


def test_copies_between_keys_and_to_and_from_plain(s3) -> None:  # type: ignore[no-untyped-def]
    body = marked(MIB + 99)
    s3.put_object(Bucket="sealed", Key="copy-source", Body=body, **sse())
    source = {"Bucket": "sealed", "Key": "copy-source"}
    with pytest.raises(ClientError) as raised:
        s3.copy_object(Bucket="sealed", Key="copy-x", CopySource=source)
    assert error_of(raised) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as raised:
        s3.copy_object(Bucket="sealed", Key="copy-x", CopySource=source,
                       **copy_source_sse(OTHER_KEY))
    assert error_of(raised) == ("AccessDenied", 403)
    rekeyed = s3.copy_object(Bucket="sealed", Key="copy-other-key", CopySource=source,
                             **copy_source_sse(), **sse(OTHER_KEY))
    assert rekeyed["SSECustomerKeyMD5"] == key_md5(OTHER_KEY)
    assert s3.get_object(Bucket="sealed", Key="copy-other-key", **sse(OTHER_KEY))[
        "Body"].read() == body
    s3.copy_object(Bucket="sealed", Key="copy-plain", CopySource=source, **copy_source_sse())
    plain = s3.get_object(Bucket="sealed", Key="copy-plain")
    assert plain["Body"].read() == body and plain["ETag"].strip('"') == hashlib.md5(
        body).hexdigest()
    s3.copy_object(Bucket="sealed", Key="copy-sealed-again",
                   CopySource={"Bucket": "sealed", "Key": "copy-plain"}, **sse())
    assert s3.get_object(Bucket="sealed", Key="copy-sealed-again", **sse())[
        "Body"].read() == body
    with pytest.raises(ClientError) as raised:  # a copy-source key for a plain source
        s3.copy_object(Bucket="sealed", Key="copy-y",
                       CopySource={"Bucket": "sealed", "Key": "copy-plain"},
                       **copy_source_sse())
    assert error_of(raised) == ("InvalidRequest", 400)


def test_key_rotation_is_a_copy_onto_itself(s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket="sealed", Key="rotated", Body=MARKER, Metadata={"kept": "yes"},
                  **sse())
    source = {"Bucket": "sealed", "Key": "rotated"}
    s3.copy_object(Bucket="sealed", Key="rotated", CopySource=source, **copy_source_sse(),
                   **sse(OTHER_KEY))
    got = s3.get_object(Bucket="sealed", Key="rotated", **sse(OTHER_KEY))
    assert got["Body"].read() == MARKER and got["Metadata"] == {"kept": "yes"}
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket="sealed", Key="rotated", **sse())
    assert error_of(raised) == ("AccessDenied", 403)
    # Taking SSE-C off is a change of encryption too.
    s3.copy_object(Bucket="sealed", Key="rotated", CopySource=source,
                   **copy_source_sse(OTHER_KEY))
    assert s3.get_object(Bucket="sealed", Key="rotated")["Body"].read() == MARKER


def test_get_object_attributes_needs_the_key(s3) -> None:  # type: ignore[no-untyped-def]
    put = s3.put_object(Bucket="sealed", Key="attributes", Body=b"attributes", **sse())
    with pytest.raises(ClientError) as raised:
        s3.get_object_attributes(Bucket="sealed", Key="attributes",
                                 ObjectAttributes=["ETag", "ObjectSize"])
    assert error_of(raised) == ("InvalidRequest", 400)
    # botocore encodes the key for this operation only as it is given: base64, with its MD5.
    encoded = {"SSECustomerAlgorithm": "AES256",
               "SSECustomerKey": base64.b64encode(KEY).decode(), "SSECustomerKeyMD5": key_md5()}
    got = s3.get_object_attributes(Bucket="sealed", Key="attributes",
                                   ObjectAttributes=["ETag", "ObjectSize"], **encoded)
    assert (got["ETag"], got["ObjectSize"]) == (put["ETag"].strip('"'), len(b"attributes"))


def test_a_post_form_with_sse_c_fields(s3, tls_files) -> None:  # type: ignore[no-untyped-def]
    fields = {ALGORITHM: "AES256",
              "x-amz-server-side-encryption-customer-key": base64.b64encode(KEY).decode(),
              "x-amz-server-side-encryption-customer-key-MD5": key_md5()}
    presigned = s3.generate_presigned_post("sealed", "form/${filename}", Fields=fields,
                                           Conditions=[{k: v} for k, v in fields.items()])
    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    answer = httpx.post(presigned["url"], data=presigned["fields"],
                        files={"file": ("f.bin", MARKER)}, verify=trusted, timeout=30)
    assert answer.status_code == 204, answer.text
    assert answer.headers["x-amz-server-side-encryption-customer-key-md5"] == key_md5()
    assert s3.get_object(Bucket="sealed", Key="form/f.bin", **sse())["Body"].read() == MARKER
    with pytest.raises(ClientError):
        s3.get_object(Bucket="sealed", Key="form/f.bin")


# --- pre-commit functions -------------------------------------------------------------------


def test_a_function_judges_the_plaintext_of_an_sse_c_put(process, s3, tls_files,
                                                        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))  # the admin client's trust
    support.register(process, "first-byte", {
        "kind": "python", "entry_point": "triggers.examples:first_byte",
        "actions": [{"annotate": "metadata"}]})
    s3.create_bucket(Bucket="judged")
    support.bind(s3, "judged", "first-byte")
    answer = s3.put_object(Bucket="judged", Key="a", Body=b"A" * (MIB + 10), **sse())
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-squall-label"] == "byte-41"
    head = s3.head_object(Bucket="judged", Key="a", **sse())
    assert head["Metadata"]["squall-label"] == "byte-41"
    # A multipart upload: Complete carries the key (boto3's transfer manager does) ...
    upload = s3.create_multipart_upload(Bucket="judged", Key="mp", **sse())
    part = s3.upload_part(Bucket="judged", Key="mp", UploadId=upload["UploadId"],
                          PartNumber=1, Body=b"B" * 100, **sse())
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    # ... without it the function cannot read the body: refused, the upload kept.
    with pytest.raises(ClientError) as raised:
        s3.complete_multipart_upload(Bucket="judged", Key="mp", UploadId=upload["UploadId"],
                                     MultipartUpload=parts)
    assert error_of(raised) == ("InvalidRequest", 400)
    assert "customer-provided key" in raised.value.response["Error"]["Message"]
    done = s3.complete_multipart_upload(Bucket="judged", Key="mp", UploadId=upload["UploadId"],
                                        MultipartUpload=parts, **sse())
    assert done["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-squall-label"] == "byte-42"


# --- the aws cli ----------------------------------------------------------------------------


def test_aws_cli_sse_c(process, tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir()
    key_file = tmp_path / "customer.key"
    key_file.write_bytes(KEY)
    source = tmp_path / "big.bin"
    source.write_bytes(marked(9 * MIB))  # over the cli's 8 MiB: a multipart upload
    sse_c = ("--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}")
    copied = support.aws_cli(process, home, "s3", "cp", *sse_c, str(source),
                             "s3://sealed/cli/big.bin")
    assert copied.returncode == 0, copied.stderr
    back = tmp_path / "back.bin"
    fetched = support.aws_cli(process, home, "s3", "cp", *sse_c, "s3://sealed/cli/big.bin",
                              str(back))
    assert fetched.returncode == 0, fetched.stderr
    assert back.read_bytes() == source.read_bytes()
    head = support.aws_cli(process, home, "s3api", "head-object", "--bucket", "sealed",
                           "--key", "cli/big.bin", "--sse-customer-algorithm", "AES256",
                           "--sse-customer-key", f"fileb://{key_file}")
    assert head.returncode == 0, head.stderr
    assert json.loads(head.stdout)["SSECustomerKeyMD5"] == key_md5()
    refused = support.aws_cli(process, home, "s3", "cp", "s3://sealed/cli/big.bin",
                              str(tmp_path / "refused.bin"))
    assert refused.returncode != 0 and "400" in refused.stderr


# --- the HTTPS rule, and beside SSE-S3 ------------------------------------------------------


def test_plain_http_is_refused_unless_allowed_and_sse_c_works_beside_a_master_key(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "master.key"
    key_file.write_text(os.urandom(32).hex())
    with ServerProcess(tmp_path / "plain", access_key=support.ACCESS_KEY,
                       secret_key=support.SECRET_KEY, extra_args=("--volatile",)) as server:
        s3 = support.s3_client(server.url, retries=1)
        s3.create_bucket(Bucket="clear")
        for call in (lambda: s3.put_object(Bucket="clear", Key="k", Body=b"x", **sse()),
                     lambda: s3.get_object(Bucket="clear", Key="k", **sse())):
            with pytest.raises(ClientError) as raised:
                call()
            assert error_of(raised) == ("InvalidRequest", 400)
            assert raised.value.response["Error"]["Message"] == (
                "Requests specifying Server Side Encryption with Customer provided keys "
                "must be made over a secure connection.")
        assert "Contents" not in s3.list_objects_v2(Bucket="clear")
    data = tmp_path / "proxied"
    with ServerProcess(data, access_key=support.ACCESS_KEY, secret_key=support.SECRET_KEY,
                       extra_args=("--volatile", "--allow-sse-c-over-http",
                                   "--encryption-key-file", str(key_file))) as server:
        s3 = support.s3_client(server.url, retries=1)
        s3.create_bucket(Bucket="proxied")
        put = s3.put_object(Bucket="proxied", Key="c", Body=MARKER, **sse())
        assert put["SSECustomerKeyMD5"] == key_md5() and "ServerSideEncryption" not in put
        s3.put_object(Bucket="proxied", Key="s3", Body=MARKER)
        assert s3.get_object(Bucket="proxied", Key="s3")["ServerSideEncryption"] == "AES256"
        got = s3.get_object(Bucket="proxied", Key="c", **sse())
        assert got["Body"].read() == MARKER and "ServerSideEncryption" not in got
        with pytest.raises(ClientError) as raised:
            s3.get_object(Bucket="proxied", Key="c")
        assert error_of(raised) == ("InvalidRequest", 400)
        # Bucket default encryption does not apply to SSE-C writes.
        s3.put_bucket_encryption(Bucket="proxied", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        again = s3.put_object(Bucket="proxied", Key="c2", Body=MARKER, **sse())
        assert "ServerSideEncryption" not in again
    assert not stored_files_contain(data, MARKER)
    # squall verify: an SSE-C body is not damage (it has no key for it).
    checked = subprocess.run([sys.executable, "-m", "squall", "verify", "--data-dir", str(data),
                              "--encryption-key-file", str(key_file)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 SSE-C bodies" in checked.stdout and "0 problem(s)" in checked.stdout
