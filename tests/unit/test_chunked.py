"""aws-chunked decoding: AWS's published example, botocore's encoder, every split point."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import zlib
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, Sha256Checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth import sigv4
from gateway.auth.chunked import (
    AwsChunkedDecoder,
    ChunkedError,
    ChunkSignatureChain,
    decode_stream,
    decoder_for,
)
from gateway.auth.sigv4 import AuthContext, PayloadMode
from storage.api import limits

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TIMESTAMP = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"
SIGNING_KEY = sigv4.derive_signing_key(SECRET, "20130524", "us-east-1")
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
# The signatures AWS publishes for its 66560-byte example (64 KiB, 1 KiB, final).
DOC_SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
# aws-c-auth's test vector: trailers first:1st, second:2nd, third:3rd after the example.
DOC_TRAILER_SIGNATURE = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"


def doc_body(trailer: bool = False) -> bytes:
    body = bytearray()
    for size, signature in zip((65536, 1024, 0), DOC_SIGNATURES, strict=True):
        body += b"%x;chunk-signature=%s\r\n" % (size, signature.encode())
        if size:
            body += b"a" * size + b"\r\n"
    if trailer:
        body += b"first:1st\r\nsecond:2nd\r\nthird:3rd\r\n"
        body += b"x-amz-trailer-signature:%s\r\n" % DOC_TRAILER_SIGNATURE.encode()
    return bytes(body + b"\r\n")


def signed_decoder(
    trailer: bool = False, length: int | None = None, names: frozenset[str] | None = None
) -> AwsChunkedDecoder:
    chain = ChunkSignatureChain(SIGNING_KEY, TIMESTAMP, SCOPE, SEED)
    return AwsChunkedDecoder(
        chain=chain, trailer_expected=trailer, decoded_length_bytes=length, trailer_names=names
    )


def unsigned_decoder(
    length: int | None = None, names: frozenset[str] | None = None
) -> AwsChunkedDecoder:
    return AwsChunkedDecoder(
        chain=None, trailer_expected=True, decoded_length_bytes=length, trailer_names=names
    )


def decode(decoder: AwsChunkedDecoder, parts: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
    out = bytearray()
    for part in parts:
        for piece in decoder.feed(part):
            out += piece
    return bytes(out), decoder.finish()


def split(body: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = [0, *sorted({c % (len(body) + 1) for c in cuts}), len(body)]
    return [body[a:b] for a, b in zip(points, points[1:], strict=False)]


def expect(code: str, call: Callable[[], object]) -> ChunkedError:
    with pytest.raises(ChunkedError) as info:
        call()
    assert info.value.code == code, info.value.message
    return info.value


# --- a by-hand encoder for the signed modes, written from the AWS documentation -------


def hand_sign(previous: str, prefix: str, digest_lines: Sequence[str]) -> str:
    to_sign = "\n".join((prefix, TIMESTAMP, SCOPE, previous, *digest_lines))
    return hmac.new(SIGNING_KEY, to_sign.encode(), hashlib.sha256).hexdigest()


def hand_encode_signed(payload: bytes, chunk_size: int, trailers: dict[str, str] | None) -> bytes:
    body, previous = bytearray(), SEED
    chunks = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    for chunk in chunks:
        digests = (hashlib.sha256(b"").hexdigest(), hashlib.sha256(chunk).hexdigest())
        previous = hand_sign(previous, "AWS4-HMAC-SHA256-PAYLOAD", digests)
        body += b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode())
        if chunk:
            body += chunk + b"\r\n"
    if trailers is not None:
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers.items())
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        signature = hand_sign(previous, "AWS4-HMAC-SHA256-TRAILER", (digest,))
        body += canonical.replace("\n", "\r\n").encode()
        body += f"x-amz-trailer-signature:{signature}\r\n".encode()
    return bytes(body + b"\r\n")


def botocore_encode(
    payload: bytes, chunk_size: int, checksum: type | None = Crc32Checksum
) -> bytes:
    name = "x-amz-checksum-sha256" if checksum is Sha256Checksum else "x-amz-checksum-crc32"
    wrapper = AwsChunkedWrapper(io.BytesIO(payload), checksum, name, chunk_size)
    return wrapper.read()


def crc32_b64(payload: bytes) -> str:
    return base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()


# --- AWS's published vectors -----------------------------------------------------------


def test_aws_documentation_example_decodes() -> None:
    payload, trailers = decode(signed_decoder(length=66560), [doc_body()])
    assert payload == b"a" * 66560 and trailers == {}


def test_aws_documentation_example_through_authenticate() -> None:
    context = AuthContext(
        access_key="AKIAIOSFODNN7EXAMPLE",
        region="us-east-1",
        timestamp=TIMESTAMP,
        scope=SCOPE,
        signing_key=SIGNING_KEY,
        seed_signature=SEED,
        payload_mode=PayloadMode.STREAMING_SIGNED,
        payload_sha256_hex=None,
        presigned=False,
        decoded_content_length_bytes=66560,
    )
    payload, _ = decode(decoder_for(context), [doc_body()])
    assert len(payload) == 66560


def test_aws_crt_trailer_vector() -> None:
    names = frozenset({"first", "second", "third"})
    payload, trailers = decode(signed_decoder(trailer=True, names=names), [doc_body(trailer=True)])
    assert len(payload) == 66560
    assert trailers == {"first": "1st", "second": "2nd", "third": "3rd"}


def test_hand_encoder_reproduces_the_documented_signatures() -> None:
    assert hand_encode_signed(b"a" * 66560, 65536, None) == doc_body()
    assert hand_encode_signed(
        b"a" * 66560, 65536, {"first": "1st", "second": "2nd", "third": "3rd"}
    ) == doc_body(trailer=True)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_aws_example_split_anywhere(cuts: list[int]) -> None:
    body = doc_body(trailer=True)
    payload, trailers = decode(signed_decoder(trailer=True), split(body, cuts))
    assert payload == b"a" * 66560 and len(trailers) == 3


# --- botocore's encoder (what boto3 sends for PutObject and UploadPart) ---------------


def test_botocore_default_shape() -> None:
    body = botocore_encode(b"hello", 1024 * 1024)
    assert (
        body == b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % crc32_b64(b"hello").encode()
    )
    names = frozenset({"x-amz-checksum-crc32"})
    payload, trailers = decode(unsigned_decoder(5, names), [body])
    assert payload == b"hello" and trailers == {"x-amz-checksum-crc32": crc32_b64(b"hello")}


@settings(max_examples=120, deadline=None)
@given(
    payload=st.binary(max_size=3000),
    chunk_size=st.integers(min_value=1, max_value=700),
    cuts=st.lists(st.integers(min_value=0), max_size=10),
    checksum=st.sampled_from([Crc32Checksum, Sha256Checksum, None]),
)
def test_botocore_streams_split_anywhere(
    payload: bytes, chunk_size: int, cuts: list[int], checksum: type | None
) -> None:
    body = botocore_encode(payload, chunk_size, checksum)
    names = frozenset() if checksum is None else None
    decoded, trailers = decode(unsigned_decoder(len(payload), names), split(body, cuts))
    assert decoded == payload
    assert len(trailers) == (0 if checksum is None else 1)


@settings(max_examples=80, deadline=None)
@given(
    payload=st.binary(max_size=2000),
    chunk_size=st.integers(min_value=1, max_value=600),
    cuts=st.lists(st.integers(min_value=0), max_size=10),
    with_trailer=st.booleans(),
)
def test_signed_streams_split_anywhere(
    payload: bytes, chunk_size: int, cuts: list[int], with_trailer: bool
) -> None:
    trailers = {"x-amz-checksum-crc32": crc32_b64(payload)} if with_trailer else None
    body = hand_encode_signed(payload, chunk_size, trailers)
    decoder = signed_decoder(trailer=with_trailer, length=len(payload))
    decoded, received = decode(decoder, split(body, cuts))
    assert decoded == payload and received == (trailers or {})


def test_every_single_split_point_and_byte_at_a_time() -> None:
    payload = bytes(range(256)) * 3
    trailers = {"x-amz-checksum-crc32": crc32_b64(payload)}
    signed = hand_encode_signed(payload, 100, trailers)
    unsigned = botocore_encode(payload, 100)
    for body, make in (
        (signed, lambda: signed_decoder(trailer=True)),
        (unsigned, unsigned_decoder),
    ):
        for cut in range(len(body) + 1):
            assert decode(make(), [body[:cut], body[cut:]])[0] == payload
        assert decode(make(), [body[i : i + 1] for i in range(len(body))])[0] == payload


def test_pieces_are_views_into_the_fed_bytes() -> None:
    data = botocore_encode(b"x" * 5000, 5000)
    pieces = unsigned_decoder().feed(data)
    assert len(pieces) == 1 and pieces[0].obj is data and pieces[0].nbytes == 5000


def test_decode_stream_adapts_an_async_body() -> None:
    body = doc_body()

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 10_000):
            yield body[start : start + 10_000]
        yield b""  # Starlette ends request.stream() with an empty chunk

    async def collect() -> bytes:
        return b"".join([bytes(p) async for p in decode_stream(signed_decoder(), stream())])

    assert asyncio.run(collect()) == b"a" * 66560


# --- failures --------------------------------------------------------------------------


def test_tampered_chunk_data_or_signature_fails() -> None:
    body = bytearray(doc_body())
    body[66000] = ord("b")  # inside the 1 KiB chunk
    decoder = signed_decoder()
    error = expect("SignatureDoesNotMatch", lambda: decode(decoder, [bytes(body)]))
    assert error.status == 403 and "AWS4-HMAC-SHA256-PAYLOAD" in error.details["StringToSign"]
    swapped = doc_body().replace(DOC_SIGNATURES[2].encode(), DOC_SIGNATURES[1].encode())
    expect("SignatureDoesNotMatch", lambda: decode(signed_decoder(), [swapped]))
    expect(
        "SignatureDoesNotMatch",
        lambda: signed_decoder().feed(b"0;chunk-signature=" + b"0" * 64 + b"\r\n"),
    )


def test_tampered_trailer_fails() -> None:
    body = doc_body(trailer=True).replace(b"second:2nd", b"second:2ne")
    expect("SignatureDoesNotMatch", lambda: decode(signed_decoder(trailer=True), [body]))
    unsigned_trailer = doc_body(trailer=True).replace(
        b"x-amz-trailer-signature:" + DOC_TRAILER_SIGNATURE.encode() + b"\r\n", b""
    )
    expect(
        "MalformedTrailerError", lambda: decode(signed_decoder(trailer=True), [unsigned_trailer])
    )


def test_signed_chunk_without_signature_is_malformed() -> None:
    expect("InvalidRequest", lambda: signed_decoder().feed(b"5\r\nhello\r\n"))
    expect("InvalidRequest", lambda: signed_decoder().feed(b"5;chunk-signature=ABC\r\n"))
    expect(
        "InvalidRequest",
        lambda: unsigned_decoder().feed(b"5;chunk-signature=" + b"0" * 64 + b"\r\n"),
    )


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n",
        b"\r\n",
        b"5\nhello\r\n",
        b"5\r\nhelloXX",
        b"5\r\nhello\r\n0\r\nno-colon-here\r\n\r\n",
        b"5\r\nhello\r\n0\r\n:empty-name\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\nextra",
        b"12345678901234567\r\n",
    ],
)
def test_malformed_framing(body: bytes) -> None:
    decoder = unsigned_decoder()
    with pytest.raises(ChunkedError) as info:
        decode(decoder, [body])
    assert info.value.code in ("InvalidRequest", "MalformedTrailerError")
    assert info.value.status == 400
    with pytest.raises(ChunkedError):
        decoder.feed(b"more")  # a failed decoder stays failed


@pytest.mark.parametrize("cut", [1, 3, 7, 12, 14])
def test_truncated_bodies_are_incomplete(cut: int) -> None:
    body = b"5\r\nhello\r\n0\r\nx:y\r\n\r\n"
    assert decode(unsigned_decoder(), [body])[0] == b"hello"
    decoder = unsigned_decoder()
    decoder.feed(body[:cut])
    expect("IncompleteBody", decoder.finish)


def test_missing_last_empty_line_is_tolerated() -> None:
    assert decode(unsigned_decoder(), [b"5\r\nhello\r\n0\r\nx:y\r\n"])[1] == {"x": "y"}
    assert decode(signed_decoder(), [doc_body()[:-2]])[0] == b"a" * 66560


def test_decoded_length_must_match() -> None:
    body = botocore_encode(b"hello", 2)
    expect("IncompleteBody", lambda: decode(unsigned_decoder(length=6), [body]))
    expect("InvalidRequest", lambda: decode(unsigned_decoder(length=4), [body]))
    assert decode(unsigned_decoder(length=5), [body])[0] == b"hello"


def test_bounds() -> None:
    too_long = b"1" * (limits.aws_chunk_header_bytes_max + 1)
    expect("InvalidRequest", lambda: unsigned_decoder().feed(too_long))
    too_big = b"%x\r\n" % (limits.aws_chunk_size_bytes_max + 1)
    expect("InvalidRequest", lambda: unsigned_decoder().feed(too_big))
    huge_trailer = b"0\r\n" + b"x-a:" + b"v" * limits.aws_trailer_bytes_max + b"\r\n"
    expect("MalformedTrailerError", lambda: unsigned_decoder().feed(huge_trailer))
    # The header bound holds across feeds too.
    decoder = unsigned_decoder()
    decoder.feed(b"0" * (limits.aws_chunk_header_bytes_max // 2))
    expect(
        "InvalidRequest", lambda: decoder.feed(b"0" * (limits.aws_chunk_header_bytes_max // 2 + 1))
    )


def test_declared_trailers_must_arrive_exactly() -> None:
    body = botocore_encode(b"hello", 10)
    declared = frozenset({"x-amz-checksum-crc32"})
    assert decode(unsigned_decoder(names=declared), [body])[1]
    expect("MalformedTrailerError", lambda: decode(unsigned_decoder(names=frozenset()), [body]))
    bare = botocore_encode(b"hello", 10, None)
    expect("MalformedTrailerError", lambda: decode(unsigned_decoder(names=declared), [bare]))
    twice = body.replace(b"\r\n\r\n", b"\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n")
    expect("MalformedTrailerError", lambda: decode(unsigned_decoder(), [twice]))
    signed_in_unsigned = body.replace(
        b"\r\n\r\n", b"\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n"
    )
    expect("MalformedTrailerError", lambda: decode(unsigned_decoder(), [signed_in_unsigned]))


def test_boto3_put_object_end_to_end() -> None:
    """What boto3 really sends: authenticate, decode, then check the trailing CRC32."""
    import time

    import boto3
    from botocore.awsrequest import AWSResponse
    from botocore.config import Config

    from gateway import checksums

    class EmptyRaw:
        def stream(self, **_: object) -> AsyncIterator[bytes]:
            yield b""  # type: ignore[misc]

    sent = []
    client = boto3.client(
        "s3",
        endpoint_url="https://127.0.0.1:9000",
        aws_access_key_id="AK",
        aws_secret_access_key="SK",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    client.meta.events.register(
        "before-send.s3.*",
        lambda request, **_: sent.append(request) or AWSResponse(request.url, 200, {}, EmptyRaw()),
    )
    payload = bytes(range(256)) * 100
    client.put_object(Bucket="bkt", Key="k", Body=payload)
    request = sent[-1]
    parts = request.url.split("://", 1)[1].split("/", 1)
    headers = [
        (k.lower().encode(), v if isinstance(v, bytes) else v.encode())
        for k, v in request.headers.items()
    ]
    if not any(name == b"host" for name, _ in headers):
        headers.append((b"host", parts[0].encode()))
    context = sigv4.authenticate(
        "PUT", b"/" + parts[1].encode(), b"", headers, {"AK": "SK"}.get, time.time()
    )
    assert isinstance(context, AuthContext)
    wanted = checksums.parse_request({k.decode(): v.decode() for k, v in headers})
    checksummer = checksums.Checksummer(wanted.algorithms)
    decoder = decoder_for(context)
    for piece in decoder.feed(request.body.read()):
        checksummer.update(piece)
    checksums.verify(wanted, checksummer, decoder.finish())
    assert checksummer.size_bytes == len(payload) and wanted.in_trailer
