"""The network transports' sans-I/O pieces: the frame reader and the control codec.

The codec is checked on what the client really sends: a recording transport captures
every request (and its result or error) of a scenario that uses every ``Operation``, and
each must come back from encode/decode as the same types with the same values.
"""

from __future__ import annotations

import asyncio
import importlib
import pathlib
import pkgutil
import types
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storage
from storage import api, limits
from storage.transport import codec
from storage.transport.base import BodyPiece, Operation, Request
from storage.transport.frames import (
    CLIENT_RECEIVES,
    HEADER,
    HEADER_BYTES,
    MAGIC,
    NODE_RECEIVES,
    VERSION,
    Frame,
    FrameError,
    FrameKind,
    FrameReader,
    encode_header,
)
from storage.transport.local import LocalTransport
from tests.unit.transport_harness import (
    deep_equal,
    exercise_customer_keys,
    exercise_every_operation,
    open_store,
)

# --- the codec on every operation --------------------------------------------------------


class RecordingTransport:
    """A LocalTransport that keeps every request and what came back of it."""

    def __init__(self, inner: LocalTransport) -> None:
        self.inner = inner
        self.calls: list[tuple[Request, Any, BaseException | None]] = []
        self.streams: list[Request] = []

    async def call(self, node_id: str, request: Request) -> Any:
        try:
            result = await self.inner.call(node_id, request)
        except api.StorageError as error:
            self.calls.append((request, None, error))
            raise
        self.calls.append((request, result, None))
        return result

    def open_stream(self, node_id: str, request: Request) -> AsyncIterator[BodyPiece]:
        self.streams.append(request)
        return self.inner.open_stream(node_id, request)

    async def close(self) -> None:
        await self.inner.close()


def _recorded(tmp_path: pathlib.Path) -> RecordingTransport:
    recorder: RecordingTransport | None = None

    async def main() -> None:
        nonlocal recorder
        async with open_store("local", tmp_path) as store:
            assert isinstance(store.transport, LocalTransport)
            recorder = RecordingTransport(store.transport)
            store.client._transport = recorder
            await exercise_every_operation(store)
            await exercise_customer_keys(store)

    asyncio.run(main())
    assert recorder is not None
    return recorder


def test_every_operation_round_trips(tmp_path: pathlib.Path) -> None:
    recorder = _recorded(tmp_path)
    seen = {request.operation for request, _, _ in recorder.calls}
    seen |= {request.operation for request in recorder.streams}
    assert seen | CLUSTER_OPERATIONS == set(Operation), \
        f"not exercised: {set(Operation) - seen - CLUSTER_OPERATIONS}"
    errors = 0
    for request, result, error in recorder.calls:
        operation, arguments, extra = codec.decode_request(
            codec.encode_request(request.operation, request.arguments, customer_keys=True))
        assert operation is request.operation and extra == []
        assert deep_equal(arguments, dict(request.arguments)), request
        if error is None:
            assert deep_equal(codec.decode(codec.encode(result)), result), request.operation
        else:
            errors += 1
            back = codec.decode_error(codec.encode_error(error), "n0")
            assert type(back) is type(error) and str(back) == str(error)
    assert errors >= 4  # the scenarios' ObjectLocked and CustomerKey* refusals
    keyed = [r for r, _, _ in recorder.calls if isinstance(r.arguments.get("customer_key"),
                                                            api.CustomerKey)]
    assert {r.operation for r in keyed} >= {Operation.STAGE_CHUNK, Operation.COMMIT_VERSION,
                                            Operation.COMMIT_PART,
                                            Operation.COMPLETE_MULTIPART_UPLOAD}
    for request in keyed:  # an SSE-C key is refused for an unencrypted link
        with pytest.raises(codec.CustomerKeyRefused):
            codec.encode_request(request.operation, request.arguments)
    for request in recorder.streams:
        operation, arguments, extra = codec.decode_request(
            codec.encode_request(request.operation, request.arguments, 4, customer_keys=True))
        assert operation is request.operation and extra == [4]
        assert deep_equal(arguments, dict(request.arguments))


# Node-to-node and gateway-to-node operations of a replicated cluster, which the embedded
# store never sends: their requests are walked here.
CLUSTER_OPERATIONS = frozenset({Operation.REPLICATE, Operation.PING, Operation.GET_VIEW})


def test_cluster_operations_round_trip() -> None:
    requests = [
        (Operation.REPLICATE, {"shard": 1, "sender": "n2", "message": b"\x93\x01\x02"}),
        (Operation.PING, {}),
        (Operation.GET_VIEW, {}),
        (Operation.GET_VERSION, {"shard": 0, "bucket": "b", "key": "k"}),
    ]
    assert {operation for operation, _ in requests} >= CLUSTER_OPERATIONS
    for operation, arguments in requests:
        assert codec.decode_request(codec.encode_request(operation, arguments)) == (
            operation, arguments, [])
    error = codec.decode_error(codec.encode_error(api.NotShardLeader("not me", "n3")), "n1")
    assert type(error) is api.NotShardLeader and error.leader == "n3"


def test_records_keep_compare_false_fields_and_tuples() -> None:
    version = api.ObjectVersion("b", "k", "v1", 1, 4, "e", part_sizes=(1, 3),
                                bucket_versioning="Enabled", inline_body=b"body",
                                verdict=api.Verdict("f", score=0.5,
                                                    summary={"steps": [1, (2, 3)]}))
    back = codec.decode(codec.encode(version))
    assert deep_equal(back, version)
    assert back.inline_body == b"body" and back.bucket_versioning == "Enabled"
    assert codec.decode(codec.encode([(1, 2), [3]])) == [(1, 2), [3]]
    assert type(codec.decode(codec.encode((1,)))) is tuple


class Unregistered:
    pass


@pytest.mark.parametrize("value, named", [
    (Unregistered(), "Unregistered"),
    ({1, 2}, "set"),
    (types.MappingProxyType({"a": 1}), "mappingproxy"),
    (api.WriteEvent("b", "k", "e", 0, "t", {}, ()), "WriteEvent"),
    ({"nested": [api.LifecycleRule("r", True)]}, "LifecycleRule"),
    (Operation.GET_BUCKET, "Operation"),
])
def test_an_unknown_type_is_a_codec_error_that_names_it(value: object, named: str) -> None:
    with pytest.raises(codec.CodecError, match=named):
        codec.encode(value)
    with pytest.raises(codec.CodecError, match=named):
        codec.encode_request(Operation.GET_VERSION, {"bucket": value})


def test_malformed_control_messages_are_codec_errors() -> None:
    record = msgpack.ExtType(1, msgpack.packb(["NoSuchRecord", 1]))
    short = msgpack.ExtType(1, msgpack.packb(["BucketInfo", "b"]))
    for data, match in [
        (b"\xc1", "malformed"),
        (b"\x92\x01", "malformed"),
        (msgpack.packb(record), "unknown record type 'NoSuchRecord'"),
        (msgpack.packb(short), "BucketInfo with 1 fields"),
        (msgpack.packb(msgpack.ExtType(9, b"\x90")), "extension type 9"),
        (msgpack.packb({1: 2}), "malformed"),
    ]:
        with pytest.raises(codec.CodecError, match=match):
            codec.decode(data)
    nested: object = []
    for _ in range(limits.transport_codec_nesting_depth_max + 1):
        nested = (nested,)
    with pytest.raises(codec.CodecError, match="nested"):
        codec.decode(codec.encode(nested))
    for request in [codec.encode(["no_such_operation", {}]), codec.encode(["get_bucket"]),
                    codec.encode(["get_bucket", [1]]), codec.encode({"get_bucket": {}})]:
        with pytest.raises(codec.CodecError):
            codec.decode_request(request)


def _storage_error_types() -> set[type[api.StorageError]]:
    for module in pkgutil.walk_packages(storage.__path__, "storage."):
        if not module.name.startswith("storage.transport.rdma"):
            importlib.import_module(module.name)
    found: set[type[api.StorageError]] = set()
    pending: list[type[api.StorageError]] = [api.StorageError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("storage."):
            found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


# Errors that never cross the wire: raised by the client itself (UploadClosed,
# NoSuchNode), or by the view agreement among nodes, which no Operation reaches
# (NoQuorum, StaleView: storage/membership). If one ever reaches a node's handlers, list
# it in the codec instead. A cluster's too: ReadyRuleBroken (the agreement), ClusterConfigError
# (start-up), MessageError (a malformed replication message: its sender ignores answers).
NOT_CARRIED_ERRORS = {"UploadClosed", "NoSuchNode", "NoQuorum", "StaleView", "ReadyRuleBroken",
                      "ClusterConfigError", "MessageError"}


def test_every_storage_error_round_trips_as_itself() -> None:
    for cls in _storage_error_types():
        if cls.__name__ in NOT_CARRIED_ERRORS:
            continue
        if cls is api.WriteRejected:
            error: BaseException = cls("too blue", api.Verdict("f", "reject", reason="blue"))
        elif cls is api.WriteDiscarded:
            error = cls(api.Verdict("f", "discard", label="cat", score=0.9,
                                    annotations={"squall-label": "cat"}))
        else:
            error = cls(f"a {cls.__name__} happened")
        back = codec.decode_error(codec.encode_error(error), "n0")
        assert type(back) is cls, f"{cls.__name__} came back as {type(back).__name__}"
        assert str(back) == str(error)
        if isinstance(error, api.WriteRejected | api.WriteDiscarded):
            assert deep_equal(back.verdict, error.verdict)  # type: ignore[attr-defined]


def test_other_errors_come_back_as_remote_errors_naming_node_and_type() -> None:
    back = codec.decode_error(codec.encode_error(KeyError("lost")), "n7")
    assert type(back) is codec.RemoteError and not isinstance(back, api.StorageError)
    assert "n7" in str(back) and "builtins.KeyError" in str(back) and "lost" in str(back)


# --- frames ------------------------------------------------------------------------------


def _frame_bytes(kind: FrameKind, request_id: int, control: bytes,
                 payload: bytes | None = None) -> bytes:
    header = encode_header(kind, request_id, len(control),
                           None if payload is None else len(payload))
    return header + control + (payload or b"")


def _reader(staging_bytes: int = 64, accepted: frozenset[FrameKind] = NODE_RECEIVES,
            control_max: int = 1000, payload_max: int = 5000) -> FrameReader:
    return FrameReader(accepted, control_max, payload_max, staging_bytes)


def _feed(reader: FrameReader, data: bytes, cuts: list[int]) -> list[tuple[Any, ...]]:
    """Feed ``data`` cut at ``cuts`` (receives at most what get_buffer offers, as a
    socket would); the frames as plain tuples (controls decoded at once)."""
    out: list[tuple[Any, ...]] = []
    position = 0
    pieces = sorted({c for c in cuts if 0 < c < len(data)} | {len(data)})
    for cut in pieces:
        while position < cut:
            buffer = reader.get_buffer()
            assert len(buffer) > 0
            count = min(len(buffer), cut - position)
            buffer[:count] = data[position:position + count]
            position += count
            for frame in reader.buffer_updated(count):
                out.append(_plain(frame))
    return out


def _plain(frame: Frame) -> tuple[Any, ...]:
    payload = None if frame.payload is None else bytes(frame.payload)
    return (frame.kind, frame.request_id, bytes(frame.control), payload)


FRAMES = [
    (FrameKind.REQUEST, 1, b"\x92\xa3abc\x80", b"p" * 300),  # payload beyond the staging buffer
    (FrameKind.REQUEST, 2, b"\x90", None),
    (FrameKind.STREAM_OPEN, 3, b"c" * 200, None),  # control beyond the staging buffer
    (FrameKind.STREAM_CREDIT, 3, b"\x01", None),
    (FrameKind.REQUEST, 4, b"", b""),  # an empty payload is still a payload
    (FrameKind.STREAM_CANCEL, 3, b"", None),
    (FrameKind.REQUEST, 2**64 - 1, b"x" * 10, b"y" * 10),
]
STREAM = b"".join(_frame_bytes(*frame) for frame in FRAMES)


def test_frames_split_at_every_byte() -> None:
    for cut in range(len(STREAM) + 1):
        assert _feed(_reader(), STREAM, [cut]) == FRAMES, cut
    assert _feed(_reader(), STREAM, list(range(len(STREAM)))) == FRAMES  # a byte at a time


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12),
       st.integers(HEADER_BYTES, 400))
def test_frames_split_anywhere_with_any_staging_size(cuts: list[int], staging: int) -> None:
    assert _feed(_reader(staging), STREAM, cuts) == FRAMES


def test_a_large_payload_is_received_into_its_own_buffer() -> None:
    reader = _reader(staging_bytes=64, payload_max=10_000)
    data = _frame_bytes(FrameKind.REQUEST, 9, b"\x90", b"z" * 10_000)
    buffer = reader.get_buffer()
    buffer[:64] = data[:64]
    assert reader.buffer_updated(64) == []
    direct = reader.get_buffer()  # the rest of the payload's own buffer
    assert len(direct) == len(data) - 64
    direct[:] = data[64:]
    [frame] = reader.buffer_updated(len(direct))
    assert frame.payload is not None and frame.payload.obj is direct.obj  # no copy after


def _raw_header(kind: int = FrameKind.REQUEST, flags: int = 0, control: int = 0,
                payload: int = 0, magic: bytes = MAGIC, version: int = VERSION) -> bytes:
    return HEADER.pack(magic, version, kind, flags, 1, control, payload)


@pytest.mark.parametrize("header, match", [
    (_raw_header(magic=b"GE"), "magic"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[:HEADER_BYTES], "magic"),
    (_raw_header(version=2), "version 2"),
    (_raw_header(kind=77), "unknown frame kind 77"),
    (_raw_header(kind=FrameKind.REPLY), "REPLY frame is not accepted"),
    (_raw_header(flags=0x80), "flags"),
    (_raw_header(control=1001), "1001 control bytes"),
    (_raw_header(control=2**32 - 1), "4294967295 control bytes"),
    (_raw_header(flags=1, payload=5001), "payload of 5001 bytes"),
    (_raw_header(payload=3), "without the flag"),
    (_raw_header(kind=FrameKind.STREAM_CREDIT, flags=1), "carries no payload"),
])
def test_bad_headers_fail_before_anything_is_stored(header: bytes, match: str) -> None:
    reader = _reader()
    buffer = reader.get_buffer()
    buffer[:HEADER_BYTES] = header
    with pytest.raises(FrameError, match=match):
        reader.buffer_updated(HEADER_BYTES)
    assert reader._section is None  # no section buffer was allocated
    with pytest.raises(FrameError):
        reader.get_buffer()  # the reader stays failed


def test_each_end_accepts_its_own_kinds() -> None:
    assert NODE_RECEIVES.isdisjoint(CLIENT_RECEIVES - {FrameKind.GOAWAY})
    reader = _reader(accepted=CLIENT_RECEIVES)
    data = _frame_bytes(FrameKind.STREAM_DATA, 5, b"", b"piece")
    assert _feed(reader, data, []) == [(FrameKind.STREAM_DATA, 5, b"", b"piece")]
