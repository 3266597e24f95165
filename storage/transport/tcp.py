"""The TCP transport: ``TcpTransport`` (client side) and ``TcpNodeServer`` (node side).

Rules and theory of operation:

* One TCP connection per node, opened on first use and again on the next call after it
  broke; many requests share it, told apart by request id (``frames``). A unary call
  is a REQUEST frame answered by a REPLY or an ERROR frame; its control message is
  ``[operation, arguments]`` (``codec``); a chunk travels as the frame's payload.
* Streams (READ_BODY, SNAPSHOT): STREAM_OPEN ``[operation, arguments, window]``; the node
  sends at most ``window`` STREAM_DATA frames ahead of the reader, then one more for each
  STREAM_CREDIT (the client grants one when its consumer asks for the next piece), and
  ends with STREAM_END or ERROR. STREAM_CANCEL (``aclose``, or the iterator being
  collected) stops it; the node then closes its ``BodyStream``, so the read slot and the
  read transaction come back, and answers STREAM_END (the reader knows the node let go).
  A slow reader thus holds at most ``limits.transport_stream_window_pieces`` pieces on
  the client and none queued on the node. A node whose body fits in the window sends it
  all and gives its slot back before the reader has read it.
  A stream opens on its first step: a refusal (Overloaded, NoSuchVersion) is raised
  there, not by ``open_stream`` itself as the in-process transport does.
* Bounds (``storage.limits``, ``transport_*``): control and payload sizes per frame
  (checked from the header before anything is stored), unary calls in flight per
  connection (more wait on the client), request bytes in flight per connection (beyond
  them the node stops reading the connection), streams per connection, connections per
  node, connect and call timeouts, a stream's idle time.
* Failures: a connection that breaks fails every call and stream on it at once with
  ``api.NodeUnavailable`` (the outcome of a write in flight is unknown); so do a connect
  that fails and a call that is not answered in time. Bytes that are not acceptable
  frames close the connection after a GOAWAY frame naming the reason; a control message
  that does not decode fails only its own request. A node never dies of a peer's bytes,
  and never stores more than one bounded section of a frame ahead of handling it.
* TLS: with an ``ssl_context`` on both ends the connection is encrypted. An SSE-C
  customer key (a control argument) is sent only over such a connection: over another
  the call fails with InvalidArgument before anything is sent (``codec`` refuses it).
* A sibling transport (``rdma``) changes only where payload bytes travel. Its seams:
  on the client ``ready``, ``send_request``, ``stream_window``, ``stream_piece``,
  ``grant_credit``, ``call_answered``, ``stream_released``, ``forget_stream`` and
  ``cancel_stream``; on the node the methods under "what a sibling transport changes".
  The rest (frames, ids, errors, timeouts, bounds) is shared.
* Flow control: both ends set the transport's high-water mark to 0, so the protocol is
  paused whenever a write was not wholly taken by the kernel, and resumed once the
  transport's buffer is empty. A writer awaits that (``drained``) after each frame with a
  payload: it is the back-pressure, and it is also what makes it safe to hand the
  transport a view of LMDB's memory map without copying it. uvloop (and CPython >= 3.12)
  keep a reference to a buffer they could not send at once, so a node keeps a body
  stream's read transaction open until the transport no longer holds its views.
  Consequence: close a ``TcpNodeServer`` before the node it serves.

Where copies remain (honestly):

* Sending: header, control and payload go to ``transport.writelines`` as three buffers,
  a vectored send on uvloop (what ``squall serve`` runs) and CPython >= 3.12. CPython
  3.11's own event loop joins the list into one bytes object, so there the payload is
  written with a ``write`` of its own instead (no join); that loop still copies into
  its buffer whatever part of a write the kernel does not take at once.
* Receiving: a payload lands in a buffer of exactly its size, except the part that
  arrived in the same read as its header, which is copied once out of the staging buffer
  (at most ``limits.transport_receive_buffer_bytes``, 32 KiB of a 1 MiB chunk); a small
  payload wholly in that read is copied whole. The node gets a memoryview of the buffer.
* The kernel copies between user space and the socket both ways (no MSG_ZEROCOPY), the
  node copies a staged chunk into LMDB (as in-process), and control messages are
  serialized (msgpack), including a version's inline body. Over TLS every byte is encrypted
  into a new buffer on the way out; on the way in asyncio's TLS layer decrypts straight
  into the protocol's buffer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

from storage import limits
from storage.api import InvalidArgument, NodeUnavailable, Overloaded, StorageError
from storage.node import StorageNode
from storage.transport import codec
from storage.transport.base import BodyPiece, Payload, Request
from storage.transport.frames import (
    CLIENT_RECEIVES,
    CONNECTION_ID,
    NODE_RECEIVES,
    Frame,
    FrameError,
    FrameKind,
    FrameReader,
    encode_header,
)
from storage.transport.local import NoSuchNode

__all__ = ["TcpTransport", "TcpNodeServer"]

_log = logging.getLogger(__name__)

assert limits.transport_call_timeout_ms > limits.outbox_wait_ms_max
assert limits.transport_call_timeout_ms > limits.trigger_judge_timeout_ms
assert limits.transport_payload_bytes_max >= limits.chunk_size_bytes


class _FrameProtocol(asyncio.BufferedProtocol):
    """What both ends share: frames in through a ``FrameReader``, frames out as separate
    buffers, and the drain signal of the flow control (module rules)."""

    def __init__(self, reader: FrameReader) -> None:
        self._reader = reader
        self._transport: asyncio.Transport | None = None
        self._vectored = True
        self.encrypted = False
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self.close_reason = ""
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # While holding, frames already received wait here, in order, and the transport
        # reads nothing more (pause_reading): what one read brought in, at most.
        self.holding = False
        self._backlog: deque[Frame] = deque()

    # --- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's TCP transport implements asyncio.Transport without subclassing it.)
        self._transport = stream = cast(asyncio.Transport, transport)
        # Paused whenever anything is left in the transport's buffer, resumed when it is
        # empty: "drained" then means the transport holds no reference to our buffers.
        stream.set_write_buffer_limits(high=0)
        # The base class's writelines joins its buffers (one copy of the payload).
        self._vectored = type(stream).writelines is not asyncio.WriteTransport.writelines
        self.encrypted = stream.get_extra_info("ssl_object") is not None  # TLS

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            frames = self._reader.buffer_updated(nbytes)
        except FrameError as error:
            self._frames_received(error.frames)  # what came before the bad bytes
            if not self.closed:
                self.protocol_error(str(error))
            return
        self._frames_received(frames)

    def _frames_received(self, frames: list[Frame]) -> None:
        for index, frame in enumerate(frames):
            if self.closed:
                return
            if self.holding:
                self._backlog.extend(frames[index:])
                return
            self.frame_received(frame)

    def hold(self) -> None:
        """Handle no more frames (and read no more bytes) until ``release``."""
        assert self._transport is not None
        if not self.holding and not self.closed:
            self.holding = True
            self._transport.pause_reading()

    def release(self) -> None:
        """Handle the frames held back, then read again (unless held again meanwhile)."""
        assert self._transport is not None
        if not self.holding or self.closed:
            return
        self.holding = False
        # Before reading resumes: a held frame's control is a view of the staging buffer,
        # which the next read reuses.
        while self._backlog and not self.holding and not self.closed:
            self.frame_received(self._backlog.popleft())
        if not self.holding and not self.closed:
            self._transport.resume_reading()

    def eof_received(self) -> bool:
        self.close_reason = self.close_reason or "the peer closed the connection"
        return False  # the transport closes itself

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain_waiters()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.close_reason:
            self.close_reason = f"connection lost: {exc}" if exc else "connection closed"
        self._wake_drain_waiters()
        if not self._lost.done():
            self._lost.set_result(None)
        self.lost()

    # --- for subclasses ------------------------------------------------------------------

    def frame_received(self, frame: Frame) -> None:
        raise NotImplementedError

    def lost(self) -> None:
        """The connection is gone (``close_reason`` says why)."""

    # --- sending -------------------------------------------------------------------------

    def send(
        self, kind: FrameKind, request_id: int, control: bytes, payload: memoryview | None = None
    ) -> None:
        """Queue one frame (nothing happens once the connection is closed)."""
        if self.closed or self._transport is None or self._transport.is_closing():
            return
        header = encode_header(kind, request_id, len(control),
                               None if payload is None else len(payload))
        if payload is None or not len(payload):
            self._transport.write(header + control if control else header)
        elif self._vectored:
            self._transport.writelines((header, control, payload) if control
                                       else (header, payload))
        else:
            self._transport.write(header + control)
            self._transport.write(payload)

    async def drained(self) -> None:
        """Return once everything written so far has left this process's buffers.
        ConnectionResetError if the connection is (or gets) closed."""
        if self._paused and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._drain_waiters:
                    self._drain_waiters.remove(waiter)
        if self.closed:
            raise ConnectionResetError(self.close_reason)

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def protocol_error(self, reason: str) -> None:
        """The peer broke the protocol: tell it why (GOAWAY), then close."""
        _log.warning("closing a transport connection: %s", reason)
        self.close_reason = f"protocol error: {reason}"
        self.send(FrameKind.GOAWAY, CONNECTION_ID, codec.encode(reason))
        if self._transport is not None:
            self._transport.close()  # after the GOAWAY is flushed
        self.closed = True

    def abort(self, reason: str) -> None:
        self.close_reason = self.close_reason or reason
        if self._transport is not None:
            self._transport.abort()
        self.closed = True

    async def wait_lost(self) -> None:
        await self._lost


# --- client side -------------------------------------------------------------------------


def _payload_view(payload: Payload | None) -> memoryview | None:
    if payload is None:
        return None
    view = memoryview(payload)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if len(view) > limits.transport_payload_bytes_max:
        raise InvalidArgument(f"a payload of {len(view)} bytes; at most "
                              f"{limits.transport_payload_bytes_max} travel in one frame")
    return view


def _request_control(request: Request, *extra: object, encrypted: bool) -> bytes:
    """A request's control message. An SSE-C customer key goes only over an encrypted
    (TLS) connection: over another, InvalidArgument says so before anything is sent."""
    try:
        control = codec.encode_request(request.operation, request.arguments, *extra,
                                       customer_keys=encrypted)
    except codec.CustomerKeyRefused:
        raise InvalidArgument(
            f"{request.operation.value}: an SSE-C customer key is not sent to a storage node "
            "over an unencrypted connection (give the transport and the node server a TLS "
            "context)") from None
    if len(control) > limits.transport_request_control_bytes_max:
        raise InvalidArgument(
            f"{request.operation.value}: {len(control)} bytes of arguments; at most "
            f"{limits.transport_request_control_bytes_max} travel in one request")
    return control


class _ClientConnection(_FrameProtocol):
    def __init__(self, node_id: str) -> None:
        super().__init__(FrameReader(CLIENT_RECEIVES, limits.transport_response_control_bytes_max,
                                     limits.transport_payload_bytes_max,
                                     limits.transport_receive_buffer_bytes))
        self.node_id = node_id
        self._request_ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[Any]] = {}
        # Weak: a stream dropped by its consumer is collected, and cancels itself.
        self._streams: weakref.WeakValueDictionary[int, _RemoteStream] = (
            weakref.WeakValueDictionary())
        self._call_slots = asyncio.Semaphore(limits.transport_calls_in_flight_per_connection_max)

    def unavailable(self) -> NodeUnavailable:
        return NodeUnavailable(f"node {self.node_id}: {self.close_reason}")

    async def ready(self) -> None:
        """Called once connected, before the first call (a sibling sets up its data
        path here); nothing to do over plain TCP."""

    async def call(self, request: Request) -> Any:
        control = _request_control(request, encrypted=self.encrypted)
        payload = _payload_view(request.payload)
        async with self._call_slots:
            return await self.round_trip(FrameKind.REQUEST, request, control, payload)

    async def round_trip(self, kind: FrameKind, request: Request | None, control: bytes,
                         payload: memoryview | None = None) -> Any:
        """Send one frame that a REPLY or an ERROR answers, and wait for the answer."""
        if self.closed:
            raise self.unavailable()
        request_id = next(self._request_ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[request_id] = reply
        try:
            await self.send_request(kind, request_id, request, control, payload)
            return await reply
        finally:
            del self._calls[request_id]

    async def send_request(self, kind: FrameKind, request_id: int, request: Request | None,
                           control: bytes, payload: memoryview | None) -> None:
        """Send a request's frame, its payload inside it; return once it left."""
        self.send(kind, request_id, control, payload)
        await self.drained_or_unavailable()

    async def drained_or_unavailable(self) -> None:
        try:
            await self.drained()
        except ConnectionResetError:
            raise self.unavailable() from None

    async def open_stream(self, stream: _RemoteStream, request: Request) -> int:
        """Send STREAM_OPEN for ``stream``; its request id."""
        if self.closed:
            raise self.unavailable()
        if len(self._streams) >= limits.transport_streams_per_connection_max:
            raise Overloaded(f"{limits.transport_streams_per_connection_max} streams already "
                             f"open to node {self.node_id}")
        request_id = next(self._request_ids)
        control = _request_control(request, *await self.stream_window(request_id),
                                   encrypted=self.encrypted)
        if self.closed:
            raise self.unavailable()
        self._streams[request_id] = stream
        self.send(FrameKind.STREAM_OPEN, request_id, control)
        return request_id

    async def stream_window(self, request_id: int) -> list[Any]:
        """What STREAM_OPEN adds to [operation, arguments]: the window, in pieces."""
        return [limits.transport_stream_window_pieces]

    def stream_piece(self, frame: Frame) -> memoryview:
        """The piece a STREAM_DATA frame brings: its payload."""
        if frame.payload is None:
            raise FrameError("a STREAM_DATA frame without its payload")
        return frame.payload

    def grant_credit(self, request_id: int, piece: memoryview) -> None:
        """The consumer is done with ``piece``: the node may send one more."""
        self.send(FrameKind.STREAM_CREDIT, request_id, codec.encode(1))

    def cancel_stream(self, request_id: int) -> None:
        """Tell the node to stop the stream (it ignores a stream that already ended)."""
        self._streams.pop(request_id, None)
        self.send(FrameKind.STREAM_CANCEL, request_id, b"")

    def forget_stream(self, request_id: int) -> None:
        """The consumer is done with a stream that the node ended."""
        self._streams.pop(request_id, None)

    def call_answered(self, request_id: int) -> None:
        """A REPLY or an ERROR for ``request_id`` arrived, awaited or not (a late answer
        to a call that timed out): the node is done with the request."""

    def stream_released(self, request_id: int) -> None:
        """The node has let go of stream ``request_id`` (STREAM_END or ERROR, also the
        one it answers a STREAM_CANCEL with): nothing to do over plain TCP."""

    def frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        if kind is FrameKind.REPLY or kind is FrameKind.ERROR:
            self._answer(frame)
        elif kind is FrameKind.STREAM_DATA:
            stream = self._streams.get(frame.request_id)
            if stream is not None:
                try:
                    piece = self.stream_piece(frame)
                except (FrameError, codec.CodecError) as error:
                    self.protocol_error(f"stream {frame.request_id}: {error}")
                    return
                if not stream.deliver(piece):
                    self.protocol_error(f"stream {frame.request_id}: more pieces than credited")
        elif kind is FrameKind.STREAM_END:
            stream = self._streams.pop(frame.request_id, None)
            if stream is not None:
                stream.end(None)
            self.stream_released(frame.request_id)
        else:
            assert kind is FrameKind.GOAWAY
            self._goaway(frame)

    def _answer(self, frame: Frame) -> None:
        self.call_answered(frame.request_id)
        reply = self._calls.get(frame.request_id)
        stream = None if reply is not None else self._streams.pop(frame.request_id, None)
        if reply is None and frame.kind is FrameKind.ERROR:
            self.stream_released(frame.request_id)
        if reply is None and stream is None:
            return  # the answer to a call that timed out: nobody waits for it
        try:
            if frame.kind is FrameKind.REPLY:
                if stream is not None:
                    self.protocol_error(f"a REPLY to stream {frame.request_id}")
                    return
                outcome: Any = codec.decode(frame.control)
                failed = False
            else:
                outcome = codec.decode_error(frame.control, self.node_id)
                failed = True
        except codec.CodecError as error:
            outcome, failed = error, True
        if stream is not None:
            stream.end(outcome)
        elif reply is not None and not reply.done():
            if failed:
                reply.set_exception(outcome)
            else:
                reply.set_result(outcome)

    def _goaway(self, frame: Frame) -> None:
        try:
            reason = codec.decode(frame.control)
        except codec.CodecError:
            reason = "(reason not readable)"
        self.abort(f"the node closed the connection: {reason}")

    def lost(self) -> None:
        error = self.unavailable()
        for reply in self._calls.values():
            if not reply.done():
                reply.set_exception(error)
        for stream in list(self._streams.values()):
            stream.end(error)
        self._streams.clear()


class _RemoteStream:
    """The client's end of a stream: an async iterator of memoryviews, each of a buffer
    of its own (valid as long as it is referenced). Opens on the first step."""

    def __init__(self, transport: TcpTransport, node_id: str, request: Request) -> None:
        self._transport = transport
        self._node_id = node_id
        self._request = request
        self._connection: _ClientConnection | None = None
        self._request_id = 0
        self._pieces: deque[memoryview] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False  # STREAM_END, an ERROR or the connection's loss arrived
        self._error: BaseException | None = None
        self._closed = False
        self._last_piece: memoryview | None = None  # taken by the consumer, not yet credited
        self._loop: asyncio.AbstractEventLoop | None = None

    def __aiter__(self) -> _RemoteStream:
        return self

    async def __anext__(self) -> BodyPiece:
        if self._closed:
            raise StopAsyncIteration
        connection = self._connection
        if connection is None:
            try:
                connection = await self._open()
            except BaseException:
                self._closed = True  # a refused stream is over
                raise
        elif self._last_piece is not None and not self._ended:
            connection.grant_credit(self._request_id, self._last_piece)
        self._last_piece = None
        if not self._pieces and not self._ended:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(limits.transport_stream_idle_ms_max / 1000):
                    await self._waiter
            except TimeoutError:
                await self.aclose()
                raise NodeUnavailable(
                    f"node {self._node_id} sent nothing on a {self._request.operation.value} "
                    f"stream for {limits.transport_stream_idle_ms_max} ms") from None
            finally:
                self._waiter = None
        if self._pieces:
            self._last_piece = self._pieces.popleft()
            return self._last_piece
        self._closed = True
        connection.forget_stream(self._request_id)  # the consumer is done with it
        if self._error is not None:
            raise self._error
        raise StopAsyncIteration

    async def _open(self) -> _ClientConnection:
        try:
            async with asyncio.timeout(limits.transport_call_timeout_ms / 1000):
                connection = await self._transport.connection(self._node_id)
                self._request_id = await connection.open_stream(self, self._request)
        except TimeoutError:
            raise NodeUnavailable(f"node {self._node_id}: stream not opened within "
                                  f"{limits.transport_call_timeout_ms} ms") from None
        self._connection = connection
        self._loop = asyncio.get_running_loop()
        return connection

    # --- called by the connection --------------------------------------------------------

    def deliver(self, piece: memoryview) -> bool:
        """A piece arrived; False if the node sent more than it was credited."""
        if self._closed:
            return True
        self._pieces.append(piece)
        self._wake()
        return len(self._pieces) <= limits.transport_stream_window_pieces

    def end(self, error: BaseException | None) -> None:
        self._ended = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- closing -------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pieces.clear()
        self._last_piece = None
        if self._connection is not None:
            if self._ended:
                self._connection.forget_stream(self._request_id)
            else:
                self._connection.cancel_stream(self._request_id)

    def __del__(self) -> None:
        # Dropped unclosed (a consumer that stopped iterating): tell the node, or the
        # connection if the node had ended it, from the loop's thread (the collector may
        # run anywhere).
        if self._closed or self._connection is None or self._loop is None:
            return
        done = self._connection.forget_stream if self._ended else self._connection.cancel_stream
        try:
            self._loop.call_soon_threadsafe(done, self._request_id)
        except RuntimeError:  # the loop is closed: so is the connection
            pass


class TcpTransport:
    """``Transport`` over TCP to nodes at ``addresses`` ({node id: (host, port)}); over
    TLS with ``ssl_context`` (a client context that verifies the nodes' certificates,
    for their host names), which SSE-C customer keys require."""

    connection_class: type[_ClientConnection] = _ClientConnection

    def __init__(self, addresses: Mapping[str, tuple[str, int]], *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._addresses = dict(addresses)
        self._ssl_context = ssl_context
        self._connections: dict[str, _ClientConnection] = {}
        self._connect_locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    async def call(self, node_id: str, request: Request) -> Any:
        try:
            async with asyncio.timeout(limits.transport_call_timeout_ms / 1000):
                connection = await self.connection(node_id)
                return await connection.call(request)
        except TimeoutError:
            raise NodeUnavailable(
                f"node {node_id} did not answer {request.operation.value} within "
                f"{limits.transport_call_timeout_ms} ms") from None

    def open_stream(self, node_id: str, request: Request) -> AsyncIterator[BodyPiece]:
        if node_id not in self._addresses:
            raise NoSuchNode(f"no address for node {node_id!r}")
        return _RemoteStream(self, node_id, request)

    async def connection(self, node_id: str) -> _ClientConnection:
        """The open connection to ``node_id``, connecting (once, for all callers) if there
        is none."""
        connection = self._connections.get(node_id)
        if connection is not None and not connection.closed:
            return connection
        address = self._addresses.get(node_id)
        if address is None:
            raise NoSuchNode(f"no address for node {node_id!r}")
        lock = self._connect_locks.setdefault(node_id, asyncio.Lock())
        async with lock:
            if self._closed:
                raise NodeUnavailable("the transport is closed")
            connection = self._connections.get(node_id)
            if connection is not None and not connection.closed:
                return connection
            host, port = address
            loop = asyncio.get_running_loop()
            connection = None
            try:
                async with asyncio.timeout(limits.transport_connect_timeout_ms / 1000):
                    _, connection = await loop.create_connection(
                        lambda: self.connection_class(node_id), host, port,
                        ssl=self._ssl_context,
                        server_hostname=host if self._ssl_context is not None else None)
                    await connection.ready()
            except (OSError, StorageError) as error:  # TimeoutError is an OSError
                if connection is not None:
                    connection.abort(f"set-up failed: {error!r}")
                raise NodeUnavailable(
                    f"cannot connect to node {node_id} at {host}:{port}: {error!r}") from None
            self._connections[node_id] = connection
            return connection

    async def close(self) -> None:
        """Close every connection; calls and streams still in flight fail with
        NodeUnavailable."""
        self._closed = True
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            connection.abort("the transport is closed")
        for connection in connections:
            await connection.wait_lost()  # soon after abort(): the loop's next steps


# --- node side ---------------------------------------------------------------------------


class _StreamCredit:
    """The pieces a stream may still send (one grant each: None over plain TCP, where
    the piece itself carries the bytes), and whether its reader cancelled it."""

    def __init__(self, grants: list[Any]) -> None:
        self._grants: deque[Any] = deque(grants)
        self.cancelled = False
        self._waiter: asyncio.Future[None] | None = None

    def grant(self, grants: list[Any]) -> None:
        """More grants from the reader; FrameError if it grants beyond its window."""
        if len(self._grants) + len(grants) > limits.transport_stream_window_pieces:
            raise FrameError("credit beyond the stream's window")
        self._grants.extend(grants)
        self._wake()

    def cancel(self) -> None:
        self.cancelled = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> tuple[bool, Any]:
        """Wait for one grant: (True, grant), or (False, None) if the reader cancelled.
        Overloaded when the reader grants none for ``limits.transport_stream_idle_ms_max``."""
        try:
            async with asyncio.timeout(limits.transport_stream_idle_ms_max / 1000):
                while not self._grants and not self.cancelled:
                    self._waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
        except TimeoutError:
            raise Overloaded(f"the stream's reader took nothing for "
                             f"{limits.transport_stream_idle_ms_max} ms") from None
        if self.cancelled:
            return False, None
        return True, self._grants.popleft()


async def _close_stream(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


class _NodeConnection(_FrameProtocol):
    accepted_kinds = NODE_RECEIVES

    def __init__(self, server: TcpNodeServer) -> None:
        super().__init__(FrameReader(self.accepted_kinds,
                                     limits.transport_request_control_bytes_max,
                                     limits.transport_payload_bytes_max,
                                     limits.transport_receive_buffer_bytes))
        self._server = server
        self._node = server.node
        self._tasks: set[asyncio.Task[None]] = set()
        self._request_ids: set[int] = set()  # unary calls and streams in flight
        self._streams: dict[int, _StreamCredit] = {}
        self._calls_in_flight = 0
        self._bytes_in_flight = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._server.admit(self):
            self.protocol_error(f"the node already has {limits.transport_node_connections_max} "
                                "connections")

    def lost(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._server.forget(self, finishing=bool(self._tasks))

    async def all_tasks_done(self) -> None:
        """Wait until every task of this connection has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- frames in -----------------------------------------------------------------------

    def frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        if kind is FrameKind.STREAM_CREDIT:
            credit = self._streams.get(frame.request_id)
            try:
                grants = self.credit_grants(codec.decode(frame.control))
                if credit is not None:
                    credit.grant(grants)
            except (codec.CodecError, FrameError) as error:
                self.protocol_error(f"STREAM_CREDIT: {error}")
        elif kind is FrameKind.STREAM_CANCEL:
            credit = self._streams.get(frame.request_id)
            if credit is not None:
                credit.cancel()
        elif kind is FrameKind.GOAWAY:
            self.abort("the client closed the connection")
        elif frame.request_id == CONNECTION_ID or frame.request_id in self._request_ids:
            self.protocol_error(f"request id {frame.request_id} is in use")
        else:
            self._start(frame)

    def _start(self, frame: Frame) -> None:
        """A REQUEST or STREAM_OPEN: decode it and hand it to a task of its own."""
        request_id = frame.request_id
        size_bytes = len(frame.control) + (0 if frame.payload is None else len(frame.payload))
        request: Request | BaseException
        grants: list[Any] = []
        try:
            operation, arguments, extra = codec.decode_request(frame.control)
            if frame.kind is FrameKind.STREAM_OPEN:
                grants = self.stream_grants(extra)
                request = Request(operation, arguments)
            else:
                request = Request(operation, arguments, self.request_payload(frame, extra))
        except codec.CodecError as error:
            request = error
        self._request_ids.add(request_id)  # until its task ends
        self._charge(size_bytes)
        if frame.kind is FrameKind.REQUEST or isinstance(request, BaseException):
            coroutine = self._serve_call(request_id, request, size_bytes)
        else:
            credit = _StreamCredit(grants)
            self._streams[request_id] = credit
            coroutine = self._serve_stream(request_id, request, credit, size_bytes)
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    # --- what a sibling transport changes ----------------------------------------------

    def request_payload(self, frame: Frame, extra: list[Any]) -> memoryview | None:
        """A request's payload: the frame's own (plain TCP adds nothing to a request)."""
        if extra:
            raise codec.CodecError("a request is [operation, arguments]")
        return frame.payload

    def stream_grants(self, extra: list[Any]) -> list[Any]:
        """The grants a STREAM_OPEN brings: its window, in pieces."""
        return [None] * _window(extra)

    def credit_grants(self, decoded: Any) -> list[Any]:
        """The grants a STREAM_CREDIT brings: a number of pieces."""
        if type(decoded) is not int or not 1 <= decoded <= limits.transport_stream_window_pieces:
            raise codec.CodecError(f"a credit of {decoded!r} pieces")
        return [None] * decoded

    async def send_piece(self, request_id: int, piece: memoryview, grant: Any) -> None:
        """Send one piece of a stream, and return once the transport holds no reference
        to it (the piece may be a view of the memory map)."""
        self.send(FrameKind.STREAM_DATA, request_id, b"", piece)
        await self.drained()

    # --- tasks and bounds ----------------------------------------------------------------

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("transport task failed", exc_info=task.exception())
        if self.closed and not self._tasks:
            self._server.finished(self)

    def _charge(self, size_bytes: int) -> None:
        """A request was read: it counts as in flight until answered (and drained)."""
        self._calls_in_flight += 1
        self._bytes_in_flight += size_bytes
        if (self._calls_in_flight >= limits.transport_calls_in_flight_per_connection_max
                or self._bytes_in_flight >= limits.transport_request_bytes_in_flight_max):
            self.hold()

    def _release(self, size_bytes: int) -> None:
        self._calls_in_flight -= 1
        self._bytes_in_flight -= size_bytes
        if (self._calls_in_flight < limits.transport_calls_in_flight_per_connection_max
                and self._bytes_in_flight < limits.transport_request_bytes_in_flight_max):
            self.release()

    # --- serving -------------------------------------------------------------------------

    def _send_error(self, request_id: int, error: BaseException) -> None:
        if not isinstance(error, StorageError | codec.CodecError):
            _log.error("node %s: %s failed", self._node.node_id, request_id, exc_info=error)
        self.send(FrameKind.ERROR, request_id, codec.encode_error(error))

    async def _serve_call(self, request_id: int, request: Request | BaseException,
                          size_bytes: int) -> None:
        try:
            if isinstance(request, BaseException):
                self._send_error(request_id, request)
            else:
                await self._call(request_id, request)
            await self.drained()  # replies unread by the client count as in flight
        except ConnectionResetError:
            pass  # the connection is gone; lost() cancelled the rest
        finally:
            self._release(size_bytes)
            self._request_ids.discard(request_id)

    async def _call(self, request_id: int, request: Request) -> None:
        try:
            result = await self._node.handle(request)
            control = codec.encode(result)
            if len(control) > limits.transport_response_control_bytes_max:
                raise codec.CodecError(
                    f"{request.operation.value}: a reply of {len(control)} bytes; at most "
                    f"{limits.transport_response_control_bytes_max} travel in one frame")
        except Exception as error:  # noqa: BLE001  every error goes back to the caller
            self._send_error(request_id, error)
            return
        self.send(FrameKind.REPLY, request_id, control)

    async def _serve_stream(self, request_id: int, request: Request | BaseException,
                            credit: _StreamCredit, size_bytes: int) -> None:
        assert isinstance(request, Request)
        released = False
        try:
            stream = self._node.open_stream(request)
            # The open has been handled: it no longer counts as in flight (the stream is
            # bounded by the node's stream slots and its credit instead).
            self._release(size_bytes)
            released = True
            try:
                await self._send_pieces(request_id, stream, credit)
            finally:
                # After drained(): the transport holds no view of the stream's map pages.
                await _close_stream(stream)
        except ConnectionResetError:
            pass
        except Exception as error:  # noqa: BLE001  every error goes back to the reader
            self._send_error(request_id, error)
        finally:
            self._streams.pop(request_id, None)
            self._request_ids.discard(request_id)
            if not released:
                self._release(size_bytes)

    async def _send_pieces(self, request_id: int, stream: AsyncIterator[BodyPiece],
                           credit: _StreamCredit) -> None:
        piece_bytes_max = limits.transport_payload_bytes_max
        async for piece in stream:
            view = memoryview(piece)
            for offset in range(0, max(len(view), 1), piece_bytes_max):
                granted, grant = await credit.take()
                if not granted:  # cancelled by the reader: it waits for this END
                    self.send(FrameKind.STREAM_END, request_id, b"")
                    return
                await self.send_piece(request_id, view[offset:offset + piece_bytes_max],
                                      grant)
        self.send(FrameKind.STREAM_END, request_id, b"")


def _window(extra: list[Any]) -> int:
    if len(extra) != 1 or type(extra[0]) is not int or extra[0] < 1:
        raise codec.CodecError("a stream opens with [operation, arguments, window]")
    return min(extra[0], limits.transport_stream_window_pieces)


class TcpNodeServer:
    """Serves ``node`` over TCP at ``host``:``port`` (0: any free port; ``address`` tells
    which once started); over TLS with ``ssl_context`` (a server context with the node's
    certificate). The node belongs to the caller: close this server first."""

    connection_class: type[_NodeConnection] = _NodeConnection

    def __init__(self, node: StorageNode, host: str = "127.0.0.1", port: int = 0, *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.node = node
        self._ssl_context = ssl_context
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[_NodeConnection] = set()
        self._finishing: set[_NodeConnection] = set()  # lost, their tasks not all done yet
        self.address: tuple[str, int] = (host, port)

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self.connection_class(self), self._host, self._port, reuse_address=True,
            ssl=self._ssl_context,
            ssl_handshake_timeout=limits.transport_connect_timeout_ms / 1000
            if self._ssl_context is not None else None)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (host, port)
        return self.address

    def admit(self, connection: _NodeConnection) -> bool:
        if len(self._connections) >= limits.transport_node_connections_max:
            return False
        self._connections.add(connection)
        return True

    def forget(self, connection: _NodeConnection, finishing: bool) -> None:
        """``connection`` is lost; ``finishing``: some of its tasks are still ending."""
        self._connections.discard(connection)
        if finishing:
            self._finishing.add(connection)

    def finished(self, connection: _NodeConnection) -> None:
        self._finishing.discard(connection)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def close(self) -> None:
        """Stop accepting, drop every connection, and wait for their tasks to end."""
        if self._server is not None:
            self._server.close()
        connections = self._connections | self._finishing
        for connection in list(self._connections):
            connection.abort("the node server is closing")
        for connection in connections:
            await connection.wait_lost()
            await connection.all_tasks_done()
        self._finishing.clear()
        if self._server is not None:
            await self._server.wait_closed()
