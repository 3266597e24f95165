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


class BodyResponse(Response):
    def __init__(
        self,
        chunks: AsyncIterator[bytes | memoryview],
        *,
        status_code: int,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(None, status_code=status_code, headers=headers)
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": self.raw_headers}
            )
            async for chunk in self._chunks:
                await send({"type": "http.response.body", "body": bytes(chunk),
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await close_stream(self._chunks)
