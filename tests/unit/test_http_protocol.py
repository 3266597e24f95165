"""The coalescing transport under uvicorn's protocol: what reaches the socket, in order."""

from __future__ import annotations

import asyncio

from gateway.http_protocol import CoalescingTransport
from storage.api import limits


class RecordingTransport(asyncio.Transport):
    """Stands in for the socket transport: records each write and the close."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def run(steps: list[str], data: dict[str, bytes]) -> RecordingTransport:
    """Apply 'write:<name>', 'step' (one loop step), 'close', 'abort'; then settle."""

    async def main() -> RecordingTransport:
        socket = RecordingTransport()
        transport = CoalescingTransport(socket, asyncio.get_running_loop())
        for step in steps:
            if step.startswith("write:"):
                transport.write(data[step[6:]])
            elif step == "step":
                await asyncio.sleep(0)
            elif step == "close":
                transport.close()
            elif step == "abort":
                transport.abort()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return socket

    return asyncio.run(main())


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n"
BODY = b"b" * 4096
BIG = b"g" * (limits.response_coalesce_bytes_max + 1)
DATA = {"head": HEAD, "body": BODY, "big": BIG, "empty": b""}


def test_head_and_small_body_leave_in_one_write() -> None:
    assert run(["write:head", "write:body"], DATA).writes == [HEAD + BODY]


def test_a_lone_head_leaves_by_the_next_loop_step() -> None:
    socket = run(["write:head", "step", "step"], DATA)
    assert socket.writes == [HEAD]


def test_an_empty_write_keeps_nothing_back() -> None:
    assert run(["write:head", "write:empty"], DATA).writes == [HEAD]


def test_a_big_body_follows_the_head_unjoined_and_in_order() -> None:
    assert run(["write:head", "write:big"], DATA).writes == [HEAD, BIG]
    assert run(["write:big", "write:head"], DATA).writes == [BIG, HEAD]


def test_close_sends_what_is_held_first() -> None:
    socket = run(["write:head", "close"], DATA)
    assert socket.writes == [HEAD] and socket.events == ["write", "close"]


def test_abort_drops_what_is_held() -> None:
    socket = run(["write:head", "abort"], DATA)
    assert socket.writes == [] and socket.events == ["abort"]
