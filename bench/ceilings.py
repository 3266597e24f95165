"""Limits measured in the same run: what the machine, LMDB and the framework allow.

* ``loopback``: a raw TCP socket on 127.0.0.1 between two processes, in Python, moving
  the same bytes as the S3 request would (a request of ``request_bytes``, a reply of
  ``reply_bytes``) with ``sendall`` and ``recv_into``. No HTTP, no parsing, no storage.
* ``lmdb``: the same sizes through py-lmdb directly, with the engine's flags: one synced
  write transaction per 4 KiB put, 1000 puts per transaction, gets from one read
  transaction (copied out), and 64 MiB as 64 chunks of 1 MiB like the engine stores it.

The framework ceiling (bare Starlette on uvicorn) is a ``bench.systems.BareStarlette``
driven by the ordinary load generator.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.histogram import Histogram
from bench.workloads import MiB

http_overhead_bytes = 300  # about what a presigned S3 request line + headers weigh
_socket_buffer_bytes = 4 * MiB


def _recv_exactly(connection: socket.socket, buffer: memoryview, size: int) -> None:
    """Receive ``size`` bytes, reusing ``buffer`` (overwritten, as a consumer would)."""
    remaining = size
    while remaining:
        count = connection.recv_into(buffer, min(remaining, len(buffer)))
        if count == 0:
            raise ConnectionError("peer closed")
        remaining -= count


def _serve_connection(connection: socket.socket) -> None:
    with connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = memoryview(bytearray(_socket_buffer_bytes))
        header = bytearray(16)
        try:
            _recv_exactly(connection, memoryview(header), 16)
        except ConnectionError:
            return
        request_bytes, reply_bytes = struct.unpack("!QQ", header)
        reply = memoryview(os.urandom(reply_bytes))
        connection.sendall(b"R")  # ready: the reply is made, the clock may start
        while True:
            try:
                _recv_exactly(connection, buffer, request_bytes)
            except (ConnectionError, OSError):
                return
            connection.sendall(reply)


def _server_main(listener: socket.socket) -> None:
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=_serve_connection, args=(connection,), daemon=True).start()


def _client_thread(
    port: int,
    request_bytes: int,
    reply_bytes: int,
    duration_s: float,
    start: Any,
    histogram: Histogram,
    times: list[int],
) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sendall(struct.pack("!QQ", request_bytes, reply_bytes))
        request = memoryview(os.urandom(request_bytes))
        buffer = memoryview(bytearray(min(_socket_buffer_bytes, max(reply_bytes, 1))))
        _recv_exactly(connection, buffer, 1)
        start.wait()
        clock = time.perf_counter_ns
        began = clock()
        deadline_ns = began + int(duration_s * 1e9)
        while clock() < deadline_ns:
            started = clock()
            connection.sendall(request)
            _recv_exactly(connection, buffer, reply_bytes)
            histogram.record(clock() - started)
        times.extend((began, clock()))


def _client_process(
    port: int,
    threads: int,
    request_bytes: int,
    reply_bytes: int,
    duration_s: float,
    start: Any,
    results: Any,
) -> None:
    histograms = [Histogram() for _ in range(threads)]
    times: list[list[int]] = [[] for _ in range(threads)]
    runners = [
        threading.Thread(
            target=_client_thread, args=(port, request_bytes, reply_bytes, duration_s, start, h, t)
        )
        for h, t in zip(histograms, times, strict=True)
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    merged = Histogram()
    for histogram in histograms:
        merged.merge(histogram)
    results.put((merged.to_dict(), min(t[0] for t in times), max(t[1] for t in times)))


def loopback(
    request_bytes: int,
    reply_bytes: int,
    concurrency: int,
    duration_s: float,
    processes_max: int = 2,
) -> tuple[Histogram, float]:
    """(latency histogram, elapsed seconds) of request/reply round trips on loopback."""
    context = multiprocessing.get_context("fork")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    server = context.Process(target=_server_main, args=(listener,), daemon=True)
    server.start()
    listener.close()
    try:
        process_count = min(concurrency, processes_max)
        results = context.Queue()
        start = context.Barrier(concurrency)  # every connection made and ready, then go
        clients = [
            context.Process(
                target=_client_process,
                args=(
                    port,
                    len(range(p, concurrency, process_count)),
                    request_bytes,
                    reply_bytes,
                    duration_s,
                    start,
                    results,
                ),
            )
            for p in range(process_count)
        ]
        for client in clients:
            client.start()
        merged, first_ns, last_ns = Histogram(), None, 0
        for _ in clients:
            document, began_ns, ended_ns = results.get(timeout=duration_s + 120)
            merged.merge(Histogram.from_dict(document))
            first_ns = began_ns if first_ns is None else min(first_ns, began_ns)
            last_ns = max(last_ns, ended_ns)
        elapsed = (last_ns - (first_ns or 0)) / 1e9
        for client in clients:
            client.join(timeout=10)
        return merged, elapsed
    finally:
        server.kill()
        server.join(timeout=10)


# --- LMDB ------------------------------------------------------------------------------


def _open_lmdb(directory: Path) -> Any:
    import lmdb

    from storage import limits

    # The engine's flags (storage/engine/store.py): durable = sync + metasync.
    return lmdb.open(
        str(directory), map_size=limits.lmdb_map_size_bytes, max_dbs=8, sync=True, metasync=True
    )


@dataclass
class LmdbFigure:
    histogram: Histogram  # latency per transaction (per op, except the batched puts)
    elapsed_seconds: float
    ops: int
    bytes_per_op: int


def lmdb_limits(work_dir: Path, duration_s: float, big_ops: int) -> dict[str, LmdbFigure]:
    """The engine's storage alone, single-threaded, in this process."""
    directory = Path(tempfile.mkdtemp(prefix="lmdb-limit-", dir=work_dir))
    env = _open_lmdb(directory)
    small = os.urandom(4096)
    keys = [b"b%08d" % n for n in range(100_000)]
    batch = 1000
    chunk = os.urandom(MiB)
    figures: dict[str, LmdbFigure] = {}

    def figure(
        timed: tuple[Histogram, float], bytes_per_op: int, ops_per_call: int = 1
    ) -> LmdbFigure:
        histogram, elapsed = timed
        return LmdbFigure(histogram, elapsed, histogram.count * ops_per_call, bytes_per_op)

    def put_batch(n: int) -> None:
        with env.begin(write=True) as txn:
            for i in range(batch):
                txn.put(keys[(n * batch + i) % len(keys)], small)

    def put_big(n: int) -> None:
        with env.begin(write=True) as txn:
            for i in range(64):
                txn.put(b"B%04d%04d" % (n % 4, i), chunk)

    def get_big(n: int) -> None:
        with env.begin(buffers=True) as txn:
            for i in range(64):
                bytes(txn.get(b"B%04d%04d" % (n % min(4, big_ops), i)))  # copied out, like a send

    try:
        figures["put_4k_txn_each"] = figure(
            _timed(duration_s, lambda n: _put_one(env, b"s%08d" % n, small)), 4096
        )
        figures["put_4k_txn_1000"] = figure(_timed(duration_s, put_batch), 4096, batch)
        with env.begin() as txn:
            chooser = random.Random(1)
            get = lambda n: txn.get(keys[chooser.randrange(len(keys))])  # noqa: E731
            figures["get_4k_read_txn"] = figure(_timed(duration_s, get), 4096)
        figures["put_64m"] = figure(_timed(None, put_big, count=big_ops), 64 * MiB)
        figures["get_64m"] = figure(_timed(None, get_big, count=big_ops), 64 * MiB)
    finally:
        env.close()
        shutil.rmtree(directory, ignore_errors=True)
    return figures


def _put_one(env: Any, key: bytes, value: bytes) -> None:
    with env.begin(write=True) as txn:
        txn.put(key, value)


def _timed(
    duration_s: float | None, operation: Any, count: int | None = None
) -> tuple[Histogram, float]:
    histogram = Histogram()
    clock = time.perf_counter_ns
    began = clock()
    deadline = began + int((duration_s or 0) * 1e9)
    n = 0
    while (clock() < deadline) if count is None else (n < count):
        started = clock()
        operation(n)
        histogram.record(clock() - started)
        n += 1
    return histogram, (clock() - began) / 1e9
