"""Frames: the wire format of the network transports, as a sans-I/O reader.

Rules and theory of operation:

* A connection carries frames both ways. A frame is a fixed 24-byte header, then a
  control message of ``control_length`` bytes (msgpack, ``storage.transport.codec``),
  then, when the header's PAYLOAD flag is set, ``payload_length`` bytes of body. Control
  and payload are separate sections, so a payload is never run through a serializer and
  can land in a buffer of its own (DESIGN: "small control messages travel apart from
  payloads").

  ======  =====  ============================================================
  offset  bytes  field (big-endian)
  ======  =====  ============================================================
  0       2      magic ``b"Sq"``
  2       1      format version (``VERSION``)
  3       1      kind (``FrameKind``)
  4       1      flags (``FLAG_PAYLOAD``; other bits must be 0)
  5       3      reserved, 0
  8       8      request id (0: the connection itself, e.g. GOAWAY)
  16      4      control length
  20      4      payload length (0 without the PAYLOAD flag)
  ======  =====  ============================================================

* Every length is checked against the receiving side's bounds (``limits``) from the
  header alone, before a byte of the section is stored: a garbled or oversized header
  raises ``FrameError`` and the connection must be closed. So a peer can make a
  receiver allocate at most one section of at most the bounded size at a time.
* ``FrameReader`` does no I/O; it is driven like ``asyncio.BufferedProtocol``: the
  caller asks ``get_buffer()`` where the next bytes go, receives into it
  (``recv_into``), and tells ``buffer_updated(n)``, which returns the frames completed.
  Headers and small frames go to one staging buffer (``limits
  .transport_receive_buffer_bytes``). A section not complete in it gets a buffer of
  exactly its announced size: the part already staged is copied once, and
  ``get_buffer`` then hands out the rest of that buffer, so the kernel writes the rest
  of the section straight into it.
* What a frame hands out: its control as a memoryview that is valid only until the next
  ``get_buffer`` call (decode it at once); its payload as a memoryview of a buffer the
  frame owns (keep it as long as needed).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Collection
from dataclasses import dataclass

HEADER = struct.Struct(">2sBBB3xQII")
HEADER_BYTES = HEADER.size
MAGIC = b"Sq"
VERSION = 1
FLAG_PAYLOAD = 0x01
_KNOWN_FLAGS = FLAG_PAYLOAD
CONNECTION_ID = 0  # the request id of frames about the connection itself
_REQUEST_ID_MAX = (1 << 64) - 1


class FrameKind(enum.IntEnum):
    REQUEST = 1  # client -> node: control [operation, arguments]; payload: a chunk, if any
    REPLY = 2  # node -> client: control: the result
    ERROR = 3  # node -> client: control: a typed error; ends a call or a stream
    STREAM_OPEN = 4  # client -> node: control [operation, arguments, window in pieces]
    STREAM_DATA = 5  # node -> client: payload: one piece of the stream
    STREAM_END = 6  # node -> client: the stream is complete
    STREAM_CREDIT = 7  # client -> node: control: pieces the node may send in addition
    STREAM_CANCEL = 8  # client -> node: stop the stream and release it
    GOAWAY = 9  # either way, request id 0: control: why the sender closes the connection
    SETUP = 10  # client -> node: control: a data path's set-up (rdma.py); REPLY/ERROR answer


# Kinds whose frames may carry a payload.
PAYLOAD_KINDS = frozenset({FrameKind.REQUEST, FrameKind.STREAM_DATA})
# What each end accepts.
NODE_RECEIVES = frozenset({FrameKind.REQUEST, FrameKind.STREAM_OPEN, FrameKind.STREAM_CREDIT,
                           FrameKind.STREAM_CANCEL, FrameKind.GOAWAY})
CLIENT_RECEIVES = frozenset({FrameKind.REPLY, FrameKind.ERROR, FrameKind.STREAM_DATA,
                             FrameKind.STREAM_END, FrameKind.GOAWAY})


class FrameError(Exception):
    """The peer sent bytes that are not a frame this end accepts (garbled, oversized, an
    unknown kind). The connection cannot be trusted past them and must be closed; the
    frames completed before them in the same read are in ``frames``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.frames: list[Frame] = []


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    request_id: int
    control: memoryview  # valid until the reader's next get_buffer(): decode at once
    payload: memoryview | None  # owned by the frame; None without the PAYLOAD flag


def encode_header(
    kind: FrameKind, request_id: int, control_length: int, payload_length: int | None = None
) -> bytes:
    """The header of a frame; ``payload_length`` None: no payload (flag clear)."""
    assert 0 <= request_id <= _REQUEST_ID_MAX
    if payload_length is None:
        return HEADER.pack(MAGIC, VERSION, kind, 0, request_id, control_length, 0)
    assert kind in PAYLOAD_KINDS
    return HEADER.pack(MAGIC, VERSION, kind, FLAG_PAYLOAD, request_id, control_length,
                       payload_length)


@dataclass(frozen=True, slots=True)
class _Header:
    kind: FrameKind
    request_id: int
    control_length: int
    payload_length: int | None


class FrameReader:
    """Bytes in, frames out (see the module's rules). One per connection and direction."""

    def __init__(
        self,
        accepted_kinds: Collection[FrameKind],
        control_bytes_max: int,
        payload_bytes_max: int,
        staging_bytes: int,
    ) -> None:
        assert staging_bytes >= HEADER_BYTES
        self._accepted = frozenset(accepted_kinds)
        self._control_bytes_max = control_bytes_max
        self._payload_bytes_max = payload_bytes_max
        self._staging = bytearray(staging_bytes)
        self._staging_view = memoryview(self._staging)
        self._start = 0  # first staged byte not yet parsed
        self._end = 0  # end of the staged bytes
        self._header: _Header | None = None  # of the frame being received
        self._control: memoryview | None = None  # of the frame being received
        # A section being received directly into its own buffer (control or payload).
        self._section: memoryview | None = None
        self._section_filled = 0
        self._failed: FrameError | None = None

    # --- the BufferedProtocol side ------------------------------------------------------

    def get_buffer(self) -> memoryview:
        """Where the next received bytes go (never empty)."""
        if self._failed is not None:
            raise self._failed
        if self._section is not None:
            return self._section[self._section_filled:]
        # Move the unparsed tail (less than a header: any longer section went to a buffer
        # of its own) to the front, so the staging buffer always has room.
        if self._start:
            remaining = self._end - self._start
            assert remaining < HEADER_BYTES
            self._staging[:remaining] = self._staging[self._start:self._end]
            self._start, self._end = 0, remaining
        return self._staging_view[self._end:]

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        """``nbytes`` were written where ``get_buffer`` said: the frames now complete.
        FrameError when the bytes are not acceptable frames (the reader stays failed),
        carrying the frames completed before them."""
        assert nbytes > 0
        frames: list[Frame] = []
        if self._section is not None:
            self._section_filled += nbytes
            assert self._section_filled <= len(self._section)
            if self._section_filled < len(self._section):
                return frames
            section, self._section = self._section, None
            self._finish_section(section, frames)
        else:
            self._end += nbytes
            assert self._end <= len(self._staging)
        try:
            self._parse_staged(frames)
        except FrameError as error:
            self._failed = error
            error.frames = frames
            raise
        return frames

    # --- parsing -------------------------------------------------------------------------

    def _parse_staged(self, frames: list[Frame]) -> None:
        while self._section is None:
            if self._header is None:
                if self._end - self._start < HEADER_BYTES:
                    return
                self._header = self._parse_header(self._staging_view[self._start:
                                                                     self._start + HEADER_BYTES])
                self._start += HEADER_BYTES
            header = self._header
            if self._control is None:
                section = self._take(header.control_length)
                if section is None:
                    return
                self._control = section
            if header.payload_length is not None:
                section = self._take(header.payload_length, owned=True)
                if section is None:
                    return
                frames.append(self._frame(section))
            else:
                frames.append(self._frame(None))

    def _take(self, length: int, owned: bool = False) -> memoryview | None:
        """The next ``length`` staged bytes, or None after moving what is staged of them
        into a buffer of their own (the rest will be received into it). A control
        section wholly staged is a view of the staging buffer; a payload is always
        copied out of it (it outlives the staging buffer's next use)."""
        staged = self._end - self._start
        if staged >= length:
            view = self._staging_view[self._start:self._start + length]
            self._start += length
            if owned:
                return memoryview(bytearray(view))
            return view
        buffer = memoryview(bytearray(length))
        buffer[:staged] = self._staging_view[self._start:self._end]
        self._start = self._end = 0
        self._section = buffer
        self._section_filled = staged
        return None

    def _finish_section(self, section: memoryview, frames: list[Frame]) -> None:
        header = self._header
        assert header is not None
        if self._control is None:
            self._control = section
            if header.payload_length is None:
                frames.append(self._frame(None))
            # else: the payload follows in the staging buffer (empty now) or its own.
        else:
            frames.append(self._frame(section))

    def _frame(self, payload: memoryview | None) -> Frame:
        header, control = self._header, self._control
        assert header is not None and control is not None
        self._header = self._control = None
        return Frame(header.kind, header.request_id, control, payload)

    def _parse_header(self, raw: memoryview) -> _Header:
        magic, version, kind_value, flags, request_id, control_length, payload_length = (
            HEADER.unpack(raw))
        if magic != MAGIC:
            raise FrameError(f"not a Squall frame (magic {bytes(magic)!r})")
        if version != VERSION:
            raise FrameError(f"frame format version {version}; this end speaks {VERSION}")
        try:
            kind = FrameKind(kind_value)
        except ValueError:
            raise FrameError(f"unknown frame kind {kind_value}") from None
        if kind not in self._accepted:
            raise FrameError(f"a {kind.name} frame is not accepted here")
        if flags & ~_KNOWN_FLAGS:
            raise FrameError(f"unknown frame flags {flags:#x}")
        if control_length > self._control_bytes_max:
            raise FrameError(f"{kind.name} frame announces {control_length} control bytes; "
                             f"at most {self._control_bytes_max} are accepted")
        if not flags & FLAG_PAYLOAD:
            if payload_length:
                raise FrameError(f"{kind.name} frame: payload length without the flag")
            return _Header(kind, request_id, control_length, None)
        if kind not in PAYLOAD_KINDS:
            raise FrameError(f"a {kind.name} frame carries no payload")
        if payload_length > self._payload_bytes_max:
            raise FrameError(f"{kind.name} frame announces a payload of {payload_length} "
                             f"bytes; at most {self._payload_bytes_max} are accepted")
        return _Header(kind, request_id, control_length, payload_length)
