"""The load generator: worker processes x threads, one keep-alive connection per thread.

Rules and theory of operation:

* A workload is a *plan*: for each client thread, a list of requests
  ``(method, target, body_size_bytes)`` made before the clock starts. Targets are
  presigned URLs (SigV4, ``UNSIGNED-PAYLOAD``, made with botocore's query signer), so the
  hot loop does no signing and no hashing: it sends bytes, reads bytes, records latency.
* Concurrency ``c`` means ``c`` connections with at most one request in flight each,
  spread over ``min(c, processes_max)`` processes (multiprocessing, fork) so that the
  client is not held back by one GIL. Each thread cycles through its plan until the
  deadline (duration mode) or runs its plan once (count mode).
* Latency is measured from the first byte sent to the last byte of the response read,
  into one ``Histogram`` per thread; histograms merge into one per workload.
* Progress: every thread bumps its own slot of a shared array after each request; the
  parent prints one line per second per workload.
* A ``501`` answer means the server does not implement the operation: the workload is
  reported ``not_supported``, not failed.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from bench.histogram import Histogram

processes_max_default = max(2, os.cpu_count() or 2)
receive_buffer_bytes = 1024 * 1024
connection_timeout_seconds = 120.0
presign_expiry_seconds = 3600
error_samples_max = 5
worker_start_timeout_seconds = 300.0
clients = ("raw", "http.client")
default_client = os.environ.get("SQUALL_BENCH_CLIENT", "raw")

Request = tuple[str, str, int]  # (method, target, body size in bytes)


@dataclass(frozen=True)
class Endpoint:
    """Where to send requests. No keys: requests go unsigned (the bare-framework limit)."""

    url: str
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"

    @property
    def host_port(self) -> tuple[str, int]:
        split = urlsplit(self.url)
        assert split.hostname is not None and split.port is not None, self.url
        return split.hostname, split.port


class Presigner:
    """SigV4 presigned request targets (path + query) for one endpoint."""

    def __init__(self, endpoint: Endpoint, expiry_seconds: int = presign_expiry_seconds) -> None:
        self.endpoint = endpoint
        self._auth: Any = None
        if endpoint.access_key is not None:
            from botocore.auth import S3SigV4QueryAuth
            from botocore.credentials import Credentials

            credentials = Credentials(endpoint.access_key, endpoint.secret_key)
            self._auth = S3SigV4QueryAuth(credentials, "s3", endpoint.region, expiry_seconds)

    def target(self, method: str, bucket: str, key: str = "", query: str = "") -> str:
        path = "/" + bucket + ("/" + quote(key, safe="/~") if key else "")
        if self._auth is None:
            return path + ("?" + query if query else "")
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(
            method=method, url=self.endpoint.url + path + ("?" + query if query else "")
        )
        self._auth.add_auth(request)
        split = urlsplit(request.url)
        return split.path + "?" + split.query


class Plan(Protocol):
    """A workload as seen by the load generator."""

    name: str

    def requests_for(
        self, presigner: Presigner, thread_index: int, thread_count: int
    ) -> list[Request]: ...


@dataclass
class RunOutcome:
    """What one run of one plan measured (merged over all threads and processes)."""

    histogram: Histogram
    ops: int = 0
    errors: int = 0
    not_implemented: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    elapsed_seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 as this client reads it."""


_header_end = b"\r\n\r\n"
response_head_bytes_max = 64 * 1024


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client: request heads are encoded once, up front;
    the response head is parsed with ``bytes.find``; bodies go to a reused buffer with
    ``recv_into``. It reads Content-Length and chunked bodies, and honours
    ``Connection: close``. Used because ``http.client`` costs ~190 us of client CPU per
    request here, which on a 2-core machine is CPU taken from the server under test
    (``--client http.client`` measures with it instead, for comparison).
    """

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.pending = bytearray()  # bytes read past the end of the last response

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.pending.clear()

    def exchange(
        self, head: bytes, body: memoryview | None, is_head: bool, buffer: memoryview
    ) -> tuple[int, int]:
        """Send one request, read its whole response; (status, body bytes received)."""
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=connection_timeout_seconds)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        if body is not None and len(body) <= 64 * 1024:
            sock.sendall(head + body)
        else:
            sock.sendall(head)
            if body is not None:
                sock.sendall(body)
        data = self.pending
        end = data.find(_header_end)
        while end < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
            end = data.find(_header_end)
            if end < 0 and len(data) > response_head_bytes_max:
                raise ProtocolError("response head too long")
        head_text = bytes(data[:end]).lower()
        status = int(head_text[9:12])
        rest = data[end + 4 :]
        close = b"\r\nconnection: close" in head_text
        if is_head or status in (204, 304) or 100 <= status < 200:
            length = 0
        elif b"\r\ntransfer-encoding: chunked" in head_text:
            received = self._read_chunked(sock, rest, buffer)
            if close:
                self.close()
            return status, received
        else:
            at = head_text.find(b"\r\ncontent-length:")
            if at < 0:
                raise ProtocolError("response without Content-Length or chunked encoding")
            length = int(
                head_text[
                    at + 17 : head_text.find(b"\r\n", at + 2)
                    if head_text.find(b"\r\n", at + 2) > 0
                    else None
                ]
            )
        if len(rest) >= length:
            self.pending = bytearray(rest[length:])
        else:
            remaining = length - len(rest)
            while remaining:
                count = sock.recv_into(buffer, min(remaining, len(buffer)))
                if count == 0:
                    raise ConnectionError("server closed the connection mid-body")
                remaining -= count
            self.pending = bytearray()
        if close:
            self.close()
        return status, length

    def _read_chunked(self, sock: socket.socket, data: bytearray, buffer: memoryview) -> int:
        received = 0
        while True:
            line_end = data.find(b"\r\n")
            while line_end < 0:
                data += self._recv(sock)
                line_end = data.find(b"\r\n")
            size = int(bytes(data[:line_end]).split(b";")[0], 16)
            del data[: line_end + 2]
            while len(data) < size + 2:
                data += self._recv(sock)
            del data[: size + 2]
            received += size
            if size == 0:
                self.pending = bytearray(data)  # (trailers are not expected from S3 servers)
                return received

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-body")
        return chunk


def encode_head(method: str, target: str, host_header: str, body_size: int) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}"]
    if body_size or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {body_size}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class _Thread:
    """One client connection running its plan."""

    def __init__(
        self,
        endpoint: Endpoint,
        requests: Sequence[Request],
        payload: memoryview,
        client: str = "raw",
    ) -> None:
        self.endpoint = endpoint
        self.client = client
        self.requests = requests
        self.payload = payload
        self.histogram = Histogram()
        self.ops = self.errors = self.not_implemented = 0
        self.bytes_sent = self.bytes_received = 0
        self.statuses: dict[str, int] = {}
        self.error_samples: list[str] = []
        self.finished_ns = 0

    def _error(self, description: str) -> None:
        self.errors += 1
        if len(self.error_samples) < error_samples_max:
            self.error_samples.append(description)

    def run(self, deadline_ns: int | None, progress: Any, slot: int) -> None:
        if self.client == "raw":
            self.run_raw(deadline_ns, progress, slot)
        else:
            self.run_http_client(deadline_ns, progress, slot)

    def _count(self, method: str, target: str, status: int, body_size: int, received: int) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if status < 300:
            self.ops += 1
            self.bytes_sent += body_size
            self.bytes_received += received
        elif status == 501:
            self.not_implemented += 1
        else:
            self._error(f"{method} {target.split('?')[0]}: HTTP {status}")

    def run_raw(self, deadline_ns: int | None, progress: Any, slot: int) -> None:
        host, port = self.endpoint.host_port
        host_header = urlsplit(self.endpoint.url).netloc
        connection = RawConnection(host, port)
        buffer = memoryview(bytearray(receive_buffer_bytes))
        heads = [encode_head(m, t, host_header, size) for m, t, size in self.requests]
        requests, payload, histogram = self.requests, self.payload, self.histogram
        clock = time.perf_counter_ns
        index = 0
        while True:
            if deadline_ns is None:
                if index >= len(requests):
                    break
            elif clock() >= deadline_ns:
                break
            position = index % len(requests)
            method, target, body_size = requests[position]
            index += 1
            started_ns = clock()
            try:
                status, received = connection.exchange(
                    heads[position],
                    payload[:body_size] if body_size else None,
                    method == "HEAD",
                    buffer,
                )
            except (OSError, ProtocolError, ValueError) as error:
                connection.close()
                self._error(f"{method} {target.split('?')[0]}: {type(error).__name__}: {error}")
                progress[slot] += 1
                continue
            histogram.record(clock() - started_ns)
            self._count(method, target, status, body_size, received)
            progress[slot] += 1
        connection.close()
        self.finished_ns = clock()

    def run_http_client(self, deadline_ns: int | None, progress: Any, slot: int) -> None:
        host, port = self.endpoint.host_port
        connection = http.client.HTTPConnection(host, port, timeout=connection_timeout_seconds)
        buffer = memoryview(bytearray(receive_buffer_bytes))
        requests, payload, histogram = self.requests, self.payload, self.histogram
        clock = time.perf_counter_ns
        index = 0
        while True:
            if deadline_ns is None:
                if index >= len(requests):
                    break
            elif clock() >= deadline_ns:
                break
            method, target, body_size = requests[index % len(requests)]
            index += 1
            started_ns = clock()
            try:
                connection.putrequest(method, target, skip_accept_encoding=True)
                if body_size or method in ("PUT", "POST"):
                    connection.putheader("Content-Length", str(body_size))
                    connection.endheaders(payload[:body_size] if body_size else None)
                else:
                    connection.endheaders()
                response = connection.getresponse()
                received = 0
                while True:
                    count = response.readinto(buffer)
                    if not count:
                        break
                    received += count
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self._error(f"{method} {target.split('?')[0]}: {type(error).__name__}: {error}")
                progress[slot] += 1
                continue
            histogram.record(clock() - started_ns)
            self._count(method, target, status, body_size, received)
            progress[slot] += 1
        connection.close()
        self.finished_ns = clock()


_payloads: dict[int, memoryview] = {}


def payload_of(size_bytes: int) -> memoryview:
    """Random bytes (incompressible), made once per process and size."""
    if size_bytes not in _payloads:
        _payloads[size_bytes] = memoryview(os.urandom(size_bytes))
    return _payloads[size_bytes]


def _worker(
    endpoint: Endpoint,
    plan: Plan,
    thread_indexes: list[int],
    thread_count: int,
    payload_bytes: int,
    mode_duration_seconds: float | None,
    client: str,
    progress: Any,
    ready: Any,
    start: Any,
    start_ns: Any,
    results: Any,
) -> None:
    try:
        presigner = Presigner(endpoint)
        payload = payload_of(payload_bytes) if payload_bytes else memoryview(b"")
        threads = [
            _Thread(endpoint, plan.requests_for(presigner, index, thread_count), payload, client)
            for index in thread_indexes
        ]
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        ready.wait(worker_start_timeout_seconds)
        start.wait(worker_start_timeout_seconds)
        deadline_ns = None
        if mode_duration_seconds is not None:
            deadline_ns = start_ns.value + int(mode_duration_seconds * 1e9)
        runners = [
            threading.Thread(target=t.run, args=(deadline_ns, progress, i), daemon=True)
            for t, i in zip(threads, thread_indexes, strict=True)
        ]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        histogram = Histogram()
        for thread in threads:
            histogram.merge(thread.histogram)
        statuses: dict[str, int] = {}
        for thread in threads:
            for status, count in thread.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        results.put(
            {
                "histogram": histogram.to_dict(),
                "ops": sum(t.ops for t in threads),
                "errors": sum(t.errors for t in threads),
                "not_implemented": sum(t.not_implemented for t in threads),
                "bytes_sent": sum(t.bytes_sent for t in threads),
                "bytes_received": sum(t.bytes_received for t in threads),
                "finished_ns": max(t.finished_ns for t in threads),
                "cpu_seconds": (cpu_after.ru_utime - cpu_before.ru_utime)
                + (cpu_after.ru_stime - cpu_before.ru_stime),
                "statuses": statuses,
                "error_samples": [s for t in threads for s in t.error_samples][:error_samples_max],
            }
        )
    except BaseException as error:  # the parent must hear of it, or it waits forever
        results.put({"crash": f"{type(error).__name__}: {error}"})
        raise


def run(
    endpoint: Endpoint,
    plan: Plan,
    *,
    concurrency: int,
    duration_seconds: float | None = None,
    payload_bytes: int = 0,
    processes_max: int = processes_max_default,
    label: str = "",
    report: Callable[[str], None] | None = None,
    client: str | None = None,
) -> RunOutcome:
    """Run ``plan`` with ``concurrency`` connections: for ``duration_seconds``, or each
    thread's plan once when it is None. Prints one progress line per second to ``report``."""
    assert concurrency >= 1
    report = report or (lambda line: print(line, file=sys.stderr, flush=True))
    context = multiprocessing.get_context("fork")
    process_count = min(concurrency, processes_max)
    groups = [list(range(p, concurrency, process_count)) for p in range(process_count)]
    progress = context.Array("q", concurrency, lock=False)
    ready = context.Barrier(process_count + 1)
    start = context.Event()
    start_ns = context.Value("q", 0, lock=False)
    results = context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(
                endpoint,
                plan,
                group,
                concurrency,
                payload_bytes,
                duration_seconds,
                client or default_client,
                progress,
                ready,
                start,
                start_ns,
                results,
            ),
            daemon=True,
        )  # fmt: skip
        for group in groups
    ]
    for process in processes:
        process.start()
    try:
        ready.wait(worker_start_timeout_seconds)
    except threading.BrokenBarrierError as error:
        for process in processes:
            process.kill()
        raise RuntimeError(f"{label}: workers did not get ready") from error
    start_ns.value = time.perf_counter_ns()
    start.set()
    documents = _collect(results, processes, progress, start_ns.value, label, report)
    for process in processes:
        process.join(timeout=10)
    crashes = [d["crash"] for d in documents if "crash" in d]
    if crashes:
        raise RuntimeError(f"{label}: worker crashed: {crashes[0]}")
    outcome = RunOutcome(histogram=Histogram())
    for document in documents:
        outcome.histogram.merge(Histogram.from_dict(document["histogram"]))
        outcome.ops += document["ops"]
        outcome.errors += document["errors"]
        outcome.not_implemented += document["not_implemented"]
        outcome.bytes_sent += document["bytes_sent"]
        outcome.bytes_received += document["bytes_received"]
        outcome.client_cpu_seconds += document["cpu_seconds"]
        for status, count in document["statuses"].items():
            outcome.statuses[status] = outcome.statuses.get(status, 0) + count
        outcome.error_samples.extend(document["error_samples"])
    finished_ns = max(d["finished_ns"] for d in documents)
    outcome.elapsed_seconds = (finished_ns - start_ns.value) / 1e9
    return outcome


def _collect(
    results: Any,
    processes: list[Any],
    progress: Any,
    started_ns: int,
    label: str,
    report: Callable[[str], None],
) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    last_total, last_ns = 0, started_ns
    import queue

    while len(documents) < len(processes):
        try:
            documents.append(results.get(timeout=1.0))
            continue
        except queue.Empty:
            pass
        if all(not p.is_alive() for p in processes) and results.empty():
            raise RuntimeError(f"{label}: workers exited without a result")
        now_ns = time.perf_counter_ns()
        total = sum(progress)
        rate = (total - last_total) / max((now_ns - last_ns) / 1e9, 1e-9)
        report(
            f"  {label:<40} t={(now_ns - started_ns) / 1e9:5.1f}s  {total:8d} requests  {rate:9.0f}/s"
        )
        last_total, last_ns = total, now_ns
    return documents
