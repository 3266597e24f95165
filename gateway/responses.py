"""A response that streams a stored body to the client.

Starlette's StreamingResponse runs each stream inside a task group that also listens
for the client disconnecting; for a store that answers thousands of small GETs a
second that costs more than the read itself. This response sends the chunks directly;
if the client goes away, uvicorn's ``send`` stops writing and the stream is closed.

Each chunk is copied to ``bytes`` before it is handed to the server. The chunks are
views of LMDB's memory map, valid only while the body's read transaction lives, and
uvloop's transport keeps a *reference* to the buffer it was given while the socket is
busy (measured: data mutated after ``write`` returned was sent mutated). Once the read
transaction ends, LMDB may reuse those pages for a new write; the copy (about 0.1 ms per
MiB) is what makes the bytes on the wire the bytes of the version that was read.

``first_piece`` reads a stream's first piece before the status line is chosen: over a
network transport a stream the node refuses (``Overloaded``, ``NoSuchVersion``, a node
that is down) fails on its first step, and that must become an S3 error response, not a
200 cut short after its headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


async def close_stream(chunks: AsyncIterator[bytes | memoryview]) -> None:
    """End a body stream early or late (an async generator's ``aclose``; a plain async
    iterator has nothing to end)."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


async def first_piece(chunks: AsyncIterator[bytes | memoryview]) -> bytes | memoryview | None:
    """The stream's first piece (None: it is empty); a stream that fails is closed and its
    error raised, before anything was answered."""
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None
    except BaseException:
        await close_stream(chunks)
        raise


class BodyResponse(Response):
    def __init__(
        self,
        chunks: AsyncIterator[bytes | memoryview],
        *,
        status_code: int,
        headers: Mapping[str, str],
        first: bytes | memoryview | None = None,
    ) -> None:
        """``first``: a piece already read from ``chunks`` (``first_piece``), sent first."""
        super().__init__(None, status_code=status_code, headers=headers)
        self._chunks = chunks
        self._first = first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": self.raw_headers}
            )
            if self._first is not None:
                await send({"type": "http.response.body", "body": bytes(self._first),
                            "more_body": True})
                self._first = None
            async for chunk in self._chunks:
                await send({"type": "http.response.body", "body": bytes(chunk),
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await close_stream(self._chunks)
