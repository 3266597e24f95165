"""Reads as of a time from boto3: the client side of a Squall extension (not S3).

Squall answers GetObject, HeadObject, ListObjects and ListObjectsV2 with the state at an
instant when the request carries ``x-squall-as-of`` (or the ``as-of`` query parameter):
RFC 3339 with a time zone, or epoch milliseconds. See docs/as-of.md.

boto3 has no parameter for it, so this module adds one through botocore's event system::

    from squall.asof import reading_as_of

    with reading_as_of(s3, datetime(2026, 11, 28, 10, 42, tzinfo=UTC)):
        old = s3.get_object(Bucket="photos", Key="cat.jpg")["Body"].read()
        listing = s3.list_objects_v2(Bucket="photos")

The hook runs on ``before-sign``, so the header is part of the SigV4 signature like any
other. For presigned URLs (``generate_presigned_url``), where the client sending the URL
cannot be made to send a header, the time goes into the signed query string instead.

The registration is per client and applies to every thread using that client: use a
client of its own for as-of reads when other threads share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

AS_OF_HEADER = "x-squall-as-of"
AS_OF_QUERY = "as-of"
READ_OPERATIONS = ("GetObject", "HeadObject", "ListObjects", "ListObjectsV2")

AsOf = datetime | int | str


def as_of_header(value: AsOf) -> str:
    """The header value for an instant.

    A ``datetime`` must carry a time zone (a naive one would silently mean the local
    zone of whichever machine runs this); it is written in UTC with milliseconds. An
    ``int`` is epoch milliseconds. A ``str`` is passed through for the server to check.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("as-of datetimes must be timezone-aware (e.g. tzinfo=UTC)")
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"as-of must be a datetime, epoch milliseconds or a string: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("as-of epoch milliseconds must not be negative")
        return str(value)
    return value


def _with_query_parameter(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    parameter = f"{quote(name, safe='')}={quote(value, safe='')}"
    query = f"{parts.query}&{parameter}" if parts.query else parameter
    return urlunsplit(parts._replace(query=query))


def register_as_of(client: Any, as_of: AsOf) -> Callable[[], None]:
    """Make the client's GET/HEAD/List calls read as of ``as_of``; returns an undo."""
    value = as_of_header(as_of)

    def add_as_of(request: Any, signature_version: Any = None, **_: Any) -> None:
        if isinstance(signature_version, str) and signature_version.endswith("-query"):
            request.url = _with_query_parameter(request.url, AS_OF_QUERY, value)
        else:
            # botocore headers append on assignment; a retry signs the request again.
            del request.headers[AS_OF_HEADER]
            request.headers[AS_OF_HEADER] = value

    events = client.meta.events
    names = [f"before-sign.s3.{operation}" for operation in READ_OPERATIONS]
    for name in names:
        events.register(name, add_as_of)

    def unregister() -> None:
        for name in names:
            events.unregister(name, add_as_of)

    return unregister


@contextmanager
def reading_as_of(client: Any, as_of: AsOf) -> Iterator[None]:
    """Within the block, the client's GET/HEAD/List calls read as of ``as_of``."""
    unregister = register_as_of(client, as_of)
    try:
        yield
    finally:
        unregister()
