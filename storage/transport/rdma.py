"""The RDMA transport: control frames over the TCP connection, payloads by one-sided
RDMA WRITE into memory that the receiver registered and announced.

UNTESTED ON HARDWARE. The machine this was written on has neither pyverbs nor an RDMA
device (no RDMA support in its kernel either). The conformance suite
(tests/unit/test_transport_conformance.py) selects this transport like the others and
skips it with ``unavailable_reason()``; nothing below has run against an HCA. Read it as
the design written down in code, to be made to run (and fixed) on the first machine that
has a device; soft-RoCE (``rdma link add rxe0 type rxe netdev <nic>``) is the cheapest.
``pyverbs`` is imported only in this module, and only when a connection is set up.

Design, and why this one:

* Everything of the TCP transport stays: the connection, its frames, request ids,
  errors, timeouts, stream credit. Only where a payload's bytes travel changes.
  ``RdmaTransport`` and ``RdmaNodeServer`` are ``TcpTransport`` and ``TcpNodeServer``
  with other connection classes (the seams are the methods ``tcp`` marks as such).
* Right after connecting, the client sends a SETUP frame: its reliable-connected (RC)
  queue pair's number, PSN, LID and GID, and the address, rkey and size of the receive
  region it registered. The node creates its own queue pair and region, brings its QP
  to ready-to-send, and answers with the same about itself; the client does likewise.
* A receive region is ``limits.rdma_receive_slots_per_connection`` slots of one chunk
  (``transport_payload_bytes_max``), registered for remote write. A payload's sender
  copies it into a registered send slot, RDMA-WRITEs it into a slot of the receiver's
  region that the protocol says it owns, waits for the write's completion (on an RC
  queue pair a successful completion means the responder acknowledged the data), and
  only then sends the usual frame, naming ``[slot, length]`` instead of carrying bytes.
  The receiver hands out a memoryview of that slot: the bytes landed there without any
  CPU copy on the receiving side.
* Who owns which slot is the protocol's existing bookkeeping, nothing new:
  - The node's slots (client -> node: STAGE_CHUNK, the tail of a commit): the client
    keeps their free list; a call takes one (waiting, within the call's timeout) and
    frees it when the node's answer arrives, even a late one: the node answers only
    after it is done with the payload (the writer has copied the chunk into LMDB).
  - The client's slots (node -> client: stream pieces): STREAM_OPEN gives the stream
    ``transport_stream_window_pieces`` slots of its own; each STREAM_CREDIT names the
    slot the consumer just finished with, which the node may write again. The slots go
    back to the free list once both the node has let go (STREAM_END or ERROR, which it
    also answers a STREAM_CANCEL with) and the consumer has closed or exhausted it.
    So a piece is valid until the consumer's next step (not as long as it is referenced,
    as over TCP): copy to keep, as the gateway does.
* Why not SEND/RECV: the receive buffer would be the next one posted to the queue, not
  the one the credit names, with receives to re-post and receiver-not-ready retries to
  tune; the credit already says which buffer is free, so a one-sided WRITE plus the
  frame that TCP carries anyway is simpler. Why not WRITE_WITH_IMM (which would make the
  TCP notice unnecessary): completions and frames would then arrive on two channels and
  need ordering against each other; one ordered control channel is easier to reason
  about. It is the obvious next step once this runs.

Where copies remain: a node's stream pieces are views of LMDB's memory map, which is not
registered (a 1 TiB sparse map would need on-demand paging, ODP), so each piece is
copied once into a send slot before the WRITE; a client's payload (the caller's buffer)
likewise. Completions are polled on the event loop every
``limits.rdma_completion_poll_interval_us`` while writes are outstanding (no completion
channel yet).
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import itertools
import mmap
import random
from collections import deque
from collections.abc import Mapping
from typing import Any

from storage import limits
from storage.api import NodeUnavailable
from storage.transport import codec
from storage.transport.base import Request
from storage.transport.frames import NODE_RECEIVES, Frame, FrameKind
from storage.transport.tcp import (
    TcpNodeServer,
    TcpTransport,
    _ClientConnection,
    _NodeConnection,
    _request_control,
)

__all__ = ["RdmaTransport", "RdmaNodeServer", "unavailable_reason"]

_SLOT_BYTES = limits.transport_payload_bytes_max


def unavailable_reason() -> str | None:
    """Why this transport cannot run here, or None when it can."""
    if importlib.util.find_spec("pyverbs") is None:
        return "pyverbs is not installed (the 'rdma' extra: pip install 'squall[rdma]')"
    from pyverbs.device import get_device_list

    if not get_device_list():
        return "pyverbs finds no RDMA device"
    return None


class _Region:
    """``slot_count`` slots of ``_SLOT_BYTES`` in one anonymous mapping, registered with
    the protection domain; slots are zero-copy memoryviews of it."""

    def __init__(self, protection_domain: Any, slot_count: int, access: int) -> None:
        from pyverbs.mr import MR

        self.slot_count = slot_count
        self._memory = mmap.mmap(-1, slot_count * _SLOT_BYTES)  # page-aligned
        self._view = memoryview(self._memory)
        self._anchor = ctypes.c_char.from_buffer(self._memory)  # pins it while registered
        self.address = ctypes.addressof(self._anchor)
        self.memory_region = MR(protection_domain, slot_count * _SLOT_BYTES, access,
                                address=self.address)

    def slot(self, index: int, length: int = _SLOT_BYTES) -> memoryview:
        assert 0 <= index < self.slot_count and 0 <= length <= _SLOT_BYTES
        start = index * _SLOT_BYTES
        return self._view[start:start + length]

    def close(self) -> None:
        self.memory_region.close()
        del self._anchor
        try:
            self._view.release()
            self._memory.close()
        except BufferError:
            pass  # a consumer still holds a piece: unmapped when the last view goes


class _QueuePair:
    """One RC queue pair, its completion queue and its two regions. Every pyverbs call of
    the transport is in this class."""

    def __init__(self, device_name: str | None, port: int, gid_index: int) -> None:
        import pyverbs.enums as e
        from pyverbs.cq import CQ
        from pyverbs.device import Context, get_device_list
        from pyverbs.pd import PD
        from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr

        self._e = e
        if device_name is None:
            devices = get_device_list()
            if not devices:
                raise NodeUnavailable("no RDMA device")
            device_name = devices[0].name.decode()
        self._port = port
        self._gid_index = gid_index
        self.context = Context(name=device_name)
        self.protection_domain = PD(self.context)
        depth = limits.rdma_work_requests_max
        self.completion_queue = CQ(self.context, depth)
        init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=self.completion_queue,
                          rcq=self.completion_queue,
                          cap=QPCap(max_send_wr=depth, max_recv_wr=1, max_send_sge=1,
                                    max_recv_sge=1))
        attributes = QPAttr(port_num=port)
        attributes.qp_access_flags = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE
        self.queue_pair = QP(self.protection_domain, init, attributes)  # in INIT
        self.psn = random.getrandbits(24)
        self.receive = _Region(self.protection_domain, limits.rdma_receive_slots_per_connection,
                               e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE)
        self.send = _Region(self.protection_domain, limits.rdma_send_slots_per_connection,
                            e.IBV_ACCESS_LOCAL_WRITE)
        self._send_free = deque(range(self.send.slot_count))
        self._send_waiters: deque[asyncio.Future[None]] = deque()
        self._work_ids = itertools.count(1)
        self._outstanding: dict[int, asyncio.Future[None]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._remote_address = 0
        self._remote_rkey = 0
        self.remote_slot_count = 0

    def endpoint(self) -> dict[str, Any]:
        """What the peer needs to reach this queue pair and write into our region."""
        port = self.context.query_port(self._port)
        gid = self.context.query_gid(self._port, self._gid_index)
        return {"qp_number": self.queue_pair.qp_num, "psn": self.psn, "lid": port.lid,
                "gid": gid.gid, "address": self.receive.address,
                "rkey": self.receive.memory_region.rkey, "slots": self.receive.slot_count,
                "slot_bytes": _SLOT_BYTES}

    def connect(self, remote: Mapping[str, Any]) -> None:
        """Bring the queue pair to ready-to-send towards ``remote`` (its ``endpoint()``)."""
        from pyverbs.addr import GID, AHAttr, GlobalRoute
        from pyverbs.qp import QPAttr

        e = self._e
        if remote.get("slot_bytes") != _SLOT_BYTES:
            raise NodeUnavailable(f"the peer's slots are {remote.get('slot_bytes')} bytes; "
                                  f"ours are {_SLOT_BYTES}")
        attributes = QPAttr(port_num=self._port)
        attributes.dest_qp_num = int(remote["qp_number"])
        attributes.rq_psn = int(remote["psn"])
        attributes.sq_psn = self.psn
        attributes.path_mtu = e.IBV_MTU_1024
        attributes.max_dest_rd_atomic = 1
        attributes.max_rd_atomic = 1
        attributes.min_rnr_timer = 12
        attributes.timeout = 14
        attributes.retry_cnt = 7
        attributes.rnr_retry = 7
        gid = GID()
        gid.gid = str(remote["gid"])  # the colon-separated form endpoint() sent
        route = GlobalRoute(dgid=gid, sgid_index=self._gid_index)
        attributes.ah_attr = AHAttr(port_num=self._port, is_global=1, gr=route,
                                    dlid=int(remote["lid"]))
        self.queue_pair.to_rts(attributes)
        self._remote_address = int(remote["address"])
        self._remote_rkey = int(remote["rkey"])
        self.remote_slot_count = int(remote["slots"])

    async def write(self, payload: memoryview, remote_slot: int) -> None:
        """Copy ``payload`` into a send slot and RDMA-WRITE it into the peer's
        ``remote_slot``; return once the write completed. NodeUnavailable if it failed."""
        from pyverbs.wr import SGE, SendWR

        e = self._e
        assert len(payload) <= _SLOT_BYTES and 0 <= remote_slot < self.remote_slot_count
        send_slot = await self._take_send_slot()
        try:
            self.send.slot(send_slot, len(payload))[:] = payload  # the one copy
            work_id = next(self._work_ids)
            element = SGE(self.send.address + send_slot * _SLOT_BYTES, len(payload),
                          self.send.memory_region.lkey)
            request = SendWR(wr_id=work_id, opcode=e.IBV_WR_RDMA_WRITE, num_sge=1,
                             sg=[element], send_flags=e.IBV_SEND_SIGNALED)
            request.set_wr_rdma(self._remote_rkey,
                                self._remote_address + remote_slot * _SLOT_BYTES)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._outstanding[work_id] = done
            self.queue_pair.post_send(request)
            if self._poller is None or self._poller.done():
                self._poller = asyncio.get_running_loop().create_task(self._poll())
            await done
        finally:
            self._free_send_slot(send_slot)

    async def _take_send_slot(self) -> int:
        while not self._send_free:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._send_waiters.append(waiter)
            await waiter
        return self._send_free.popleft()

    def _free_send_slot(self, slot: int) -> None:
        self._send_free.append(slot)
        while self._send_waiters:
            waiter = self._send_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def _poll(self) -> None:
        """Poll the completion queue while writes are outstanding."""
        e = self._e
        interval_s = limits.rdma_completion_poll_interval_us / 1_000_000
        while self._outstanding:
            count, completions = self.completion_queue.poll(num_entries=16)
            for completion in completions[:count]:
                done = self._outstanding.pop(completion.wr_id, None)
                if done is None or done.done():
                    continue
                if completion.status == e.IBV_WC_SUCCESS:
                    done.set_result(None)
                else:
                    done.set_exception(NodeUnavailable(
                        f"an RDMA write failed (work completion status {completion.status})"))
            if not count:
                await asyncio.sleep(interval_s)

    def close(self) -> None:
        error = NodeUnavailable("the RDMA queue pair is closed")
        for done in self._outstanding.values():
            if not done.done():
                done.set_exception(error)
        self._outstanding.clear()
        if self._poller is not None:
            self._poller.cancel()
        self.queue_pair.close()
        self.send.close()
        self.receive.close()
        self.completion_queue.close()
        self.protection_domain.close()
        self.context.close()


def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    """Wake every waiter: each checks again whether what it waits for is there."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)


def _slot_and_length(values: list[Any], slot_count: int) -> tuple[int, int]:
    if (len(values) != 2 or type(values[0]) is not int or type(values[1]) is not int
            or not 0 <= values[0] < slot_count or not 0 <= values[1] <= _SLOT_BYTES):
        raise codec.CodecError(f"not a [slot, length] of this region: {values!r}")
    return values[0], values[1]


# --- client side ---------------------------------------------------------------------------


class _RdmaClientConnection(_ClientConnection):
    # What makes the queue pair: tests put an emulation of _QueuePair's interface here
    # (tests/unit/transport_harness.py) to run this protocol without pyverbs.
    queue_pair_factory: Any = _QueuePair
    device_name: str | None = None
    port = 1
    gid_index = 0

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self._pair: Any = None  # a _QueuePair once set up
        self._node_slots: deque[int] = deque()  # the node's receive slots we may write
        self._node_slot_waiters: deque[asyncio.Future[None]] = deque()
        self._node_slot_of_call: dict[int, int] = {}
        self._free_slots: deque[int] = deque()  # our receive slots no stream holds
        self._free_slot_waiters: deque[asyncio.Future[None]] = deque()
        self._stream_slots: dict[int, list[int]] = {}
        self._delivered: dict[int, deque[int]] = {}  # per stream: slots of pieces, in order
        self._node_let_go: set[int] = set()
        self._consumer_done: set[int] = set()

    async def ready(self) -> None:
        pair = await asyncio.to_thread(self.queue_pair_factory, self.device_name, self.port,
                                       self.gid_index)
        self._pair = pair
        remote = await self.round_trip(FrameKind.SETUP, None, codec.encode(pair.endpoint()))
        if type(remote) is not dict:
            raise codec.CodecError("a SETUP answer is the node's endpoint")
        await asyncio.to_thread(pair.connect, remote)
        self._node_slots = deque(range(pair.remote_slot_count))
        self._free_slots = deque(range(pair.receive.slot_count))

    # requests: the payload goes by RDMA WRITE into a slot of the node's

    async def send_request(self, kind: FrameKind, request_id: int, request: Request | None,
                           control: bytes, payload: memoryview | None) -> None:
        if payload is None or request is None or self._pair is None:
            await super().send_request(kind, request_id, request, control, payload)
            return
        # CodecError (or InvalidArgument) before anything is written.
        control = _request_control(request, 0, len(payload), encrypted=self.encrypted)
        slot = await self._take_node_slot()
        self._node_slot_of_call[request_id] = slot  # freed by the answer, even a late one
        try:
            await self._pair.write(payload, slot)
            control = _request_control(request, slot, len(payload), encrypted=self.encrypted)
        except BaseException:
            self.call_answered(request_id)  # no frame went out: no answer will free it
            raise
        self.send(kind, request_id, control)
        await self.drained_or_unavailable()

    def lost(self) -> None:
        super().lost()
        _wake_all(self._free_slot_waiters)
        _wake_all(self._node_slot_waiters)
        if self._pair is not None:
            self._pair.close()

    async def _take_node_slot(self) -> int:
        while not self._node_slots:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._node_slot_waiters.append(waiter)
            await waiter
            if self.closed:
                raise self.unavailable()
        return self._node_slots.popleft()

    def call_answered(self, request_id: int) -> None:
        slot = self._node_slot_of_call.pop(request_id, None)
        if slot is None:
            return
        self._node_slots.append(slot)
        while self._node_slot_waiters:
            waiter = self._node_slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    # streams: the node writes pieces into slots the stream owns

    async def stream_window(self, request_id: int) -> list[Any]:
        """The stream's own receive slots, waiting (within the opening's timeout) while
        other streams hold them all."""
        window = limits.transport_stream_window_pieces
        while len(self._free_slots) < window:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._free_slot_waiters.append(waiter)
            await waiter
            if self.closed:
                raise self.unavailable()
        slots = [self._free_slots.popleft() for _ in range(window)]
        self._stream_slots[request_id] = slots
        self._delivered[request_id] = deque()
        return [window, slots]

    def stream_piece(self, frame: Frame) -> memoryview:
        assert self._pair is not None
        slots = self._stream_slots.get(frame.request_id, [])
        slot, length = _slot_and_length(codec.decode(frame.control), self._pair.receive.slot_count)
        if slot not in slots:
            raise codec.CodecError(f"slot {slot} is not the stream's")
        self._delivered[frame.request_id].append(slot)
        return self._pair.receive.slot(slot, length)

    def grant_credit(self, request_id: int, piece: memoryview) -> None:
        delivered = self._delivered.get(request_id)
        if delivered:  # pieces are consumed in the order they came
            self.send(FrameKind.STREAM_CREDIT, request_id, codec.encode([delivered.popleft()]))

    def cancel_stream(self, request_id: int) -> None:
        super().cancel_stream(request_id)
        self._consumer_done_with(request_id)  # its slots wait for the node's STREAM_END

    def forget_stream(self, request_id: int) -> None:
        super().forget_stream(request_id)
        self._consumer_done_with(request_id)

    def _consumer_done_with(self, request_id: int) -> None:
        if request_id in self._stream_slots:
            self._consumer_done.add(request_id)
            self._maybe_free_stream(request_id)

    def stream_released(self, request_id: int) -> None:
        if request_id in self._stream_slots:  # (not a late error for a call)
            self._node_let_go.add(request_id)
            self._maybe_free_stream(request_id)

    def _maybe_free_stream(self, request_id: int) -> None:
        if request_id in self._node_let_go and request_id in self._consumer_done:
            self._node_let_go.discard(request_id)
            self._consumer_done.discard(request_id)
            self._free_slots.extend(self._stream_slots.pop(request_id, []))
            self._delivered.pop(request_id, None)
            _wake_all(self._free_slot_waiters)


class RdmaTransport(TcpTransport):
    """``Transport`` to nodes at ``addresses`` ({node id: (host, port)} of their
    ``RdmaNodeServer``): control over TCP, payloads by RDMA WRITE. Untested on hardware."""

    connection_class = _RdmaClientConnection


# --- node side -----------------------------------------------------------------------------


class _RdmaNodeConnection(_NodeConnection):
    accepted_kinds = NODE_RECEIVES | {FrameKind.SETUP}
    queue_pair_factory: Any = _QueuePair
    device_name: str | None = None
    port = 1
    gid_index = 0

    def __init__(self, server: TcpNodeServer) -> None:
        super().__init__(server)
        self._pair: Any = None  # a _QueuePair once set up

    def frame_received(self, frame: Frame) -> None:
        if frame.kind is not FrameKind.SETUP:
            super().frame_received(frame)
        elif self._pair is not None:
            self.protocol_error("a second SETUP")
        else:
            try:
                remote = codec.decode(frame.control)
            except codec.CodecError as error:
                self.protocol_error(f"SETUP: {error}")
                return
            task = asyncio.get_running_loop().create_task(self._setup(frame.request_id, remote))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    async def _setup(self, request_id: int, remote: Any) -> None:
        try:
            pair = await asyncio.to_thread(self.queue_pair_factory, self.device_name,
                                           self.port, self.gid_index)
            self._pair = pair
            await asyncio.to_thread(pair.connect, remote)
        except Exception as error:  # noqa: BLE001  the client gets it as its SETUP's answer
            self.send(FrameKind.ERROR, request_id, codec.encode_error(error))
            return
        self.send(FrameKind.REPLY, request_id, codec.encode(pair.endpoint()))

    def lost(self) -> None:
        super().lost()
        if self._pair is not None:
            self._pair.close()

    def request_payload(self, frame: Frame, extra: list[Any]) -> memoryview | None:
        if not extra or self._pair is None:
            return super().request_payload(frame, extra)
        slot, length = _slot_and_length(extra, self._pair.receive.slot_count)
        return self._pair.receive.slot(slot, length)  # what the client wrote there

    def stream_grants(self, extra: list[Any]) -> list[Any]:
        if self._pair is None:
            return super().stream_grants(extra)
        if len(extra) != 2 or type(extra[1]) is not list:
            raise codec.CodecError("an RDMA stream opens with [window, slots]")
        return self._slots(extra[1])

    def credit_grants(self, decoded: Any) -> list[Any]:
        if self._pair is None:
            return super().credit_grants(decoded)
        if type(decoded) is not list:
            raise codec.CodecError("an RDMA credit is a list of slots")
        return self._slots(decoded)

    def _slots(self, values: list[Any]) -> list[int]:
        assert self._pair is not None
        if not all(type(v) is int and 0 <= v < self._pair.remote_slot_count for v in values):
            raise codec.CodecError(f"not slots of the client's region: {values!r}")
        return values

    async def send_piece(self, request_id: int, piece: memoryview, grant: Any) -> None:
        if self._pair is None:
            await super().send_piece(request_id, piece, grant)
            return
        await self._pair.write(piece, grant)
        self.send(FrameKind.STREAM_DATA, request_id, codec.encode([grant, len(piece)]))
        await self.drained()


class RdmaNodeServer(TcpNodeServer):
    """Serves ``node`` for ``RdmaTransport`` clients: the TCP server, plus one RC queue
    pair per connection. Untested on hardware."""

    connection_class = _RdmaNodeConnection
