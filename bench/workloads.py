"""The S3 workloads as request plans for ``bench.loadgen``, plus multipart upload.

Keys live in key spaces ``<prefix>/<index:08d>``; thread ``t`` of ``T`` takes the indexes
``t, t+T, t+2T ...``, so a count-mode run of a PUT plan writes each key exactly once
(that is how peers are populated over HTTP) and a GET plan spreads its keys evenly.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any

from bench.histogram import Histogram
from bench.loadgen import Endpoint, Presigner, Request, payload_of

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
list_page_keys = 1000


def key_name(prefix: str, index: int) -> str:
    return f"{prefix}/{index:08d}"


def thread_indexes(count: int, thread_index: int, thread_count: int) -> range:
    return range(thread_index, count, thread_count)


@dataclass(frozen=True)
class PutObjects:
    """PUT ``object_size_bytes`` to the keys of a key space (wrapping around = overwrite)."""

    name: str
    bucket: str
    prefix: str
    key_count: int
    object_size_bytes: int

    def requests_for(
        self, presigner: Presigner, thread_index: int, thread_count: int
    ) -> list[Request]:
        return [
            (
                "PUT",
                presigner.target("PUT", self.bucket, key_name(self.prefix, i)),
                self.object_size_bytes,
            )
            for i in thread_indexes(self.key_count, thread_index, thread_count)
        ]


@dataclass(frozen=True)
class ReadObjects:
    """GET or HEAD existing keys; with fewer keys than threads, threads share keys."""

    name: str
    method: str
    bucket: str
    prefix: str
    key_count: int

    def requests_for(
        self, presigner: Presigner, thread_index: int, thread_count: int
    ) -> list[Request]:
        indexes = list(thread_indexes(self.key_count, thread_index, thread_count))
        if not indexes:
            indexes = [thread_index % self.key_count]
        return [
            (self.method, presigner.target(self.method, self.bucket, key_name(self.prefix, i)), 0)
            for i in indexes
        ]


@dataclass(frozen=True)
class ListPages:
    """ListObjectsV2 pages of 1000 keys, each starting after a page boundary."""

    name: str
    bucket: str
    prefix: str
    key_count: int

    def requests_for(
        self, presigner: Presigner, thread_index: int, thread_count: int
    ) -> list[Request]:
        page_count = max(1, self.key_count // list_page_keys)
        pages = list(thread_indexes(page_count, thread_index, thread_count)) or [
            thread_index % page_count
        ]
        requests = []
        for page in pages:
            query = f"list-type=2&max-keys={list_page_keys}&prefix={self.prefix}%2F"
            if page:
                start_after = key_name(self.prefix, page * list_page_keys - 1)
                query += "&start-after=" + start_after.replace("/", "%2F")
            requests.append(("GET", presigner.target("GET", self.bucket, query=query), 0))
        return requests


@dataclass(frozen=True)
class Mixed:
    """GETs of existing keys and PUTs of new keys, ``get_fraction`` of them GETs."""

    name: str
    bucket: str
    get_prefix: str
    get_key_count: int
    put_prefix: str
    requests_per_thread: int
    object_size_bytes: int
    get_fraction: float = 0.8
    seed: int = 5

    def requests_for(
        self, presigner: Presigner, thread_index: int, thread_count: int
    ) -> list[Request]:
        chooser = random.Random(self.seed * 1_000_003 + thread_index)
        requests: list[Request] = []
        for n in range(self.requests_per_thread):
            if chooser.random() < self.get_fraction:
                key = key_name(self.get_prefix, chooser.randrange(self.get_key_count))
                requests.append(("GET", presigner.target("GET", self.bucket, key), 0))
            else:
                key = key_name(self.put_prefix, n * thread_count + thread_index)
                requests.append(
                    ("PUT", presigner.target("PUT", self.bucket, key), self.object_size_bytes)
                )
        return requests


# --- multipart upload (driven directly: its URLs depend on the UploadId) -----------------


class NotSupported(Exception):
    """The server answered 501 NotImplemented."""


@dataclass
class MultipartOutcome:
    status: str  # ok | not_supported | failed
    total_bytes: int
    part_bytes: int
    elapsed_seconds: float
    part_latency: Histogram
    detail: str = ""

    @property
    def mb_per_second(self) -> float:
        return self.total_bytes / MiB / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


def _presigned_client(endpoint: Endpoint) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        region_name=endpoint.region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _target(url: str) -> str:
    return url[url.index("/", len("http://")) :]


def _send(
    endpoint: Endpoint, method: str, target: str, body: Any = b""
) -> tuple[int, bytes, dict[str, str]]:
    host, port = endpoint.host_port
    connection = http.client.HTTPConnection(host, port, timeout=600)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body if len(body) else None)
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def _xml_text(document: bytes, tag: str) -> str:
    for element in ElementTree.fromstring(document).iter():
        if element.tag.rsplit("}", 1)[-1] == tag:
            return element.text or ""
    raise ValueError(f"no <{tag}> in {document[:200]!r}")


def multipart_upload(
    endpoint: Endpoint, bucket: str, key: str, total_bytes: int, part_bytes: int, concurrency: int
) -> MultipartOutcome:
    """CreateMultipartUpload, UploadPart x N (``concurrency`` at once), Complete; timed whole."""
    client = _presigned_client(endpoint)
    part_count = -(-total_bytes // part_bytes)
    payload = payload_of(part_bytes)
    latency = Histogram()
    began = time.perf_counter()
    try:
        url = client.generate_presigned_url(
            "create_multipart_upload", Params={"Bucket": bucket, "Key": key}
        )
        status, body, _ = _send(endpoint, "POST", _target(url))
        if status == 501:
            raise NotSupported(body[:300].decode(errors="replace"))
        if status != 200:
            raise RuntimeError(f"CreateMultipartUpload: HTTP {status} {body[:300]!r}")
        upload_id = _xml_text(body, "UploadId")
        etags: dict[int, str] = {}
        failures: list[str] = []
        next_part = iter(range(1, part_count + 1))
        lock = threading.Lock()

        def upload_parts() -> None:
            while not failures:
                with lock:
                    number = next(next_part, None)
                if number is None:
                    return
                size = min(part_bytes, total_bytes - (number - 1) * part_bytes)
                part_url = client.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": bucket,
                        "Key": key,
                        "UploadId": upload_id,
                        "PartNumber": number,
                    },
                )
                started_ns = time.perf_counter_ns()
                status, body, headers = _send(endpoint, "PUT", _target(part_url), payload[:size])
                with lock:
                    latency.record(time.perf_counter_ns() - started_ns)
                if status == 501:
                    failures.append("501")
                elif status != 200:
                    failures.append(f"UploadPart {number}: HTTP {status} {body[:200]!r}")
                else:
                    etags[number] = headers.get("etag", "")

        workers = [threading.Thread(target=upload_parts) for _ in range(concurrency)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if failures == ["501"] or "501" in failures:
            raise NotSupported("UploadPart answered 501")
        if failures:
            raise RuntimeError(failures[0])
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etags[n]}</ETag></Part>"
            for n in sorted(etags)
        )
        document = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        url = client.generate_presigned_url(
            "complete_multipart_upload",
            Params={"Bucket": bucket, "Key": key, "UploadId": upload_id},
        )
        status, body, _ = _send(endpoint, "POST", _target(url), document)
        if status == 501:
            raise NotSupported("CompleteMultipartUpload answered 501")
        if status != 200 or b"<Error>" in body:
            raise RuntimeError(f"CompleteMultipartUpload: HTTP {status} {body[:300]!r}")
        elapsed = time.perf_counter() - began
        return MultipartOutcome("ok", total_bytes, part_bytes, elapsed, latency)
    except NotSupported as error:
        return MultipartOutcome("not_supported", total_bytes, part_bytes, 0.0, latency, str(error))
    except (RuntimeError, OSError, ValueError, http.client.HTTPException) as error:
        return MultipartOutcome("failed", total_bytes, part_bytes, 0.0, latency, str(error))
