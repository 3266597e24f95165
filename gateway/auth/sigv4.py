"""AWS Signature Version 4 verification for S3, as a pure function over request parts.

Theory of operation
-------------------
A SigV4 client computes ``HMAC-SHA256(signing_key, string_to_sign)`` where

* ``signing_key`` is derived from the secret: ``HMAC("AWS4" + secret, date)`` then
  region, service (``s3``) and the terminal ``aws4_request``;
* ``string_to_sign`` is ``AWS4-HMAC-SHA256 \\n timestamp \\n scope \\n
  hex(sha256(canonical_request))``;
* the canonical request is ``method \\n uri \\n query \\n headers \\n signed-headers \\n
  payload-hash``.

The server cannot see the client's canonical request, so it rebuilds it from what arrived
on the wire and compares signatures. Everything here therefore hinges on rebuilding it
byte for byte the way clients (botocore, so the aws cli and boto3; s3cmd; the AWS SDKs)
built it:

* **URI.** S3 encodes the path once and never normalizes it (``//`` and ``.`` segments
  stay). We split the raw path on ``/``, percent-decode each segment and re-encode it
  with the AWS URI encoding (everything except ``A-Za-z0-9-._~`` as ``%XX``), so a
  client that escaped more or fewer characters than strictly needed still matches, and
  an escaped slash (``%2F``) stays escaped.
* **Query.** Each ``name=value`` pair is percent-decoded and re-encoded the same way,
  then the pairs are sorted by encoded name, then encoded value. A raw ``+`` decodes to
  a space, as in HTML forms, Starlette's ``request.query_params`` and AWS itself: the
  signature covers exactly what the gateway will act on. botocore, the aws cli and
  s3cmd always send ``%2B`` for a literal plus, so they never depend on this rule.
  A parameter without ``=`` is signed as ``name=``.
* **Headers.** Names are lower-cased, values trimmed with inner runs of white space
  collapsed to one space (botocore's ``' '.join(value.split())``), repeated headers are
  joined with ``,``. Header values are decoded as UTF-8 (Latin-1 where they are not
  UTF-8: ``_header_text``), and the canonical request is hashed as UTF-8, as
  botocore does.

The same canonical form serves the two ways to carry a signature:

* the ``Authorization`` header (``AWS4-HMAC-SHA256 Credential=AK/date/region/s3/
  aws4_request, SignedHeaders=a;b, Signature=hex``); the request time is ``x-amz-date``
  (or ``Date``) and must be within ``limits.request_time_skew_seconds_max`` of now;
  ``x-amz-content-sha256`` is required and names the payload mode;
* a presigned URL (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``); the payload hash is
  ``UNSIGNED-PAYLOAD`` unless ``x-amz-content-sha256`` is sent, and the URL is valid
  for ``X-Amz-Expires`` seconds after ``X-Amz-Date``.

Signature Version 2 (``Authorization: AWS AK:signature``, or a presigned URL with
``AWSAccessKeyId``, ``Signature`` and ``Expires``: what boto3's ``generate_presigned_url``
still produces by default) is verified by :mod:`gateway.auth.sigv2`; :func:`authenticate`
hands such requests over.

Rules
-----
* No I/O, no clock: the caller passes ``now_seconds`` and a secret lookup.
* Every failure is an :class:`AuthError` carrying the S3 error code, message, HTTP
  status and the extra XML elements AWS returns (``details``), e.g. the
  ``CanonicalRequest`` and ``StringToSign`` of a ``SignatureDoesNotMatch``.
* A request with no credentials at all yields :class:`Anonymous`, not an error: the
  gateway decides whether the bucket allows it.
* Signatures are compared in constant time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from gateway.errors import CodedError
from storage.api import limits

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"
EMPTY_SHA256_HEX = hashlib.sha256(b"").hexdigest()
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

HeaderPairs = Sequence[tuple[bytes, bytes]]
SecretLookup = Callable[[str], str | None]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"\d{8}T\d{6}Z")
_DATE_STAMP = re.compile(r"\d{8}")
_EXPIRES = re.compile(r"-?\d{1,12}")
_SIGNED_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_PRESIGN_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)


class AuthError(CodedError):
    """A request that fails authentication; maps to one S3 error response."""


class PayloadMode(Enum):
    """What ``x-amz-content-sha256`` says about the body."""

    SIGNED = "SIGNED"  # the header is the hex sha256 of the whole body
    UNSIGNED = "UNSIGNED-PAYLOAD"
    STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    @property
    def is_streaming(self) -> bool:
        """The body is ``aws-chunked`` and must go through ``gateway.auth.chunked``."""
        return self.value.startswith("STREAMING-")

    @property
    def chunks_signed(self) -> bool:
        return self in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)

    @property
    def has_trailer(self) -> bool:
        return self.value.endswith("-TRAILER")


@dataclass(frozen=True, slots=True)
class AuthContext:
    """A request whose signature checked out, and what the body decoder needs."""

    access_key: str
    region: str
    timestamp: str  # the request time as signed, ISO 8601 basic: 20130524T000000Z
    scope: str  # 20130524/us-east-1/s3/aws4_request
    signing_key: bytes = field(repr=False)
    seed_signature: str  # the request's own signature; chunk signatures chain from it
    payload_mode: PayloadMode
    payload_sha256_hex: str | None  # set only for PayloadMode.SIGNED
    presigned: bool
    security_token: str | None = None
    decoded_content_length_bytes: int | None = None  # x-amz-decoded-content-length
    trailer_names: tuple[str, ...] = ()  # x-amz-trailer, lower-cased


@dataclass(frozen=True, slots=True)
class Anonymous:
    """A request that carries no credentials at all."""


@dataclass(frozen=True, slots=True)
class _Credential:
    access_key: str
    date_stamp: str
    region: str


@dataclass(frozen=True, slots=True)
class _Claim:
    """What the client claims: who signed, when, which headers, and the signature."""

    credential: _Credential
    timestamp: str
    signed_headers: tuple[str, ...]
    signature: str
    payload_hash: str


# --- public entry points -------------------------------------------------------------


def authenticate(
    method: str,
    raw_path: bytes,
    raw_query: bytes,
    headers: HeaderPairs,
    lookup_secret: SecretLookup,
    now_seconds: float,
    region: str | None = None,
    *,
    virtual_host_bucket: str | None = None,
    query_pairs: list[tuple[bytes, bytes]] | None = None,
) -> AuthContext | Anonymous:
    """Verify a request's SigV4 or SigV2 signature (header or presigned URL).

    ``raw_path`` and ``raw_query`` are the bytes as sent on the wire (ASGI
    ``scope["raw_path"]`` and ``scope["query_string"]``); ``headers`` is ASGI
    ``scope["headers"]``. ``region``, when given, is the only region accepted (SigV4).
    ``virtual_host_bucket`` is the bucket the Host header names in a virtual-hosted
    request (``None`` for path style): SigV2 signs it as part of the resource.
    ``Authorization: AWS ...`` and ``?AWSAccessKeyId=..&Signature=..`` requests go to
    :func:`gateway.auth.sigv2.verify`. ``query_pairs``, when given, must be
    ``parse_query_pairs(raw_query)``: the gateway parses the query once for both.
    Raises :class:`AuthError`.
    """
    header_map = _header_map(headers)
    query = parse_query_pairs(raw_query) if query_pairs is None else query_pairs
    authorization = header_map.get("authorization")
    presigned = any(name in (b"X-Amz-Algorithm", b"X-Amz-Credential") for name, _ in query)
    presigned_v2 = any(name in (b"AWSAccessKeyId", b"Signature") for name, _ in query)
    if authorization is not None and (presigned or presigned_v2):
        raise AuthError(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            400,
        )
    if authorization is not None:
        sigv2 = ",".join(authorization).startswith("AWS ")
    else:
        sigv2 = presigned_v2 and not presigned
    if sigv2:
        # Imported here: sigv2 builds on this module's types and helpers.
        from gateway.auth.sigv2 import verify as verify_sigv2

        return verify_sigv2(
            method,
            raw_path,
            raw_query,
            headers,
            lookup_secret,
            now_seconds,
            region,
            bucket_from_host=virtual_host_bucket,
        )
    if authorization is not None:
        claim = _header_claim(",".join(authorization), header_map, region)
    elif presigned:
        claim = _presigned_claim(query, header_map, region, now_seconds)
    else:
        return Anonymous()
    secret = secret_for(claim.credential.access_key, lookup_secret)
    if not presigned:
        _check_skew(claim.timestamp, now_seconds)
    excluded = "X-Amz-Signature" if presigned else None
    canonical = canonical_request(
        method, raw_path, query, header_map, claim.signed_headers, claim.payload_hash, excluded,
        raw_query,
    )
    try:
        return _verified_context(claim, canonical, secret, header_map, query, presigned)
    except AuthError as mismatch:
        latin1 = latin1_header_map(headers) if mismatch.code == "SignatureDoesNotMatch" \
            else None
        if latin1 is None:
            raise
        canonical = canonical_request(
            method, raw_path, query, latin1, claim.signed_headers, claim.payload_hash,
            excluded, raw_query,
        )
        try:
            return _verified_context(claim, canonical, secret, latin1, query, presigned)
        except AuthError:
            raise mismatch from None


def check_payload_sha256(context: AuthContext, computed_sha256_hex: str) -> None:
    """After reading a non-streaming body, compare its sha256 with the signed one.

    Raises ``XAmzContentSHA256Mismatch`` when the client declared a hex hash that the
    body does not have; does nothing for the unsigned and streaming modes.
    """
    declared = context.payload_sha256_hex
    if context.payload_mode is not PayloadMode.SIGNED or declared is None:
        return
    if not hmac.compare_digest(declared, computed_sha256_hex):
        raise AuthError(
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            400,
            {
                "ClientComputedContentSHA256": declared,
                "S3ComputedContentSHA256": computed_sha256_hex,
            },
        )


@functools.lru_cache(maxsize=limits.signing_keys_cached_max)
def derive_signing_key(secret: str, date_stamp: str, region: str, service: str = SERVICE) -> bytes:
    """``kSigning``: HMAC chain over date, region, service and ``aws4_request``.

    Cached: the key changes once a day per credential, and deriving it is four HMACs,
    a fifth of the cost of verifying a small request.
    """
    key = _hmac(("AWS4" + secret).encode(), date_stamp)
    for part in (region, service, TERMINATOR):
        key = _hmac(key, part)
    return key


def sign_hex(signing_key: bytes, string_to_sign: str) -> str:
    """``hex(HMAC-SHA256(signing_key, string_to_sign))``, from the key's cached pads."""
    inner, outer = _hmac_sha256_pads(signing_key)
    inner = inner.copy()
    inner.update(string_to_sign.encode())
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.hexdigest()


_SHA256_BLOCK_BYTES = 64


@functools.lru_cache(maxsize=limits.signing_keys_cached_max)
def _hmac_sha256_pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states that have absorbed ``key ^ ipad`` and ``key ^ opad`` (RFC 2104).

    HMAC is ``H(key ^ opad, H(key ^ ipad, message))``; a signing key is used for every
    request of its day, so its two padded blocks are hashed once and the states copied.
    ``hmac.new`` rebuilds them (and looks the digest up in OpenSSL) on each call: 7 µs
    against 2 µs for a small request's string to sign.
    """
    if len(key) > _SHA256_BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK_BYTES, b"\0")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))
    return inner, outer


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


# --- canonical request ---------------------------------------------------------------


def canonical_request(
    method: str,
    raw_path: bytes,
    query: Sequence[tuple[bytes, bytes]],
    header_map: dict[str, list[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
    excluded_query_name: str | None = None,
    raw_query: bytes | None = None,
) -> str:
    """The canonical request as the client built it; see the module docstring.

    With ``raw_query`` (the query as sent, which ``query`` was parsed from), a query
    sent already in canonical form is taken as it is instead of being rebuilt.
    """
    header_lines = "".join(
        f"{name}:{canonical_header_value(header_map.get(name, []))}\n" for name in signed_headers
    )
    query_part = None
    if raw_query is not None:
        query_part = canonical_query_as_sent(raw_query, excluded_query_name)
    if query_part is None:
        query_part = canonical_query(query, excluded_query_name)
    return "\n".join(
        (
            method.upper(),
            canonical_uri(raw_path),
            query_part,
            header_lines,
            ";".join(signed_headers),
            payload_hash,
        )
    )


_UNRESERVED = re.compile(rb"[A-Za-z0-9_.~-]*")
# A string is its own AWS URI encoding when it holds only unreserved characters and
# upper-case %XX escapes of bytes that are NOT unreserved: '%41' decodes to 'A', which
# is re-encoded as 'A', and '%2f' is re-encoded as '%2F', so neither is canonical.
# Checked as a character class plus a search for a bad escape: a regex alternation per
# byte cost more than the re-encoding it saves.
_CANONICAL_PATH_CHARACTERS = re.compile(rb"[A-Za-z0-9_.~%/-]*")
_CANONICAL_QUERY_CHARACTERS = re.compile(rb"[A-Za-z0-9_.~%=&-]*")
_NON_CANONICAL_ESCAPE = re.compile(
    rb"%(?![0-9A-F]{2})|%(?:2[DE]|3[0-9]|4[1-9A-F]|5[0-9AF]|6[1-9A-F]|7[0-9AE])"
)


def _is_canonical(raw: bytes, characters: re.Pattern[bytes]) -> bool:
    return characters.fullmatch(raw) is not None and (
        b"%" not in raw or _NON_CANONICAL_ESCAPE.search(raw) is None
    )


def aws_uri_encode(raw: bytes) -> str:
    """Percent-encode every byte except the unreserved ``A-Za-z0-9-._~``."""
    if _UNRESERVED.fullmatch(raw):  # the common case: nothing to encode
        return raw.decode("ascii")
    return quote(raw, safe="")


def _decode(raw: bytes) -> bytes:
    return unquote_to_bytes(raw) if b"%" in raw else raw


def canonical_uri(raw_path: bytes) -> str:
    """Decode and re-encode each segment; S3 keeps empty and dot segments as they are.

    A path sent already encoded the AWS way (what botocore sends) is its own result.
    """
    if not raw_path:
        return "/"
    if _is_canonical(raw_path, _CANONICAL_PATH_CHARACTERS):
        return raw_path.decode("ascii")
    return "/".join(aws_uri_encode(_decode(s)) for s in raw_path.split(b"/"))


def canonical_query(query: Sequence[tuple[bytes, bytes]], excluded_name: str | None) -> str:
    excluded = excluded_name.encode() if excluded_name else None
    pairs = sorted(
        (aws_uri_encode(name), aws_uri_encode(value)) for name, value in query if name != excluded
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


def canonical_query_as_sent(raw_query: bytes, excluded_name: str | None) -> str | None:
    """The canonical query string from the pieces as sent, when each is canonical.

    That is when every piece is ``name=value``, both already AWS-encoded (see
    ``_is_canonical``): what a presigner hands out. Then decoding and re-encoding each
    pair, as :func:`canonical_query` does, gives the same bytes back, and only the sort
    is left to do (botocore's presigner sends the pairs sorted but for the signature;
    boto3's ``generate_presigned_url`` puts ``X-Amz-SignedHeaders`` before
    ``X-Amz-Expires``). None when it does not hold: the caller rebuilds the query pair
    by pair.
    """
    if not raw_query:
        return ""
    if not _is_canonical(raw_query, _CANONICAL_QUERY_CHARACTERS):
        return None
    # A canonical name has no escapes of unreserved characters, so the excluded
    # (unreserved) name can only be written one way.
    excluded = excluded_name.encode() if excluded_name is not None else None
    pairs: list[tuple[bytes, bytes]] = []
    for piece in raw_query.split(b"&"):
        name, equals, value = piece.partition(b"=")
        # Exactly one '=' after a name: 'name' alone is signed as 'name=', and an empty
        # piece is skipped; such queries are rebuilt.
        if not name or not equals or b"=" in value:
            return None
        if name != excluded:
            pairs.append((name, value))
    # Sorted by (name, value), as canonical_query sorts: not the order of the pieces
    # themselves when one name is a prefix of another ('a-=1' < 'a=1').
    pairs.sort()
    return "&".join(f"{name.decode('ascii')}={value.decode('ascii')}" for name, value in pairs)


def canonical_header_value(values: Sequence[str]) -> str:
    return ",".join(" ".join(value.split()) for value in values)


# --- parsing -------------------------------------------------------------------------


def _header_text(value: bytes) -> str:
    """A header value as the client signed it. Clients sign text and hash it as UTF-8;
    on the wire they send that UTF-8 (urllib3, so boto3) or, for text Latin-1 can hold,
    Latin-1 (http.client). Decoding as UTF-8 first and as Latin-1 when that fails gives
    the signed text back in both cases (Latin-1 alone turned a UTF-8 'é' into 'Ã©', and
    the signature never matched)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _header_map(headers: HeaderPairs) -> dict[str, list[str]]:
    header_map: dict[str, list[str]] = {}
    for name, value in headers:
        header_map.setdefault(name.decode("latin-1").lower(), []).append(_header_text(value))
    return header_map


def latin1_header_map(headers: HeaderPairs) -> dict[str, list[str]] | None:
    """The header map with every value read as Latin-1, when that differs from
    ``_header_map``'s: some value is non-ASCII and valid UTF-8. Such bytes are ambiguous:
    urllib3 sends signed text as UTF-8, http.client sends Latin-1 text as Latin-1 (the
    two bytes C2 80 are U+0080 to one and 'Â\x80' to the other). A signature that does
    not match the first reading is checked against this one (a mismatch path only)."""
    if not any(not value.isascii() and _header_text(value) != value.decode("latin-1")
               for _, value in headers):
        return None
    header_map: dict[str, list[str]] = {}
    for name, value in headers:
        header_map.setdefault(name.decode("latin-1").lower(), []).append(
            value.decode("latin-1"))
    return header_map


def parse_query_pairs(raw_query: bytes) -> list[tuple[bytes, bytes]]:
    """Decoded ``(name, value)`` pairs; ``+`` is a space, empty pieces are skipped, a
    name without '=' has the value b''."""
    pairs = []
    for piece in raw_query.split(b"&"):
        if piece:
            if b"+" in piece:
                piece = piece.replace(b"+", b" ")
            name, _, value = piece.partition(b"=")
            pairs.append((
                unquote_to_bytes(name) if b"%" in name else name,
                unquote_to_bytes(value) if b"%" in value else value,
            ))  # fmt: skip
    return pairs


def _single_header(header_map: dict[str, list[str]], name: str) -> str | None:
    values = header_map.get(name)
    return None if values is None else ",".join(values).strip()


def _parse_authorization(value: str) -> dict[str, str]:
    """``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` -> fields.

    AWS accepts the fields separated by ``,`` with or without spaces, in any order.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _unsupported_authorization(algorithm)
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, equals, field_value = item.strip().partition("=")
        if not equals or name in fields:
            raise _malformed_header(f"the authorization component '{item.strip()}' is malformed.")
        fields[name] = field_value.strip()
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if n not in fields]
    if missing or len(fields) != 3:
        raise _malformed_header(
            "the authorization header requires the Credential, SignedHeaders and "
            "Signature components and no others."
        )
    return fields


# The parsers of the claim's fields are pure and their inputs repeat (one credential and
# date per client and day, a handful of signed-header lists, presigned URLs signed in the
# same second), so their results are cached; a field that fails raises, and is not.
_parse_cache = functools.lru_cache(maxsize=limits.auth_fields_cached_max)


@_parse_cache
def _parse_credential(value: str, error: Callable[[str], AuthError]) -> _Credential:
    parts = value.split("/")
    if len(parts) != 5 or not all(parts[:3]):
        raise error(f"the Credential '{value}' is not AK/date/region/s3/aws4_request.")
    access_key, date_stamp, region, service, terminator = parts
    if not _DATE_STAMP.fullmatch(date_stamp):
        raise error(f"Invalid credential date '{date_stamp}'. The date must be yyyyMMdd.")
    if service != SERVICE:
        raise error(f"incorrect service '{service}'. This endpoint belongs to 's3'.")
    if terminator != TERMINATOR:
        raise error(f"incorrect terminal '{terminator}'. This endpoint uses 'aws4_request'.")
    return _Credential(access_key, date_stamp, region)


@_parse_cache
def _parse_signed_headers(value: str, error: Callable[[str], AuthError]) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not all(_SIGNED_HEADER_NAME.fullmatch(name) for name in names):
        raise error(f"SignedHeaders '{value}' must be lower-case header names joined by ';'.")
    return names


def _header_timestamp(header_map: dict[str, list[str]]) -> str:
    """The request time in ISO 8601 basic form, from ``x-amz-date`` or else ``Date``."""
    amz_date = _single_header(header_map, "x-amz-date")
    if amz_date is not None:
        if _TIMESTAMP.fullmatch(amz_date) and _parse_timestamp(amz_date) is not None:
            return amz_date
        raise _missing_date()
    http_date = _single_header(header_map, "date")
    if http_date is None:
        raise _missing_date()
    parsed = parse_http_date(http_date)
    if parsed is None:
        raise _missing_date()
    return parsed.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_http_date(value: str) -> datetime | None:
    """An HTTP date (RFC 1123 and the forms ``email.utils`` reads), in UTC when it names
    no zone; None when it does not parse. One parser for SigV4's and SigV2's ``Date``
    and the conditional headers (``gateway.s3.common``)."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@_parse_cache
def _parse_timestamp(timestamp: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 basic UTC time (20130524T000000Z).

    Sliced by hand: ``datetime.strptime`` was a tenth of the cost of verifying a GET.
    """
    if not _TIMESTAMP.fullmatch(timestamp):
        return None
    try:
        moment = datetime(
            int(timestamp[0:4]), int(timestamp[4:6]), int(timestamp[6:8]),
            int(timestamp[9:11]), int(timestamp[11:13]), int(timestamp[13:15]), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:  # month 13, second 61 ...
        return None
    return moment.timestamp()


def _payload_hash(header_map: dict[str, list[str]], default: str | None) -> str:
    value = _single_header(header_map, "x-amz-content-sha256")
    if value is None:
        if default is not None:
            return default
        raise AuthError(
            "InvalidRequest",
            "Missing required header for this request: x-amz-content-sha256",
            400,
        )
    if _SHA256_HEX.fullmatch(value) or value in _PAYLOAD_MODES:
        return value
    if value.startswith("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"):
        raise _sigv4a_error()
    raise AuthError(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
        "or a valid sha256 value.",
        400,
        {"ArgumentName": "x-amz-content-sha256", "ArgumentValue": value},
    )


_PAYLOAD_MODES = {mode.value: mode for mode in PayloadMode if mode is not PayloadMode.SIGNED}


# --- the two claim forms -------------------------------------------------------------


def _header_claim(
    authorization: str, header_map: dict[str, list[str]], region: str | None
) -> _Claim:
    fields = _parse_authorization(authorization)
    credential = _parse_credential(fields["Credential"], _malformed_header)
    signed_headers = _parse_signed_headers(fields["SignedHeaders"], _malformed_header)
    timestamp = _header_timestamp(header_map)
    if credential.date_stamp != timestamp[:8]:
        raise _malformed_header("Invalid credential date. Date is not the same as X-Amz-Date.")
    _check_region(credential, region, _malformed_header)
    payload_hash = _payload_hash(header_map, default=None)
    _check_all_signed(header_map, signed_headers)
    return _Claim(credential, timestamp, signed_headers, fields["Signature"], payload_hash)


def _presigned_claim(
    query: Sequence[tuple[bytes, bytes]],
    header_map: dict[str, list[str]],
    region: str | None,
    now_seconds: float,
) -> _Claim:
    params = _presign_params(query)
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    credential = _parse_credential(params["X-Amz-Credential"], _query_error)
    signed_headers = _parse_signed_headers(params["X-Amz-SignedHeaders"], _query_error)
    timestamp = params["X-Amz-Date"]
    signed_at = _parse_timestamp(timestamp)
    if signed_at is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if credential.date_stamp != timestamp[:8]:
        raise _query_error("Invalid credential date. Date is not the same as X-Amz-Date.")
    _check_region(credential, region, _query_error)
    expires_seconds = _presign_expiry(params["X-Amz-Expires"])
    _check_presign_window(signed_at, expires_seconds, now_seconds)
    payload_hash = _payload_hash(header_map, default=PayloadMode.UNSIGNED.value)
    if "host" not in signed_headers:
        raise _query_error("X-Amz-SignedHeaders must include 'host'.")
    return _Claim(credential, timestamp, signed_headers, params["X-Amz-Signature"], payload_hash)


def _presign_params(query: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in query:
        text = name.decode("utf-8", "replace")
        if text.startswith("X-Amz-"):
            if text in params:
                raise _query_error(f"The query parameter {text} is given more than once.")
            params[text] = value.decode("utf-8", "replace")
    if not all(name in params for name in _PRESIGN_REQUIRED):
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters."
        )
    return params


@_parse_cache
def _presign_expiry(value: str) -> int:
    if not _EXPIRES.fullmatch(value):
        raise _query_error("X-Amz-Expires should be a number")
    expires_seconds = int(value)
    # Zero is a valid lifetime that has already run out (403 Request has expired, from
    # _check_presign_window), as S3 answers it; only a negative one is malformed.
    if expires_seconds < 0:
        raise _query_error("X-Amz-Expires must be non-negative")
    if expires_seconds > limits.presigned_expiry_seconds_max:
        raise _query_error(
            "X-Amz-Expires must be less than a week (in seconds) that is "
            f"{limits.presigned_expiry_seconds_max}"
        )
    return expires_seconds


# --- checks --------------------------------------------------------------------------


def _check_region(
    credential: _Credential, region: str | None, error: Callable[[str], AuthError]
) -> None:
    if region is not None and credential.region != region:
        raised = error(f"the region '{credential.region}' is wrong; expecting '{region}'")
        raised.details["Region"] = region
        raise raised


def _check_all_signed(header_map: dict[str, list[str]], signed_headers: Sequence[str]) -> None:
    """``host`` and every ``x-amz-*`` header present must be signed, as AWS requires."""
    signed = set(signed_headers)
    unsigned = sorted(
        name
        for name in header_map
        if (name == "host" or name.startswith("x-amz-")) and name not in signed
    )
    if "host" not in signed and "host" not in unsigned:
        unsigned.insert(0, "host")
    if unsigned:
        raise AuthError(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            403,
            {"HeadersNotSigned": ", ".join(unsigned)},
        )


def _check_skew(timestamp: str, now_seconds: float) -> None:
    request_seconds = _parse_timestamp(timestamp)
    assert request_seconds is not None, "timestamps are validated while parsing"
    if abs(now_seconds - request_seconds) > limits.request_time_skew_seconds_max:
        raise AuthError(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            403,
            {
                "RequestTime": timestamp,
                "ServerTime": _format_time(now_seconds),
                "MaxAllowedSkewMilliseconds": str(limits.request_time_skew_seconds_max * 1000),
            },
        )


def _check_presign_window(signed_at: float, expires_seconds: int, now_seconds: float) -> None:
    if expires_seconds == 0 or now_seconds > signed_at + expires_seconds:
        raise AuthError(
            "AccessDenied",
            "Request has expired",
            403,
            {
                "X-Amz-Expires": str(expires_seconds),
                "Expires": _format_time(signed_at + expires_seconds),
                "ServerTime": _format_time(now_seconds),
            },
        )
    if signed_at > now_seconds + limits.request_time_skew_seconds_max:
        raise AuthError("AccessDenied", "Request is not valid yet", 403)


def _verified_context(
    claim: _Claim,
    canonical: str,
    secret: str,
    header_map: dict[str, list[str]],
    query: Sequence[tuple[bytes, bytes]],
    presigned: bool,
) -> AuthContext:
    credential = claim.credential
    scope = f"{credential.date_stamp}/{credential.region}/{SERVICE}/{TERMINATOR}"
    key = derive_signing_key(secret, credential.date_stamp, credential.region)
    to_sign = string_to_sign(claim.timestamp, scope, canonical)
    expected = sign_hex(key, to_sign)
    if not hmac.compare_digest(expected.encode(), claim.signature.encode()):
        raise _signature_mismatch(credential.access_key, claim.signature, to_sign, canonical)
    mode = _PAYLOAD_MODES.get(claim.payload_hash, PayloadMode.SIGNED)
    return AuthContext(
        access_key=credential.access_key,
        region=credential.region,
        timestamp=claim.timestamp,
        scope=scope,
        signing_key=key,
        seed_signature=expected,
        payload_mode=mode,
        payload_sha256_hex=claim.payload_hash if mode is PayloadMode.SIGNED else None,
        presigned=presigned,
        security_token=_security_token(header_map, query),
        decoded_content_length_bytes=_decoded_length(header_map),
        trailer_names=_trailer_names(header_map),
    )


def anonymous_payload_context(headers: HeaderPairs) -> AuthContext:
    """How the body of a request without credentials is framed (a bucket policy may let
    such a request in): as sent, sha256-checked when ``x-amz-content-sha256`` is a
    digest, or unsigned ``aws-chunked`` with trailers. Signed chunks cannot be: there is
    no signature to chain them from."""
    header_map = _header_map(headers)
    payload_hash = _payload_hash(header_map, default=PayloadMode.UNSIGNED.value)
    mode = _PAYLOAD_MODES.get(payload_hash, PayloadMode.SIGNED)
    if mode.chunks_signed:
        raise AuthError(
            "InvalidRequest",
            f"x-amz-content-sha256 {payload_hash} requires a signed request.",
            400,
            {"ArgumentName": "x-amz-content-sha256", "ArgumentValue": payload_hash},
        )
    return AuthContext(
        access_key="",
        region="",
        timestamp="",
        scope="",
        signing_key=b"",
        seed_signature="",
        payload_mode=mode,
        payload_sha256_hex=payload_hash if mode is PayloadMode.SIGNED else None,
        presigned=False,
        decoded_content_length_bytes=_decoded_length(header_map),
        trailer_names=_trailer_names(header_map),
    )


def _security_token(
    header_map: dict[str, list[str]], query: Sequence[tuple[bytes, bytes]]
) -> str | None:
    for name, value in query:
        if name == b"X-Amz-Security-Token":
            return value.decode("utf-8", "replace")
    return _single_header(header_map, "x-amz-security-token")


def _decoded_length(header_map: dict[str, list[str]]) -> int | None:
    value = _single_header(header_map, "x-amz-decoded-content-length")
    if value is None:
        return None
    if not re.fullmatch(r"\d{1,19}", value):
        raise AuthError(
            "InvalidArgument",
            "x-amz-decoded-content-length must be a non-negative integer.",
            400,
            {"ArgumentName": "x-amz-decoded-content-length", "ArgumentValue": value},
        )
    return int(value)


def _trailer_names(header_map: dict[str, list[str]]) -> tuple[str, ...]:
    value = _single_header(header_map, "x-amz-trailer") or ""
    return tuple(name.strip().lower() for name in value.split(",") if name.strip())


# --- errors --------------------------------------------------------------------------


def _malformed_header(reason: str) -> AuthError:
    return AuthError(
        "AuthorizationHeaderMalformed", f"The authorization header is malformed; {reason}", 400
    )


def _query_error(reason: str) -> AuthError:
    return AuthError("AuthorizationQueryParametersError", reason, 400)


def _missing_date() -> AuthError:
    return AuthError(
        "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header", 403
    )


def _sigv4a_error() -> AuthError:
    return AuthError(
        "InvalidRequest",
        "AWS Signature Version 4A (AWS4-ECDSA-P256-SHA256) is not supported. "
        "Please use AWS4-HMAC-SHA256.",
        400,
    )


def _unsupported_authorization(algorithm: str) -> AuthError:
    if algorithm == "AWS4-ECDSA-P256-SHA256":
        return _sigv4a_error()
    return AuthError("InvalidArgument", "Unsupported Authorization Type", 400)


def _signature_mismatch(access_key: str, provided: str, to_sign: str, canonical: str) -> AuthError:
    return AuthError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        403,
        {
            "AWSAccessKeyId": access_key,
            "StringToSign": to_sign,
            "SignatureProvided": provided,
            "StringToSignBytes": _spaced_hex(to_sign),
            "CanonicalRequest": canonical,
            "CanonicalRequestBytes": _spaced_hex(canonical),
        },
    )


def _spaced_hex(text: str) -> str:
    return " ".join(f"{byte:02x}" for byte in text.encode())


def _format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def secret_for(access_key: str, lookup_secret: SecretLookup) -> str:
    """The secret of ``access_key``; InvalidAccessKeyId (403) when there is none. Shared
    by every signature version (SigV4, SigV2, POST policies)."""
    secret = lookup_secret(access_key)
    if secret is None:
        raise AuthError(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            403,
            {"AWSAccessKeyId": access_key},
        )
    return secret
