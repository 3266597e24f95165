"""Reads as of a time: a Squall extension to GET, HEAD, ListObjects and ListObjectsV2.

A read names an instant with the ``x-squall-as-of`` header or the ``as-of`` query
parameter (the query form suits presigned URLs). The value is RFC 3339 with a time zone
(``2026-11-28T10:42:00Z``, ``2026-11-28T11:42:00.250+01:00``) or integer milliseconds
since the Unix epoch. Anything else is 400 InvalidArgument: a read that silently ignored
a time it could not parse would answer about the wrong moment.

The instant is resolved to milliseconds (finer fractions are truncated); the store
answers with the newest version whose timestamp is at or before it.
"""

from __future__ import annotations

import re
from datetime import datetime

from gateway.errors import invalid_argument
from gateway.s3.common import RequestContext

AS_OF_HEADER = "x-squall-as-of"
AS_OF_QUERY = "as-of"
# Epoch milliseconds: up to 15 digits reaches the year 33658, far beyond any version.
_EPOCH_MS = re.compile(r"[0-9]{1,15}")
_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]"
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?"
    r"(?P<zone>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def parse_as_of(value: str) -> int:
    """Milliseconds since the epoch named by ``value``; InvalidArgument if malformed."""
    text = value.strip()
    if _EPOCH_MS.fullmatch(text):
        return int(text)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _malformed(value)
    zone = "+00:00" if match["zone"] in ("Z", "z") else match["zone"]
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}{zone}")
    except ValueError:  # e.g. month 13, or 25:00
        raise _malformed(value) from None
    fraction_ms = int((match["fraction"] or "0").ljust(3, "0")[:3])
    return int(moment.timestamp()) * 1000 + fraction_ms


def _malformed(value: str) -> Exception:
    return invalid_argument(
        "The as-of time must be RFC 3339 with a time zone or epoch milliseconds",
        AS_OF_HEADER,
        value,
    )


def requested_as_of_ms(ctx: RequestContext) -> int | None:
    """The instant a read asks for, or None for the present state."""
    header = ctx.headers.get(AS_OF_HEADER)
    query = ctx.query_value(AS_OF_QUERY)
    if header is None and query is None:
        return None
    if header is not None and query is not None and header.strip() != query.strip():
        raise invalid_argument(
            "The x-squall-as-of header and the as-of parameter name different times",
            AS_OF_HEADER,
            header,
        )
    raw = header if header is not None else query
    assert raw is not None
    as_of_ms = parse_as_of(raw)
    if ctx.query_value("versionId") is not None:
        raise invalid_argument("A read may name a versionId or an as-of time, not both",
                               AS_OF_HEADER, raw)
    return as_of_ms
