"""uvicorn's httptools protocol, with a small response sent in ONE socket write.

uvicorn writes a response's head when the ASGI app sends ``http.response.start`` and
its body on each ``http.response.body``: two ``write`` calls, so two ``send`` system
calls and two TCP segments for a 4 KiB GET (measured with ``strace -c``: 2000 writes
for 1000 GETs). On loopback each send runs the receiver's side of TCP too; a py-spy
profile of GETs under load put most of the server's time in those writes.

:class:`CoalescingTransport` sits between the protocol and the socket transport and
holds back ONE small write (at most ``limits.response_coalesce_bytes_max``) until
the next write, which it is joined to, the end of the response, or at the latest the
end of the current event-loop step (a ``call_soon`` flush, for a ``100 Continue`` or
a head whose body is slow to come). So the head and the first body piece leave
together, and a response without a body (HEAD, 204, 304) leaves when it is complete. Nothing is reordered, at most one small
piece is ever held, and ``close`` sends what is held before closing; ``abort`` drops
it, as it drops the transport's own buffer.

Selected in ``squall serve`` as ``uvicorn.Config(http=CoalescingHttpToolsProtocol)``.

A request the HTTP parser cannot read never reaches the gateway: uvicorn answers it 400
in plain text and closes. :meth:`CoalescingHttpToolsProtocol.send_400_response` answers
it as S3 does instead, with an XML error document (``BadRequest``) and a request id, so
an S3 client can read the error like any other.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.app import new_request_id
from gateway.xml import render
from storage.api import limits

UNPARSABLE_REQUEST_CODE = "BadRequest"
UNPARSABLE_REQUEST_MESSAGE = "An error occurred when parsing the HTTP request."


class CoalescingTransport:
    """An ``asyncio.Transport`` wrapper that joins a small write to the next one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= limits.response_coalesce_bytes_max:
                self._transport.write(held + data)
                return
            self._transport.write(held)
        if not data:
            return
        if len(data) <= limits.response_coalesce_bytes_max:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Send what is held now."""
        self._flush()

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        held = len(self._held) if self._held is not None else 0
        return held + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        # Everything else (reading, flow control, extra info) is the transport's own.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(self._coalescing)  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        # The response's last piece (a HEAD's head) leaves now, not a loop step later.
        self._coalescing.flush()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """The answer to bytes the HTTP parser rejects (``msg`` is uvicorn's text for
        the log): S3's XML error, then the connection closes, since nothing after the
        error can be trusted to start a request."""
        request_id = new_request_id()
        body = render("Error", [("Code", UNPARSABLE_REQUEST_CODE),
                                ("Message", UNPARSABLE_REQUEST_MESSAGE),
                                ("RequestId", request_id)], namespace=False)
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"x-amz-request-id: " + request_id.encode("ascii") + b"\r\n"
                    b"content-type: application/xml\r\n"
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
                    b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()
