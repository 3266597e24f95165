"""Classify-on-write, three ways, side by side in one run on the same images.

* ``bare``: the model in this process, nothing else: ``triggers.functions.infer`` on a
  model loaded by ``triggers.models.load_keras_model``, exactly what the trigger runs in
  its worker thread (the same decode and compiled graph, TensorFlow's threads sized the
  same way), batch 1, per image.
* ``trigger``: a PUT judged by a pre-commit function in a real ``squall serve`` child
  process (the function registered and bound, ``annotate: true``): the verdict comes
  back in the PUT's response. Twice: batching on (``max_batch_size: 8,
  max_queue_delay_ms: 2``) and off (``max_batch_size: 1``).
* ``conventional``: PUT (no function bound); the server's post-commit notification
  (a QueueConfiguration on the path's key prefix naming ``arn:squall:sqs::mlbench:webhook``,
  ``squall serve --webhook mlbench=URL``) is POSTed to a threaded HTTP receiver in this
  process; the client WAITS until the event for its key (matched on key and eTag)
  arrives, then GETs, classifies in this process with the same decode and model as
  ``bare``, and does PutObjectTagging with the label. Latency: PUT start to tagging done.
* ``put``: a plain PUT of the same bytes, no function bound and no notification (a key
  prefix outside every rule): what the store costs before any judging.
* ``bare_litert`` and ``trigger_litert`` (``--runtimes`` with ``litert``, the default):
  the same two with ``runtime: litert`` (``triggers.litert``: the model converted once
  and run by ``ai_edge_litert`` with ``limits.litert_threads_default`` threads; images
  still decoded by the compiled TensorFlow graph); the trigger with the b8 batching.
  Each checks that LiteRT, not a fallback, judged.
* ``conventional_hop0``: the same without the notification (the hop EMULATED AS ZERO
  COST: the client goes straight from the PUT's answer to the GET; a key prefix with no
  notification configuration, so it makes no events). Shows what the hop itself costs.

HTTP is presigned URLs (signed ahead of time, so client-side signing is not measured)
over one keep-alive ``http.client`` connection per client. Each path runs with 1 and 8
concurrent clients (threads of this process, each with its own connection), in rounds
that rotate the order of the paths (the machine is shared: drift hits every path alike).

Two models: the shapes classifier of ``examples/shapes`` (trained here for a few
epochs on its generated images; 16x16 PNG inputs) and ``keras.applications.MobileNetV2
(weights=None, input_shape=(224, 224, 3), classes=10)`` (random weights, no download:
the inference cost is what matters; 224x224 JPEG inputs generated here).

    .venv/bin/python bench/ml_pipeline.py
    .venv/bin/python bench/ml_pipeline.py --quick        # a minute or two
    .venv/bin/python bench/ml_pipeline.py --clients 1 \
        --paths bare,bare_litert,trigger_b8,trigger_litert  # the runtimes side by side

Results: JSON and a PNG plot under ``bench/results/``, and a summary on stdout.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import http.server
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from squall.admin_client import AdminClient  # noqa: E402
from squall.launcher import ServerProcess  # noqa: E402
from storage.api import limits  # noqa: E402
from triggers.functions import configure_tensorflow_threads, infer  # noqa: E402

ACCESS_KEY = "MLBENCHROOT000000000"
SECRET_KEY = "ml-bench-secret-00000000000000000000000"
BUCKET = "mlbench"
MODELS_BUCKET = "models"
MNV2_LABELS = tuple(f"class{i}" for i in range(10))
WEBHOOK_ID = "mlbench"
PATHS = ("bare", "put", "trigger_b8", "trigger_b1", "conventional", "conventional_hop0",
         "bare_litert", "trigger_litert")
LITERT_PATHS = ("bare_litert", "trigger_litert")
RUNTIMES = ("tensorflow", "litert")
EVENT_WAIT_S = 30.0
BATCHING = {
    "b8": {"max_batch_size": 8, "max_queue_delay_ms": 2},
    "b1": {"max_batch_size": 1, "max_queue_delay_ms": 0},
}


# --- models and images -----------------------------------------------------------------


def _shapes_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "shapes_train", ROOT / "examples" / "shapes" / "train_and_upload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keras_bytes(model: Any) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.keras"
        model.save(path)
        return path.read_bytes()


@dataclass
class Workload:
    name: str
    model_bytes: bytes
    labels: tuple[str, ...]
    input: dict[str, Any]  # the function definition's 'input'
    images: list[bytes]
    content_type: str


def shapes_workload(image_count: int, epochs: int) -> Workload:
    shapes = _shapes_module()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        model = shapes.train(epochs=epochs)
    rng = np.random.default_rng(7)
    images = [shapes.png(shapes.make_image(shapes.LABELS[i % 3], rng))
              for i in range(image_count)]
    return Workload("shapes", _keras_bytes(model), tuple(shapes.LABELS),
                    {"format": "image", "scale": 1 / 255}, images, "image/png")


def synthetic_jpeg(rng: np.random.Generator, size: int = 224) -> bytes:
    """A photo-like 224x224 JPEG: smooth gradients, a few blobs, mild sensor noise."""
    import tensorflow as tf

    ys, xs = np.mgrid[:size, :size].astype(np.float32) / size
    image = np.empty((size, size, 3), np.float32)
    for c in range(3):
        a, b, d = rng.uniform(-1, 1, 3)
        image[..., c] = 128 + 80 * np.sin(3 * a * xs + 3 * b * ys + d * 6)
    for _ in range(int(rng.integers(2, 6))):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.2)
        mask = (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r
        image[mask] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    return bytes(tf.io.encode_jpeg(pixels, quality=90).numpy())


def mobilenet_workload(image_count: int) -> Workload:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3),
                                           classes=10)
    rng = np.random.default_rng(11)
    images = [synthetic_jpeg(rng) for _ in range(image_count)]
    # MobileNetV2 expects [-1, 1]: x / 127.5 - 1
    return Workload("mobilenetv2", _keras_bytes(model), MNV2_LABELS,
                    {"format": "image", "scale": 1 / 127.5, "offset": -1.0}, images,
                    "image/jpeg")


class LocalClassifier:
    """What ``bare`` and the conventional client run: ``triggers.functions.infer`` (the
    decode and compiled model that a tensorflow function runs in its worker thread)."""

    def __init__(self, workload: Workload, runtime: str = "tensorflow") -> None:
        from triggers.config import ObjectRef, definition_from_document
        from triggers.models import load_keras_model

        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "model.keras"
            path.write_bytes(workload.model_bytes)
            self.model = load_keras_model(str(path), ObjectRef(MODELS_BUCKET, "m"), "local")
        self.spec = definition_from_document(
            "local", {"kind": "tensorflow", "model": "s3://m/k", "input": workload.input}
        ).input
        self.labels = workload.labels
        self.predict: Callable[[Any], Any] | None = None
        if runtime == "litert":
            from triggers.litert import runtime_of

            litert = runtime_of(self.model)
            threads = limits.litert_threads_default
            litert.ready(threads)  # starts the conversion
            litert.wait_converted(600)
            if not litert.ready(threads):
                raise SystemExit(f"{workload.name}: LiteRT fell back: {litert.reason}")
            self.predict = lambda batch: litert.predict(batch, threads)

    def classify(self, body: bytes) -> tuple[str, float]:
        return self.classify_batch([body])[0]

    def classify_batch(self, bodies: Sequence[bytes]) -> list[tuple[str, float]]:
        rows = infer(self.model, self.spec, bodies, self.predict)
        return [(self.labels[int(r.argmax())], float(r.max())) for r in rows]


# --- HTTP ---------------------------------------------------------------------------------


class Connection:
    """One keep-alive connection; presigned URLs only."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self._http = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        parsed = urllib.parse.urlsplit(url)
        target = f"{parsed.path}?{parsed.query}" if parsed.query else parsed.path
        self._http.request(method, target, body=body, headers=headers or {})
        response = self._http.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        self._http.close()


def tagging_xml(label: str, score: float) -> bytes:
    return (f'<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>'
            f"<Tag><Key>squall-label</Key><Value>{label}</Value></Tag>"
            f"<Tag><Key>squall-score</Key><Value>{score:.4f}</Value></Tag>"
            f"</TagSet></Tagging>").encode()


class EventReceiver:
    """The webhook target: a threaded HTTP server on 127.0.0.1 (free port) in this process.

    A client calls ``expect(key)`` before its PUT, then ``wait(...)`` after it; the handler
    answers 200 to every POST and wakes the waiter of each ObjectCreated record's key.
    Redeliveries (the same ``x-squall-event-id``) are counted and otherwise ignored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list[tuple[str, float]]]] = {}
        self._seen_ids: set[str] = set()
        self.posts = 0
        self.duplicates = 0
        self.unexpected = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the dispatcher reuses connections

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                arrived = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.deliver(self.headers.get("x-squall-event-id", ""), body, arrived)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/s3-events"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="event-receiver")
        self._thread.start()

    def deliver(self, event_id: str, body: bytes, arrived: float) -> None:
        records = json.loads(body).get("Records", [])  # s3:TestEvent has none
        with self._lock:
            self.posts += 1
            if event_id in self._seen_ids:
                self.duplicates += 1
                return
            self._seen_ids.add(event_id)
            for record in records:
                if not record["eventName"].startswith("ObjectCreated:"):
                    continue
                key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
                entry = self._waiting.get(key)
                if entry is None:
                    self.unexpected += 1
                    continue
                entry[1].append((record["s3"]["object"].get("eTag", ""), arrived))
                entry[0].set()

    def expect(self, key: str) -> None:
        with self._lock:
            self._waiting[key] = (threading.Event(), [])

    def wait(self, key: str, etag: str, timeout_s: float) -> float:
        """Block until the event of ``key`` with ``etag`` arrived; its arrival time."""
        with self._lock:
            event, arrivals = self._waiting[key]
        deadline = time.perf_counter() + timeout_s
        while True:
            with self._lock:
                for got_etag, arrived in arrivals:
                    if got_etag == etag:
                        del self._waiting[key]
                        return arrived
                event.clear()
            if not event.wait(max(0.0, deadline - time.perf_counter())):
                with self._lock:
                    self._waiting.pop(key, None)
                raise TimeoutError(f"no event for {key} (eTag {etag}) in {timeout_s} s "
                                   f"(got {arrivals})")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- measurement --------------------------------------------------------------------------


@dataclass
class Samples:
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    ops: int = 0
    stages_s: dict[str, list[float]] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # The p50 of each round's ops: rounds interleave the paths, so the ratio of two paths'
    # round p50s pairs measurements taken minutes apart at most (``paired``).
    round_p50s_s: list[float] = field(default_factory=list)
    # CPU seconds (user + system, all threads) of the process that ran the model: this
    # one for bare, the server for trigger; None for the conventional paths (both).
    cpu_s: float | None = None


def process_cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one when None), all its threads."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: Samples) -> dict[str, Any]:
    ms = [v * 1000 for v in samples.latencies_s]
    result: dict[str, Any] = {
        "ops": samples.ops,
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "throughput_ops_s": round(samples.ops / samples.wall_s, 2),
    }
    if samples.round_p50s_s:
        result["round_p50s_ms"] = [round(v * 1000, 3) for v in samples.round_p50s_s]
    if samples.stages_s:
        result["stage_p50_ms"] = {name: round(statistics.median(v) * 1000, 3)
                                  for name, v in samples.stages_s.items()}
    if samples.cpu_s is not None and samples.ops:
        result["cpu_ms_per_op"] = round(samples.cpu_s / samples.ops * 1000, 3)
    if samples.batch_sizes:
        sizes = samples.batch_sizes
        result["batch_size_mean"] = round(statistics.fmean(sizes), 2)
        result["batch_size_max"] = max(sizes)
    if samples.errors:
        result["errors"] = samples.errors[:5]
        result["error_count"] = len(samples.errors)
    return result


Op = Callable[[Any, int], dict[str, float] | None]  # (client state, op index) -> stages


def run_clients(ops: list[int], clients: int, make_state: Callable[[], Any],
                op: Op, close_state: Callable[[Any], None], into: Samples) -> None:
    """Run ``ops`` (indices) split over ``clients`` threads; append latencies to ``into``."""
    shares = [ops[i::clients] for i in range(clients)]
    states = [make_state() for _ in range(clients)]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker(state: Any, share: list[int]) -> None:
        barrier.wait()
        for index in share:
            began = time.perf_counter()
            try:
                stages = op(state, index)
            except Exception as error:  # recorded, shown in the results
                with lock:
                    into.errors.append(f"{type(error).__name__}: {error}")
                continue
            elapsed = time.perf_counter() - began
            with lock:
                into.latencies_s.append(elapsed)
                into.ops += 1
                for name, value in (stages or {}).items():
                    if name == "batch_size":
                        into.batch_sizes.append(int(value))
                    else:
                        into.stages_s.setdefault(name, []).append(value)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(worker, s, share) for s, share in zip(states, shares, strict=True)]
        barrier.wait()
        began = time.perf_counter()
        for future in futures:
            future.result()
        into.wall_s += time.perf_counter() - began
    for state in states:
        close_state(state)


class Bench:
    def __init__(self, server: ServerProcess, workload: Workload, classifier: LocalClassifier,
                 s3: Any, receiver: EventReceiver,
                 litert_classifier: LocalClassifier | None = None) -> None:
        self.server = server
        self.receiver = receiver
        self.workload = workload
        self.classifier = classifier
        self.litert_classifier = litert_classifier
        self.s3 = s3
        self._serial = 0

    def _keys(self, prefix: str, count: int) -> list[str]:
        start = self._serial
        self._serial += count
        return [f"{prefix}{start + i:07d}.img" for i in range(count)]

    def _presign(self, method: str, key: str, **params: Any) -> str:
        url: str = self.s3.generate_presigned_url(
            method, Params={"Bucket": BUCKET, "Key": key, **params}, ExpiresIn=7200)
        return url

    def _presign_raw(self, method: str, key: str, query: str) -> str:
        """Presign any request (botocore's presigner cannot sign a body-carrying call)."""
        from botocore.auth import S3SigV4QueryAuth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(method=method, url=f"{self.server.url}/{BUCKET}/"
                             f"{urllib.parse.quote(key)}?{query}")
        S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1",
                         expires=7200).add_auth(request)
        return str(request.url)

    def _image(self, index: int) -> bytes:
        return self.workload.images[index % len(self.workload.images)]

    def wait_for_litert(self, timeout_s: float = 600.0) -> None:
        """Start the server's LiteRT conversion of this model (the first judged write does,
        in the background; that write is judged by TensorFlow) and wait until it is done,
        so that no measured write runs while the server converts."""
        function = f"{self.workload.name}-litert"
        self.s3.put_object(Bucket=BUCKET, Key=f"{self.workload.name}/litert/convert.img",
                           Body=self._image(0), ContentType=self.workload.content_type)
        admin = AdminClient(self.server.url, ACCESS_KEY, SECRET_KEY)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            versions = admin.get_function(function)["status"]["loaded_versions"]
            states = {v.get("litert", {}).get("state") for v in versions}
            if "litert" in states:
                return
            if "tensorflow" in states:
                raise SystemExit(f"{function}: LiteRT fell back: {versions}")
            time.sleep(0.5)
        raise SystemExit(f"{function}: not converted within {timeout_s:.0f} s")

    def bare(self, count: int, clients: int, into: Samples, litert: bool = False) -> None:
        classifier = self.litert_classifier if litert else self.classifier
        assert classifier is not None

        def op(_: Any, index: int) -> None:
            classifier.classify(self._image(index))

        began = process_cpu_s()
        run_clients(list(range(count)), clients, lambda: None, op, lambda _: None, into)
        into.cpu_s = (into.cpu_s or 0.0) + process_cpu_s() - began

    def trigger(self, batching: str, count: int, clients: int, into: Samples) -> None:
        keys = self._keys(f"{self.workload.name}/{batching}/", count)
        urls = [self._presign("put_object", key) for key in keys]
        headers = {"Content-Type": self.workload.content_type}

        def op(connection: Connection, index: int) -> dict[str, float]:
            status, response_headers, data = connection.request(
                "PUT", urls[index], self._image(index), headers)
            if status != 200:
                raise RuntimeError(f"PUT {status}: {data[:200]!r}")
            verdict = json.loads(response_headers["x-squall-verdict"])
            step = verdict["steps"][-1]
            assert step["label"] in self.workload.labels, verdict
            if batching == "litert":
                assert step["runtime"] == "litert", verdict  # not a fallback
            return {"batch_size": step.get("batch_size", 1)}

        # The server's CPU: HTTP, hook, decode, model.
        self._run_against_server(count, clients, op, into)

    def _run_against_server(self, count: int, clients: int, op: Op, into: Samples) -> None:
        """``run_clients`` over keep-alive connections to the server, adding the server
        process's CPU time over the run to ``into``."""
        pid = self.server.process.pid if self.server.process else None
        began = process_cpu_s(pid) if pid else None
        run_clients(list(range(count)), clients, lambda: Connection(self.server.url), op,
                    Connection.close, into)
        if pid and began is not None:
            into.cpu_s = (into.cpu_s or 0.0) + process_cpu_s(pid) - began

    def put(self, count: int, clients: int, into: Samples) -> None:
        keys = self._keys(f"{self.workload.name}/put/", count)
        urls = [self._presign("put_object", key) for key in keys]
        headers = {"Content-Type": self.workload.content_type}

        def op(connection: Connection, index: int) -> None:
            status, _, data = connection.request("PUT", urls[index], self._image(index),
                                                 headers)
            if status != 200:
                raise RuntimeError(f"PUT {status}: {data[:200]!r}")

        # The server's CPU for a plain PUT: HTTP, storage.
        self._run_against_server(count, clients, op, into)

    def conventional(self, count: int, clients: int, into: Samples, hop: bool) -> None:
        keys = self._keys(f"{self.workload.name}/{'plain' if hop else 'plain0'}/", count)
        puts = [self._presign("put_object", key) for key in keys]
        gets = [self._presign("get_object", key) for key in keys]
        tags = [self._presign_raw("PUT", key, "tagging") for key in keys]
        headers = {"Content-Type": self.workload.content_type}

        def op(connection: Connection, index: int) -> dict[str, float]:
            t0 = time.perf_counter()
            image = self._image(index)
            if hop:
                self.receiver.expect(keys[index])
            status, response_headers, data = connection.request("PUT", puts[index], image,
                                                                headers)
            if status != 200:
                raise RuntimeError(f"PUT {status}: {data[:200]!r}")
            t1 = time.perf_counter()
            stages = {"put": t1 - t0}
            if hop:  # the client acts on the object only once told about it
                etag = response_headers["etag"].strip('"')
                arrived = self.receiver.wait(keys[index], etag, EVENT_WAIT_S)
                t1b = time.perf_counter()
                stages["event"] = arrived - t1  # PUT answered -> POST reached the receiver
                stages["notify"] = t1b - t1  # PUT answered -> client woken
                t1 = t1b
            status, _, body = connection.request("GET", gets[index])
            if status != 200 or body != image:
                raise RuntimeError(f"GET {status}")
            t2 = time.perf_counter()
            label, score = self.classifier.classify(body)
            t3 = time.perf_counter()
            status, _, data = connection.request("PUT", tags[index], tagging_xml(label, score),
                                                 {"Content-Type": "application/xml"})
            if status != 200:
                raise RuntimeError(f"PutObjectTagging {status}: {data[:200]!r}")
            t4 = time.perf_counter()
            return {**stages, "get": t2 - t1, "classify": t3 - t2, "tag": t4 - t3}

        run_clients(list(range(count)), clients, lambda: Connection(self.server.url), op,
                    Connection.close, into)

    def run(self, path: str, count: int, clients: int, into: Samples) -> None:
        if path in ("bare", "bare_litert"):
            self.bare(count, clients, into, litert=path == "bare_litert")
        elif path == "put":
            self.put(count, clients, into)
        elif path.startswith("trigger_"):
            self.trigger(path.removeprefix("trigger_"), count, clients, into)
        else:
            self.conventional(count, clients, into, hop=path == "conventional")

    def bare_batched(self, batches: int, batch_size: int) -> dict[str, Any]:
        """Reference: one thread, decode + predict ``batch_size`` images as one batch."""
        latencies = []
        began = time.perf_counter()
        for b in range(batches):
            bodies = [self._image(b * batch_size + i) for i in range(batch_size)]
            t0 = time.perf_counter()
            self.classifier.classify_batch(bodies)
            latencies.append(time.perf_counter() - t0)
        wall = time.perf_counter() - began
        return {"batch_size": batch_size, "batches": batches,
                "batch_p50_ms": round(statistics.median(latencies) * 1000, 3),
                "throughput_images_s": round(batches * batch_size / wall, 2)}


def setup_server(server: ServerProcess, workloads: list[Workload], s3: Any,
                 runtimes: Sequence[str] = ("tensorflow",)) -> None:
    """Functions for the trigger paths' prefixes; a webhook queue for ``NAME/plain/``."""
    admin = AdminClient(server.url, ACCESS_KEY, SECRET_KEY)
    for bucket in (MODELS_BUCKET, BUCKET):
        s3.create_bucket(Bucket=bucket)
    configurations = []
    queues = []
    for workload in workloads:
        queues.append({
            "Id": f"{workload.name}-conventional",
            "QueueArn": f"arn:squall:sqs::{WEBHOOK_ID}:webhook",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [
                {"Name": "prefix", "Value": f"{workload.name}/plain/"}]}}})
        s3.put_object(Bucket=MODELS_BUCKET, Key=f"{workload.name}.keras",
                      Body=workload.model_bytes)
        functions = [(name, batching, "tensorflow") for name, batching in BATCHING.items()]
        if "litert" in runtimes:
            functions.append(("litert", BATCHING["b8"], "litert"))
        for name, batching, runtime in functions:
            function = f"{workload.name}-{name}"
            admin.put_function(function, json.dumps({
                "kind": "tensorflow",
                "model": f"s3://{MODELS_BUCKET}/{workload.name}.keras",
                "input": workload.input,
                "labels": list(workload.labels),
                "top_k": 1,
                "batching": {**batching, "queue_length_max": 256},
                "runtime": runtime,
                "actions": [{"annotate": True}],
            }).encode())
            configurations.append({
                "Id": function, "LambdaFunctionArn": f"arn:squall:function:{function}",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [
                    {"Name": "prefix", "Value": f"{workload.name}/{name}/"}]}}})
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"LambdaFunctionConfigurations": configurations,
                                                  "QueueConfigurations": queues})


# --- report -------------------------------------------------------------------------------


def paired(over: dict[str, Any], under: dict[str, Any]) -> dict[str, float] | None:
    """min / median / max over rounds of ``over``'s round p50 / ``under``'s: the spread a
    ratio of whole-run p50s hides (on this shared machine a path's p50 drifts by more than
    the 10 % some goals allow, and the rounds pair paths measured close in time)."""
    pairs = [a / b for a, b in zip(over.get("round_p50s_ms", ()), under.get("round_p50s_ms", ()),
                                   strict=False) if b > 0]
    if len(pairs) < 2:
        return None
    return {"min": round(min(pairs), 3), "median": round(statistics.median(pairs), 3),
            "max": round(max(pairs), 3)}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model, by_clients in results.items():
        for clients, by_path in by_clients.items():
            bare = by_path.get("bare")
            conventional = by_path.get("conventional")
            put = by_path.get("put")
            hop0 = by_path.get("conventional_hop0")
            for batching in BATCHING:
                trigger = by_path.get(f"trigger_{batching}")
                if trigger is None:
                    continue
                entry: dict[str, Any] = {}
                if bare:
                    entry["trigger_over_bare_p50"] = round(trigger["p50_ms"] / bare["p50_ms"], 3)
                    entry["goal_trigger_le_1.10x_bare_p50"] = entry["trigger_over_bare_p50"] <= 1.10
                    entry["trigger_over_bare_rounds"] = paired(trigger, bare)
                    if trigger.get("cpu_ms_per_op") and bare.get("cpu_ms_per_op"):
                        # The server's CPU per judged PUT (HTTP, storage, decode, model)
                        # over the bench process's per bare inference: steadier than p50s
                        # when other work shares the cores.
                        entry["trigger_over_bare_cpu_per_op"] = round(
                            trigger["cpu_ms_per_op"] / bare["cpu_ms_per_op"], 3)
                if put:
                    entry["trigger_minus_put_p50_ms"] = round(
                        trigger["p50_ms"] - put["p50_ms"], 3)
                    if bare and all(e.get("cpu_ms_per_op") for e in (trigger, put, bare)):
                        # What judging adds to a plain PUT beyond the inference itself, in
                        # server CPU per op: the cost of the trigger machinery over HTTP.
                        entry["trigger_minus_put_minus_bare_cpu_ms"] = round(
                            trigger["cpu_ms_per_op"] - put["cpu_ms_per_op"]
                            - bare["cpu_ms_per_op"], 3)
                if conventional:
                    entry["conventional_over_trigger_p50"] = round(
                        conventional["p50_ms"] / trigger["p50_ms"], 3)
                    entry["trigger_over_conventional_throughput"] = round(
                        trigger["throughput_ops_s"] / conventional["throughput_ops_s"], 3)
                    entry["goal_trigger_2x_faster_than_conventional_p50"] = (
                        entry["conventional_over_trigger_p50"] >= 2.0)
                    entry["conventional_over_trigger_rounds"] = paired(conventional, trigger)
                if hop0:
                    entry["conventional_hop0_over_trigger_p50"] = round(
                        hop0["p50_ms"] / trigger["p50_ms"], 3)
                out[f"{model}/c{clients}/{batching}"] = entry
            bare_litert = by_path.get("bare_litert")
            trigger_litert = by_path.get("trigger_litert")
            entry = {}
            if bare and bare_litert:
                entry["bare_litert_over_bare_p50"] = round(
                    bare_litert["p50_ms"] / bare["p50_ms"], 3)
            if trigger_litert and bare_litert:
                entry["trigger_litert_over_bare_litert_p50"] = round(
                    trigger_litert["p50_ms"] / bare_litert["p50_ms"], 3)
            if trigger_litert and by_path.get("trigger_b8"):
                entry["trigger_litert_over_trigger_b8_p50"] = round(
                    trigger_litert["p50_ms"] / by_path["trigger_b8"]["p50_ms"], 3)
            for over, under in (("bare_litert", "bare"), ("trigger_litert", "trigger_b8")):
                a, b = by_path.get(over), by_path.get(under)
                if a and b and a.get("cpu_ms_per_op") and b.get("cpu_ms_per_op"):
                    entry[f"{over}_over_{under}_cpu_per_op"] = round(
                        a["cpu_ms_per_op"] / b["cpu_ms_per_op"], 3)
            if entry:
                out[f"{model}/c{clients}/litert"] = entry
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    figure, axes = plt.subplots(len(models), 2, figsize=(12, 4.2 * len(models)), squeeze=False)
    colours = {"bare": "#4c72b0", "put": "#937860", "trigger_b8": "#55a868",
               "trigger_b1": "#8fd19e", "conventional": "#c44e52", "conventional_hop0": "#e8a0a2",
               "bare_litert": "#8172b2", "trigger_litert": "#ccb974"}
    for row, model in enumerate(models):
        by_clients = results[model]
        client_counts = list(by_clients)
        paths = [p for p in PATHS if any(p in by_clients[c] for c in by_clients)]
        width = 0.8 / len(paths)
        for column, metric, title in ((0, "p50_ms", "p50 latency (ms)"),
                                      (1, "throughput_ops_s", "throughput (ops/s)")):
            ax = axes[row][column]
            for i, path_name in enumerate(paths):
                xs, ys = [], []
                for j, clients in enumerate(client_counts):
                    entry = by_clients[clients].get(path_name)
                    if entry is not None:
                        xs.append(j + (i - (len(paths) - 1) / 2) * width)
                        ys.append(entry[metric])
                bars = ax.bar(xs, ys, width, label=path_name, color=colours[path_name])
                ax.bar_label(bars, fmt="%.1f", fontsize=7)
            ax.set_xticks(range(len(client_counts)))
            ax.set_xticklabels([f"{c} client{'s' if int(c) > 1 else ''}" for c in client_counts])
            ax.set_title(f"{model}: {title}")
            ax.legend(fontsize=8)
    figure.suptitle("bare inference vs PUT judged by a trigger (batching b8 / b1) vs "
                    "PUT + webhook event + GET + classify + tag (conventional; _hop0: "
                    "no event, hop = 0)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def print_table(results: dict[str, Any], reference: dict[str, Any]) -> None:
    print(f"\n{'model':12} {'clients':>7} {'path':17} {'p50 ms':>9} {'p99 ms':>9} "
          f"{'ops/s':>8}  extra")
    for model, by_clients in results.items():
        for clients, by_path in by_clients.items():
            for path_name, entry in by_path.items():
                extra = ""
                if "batch_size_mean" in entry:
                    extra = f"batch mean {entry['batch_size_mean']} max {entry['batch_size_max']}"
                if "stage_p50_ms" in entry:
                    extra = " ".join(f"{k} {v:.2f}" for k, v in entry["stage_p50_ms"].items())
                if "cpu_ms_per_op" in entry:
                    extra += f" cpu {entry['cpu_ms_per_op']:.2f} ms/op"
                if "error_count" in entry:
                    extra += f" ERRORS {entry['error_count']}: {entry['errors'][0]}"
                print(f"{model:12} {clients:>7} {path_name:17} {entry['p50_ms']:9.2f} "
                      f"{entry['p99_ms']:9.2f} {entry['throughput_ops_s']:8.1f}  {extra}")
        ref = reference.get(model)
        if ref:
            print(f"{model:12} {'-':>7} {'bare batch ' + str(ref['batch_size']):17} "
                  f"{ref['batch_p50_ms']:9.2f} {'':9} {ref['throughput_images_s']:8.1f}  "
                  "(one thread, one batch of 8 per call)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="shapes,mobilenetv2")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--paths", default="",
                        help=f"some of {','.join(PATHS)} (default: all of the --runtimes)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help="litert adds bare_litert and trigger_litert to the default paths")
    parser.add_argument("--requests", type=int, default=0,
                        help="ops per path and client count (default: 300 shapes, 120 mnv2)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="the paths run interleaved, order rotated each round")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--shapes-epochs", type=int, default=3)
    parser.add_argument("--durable", action="store_true",
                        help="fsync commits (default: --volatile, as the trigger tests)")
    parser.add_argument("--quick", action="store_true", help="fewer requests, 2 rounds")
    parser.add_argument("--pause", action="store_true",
                        help="print the server pid and wait for Enter before measuring "
                             "(attach py-spy)")
    parser.add_argument("--output-dir", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    client_counts = [int(c) for c in args.clients.split(",")]
    runtimes = [r for r in args.runtimes.split(",") if r]
    assert set(runtimes) <= set(RUNTIMES), f"runtimes are {RUNTIMES}"
    paths = [p for p in args.paths.split(",") if p] or [
        p for p in PATHS if "litert" in runtimes or p not in LITERT_PATHS]
    assert set(paths) <= set(PATHS), f"paths are {PATHS}"
    if any(p in LITERT_PATHS for p in paths) and "litert" not in runtimes:
        runtimes.append("litert")
    if args.quick:
        args.rounds = min(args.rounds, 2)

    import boto3
    from botocore.config import Config

    load_before = os.getloadavg()
    started = time.time()
    # ``bare`` runs with TensorFlow's threads sized as squall serve sizes them (one
    # intra-op and one inter-op thread: docs/triggers.md, "Concurrency"), before any op.
    configure_tensorflow_threads(1, 1)
    print("building models and images ...", flush=True)
    workloads = []
    for model in models:
        if model == "shapes":
            workloads.append(shapes_workload(args.images, args.shapes_epochs))
        elif model == "mobilenetv2":
            workloads.append(mobilenet_workload(args.images))
        else:
            raise SystemExit(f"unknown model {model!r}")
    classifiers = {w.name: LocalClassifier(w) for w in workloads}
    litert_classifiers = {w.name: LocalClassifier(w, "litert") for w in workloads} \
        if "bare_litert" in paths else {}

    results: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    receiver = EventReceiver()
    server_args = ("--webhook", f"{WEBHOOK_ID}={receiver.url}")
    with tempfile.TemporaryDirectory(prefix="squall-ml-bench-") as data_dir, ServerProcess(
        Path(data_dir), access_key=ACCESS_KEY, secret_key=SECRET_KEY,
        extra_args=server_args if args.durable else (*server_args, "--volatile"),
    ) as server:
        s3 = boto3.client(
            "s3", endpoint_url=server.url, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        setup_server(server, workloads, s3, runtimes)
        if args.pause:
            input(f"server pid {server.process.pid if server.process else '?'}; Enter to go ")
        for workload in workloads:
            bench = Bench(server, workload, classifiers[workload.name], s3, receiver,
                          litert_classifiers.get(workload.name))
            default = 300 if workload.name == "shapes" else 120
            count = args.requests or default
            if args.quick:
                count = max(16, count // 3)
            per_round = max(1, count // args.rounds)
            if "trigger_litert" in paths:
                bench.wait_for_litert()
            # Warm-up: loads the model in the server for each function, traces decoders.
            for path_name in paths:
                bench.run(path_name, 16, 1, Samples())
            print(f"{workload.name}: {len(workload.images)} images, "
                  f"{statistics.fmean(len(i) for i in workload.images) / 1024:.1f} KiB mean, "
                  f"model {len(workload.model_bytes) / 1e6:.1f} MB; {per_round * args.rounds} "
                  f"ops per path and client count", flush=True)
            results[workload.name] = {}
            for clients in client_counts:
                samples = {p: Samples() for p in paths}
                for round_index in range(args.rounds):
                    shift = round_index % len(paths)
                    for path_name in paths[shift:] + paths[:shift]:
                        into = samples[path_name]
                        first = len(into.latencies_s)
                        bench.run(path_name, per_round, clients, into)
                        if len(into.latencies_s) > first:
                            into.round_p50s_s.append(statistics.median(into.latencies_s[first:]))
                results[workload.name][str(clients)] = {p: summary(s) for p, s in samples.items()}
            if "bare" in paths:
                reference[workload.name] = bench.bare_batched(max(4, count // 16), 8)
        server_log_tail = server.output()[-2000:]
    receiver.close()

    output = {
        "benchmark": "ml_pipeline",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "host": {"platform": platform.platform(), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "loadavg_before": load_before,
                 "loadavg_after": os.getloadavg()},
        "settings": {"rounds": args.rounds, "images": args.images, "durable": args.durable,
                     "runtimes": runtimes, "litert_threads": limits.litert_threads_default,
                     "shapes_epochs": args.shapes_epochs, "batching": BATCHING,
                     "notification_hop": (
                         "conventional: real (squall serve --webhook to a threaded "
                         "http.server receiver in the benchmark process; the client waits "
                         "for its key's event, matched on key + eTag); conventional_hop0: "
                         "emulated as zero cost"),
                     "webhook_receiver": {"posts": receiver.posts,
                                          "duplicates": receiver.duplicates,
                                          "unexpected": receiver.unexpected},
                     "http": "presigned URLs, one keep-alive http.client connection per client "
                             "thread"},
        "results": results,
        "bare_batched_reference": reference,
        "ratios": ratios(results),
        "elapsed_s": round(time.time() - started, 1),
    }
    if any("error_count" in e for m in results.values() for c in m.values() for e in c.values()):
        output["server_log_tail"] = server_log_tail
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = out_dir / f"ml_pipeline-{stamp}.json"
    json_path.write_text(json.dumps(output, indent=2) + "\n")
    png_path = out_dir / f"ml_pipeline-{stamp}.png"
    plot(results, png_path)
    print_table(results, reference)
    print("\nratios:")
    for name, entry in output["ratios"].items():
        print(f"  {name}: {entry}")
    print(f"\nload average before {load_before}, after {os.getloadavg()}")
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
