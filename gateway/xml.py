"""S3 XML in and out.

Out: responses are built as small trees of ``(tag, value)`` pairs and rendered to bytes
deterministically (golden tests compare bytes). A value is a ``str`` (escaped text), a
``list`` of child pairs, or ``None`` (the element is left out).

In: request bodies are parsed with defusedxml (no entities, no DTDs, no billion laughs)
after a size check; the S3 namespace is optional, as AWS accepts both forms.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from gateway.errors import S3Error, malformed_xml
from storage.api import limits

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

Node = tuple[str, str | list["Node"] | None]


def escape_text(text: str) -> str:
    """Element text escaped as ``render`` does (for templates that build elements)."""
    # Most values (keys, ETags, dates) need no escaping: three substring tests are far
    # cheaper than saxutils' three replaces, once per element of a 1000-key listing.
    if "&" in text or "<" in text or ">" in text:
        return escape(text)
    return text


def _render_into(parts: list[str], node: Node) -> None:
    tag, value = node
    if value is None:
        return
    if isinstance(value, str):
        parts.append(f"<{tag}>{escape_text(value)}</{tag}>")
        return
    parts.append(f"<{tag}>")
    for child in value:
        _render_into(parts, child)
    parts.append(f"</{tag}>")


def render(
    root_tag: str,
    children: Iterable[Node] = (),
    *,
    text: str = "",
    namespace: bool = True,
    rendered_tail: str = "",
) -> bytes:
    """The document ``<root_tag xmlns=...>text children tail</root_tag>`` as UTF-8 bytes.

    ``rendered_tail`` is elements already rendered (escaped) by a template: a listing's
    up to 1000 entries, which cost several times more as trees of nodes."""
    attributes = f' xmlns="{S3_NAMESPACE}"' if namespace else ""
    parts = [f"<{root_tag}{attributes}>", escape(text)]
    for child in children:
        _render_into(parts, child)
    parts.append(rendered_tail)
    parts.append(f"</{root_tag}>")
    return XML_DECLARATION + "".join(parts).encode("utf-8")


def render_element(node: Node) -> str:
    """One element as text, for a template that repeats it (a listing's Owner)."""
    parts: list[str] = []
    _render_into(parts, node)
    return "".join(parts)


_iso8601_seconds: dict[int, str] = {}  # epoch second -> '2006-02-03T16:45:09'
_iso8601_millisecond_tails = tuple(f".{ms:03d}Z" for ms in range(1000))


def iso8601_ms(epoch_ms: int) -> str:
    """S3's timestamp format in XML bodies: 2006-02-03T16:45:09.000Z.

    The part down to the second is cached (``limits.xml_dates_cached_max`` seconds; the
    cache is dropped whole when full) and the tail is one of 1000 strings made once: a
    listing formats a date per key, and keys written together share their seconds."""
    head = _iso8601_seconds.get(epoch_ms // 1000)
    if head is None:
        head = _iso8601_second(epoch_ms // 1000)
    return head + _iso8601_millisecond_tails[epoch_ms % 1000]


def _iso8601_second(second: int) -> str:
    if len(_iso8601_seconds) >= limits.xml_dates_cached_max:
        _iso8601_seconds.clear()
    t = time.gmtime(second)  # cheaper than datetime + strftime
    head = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")
    _iso8601_seconds[second] = head
    return head


_HTTP_DATES_CACHED_MAX = 4096
_http_dates: dict[int, str] = {}  # epoch second -> its HTTP date (GET/HEAD: Last-Modified)


def http_date(epoch_ms: int) -> str:
    """RFC 7231 date for Last-Modified: 'Wed, 21 Oct 2015 07:28:00 GMT'.

    Cached per second (a GET/HEAD of a hot object formats the same one again and again);
    the cache is dropped whole when full."""
    second = epoch_ms // 1000
    text = _http_dates.get(second)
    if text is None:
        if len(_http_dates) >= _HTTP_DATES_CACHED_MAX:
            _http_dates.clear()
        text = format_datetime(datetime.fromtimestamp(second, tz=UTC), usegmt=True)
        _http_dates[second] = text
    return text


def bool_text(value: bool) -> str:
    return "true" if value else "false"


# --- parsing ---------------------------------------------------------------------------


def parse(body: bytes) -> Element:
    """Parse a request body; anything but well-formed, harmless XML is MalformedXML."""
    if len(body) > limits.request_xml_body_bytes_max:
        raise S3Error(
            "MaxMessageLengthExceeded",
            "Your request was too big.",
            400,
        )
    if not body.strip():
        raise malformed_xml()
    try:
        root = safe_et.fromstring(body, forbid_dtd=True)
    except (safe_et.ParseError, DefusedXmlException, ValueError) as error:
        raise malformed_xml() from error
    return root


def local_name(element: Element) -> str:
    """The tag without its '{namespace}' prefix."""
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def children(element: Element, name: str) -> list[Element]:
    return [child for child in element if local_name(child) == name]


def child_text(element: Element, name: str) -> str | None:
    """The text of the first child called ``name`` ('' if empty), None if absent."""
    for child in element:
        if local_name(child) == name:
            return child.text or ""
    return None
