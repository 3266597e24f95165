"""``multipart/form-data`` (RFC 7578) as a stream: the body of a browser's POST Object.

Theory of operation
-------------------
A form body is a sequence of parts separated by a delimiter line::

    --BOUNDARY CRLF  headers CRLF CRLF  value  CRLF --BOUNDARY CRLF  ...  CRLF --BOUNDARY-- CRLF

:class:`FormParser` is a sans-I/O state machine (in the manner of h11): ``feed(bytes)``
returns the events the new bytes complete (:class:`PartStart`, :class:`PartData`,
:class:`PartEnd`, :class:`FormEnd`) and holds back only what might still turn out to be
part of a delimiter (a CR at most a delimiter's length from the end, and what follows
it), a part's header section, or the preamble. Part bodies are returned as views of the bytes fed in: a file of any size
passes through without being copied or collected. The first delimiter may open the body
without a preceding CRLF, so the parser behaves as if the body began with one.

:class:`FormReader` drives the parser over an async iterator of body pieces for the POST
Object handler: it collects the (small) fields that precede the ``file`` field, then
yields the file's bytes piece by piece, then reads and ignores what follows (AWS ignores
every field after ``file``).

Rules
-----
* No I/O of its own, no clock. Every bound is in ``storage.limits`` (``post_form_*``):
  the preamble, one part's header section, each field before the file, their count and
  their total. Beyond a bound the form is refused, never buffered.
* Field names are compared case-insensitively (AWS), so they are reported lower-cased
  together with the name as sent.
* Malformed framing is :class:`FormError` ``MalformedPOSTRequest`` (400); too much before
  the file is ``MaxPostPreDataLengthExceededError`` (400), AWS's codes.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum, auto

from gateway.errors import CodedError
from storage.api import limits

FILE_FIELD = "file"
_CRLF = b"\r\n"
_BOUNDARY_CHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{1,70}")  # RFC 2046's bchars
# One '; name=value' parameter of Content-Disposition or Content-Type; a quoted value
# may hold ';' and backslash-escaped quotes.
_PARAMETER = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR = re.compile(r'\\(["\\])')


class FormError(CodedError):
    """A form body that cannot be read; maps to one S3 error."""


def malformed(reason: str) -> FormError:
    return FormError(
        "MalformedPOSTRequest",
        f"The body of your POST request is not well-formed multipart/form-data. ({reason})",
        400,
    )


def pre_data_too_large() -> FormError:
    return FormError(
        "MaxPostPreDataLengthExceededError",
        "Your POST request fields preceding the upload file were too large.",
        400,
        {"MaxPostPreDataLength": str(limits.post_form_fields_bytes_max)},
    )


def boundary_from_content_type(content_type: str) -> bytes:
    """The boundary of ``multipart/form-data; boundary=...``; FormError if it has none."""
    _, parameters = split_header_value(content_type)
    boundary = parameters.get("boundary", "")
    if not _BOUNDARY_CHARS.fullmatch(boundary) or boundary.endswith(" "):
        raise malformed("the Content-Type header names no valid boundary")
    return boundary.encode("ascii")


def split_header_value(value: str) -> tuple[str, dict[str, str]]:
    """``type; a=1; b="x;y"`` -> ('type', {'a': '1', 'b': 'x;y'}); names lower-cased."""
    head, _, rest = value.partition(";")
    parameters: dict[str, str] = {}
    for match in _PARAMETER.finditer(";" + rest):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        parameters.setdefault(name, raw)
    return head.strip().lower(), parameters


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartStart:
    name: str  # as sent
    filename: str | None  # the filename parameter, when the part has one
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes | memoryview  # valid until the next feed


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


@dataclass(frozen=True, slots=True)
class FormEnd:
    pass


Event = PartStart | PartData | PartEnd | FormEnd


class _State(Enum):
    PREAMBLE = auto()
    AFTER_DELIMITER = auto()  # '--' closes the form, else padding and CRLF open a part
    HEADERS = auto()
    BODY = auto()
    DONE = auto()


# After a delimiter, transport padding (spaces, tabs) may precede the CRLF; bounded.
_AFTER_DELIMITER_BYTES_MAX = 256


class FormParser:
    """The sans-I/O parser. ``feed`` until it returns :class:`FormEnd`; then
    ``is_done`` is true and further bytes (the epilogue) are ignored."""

    def __init__(self, boundary: bytes) -> None:
        assert boundary, "boundary_from_content_type never returns an empty boundary"
        self._delimiter = _CRLF + b"--" + boundary
        self._state = _State.PREAMBLE
        self._pending = _CRLF  # as if the body began with CRLF: the first delimiter has none
        self._preamble_bytes = 0

    @property
    def is_done(self) -> bool:
        return self._state is _State.DONE

    def feed(self, data: bytes | memoryview) -> list[Event]:
        events: list[Event] = []
        if self._state is _State.DONE or not data:
            return events
        data = bytes(data) if isinstance(data, memoryview) else data
        if self._state is _State.BODY and self._pending:
            data = self._join_body_tail(data, events)
        elif self._pending:
            data = self._pending + data
        self._pending = b""
        self._run(data, events)
        return events

    def _join_body_tail(self, data: bytes, events: list[Event]) -> bytes:
        """Inside a body, the held-back tail is shorter than the delimiter. If no delimiter
        starts in it, it is body: send it and go on with ``data`` alone, so a large piece
        is never copied just to be joined to a few held-back bytes."""
        tail, length = self._pending, len(self._delimiter)
        if len(data) >= length:
            found = (tail + data[:length]).find(self._delimiter)
            if found == -1 or found >= len(tail):
                events.append(PartData(tail))
                return data
        return tail + data  # rare: the end of a part, or a tiny piece

    def _run(self, data: bytes, events: list[Event]) -> None:
        position = 0
        while position < len(data) and self._state is not _State.DONE:
            step = _STEPS[self._state]
            advanced = step(self, data, position, events)
            if advanced is None:  # needs more bytes: hold back the rest
                self._pending = data[position:]
                return
            position = advanced

    # Each step consumes from data[position:] and returns the new position, or None
    # when it cannot decide without more bytes.

    def _preamble(self, data: bytes, position: int, events: list[Event]) -> int | None:
        found = data.find(self._delimiter, position)
        if found == -1:
            kept = max(position, len(data) - len(self._delimiter) + 1)
            self._preamble_bytes += kept - position
            if self._preamble_bytes > limits.post_form_preamble_bytes_max:
                raise malformed("no boundary where the body begins")
            return None if kept == position else kept
        self._preamble_bytes += found - position
        if self._preamble_bytes > limits.post_form_preamble_bytes_max:
            raise malformed("no boundary where the body begins")
        self._state = _State.AFTER_DELIMITER
        return found + len(self._delimiter)

    def _after_delimiter(self, data: bytes, position: int, events: list[Event]) -> int | None:
        if len(data) - position < 2:
            return None
        if data.startswith(b"--", position):
            self._state = _State.DONE
            events.append(FormEnd())
            return len(data)
        line_end = data.find(_CRLF, position)
        if line_end == -1:
            if len(data) - position > _AFTER_DELIMITER_BYTES_MAX:
                raise malformed("a boundary line does not end")
            return None
        if data[position:line_end].strip(b" \t"):
            raise malformed("a boundary line has text after the boundary")
        self._state = _State.HEADERS
        return line_end + 2

    def _headers(self, data: bytes, position: int, events: list[Event]) -> int | None:
        if data.startswith(_CRLF, position):  # a part with no header lines at all
            end, after = position, position + 2
        else:
            end = data.find(_CRLF + _CRLF, position)
            if end == -1:
                if len(data) - position > limits.post_form_part_header_bytes_max:
                    raise malformed("a part's header section is too long")
                return None
            after = end + 4
        if end - position > limits.post_form_part_header_bytes_max:
            raise malformed("a part's header section is too long")
        events.append(_part_start(data[position:end]))
        self._state = _State.BODY
        return after

    def _body(self, data: bytes, position: int, events: list[Event]) -> int | None:
        found = data.find(self._delimiter, position)
        if found != -1:
            if found > position:
                events.append(PartData(memoryview(data)[position:found]))
            events.append(PartEnd())
            self._state = _State.AFTER_DELIMITER
            return found + len(self._delimiter)
        safe_end = self._possible_delimiter_start(data, position)
        if safe_end == position:
            return None
        events.append(PartData(memoryview(data)[position:safe_end]))
        return safe_end

    def _possible_delimiter_start(self, data: bytes, position: int) -> int:
        """Where the bytes that might begin a delimiter start (``len(data)``: none).

        The delimiter holds CR only as its first byte (RFC 2046 allows no CR in a
        boundary), so only the last CR within a delimiter's length of the end can begin
        one: usually there is none and the whole piece is body, sent on at once."""
        window_start = max(position, len(data) - len(self._delimiter) + 1)
        carriage_return = data.rfind(b"\r", window_start)
        if carriage_return != -1 and self._delimiter.startswith(data[carriage_return:]):
            return carriage_return
        return len(data)


_STEPS = {
    _State.PREAMBLE: FormParser._preamble,
    _State.AFTER_DELIMITER: FormParser._after_delimiter,
    _State.HEADERS: FormParser._headers,
    _State.BODY: FormParser._body,
}


def _part_start(header_section: bytes) -> PartStart:
    try:
        text = header_section.decode("utf-8")
    except UnicodeDecodeError:
        text = header_section.decode("latin-1")
    headers: dict[str, str] = {}
    for line in text.split("\r\n") if text else []:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise malformed("a part has a header line without a name")
        headers.setdefault(name.strip().lower(), value.strip())
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise malformed("a part has no Content-Disposition header")
    kind, parameters = split_header_value(disposition)
    if kind != "form-data" or "name" not in parameters:
        raise malformed("a part's Content-Disposition is not form-data with a name")
    return PartStart(parameters["name"], parameters.get("filename"), headers.get("content-type"))


# --- the reader the POST Object handler uses -----------------------------------------------


@dataclass(frozen=True, slots=True)
class FormField:
    name: str  # as sent
    value: str


@dataclass(frozen=True, slots=True)
class FormHead:
    """Everything before the file: the fields (by lower-cased name) and the file part."""

    fields: dict[str, FormField]
    file: PartStart | None  # None: the form ended without a 'file' field


class FormReader:
    """Reads a form from body pieces: ``read_head()``, then ``file_pieces()``, then
    ``drain()``. Only the fields before the file are ever held in memory."""

    def __init__(self, pieces: AsyncIterator[bytes | memoryview], boundary: bytes) -> None:
        self._pieces = pieces
        self._parser = FormParser(boundary)
        self._events: deque[Event] = deque()
        self._input_ended = False

    async def _next_event(self) -> Event:
        while not self._events:
            if self._input_ended:
                raise malformed("the body ends before the form does")
            try:
                piece = await anext(self._pieces)
            except StopAsyncIteration:
                self._input_ended = True
                continue
            self._events.extend(self._parser.feed(piece))
        return self._events.popleft()

    async def read_head(self) -> FormHead:
        fields: dict[str, FormField] = {}
        total_bytes = 0
        while True:
            event = await self._next_event()
            if isinstance(event, FormEnd):
                return FormHead(fields, None)
            assert isinstance(event, PartStart), f"parts open with PartStart, not {event}"
            if event.name.lower() == FILE_FIELD:
                return FormHead(fields, event)
            if len(fields) >= limits.post_form_fields_max:
                raise pre_data_too_large()
            value = await self._field_value(limits.post_form_fields_bytes_max - total_bytes)
            total_bytes += len(value)
            name = event.name.lower()
            if name in fields:
                raise FormError("InvalidArgument", f"The form field '{event.name}' is given "
                                "more than once.", 400, {"ArgumentName": event.name})
            try:
                fields[name] = FormField(event.name, value.decode("utf-8"))
            except UnicodeDecodeError:
                raise malformed(f"the value of the field '{event.name}' is not UTF-8") from None

    async def _field_value(self, budget_bytes: int) -> bytes:
        bound = min(budget_bytes, limits.post_form_field_bytes_max)
        value = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, PartEnd):
                return bytes(value)
            assert isinstance(event, PartData), f"a part holds PartData, not {event}"
            if len(value) + len(event.data) > bound:
                raise pre_data_too_large()
            value += event.data

    async def file_pieces(self) -> AsyncIterator[bytes | memoryview]:
        """The file's bytes, piece by piece (views: use each before asking for the next)."""
        while True:
            event = await self._next_event()
            if isinstance(event, PartEnd):
                return
            assert isinstance(event, PartData), f"a part holds PartData, not {event}"
            yield event.data

    async def drain(self, bytes_max: int) -> bool:
        """Read and ignore the rest of the form (AWS ignores fields after the file), up to
        ``bytes_max`` bytes; True when the body was read to its end."""
        self._events.clear()
        read_bytes = 0
        while read_bytes <= bytes_max:
            try:
                piece = await anext(self._pieces)
            except StopAsyncIteration:
                return True
            read_bytes += len(piece)
            self._parser.feed(b"" if self._parser.is_done else piece)
        return False
