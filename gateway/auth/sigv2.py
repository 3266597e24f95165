"""AWS Signature Version 2 verification for S3 (header and presigned URL), as a pure function.

Theory of operation
-------------------
A SigV2 client computes ``base64(HMAC-SHA1(secret, string_to_sign))`` where, per AWS's
legacy "Signing and Authenticating REST Requests"::

    StringToSign = HTTP-Verb "\\n" Content-MD5 "\\n" Content-Type "\\n" Date "\\n"
                   CanonicalizedAmzHeaders CanonicalizedResource

and sends it either as ``Authorization: AWS <access key>:<signature>`` (the request time
is ``Date``, or ``x-amz-date`` when present) or in a presigned URL
(``?AWSAccessKeyId=..&Expires=<epoch seconds>&Signature=..``; ``Expires`` takes the place
of ``Date``). The payload is not signed: the gateway checks ``Content-MD5`` (and an
``x-amz-content-sha256`` hex digest, which the signature then covers) on its own.

As with SigV4, the server rebuilds the string the client signed from what arrived:

* **Date.** The ``Date`` header, or ``Expires`` for a presigned URL. When ``x-amz-date``
  is present the spec's text says the Date line is empty (s3cmd does that: it sends no
  ``Date``), its own DELETE example puts the ``x-amz-date`` value there instead (and
  leaves it out of the amz headers), and botocore and MinIO sign the ``Date`` header
  whatever ``x-amz-date`` says: all three forms are accepted. The request time checked
  against the clock is ``x-amz-date``, else ``Date``.
* **CanonicalizedAmzHeaders.** ``x-amz-*`` names lower-cased and sorted, each value
  trimmed and unfolded, repeated headers joined with ``,``; one ``name:value\\n`` line
  each. In a presigned URL, botocore moves ``x-amz-*``, ``Content-Type`` and
  ``Content-MD5`` into the query string: a query parameter with such a name counts as
  that header when the request does not carry the header itself.
* **CanonicalizedResource.** ``/bucket`` for a virtual-hosted request, then the path
  exactly as sent (not decoded, not normalized), then ``?`` and the signed
  sub-resources sorted by name, ``name=decoded value`` (or just ``name``). For the
  bucket itself, ``/bucket`` and ``/bucket/`` are both accepted in either style
  (botocore sends ``/bucket`` path style and signs ``/bucket/``).

Clients disagree on which sub-resources are signed and how their values are written:
everyone signs :data:`SUBRESOURCES` (AWS's list, the ``response-*`` overrides and
``delete``, ``cors``, ``restore``, ``tagging``), but botocore also signs e.g.
``accelerate`` and ``object-lock`` while minio-go signs ``encryption`` and botocore does
not, and s3cmd signs values percent-encoded where botocore decodes them. The verifier
therefore tries a few variants (with and without each sub-resource of
:data:`OPTIONAL_SUBRESOURCES` present, decoded or as-sent values, the Date forms below)
and accepts the request when one matches; a typical request has one to three variants.
Each variant is a full HMAC over everything else the gateway acts on, so the only
freedom this gives an attacker replaying a captured request is to append one of those
optional parameters unsigned (or to add a trailing ``/`` to a bare bucket path).

Signatures are compared with :func:`hmac.compare_digest`. There is no I/O and no clock:
the caller passes ``now_seconds`` and a secret lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_to_bytes

from gateway.auth.sigv4 import (
    TIMESTAMP_FORMAT,
    AuthContext,
    AuthError,
    HeaderPairs,
    PayloadMode,
    SecretLookup,
    _decoded_length,
    _format_time,
    _header_map,
    _missing_date,
    _payload_hash,
    _single_header,
    _trailer_names,
    latin1_header_map,
    parse_http_date,
    secret_for,
)
from storage.api import limits

DEFAULT_REGION = "us-east-1"

# Signed by every SigV2 client we know of (AWS's documented list plus what botocore,
# s3cmd, minio-go and the Java SDK all add).
SUBRESOURCES = frozenset(
    {
        "acl",
        "cors",
        "delete",
        "lifecycle",
        "location",
        "logging",
        "notification",
        "partNumber",
        "policy",
        "requestPayment",
        "restore",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
    }
)

# Signed by some clients and not others (botocore: accelerate ... object-lock; minio-go
# and RGW: encryption, legal-hold, retention ...): tried both ways.
OPTIONAL_SUBRESOURCES = frozenset(
    {
        "accelerate",
        "analytics",
        "append",
        "defaultObjectAcl",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "metrics",
        "object-lock",
        "ownershipControls",
        "policyStatus",
        "position",
        "publicAccessBlock",
        "replication",
        "retention",
        "select",
        "select-type",
        "storageClass",
    }
)

# Beyond this many optional sub-resources in one request, only "all" and "none" are tried.
_OPTIONAL_SUBSETS_MAX = 3
_QUERY_AUTH = ("AWSAccessKeyId", "Signature", "Expires")
_QUERY_HEADERS = ("content-md5", "content-type")
_FOLD = re.compile(r"\r?\n[ \t]*")
_EPOCH_SECONDS = re.compile(r"\d{1,10}")  # up to the year 2286


@dataclass(frozen=True, slots=True)
class _QueryPiece:
    """One ``name[=value]`` of the query string, as sent and decoded."""

    raw: bytes
    name: str
    value: bytes | None  # None when the piece has no '='


def verify(
    method: str,
    raw_path: bytes,
    raw_query: bytes,
    headers: HeaderPairs,
    lookup_secret: SecretLookup,
    now_seconds: float,
    region: str | None = None,
    bucket_from_host: str | None = None,
) -> AuthContext:
    """Verify a SigV2 ``Authorization: AWS ...`` header or ``?Signature=`` presigned URL.

    ``raw_path`` and ``raw_query`` are the bytes as sent (ASGI ``raw_path`` and
    ``query_string``), ``headers`` is ASGI ``scope["headers"]``; ``bucket_from_host`` is
    the bucket named by the Host header of a virtual-hosted request (``None`` for path
    style). ``region`` only fills :attr:`AuthContext.region`: SigV2 signs no region.
    Raises :class:`AuthError`.
    """
    header_map = _header_map(headers)
    query = _parse_query(raw_query)
    authorization = header_map.get("authorization")
    request_time: float | None = None  # header auth: checked against the clock
    expires: str | None = None  # presigned: the expiry it signs
    given_date = ""
    if authorization is not None:
        presigned = False
        access_key, signature = _parse_authorization(",".join(authorization))
        request_time, given_date = _request_time(header_map)
        signed_time = request_time
    else:
        presigned = True
        access_key, signature, expires = _query_auth(query)
        _check_expiry(expires, now_seconds)
        signed_time = int(expires)  # the only time a presigned URL signs
    secret = secret_for(access_key, lookup_secret)
    if request_time is not None:
        _check_skew(request_time, now_seconds, given_date)  # signed_time is now sane
    resource_paths = _resource_paths(raw_path or b"/", bucket_from_host)
    provided = signature.encode()

    def candidates(header_values: dict[str, list[str]]) -> list[bytes]:
        """The strings to sign that the request's forms allow, from these header values."""
        if expires is not None:  # presigned: the expiry is the date signed
            content_md5, content_type, amz = _header_fields(
                header_values, _query_header_fields(query))
            date_forms = [(expires.encode(), amz)]
        else:
            content_md5, content_type, amz = _header_fields(header_values, {})
            date_forms = _date_forms(header_values, amz)
        return list(dict.fromkeys(
            string_to_sign(method, content_md5, content_type, date, amz_headers, resource)
            for date, amz_headers in date_forms
            for path in resource_paths
            for resource in canonical_resources(path, query)
        ))

    def matches(strings: list[bytes]) -> bool:
        return any(hmac.compare_digest(sign(secret, c).encode(), provided) for c in strings)

    # Header values as UTF-8 first; then, on a mismatch only, as Latin-1 where that reads
    # them differently (``sigv4.latin1_header_map``).
    first = candidates(header_map)
    if not matches(first):
        latin1 = latin1_header_map(headers)
        if latin1 is None or not matches(candidates(latin1)):
            raise _signature_mismatch(access_key, signature, first[0])
    return _context(access_key, region, _iso_basic(signed_time), presigned, header_map, query)


def sign(secret: str, to_sign: bytes) -> str:
    """``base64(HMAC-SHA1(secret, string_to_sign))``, as every SigV2 client computes it."""
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def string_to_sign(
    method: str,
    content_md5: str,
    content_type: str,
    date: bytes,
    amz_headers: dict[str, str],
    resource: bytes,
) -> bytes:
    """The bytes a SigV2 client signs; header text is UTF-8 encoded, as botocore does."""
    head = f"{method.upper()}\n{content_md5}\n{content_type}\n".encode()
    amz = "".join(f"{name}:{amz_headers[name]}\n" for name in sorted(amz_headers)).encode()
    return head + date + b"\n" + amz + resource


def _resource_paths(raw_path: bytes, bucket_from_host: str | None) -> list[bytes]:
    """The resource's path: as sent, after ``/bucket`` for a virtual-hosted request.

    A request for the bucket itself has two spellings: botocore sends path style
    ``/bucket`` but signs ``/bucket/`` (the virtual-hosted form), and a client that
    builds a virtual-hosted URL with an empty path signs ``/bucket``: both are tried.
    """
    if bucket_from_host:
        bucket = b"/" + bucket_from_host.encode()
        return [bucket + raw_path, bucket] if raw_path == b"/" else [bucket + raw_path]
    if raw_path != b"/" and raw_path.count(b"/") == 1:  # path style, the bucket itself
        return [raw_path, raw_path + b"/"]
    return [raw_path]


def canonical_resources(resource_path: bytes, query: Sequence[_QueryPiece]) -> Iterator[bytes]:
    """Each variant of the CanonicalizedResource, the spec's (decoded values) first."""
    known = [p for p in query if p.name in SUBRESOURCES or p.name in OPTIONAL_SUBRESOURCES]
    optional = sorted({p.name for p in known if p.name in OPTIONAL_SUBRESOURCES})
    if len(optional) <= _OPTIONAL_SUBSETS_MAX:
        subsets = [
            set(subset)
            for size in range(len(optional), -1, -1)
            for subset in itertools.combinations(optional, size)
        ]
    else:
        subsets = [set(optional), set()]
    for included in subsets:
        signed = sorted(
            (p for p in known if p.name in SUBRESOURCES or p.name in included),
            key=lambda p: p.name,
        )
        for form in (_decoded, _as_sent, _decoded_bare_when_empty):
            yield resource_path + (b"?" + b"&".join(map(form, signed)) if signed else b"")


def _decoded(piece: _QueryPiece) -> bytes:
    name = piece.name.encode()
    return name if piece.value is None else name + b"=" + piece.value


def _as_sent(piece: _QueryPiece) -> bytes:
    return piece.raw


def _decoded_bare_when_empty(piece: _QueryPiece) -> bytes:
    return piece.name.encode() + (b"=" + piece.value if piece.value else b"")


# --- parsing -------------------------------------------------------------------------


def _parse_query(raw_query: bytes) -> list[_QueryPiece]:
    """``+`` is a space, as in SigV4's rule and what the gateway acts on."""
    pieces = []
    for raw in raw_query.split(b"&"):
        if raw:
            name, equals, value = raw.replace(b"+", b" ").partition(b"=")
            decoded_name = unquote_to_bytes(name).decode("utf-8", "replace")
            pieces.append(
                _QueryPiece(raw, decoded_name, unquote_to_bytes(value) if equals else None)
            )
    return pieces


def _parse_authorization(value: str) -> tuple[str, str]:
    """``AWS AccessKeyId:Signature`` -> (access key, signature)."""
    access_key, colon, signature = value[len("AWS ") :].strip().partition(":")
    if not colon or not access_key.strip() or not signature.strip():
        raise AuthError(
            "InvalidArgument",
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            400,
            {"ArgumentName": "Authorization", "ArgumentValue": value},
        )
    return access_key.strip(), signature.strip()


def _query_auth(query: Sequence[_QueryPiece]) -> tuple[str, str, str]:
    """(access key, signature, expires) from a presigned URL's query."""
    found: dict[str, str] = {}
    for piece in query:
        if piece.name in _QUERY_AUTH:
            if piece.name in found:
                raise AuthError(
                    "InvalidArgument",
                    f"The query parameter {piece.name} is given more than once.",
                    400,
                    {"ArgumentName": piece.name},
                )
            found[piece.name] = (piece.value or b"").decode("utf-8", "replace")
    if not all(found.get(name) for name in _QUERY_AUTH):
        raise AuthError(
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and "
            "AWSAccessKeyId parameters",
            403,
        )
    # base64 has no spaces: a space is a '+' that the client did not percent-encode.
    signature = found["Signature"].replace(" ", "+")
    expires = found["Expires"]
    if not _EPOCH_SECONDS.fullmatch(expires):
        raise AuthError(
            "AccessDenied", f"Invalid date (should be seconds since epoch): {expires}", 403
        )
    return found["AWSAccessKeyId"], signature, expires


def _request_time(header_map: dict[str, list[str]]) -> tuple[float, str]:
    """(Request time in epoch seconds, as sent): ``x-amz-date`` wins over ``Date``."""
    given = _single_header(header_map, "x-amz-date")
    if given is None:
        given = _single_header(header_map, "date")
    seconds = None if given is None else _parse_date(given)
    # A date before the epoch is refused as an unreadable one is (AccessDenied), not as
    # a skewed one: that is the answer s3-tests' header suite records for S3 ('Tue, 07
    # Jul 1950', test_object_create_bad_date_before_epoch_aws2).
    if given is None or seconds is None or seconds < 0:
        raise _missing_date()
    return seconds, given


def _date_forms(
    header_map: dict[str, list[str]], amz: dict[str, str]
) -> list[tuple[bytes, dict[str, str]]]:
    """(Date line, amz headers) as header-signing clients write them.

    Without ``x-amz-date`` the Date line is the ``Date`` header. With it, the spec's text
    says the Date line is empty (s3cmd); botocore and MinIO use the ``Date`` header
    anyway; the spec's own DELETE example moves the ``x-amz-date`` value to the Date
    line and leaves it out of the amz headers.
    """
    http_date = _single_header(header_map, "date")
    amz_date = _single_header(header_map, "x-amz-date")
    if amz_date is None:
        return [((http_date or "").encode(), amz)]
    forms = [(b"", amz)]
    if http_date is not None:
        forms.append((http_date.encode(), amz))
    without = {name: value for name, value in amz.items() if name != "x-amz-date"}
    forms.append((amz_date.encode(), without))
    return forms


def _parse_date(value: str) -> float | None:
    """RFC 1123 (what SigV2 clients send) or ISO 8601 basic (SigV4's x-amz-date form)."""
    try:
        return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        pass
    parsed = parse_http_date(value)
    return None if parsed is None else parsed.timestamp()


def _query_header_fields(query: Sequence[_QueryPiece]) -> dict[str, list[str]]:
    """``x-amz-*``, ``content-type`` and ``content-md5`` query parameters, as headers."""
    fields: dict[str, list[str]] = {}
    for piece in query:
        name = piece.name.lower()
        if name.startswith("x-amz-") or name in _QUERY_HEADERS:
            value = (piece.value or b"").decode("utf-8", "replace")
            fields.setdefault(name, []).append(value)
    return fields


def _header_fields(
    header_map: dict[str, list[str]], from_query: dict[str, list[str]]
) -> tuple[str, str, dict[str, str]]:
    """(Content-MD5, Content-Type, canonical amz headers); a header beats a parameter."""
    merged = {**from_query, **header_map}
    amz = {
        name: ",".join(_FOLD.sub(" ", value).strip() for value in values)
        for name, values in merged.items()
        if name.startswith("x-amz-")
    }
    content_md5 = _single_header(merged, "content-md5") or ""
    content_type = _single_header(merged, "content-type") or ""
    return content_md5, content_type, amz


# --- checks and result ---------------------------------------------------------------


def _check_expiry(expires: str, now_seconds: float) -> None:
    if now_seconds > int(expires):
        raise AuthError(
            "AccessDenied",
            "Request has expired",
            403,
            {"Expires": _format_time(int(expires)), "ServerTime": _format_time(now_seconds)},
        )


def _check_skew(request_seconds: float, now_seconds: float, given_date: str) -> None:
    if abs(now_seconds - request_seconds) > limits.request_time_skew_seconds_max:
        raise AuthError(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            403,
            {
                "RequestTime": given_date,
                "ServerTime": _format_time(now_seconds),
                "MaxAllowedSkewMilliseconds": str(limits.request_time_skew_seconds_max * 1000),
            },
        )


def _context(
    access_key: str,
    region: str | None,
    timestamp: str,
    presigned: bool,
    header_map: dict[str, list[str]],
    query: Sequence[_QueryPiece],
) -> AuthContext:
    payload_hash = _payload_hash(header_map, default=PayloadMode.UNSIGNED.value)
    if payload_hash == PayloadMode.UNSIGNED.value:
        mode = PayloadMode.UNSIGNED
    elif payload_hash == PayloadMode.STREAMING_UNSIGNED_TRAILER.value:
        mode = PayloadMode.STREAMING_UNSIGNED_TRAILER
    elif payload_hash.startswith("STREAMING-"):
        # Chunk signatures chain from a SigV4 signing key, which SigV2 does not have.
        raise AuthError(
            "InvalidRequest",
            f"x-amz-content-sha256 {payload_hash} requires AWS Signature Version 4.",
            400,
            {"ArgumentName": "x-amz-content-sha256", "ArgumentValue": payload_hash},
        )
    else:
        mode = PayloadMode.SIGNED  # a hex sha256, covered by the signature as an x-amz header
    token = next(
        (
            (p.value or b"").decode("utf-8", "replace")
            for p in query
            if p.name.lower() == "x-amz-security-token"
        ),
        None,
    )
    return AuthContext(
        access_key=access_key,
        region=region or DEFAULT_REGION,
        timestamp=timestamp,
        scope="",
        signing_key=b"",
        seed_signature="",
        payload_mode=mode,
        payload_sha256_hex=payload_hash if mode is PayloadMode.SIGNED else None,
        presigned=presigned,
        security_token=_single_header(header_map, "x-amz-security-token") or token,
        decoded_content_length_bytes=_decoded_length(header_map),
        trailer_names=_trailer_names(header_map),
    )


def _iso_basic(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(TIMESTAMP_FORMAT)


def _signature_mismatch(access_key: str, provided: str, to_sign: bytes) -> AuthError:
    return AuthError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        403,
        {
            "AWSAccessKeyId": access_key,
            "StringToSign": to_sign.decode("utf-8", "replace"),
            "SignatureProvided": provided,
            "StringToSignBytes": " ".join(f"{byte:02x}" for byte in to_sign),
        },
    )
