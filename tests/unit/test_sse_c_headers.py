"""SSE-C headers in the gateway (gateway/s3/encryption.py): parsing and validating the
x-amz-server-side-encryption-customer-* headers as AWS does (its messages, as MinIO and
Ceph RGW give them), the HTTPS rule and its flag, which operations take which keys, the
answers to a missing or wrong key, and the response headers."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import Response

from gateway.errors import S3Error, error_for_storage
from gateway.requests import IndexedHeaders
from gateway.s3 import encryption
from storage import api

RAW_KEY = bytes(range(32))
KEY_B64 = base64.b64encode(RAW_KEY).decode()
KEY_MD5 = base64.b64encode(hashlib.md5(RAW_KEY).digest()).decode()
ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
KEY = "x-amz-server-side-encryption-customer-key"
MD5 = "x-amz-server-side-encryption-customer-key-md5"
# A copy source's headers, spelled out (not derived: the derivation is what is tested).
SOURCE_NAMES = {ALGORITHM: "x-amz-copy-source-server-side-encryption-customer-algorithm",
                KEY: "x-amz-copy-source-server-side-encryption-customer-key",
                MD5: "x-amz-copy-source-server-side-encryption-customer-key-md5"}


def sse_c(source: bool = False, **overrides: str | None) -> dict[str, str]:
    headers = {ALGORITHM: "AES256", KEY: KEY_B64, MD5: KEY_MD5}
    for name, value in overrides.items():
        header = {"algorithm": ALGORITHM, "key": KEY, "md5": MD5}[name]
        if value is None:
            del headers[header]
        else:
            headers[header] = value
    if source:
        return {SOURCE_NAMES[name]: value for name, value in headers.items()}
    return headers


def indexed(headers: dict[str, str]) -> IndexedHeaders:
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1"))
           for name, value in headers.items()]
    return IndexedHeaders({"type": "http", "headers": raw})


def refused(headers: dict[str, str]) -> S3Error:
    with pytest.raises(S3Error) as raised:
        encryption.parse_customer_key(headers)
    return raised.value


# --- parsing --------------------------------------------------------------------------------


def test_no_headers_no_key() -> None:
    assert encryption.parse_customer_key({}) is None


def test_a_valid_key() -> None:
    key = encryption.parse_customer_key(sse_c())
    assert key is not None and key.key == RAW_KEY and key.key_md5 == KEY_MD5
    source = encryption.parse_customer_key(sse_c(source=True), copy_source=True)
    assert source == key
    assert encryption.parse_customer_key(sse_c(source=True)) is None  # not the copy's own
    assert encryption.parse_customer_key(sse_c(), copy_source=True) is None


@pytest.mark.parametrize(("overrides", "message", "argument"), [
    ({"algorithm": None}, "must provide a valid encryption algorithm", ALGORITHM),
    ({"algorithm": "AES128"}, "must provide a valid encryption algorithm", ALGORITHM),
    ({"algorithm": "aws:kms"}, "must provide a valid encryption algorithm", ALGORITHM),
    ({"key": None}, "must provide an appropriate secret key", KEY),
    ({"key": ""}, "must provide an appropriate secret key", KEY),
    ({"key": "not base64!"}, "The secret key was invalid for the specified algorithm", KEY),
    ({"key": base64.b64encode(bytes(16)).decode()},
     "The secret key was invalid for the specified algorithm", KEY),
    ({"key": base64.b64encode(bytes(33)).decode()},
     "The secret key was invalid for the specified algorithm", KEY),
    ({"md5": None}, "must provide the client calculated MD5 of the secret key",
     "x-amz-server-side-encryption-customer-key-MD5"),
    ({"md5": "AAAAAAAAAAAAAAAAAAAAAA=="}, "The calculated MD5 hash of the key did not match",
     "x-amz-server-side-encryption-customer-key-MD5"),
    # boto3 sends the raw key's MD5; an MD5 of the base64 text is another digest.
    ({"md5": base64.b64encode(hashlib.md5(KEY_B64.encode()).digest()).decode()},
     "The calculated MD5 hash of the key did not match",
     "x-amz-server-side-encryption-customer-key-MD5"),
])
def test_what_aws_refuses_is_invalid_argument(overrides, message, argument) -> None:  # type: ignore[no-untyped-def]
    error = refused(sse_c(**overrides))
    assert (error.code, error.status) == ("InvalidArgument", 400)
    assert message in error.message
    assert error.fields["ArgumentName"] == argument
    assert KEY_B64 not in repr((error.message, error.fields))  # the key is never echoed


def test_only_a_key_or_only_an_md5_is_refused() -> None:
    """ceph/s3-tests test_encryption_key_no_sse_c and _no_key: 400 InvalidArgument."""
    assert refused({KEY: KEY_B64, MD5: KEY_MD5}).code == "InvalidArgument"
    assert refused({MD5: KEY_MD5}).code == "InvalidArgument"
    assert refused({ALGORITHM: "AES256"}).code == "InvalidArgument"


@given(st.dictionaries(st.sampled_from([ALGORITHM, KEY, MD5]),
                       st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80)))
def test_any_header_values_give_a_key_or_an_s3_error(headers: dict[str, str]) -> None:
    try:
        key = encryption.parse_customer_key(headers)
    except S3Error as error:
        assert (error.code, error.status) == ("InvalidArgument", 400)
        # One of AWS's fixed sentences, and only the algorithm's value is ever echoed.
        assert "{" not in error.message and KEY not in error.message
        assert "ArgumentValue" not in error.fields or error.fields["ArgumentName"] == ALGORITHM
    else:
        assert key is None or len(key.key) == 32


# --- which requests, over which transport ------------------------------------------------


def test_plain_http_is_refused_unless_the_server_is_told_otherwise() -> None:
    headers = indexed(sse_c())
    with pytest.raises(S3Error) as raised:
        encryption.requested_customer_keys(headers, "PutObject", secure=False,
                                           over_http_allowed=False)
    assert (raised.value.code, raised.value.status) == ("InvalidRequest", 400)
    assert raised.value.message == ("Requests specifying Server Side Encryption with Customer "
                                    "provided keys must be made over a secure connection.")
    allowed = encryption.requested_customer_keys(headers, "PutObject", secure=False,
                                                 over_http_allowed=True)
    assert allowed.target is not None and allowed.source is None
    assert encryption.requested_customer_keys(headers, "GetObject", secure=True,
                                              over_http_allowed=False).target is not None


@pytest.mark.parametrize("secure", [True, False])
def test_a_cluster_refuses_customer_keys_as_not_implemented(secure: bool) -> None:
    """Its storage links carry no TLS, and a key never crosses a network in clear text:
    501 whatever the client's connection, for the object's key and a copy source's."""
    for headers, operation in ((sse_c(), "PutObject"), (sse_c(True), "CopyObject")):
        with pytest.raises(S3Error) as raised:
            encryption.requested_customer_keys(indexed(headers), operation, secure=secure,
                                               over_http_allowed=True, cluster=True)
        assert (raised.value.code, raised.value.status) == ("NotImplemented", 501)
        assert "replicated cluster" in raised.value.message
    plain = indexed({"content-type": "text/plain"})
    assert encryption.requested_customer_keys(plain, "PutObject", secure=False,
                                              over_http_allowed=False, cluster=True) is \
        encryption.NO_CUSTOMER_KEYS


def test_the_https_rule_comes_before_the_header_checks() -> None:
    """A malformed key sent in clear text is still a key sent in clear text."""
    with pytest.raises(S3Error) as raised:
        encryption.requested_customer_keys(indexed(sse_c(md5="bad")), "PutObject",
                                           secure=False, over_http_allowed=False)
    assert raised.value.code == "InvalidRequest"


def test_requests_without_sse_c_headers_take_the_fast_path() -> None:
    plain = indexed({"content-type": "text/plain"})
    assert encryption.requested_customer_keys(plain, "GetObject", secure=False,
                                              over_http_allowed=False) is \
        encryption.NO_CUSTOMER_KEYS


@pytest.mark.parametrize("operation", ["DeleteObject", "PutObjectTagging", "ListObjects"])
def test_other_operations_ignore_the_headers(operation: str) -> None:
    assert encryption.requested_customer_keys(indexed(sse_c()), operation, secure=False,
                                              over_http_allowed=False) == \
        encryption.NO_CUSTOMER_KEYS


def test_copy_source_keys_on_copies_only() -> None:
    both = indexed({**sse_c(source=True), **sse_c(key=base64.b64encode(bytes(32)).decode(),
                                             md5=base64.b64encode(
                                                 hashlib.md5(bytes(32)).digest()).decode())})
    for operation in ("CopyObject", "UploadPartCopy"):
        keys = encryption.requested_customer_keys(both, operation, secure=True,
                                                  over_http_allowed=False)
        assert keys.source is not None and keys.source.key == RAW_KEY
        assert keys.target is not None and keys.target.key == bytes(32)
    only_source = indexed(sse_c(source=True))
    assert encryption.requested_customer_keys(only_source, "PutObject", secure=False,
                                              over_http_allowed=False) == \
        encryption.NO_CUSTOMER_KEYS
    with pytest.raises(S3Error, match="secure connection"):
        encryption.requested_customer_keys(only_source, "CopyObject", secure=False,
                                           over_http_allowed=False)
    with pytest.raises(S3Error) as raised:
        encryption.requested_customer_keys(indexed(sse_c(True, md5="x")), "UploadPartCopy",
                                           secure=True, over_http_allowed=False)
    assert raised.value.code == "InvalidArgument"


def test_sse_s3_beside_sse_c_is_incompatible() -> None:
    headers = indexed({**sse_c(), "x-amz-server-side-encryption": "AES256"})
    with pytest.raises(S3Error) as raised:
        encryption.requested_customer_keys(headers, "PutObject", secure=True,
                                           over_http_allowed=False)
    assert (raised.value.code, raised.value.status) == ("InvalidArgument", 400)
    assert "incompatible" in raised.value.message
    # A copy may read an SSE-C source and write an SSE-S3 object.
    copy = indexed({**sse_c(source=True), "x-amz-server-side-encryption": "AES256"})
    assert encryption.requested_customer_keys(copy, "CopyObject", secure=True,
                                              over_http_allowed=False).source is not None


def test_sse_c_headers_are_no_longer_501_but_kms_still_is() -> None:
    encryption.check_encryption(indexed(sse_c()), at_rest=False)
    with pytest.raises(S3Error) as raised:
        encryption.check_encryption(indexed({"x-amz-server-side-encryption": "aws:kms"}),
                                    at_rest=True)
    assert raised.value.status == 501


# --- keys against objects -------------------------------------------------------------------


CUSTOMER = api.CustomerKey.of(RAW_KEY)
OTHER = api.CustomerKey.of(bytes(32))


def test_reading_an_object() -> None:
    record = CUSTOMER.new_record()
    encryption.check_object_key(record, CUSTOMER)
    encryption.check_object_key(None, None)
    answers = {}
    for stored, given_key in ((record, None), (record, OTHER), (None, CUSTOMER)):
        with pytest.raises(S3Error) as raised:
            encryption.check_object_key(stored, given_key)
        answers[(stored is None, given_key)] = (raised.value.code, raised.value.status,
                                                raised.value.message)
    assert answers[(False, None)] == ("InvalidRequest", 400, encryption.ENCRYPTED_OBJECT_MESSAGE)
    assert answers[(False, OTHER)][:2] == ("AccessDenied", 403)
    assert answers[(True, CUSTOMER)] == ("InvalidRequest", 400,
                                         encryption.NOT_APPLICABLE_MESSAGE)


def test_a_part_of_an_upload() -> None:
    record = CUSTOMER.new_record()
    encryption.check_upload_key(record, CUSTOMER)
    with pytest.raises(S3Error) as missing:
        encryption.check_upload_key(record, None)
    assert missing.value.code == "InvalidRequest" and "Subsequent part requests" in (
        missing.value.message)
    with pytest.raises(S3Error) as other:
        encryption.check_upload_key(record, OTHER)
    assert (other.value.code, other.value.status) == ("InvalidArgument", 400)


@pytest.mark.parametrize(("error", "code", "status"), [
    (api.CustomerKeyRequired("x"), "InvalidRequest", 400),
    (api.CustomerKeyMismatch("x"), "AccessDenied", 403),
    (api.CustomerKeyNotApplicable("x"), "InvalidRequest", 400),
])
def test_the_error_table_maps_storage_s_key_errors(error, code, status) -> None:  # type: ignore[no-untyped-def]
    mapped = error_for_storage(error)
    assert (mapped.code, mapped.status) == (code, status)


def test_etags() -> None:
    md5 = hashlib.md5(b"body").digest()
    assert encryption.body_etag(md5, None, None) == md5.hex()
    record = CUSTOMER.new_record()
    assert encryption.body_etag(md5, CUSTOMER, record) == CUSTOMER.etag(record, md5) != md5.hex()


# --- response headers -----------------------------------------------------------------------


def test_responses_echo_the_algorithm_and_the_md5_never_the_key() -> None:
    record = CUSTOMER.new_record()
    response = Response(status_code=200)
    encryption.say_encrypted(response, "GetObject", True, record)
    assert response.headers[ALGORITHM] == "AES256"
    assert response.headers[MD5] == KEY_MD5
    assert "x-amz-server-side-encryption" not in response.headers  # not SSE-S3
    assert KEY_B64 not in str(response.headers)
    completed = Response(status_code=200)  # AWS's Complete output has no SSE-C members
    encryption.say_encrypted(completed, "CompleteMultipartUpload", True, record)
    assert dict(completed.headers).keys() == {"content-length"}
    plain = Response(status_code=200)
    encryption.say_encrypted(plain, "GetObject", True, None)
    assert plain.headers["x-amz-server-side-encryption"] == "AES256"
    failed = Response(status_code=403)
    encryption.say_encrypted(failed, "GetObject", True, record)
    assert ALGORITHM not in failed.headers
