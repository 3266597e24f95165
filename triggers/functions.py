"""The function registry and the two kinds of function: tensorflow and python.

Rules and theory of operation:

* Definitions are objects in the store's system bucket ``.squall`` (a name no S3 client
  can create: it starts with a dot) under ``functions/NAME``: they are persisted,
  versioned and replicated like any object, through ``storage.api`` only. A running
  function is built for one definition version and cached by (name, version id); a new
  PUT of the definition takes effect at the next write, with no invalidation protocol.
  The replaced (or removed) version is retired: no new request reaches it, and it is
  closed once its batches end (bounded: ``limits.trigger_retired_functions_max``).
* Per write, ``Registry.function`` checks the store's change counter of the system
  bucket (``StorageClient.change_count``, no I/O) and looks the definition's version up
  again only when it changed: a definition PUT bumps it before it is acknowledged, so
  the next write after the acknowledgement sees the new version (see
  ``storage.engine.writer.ChangeCounters`` for why that is never stale).
* A ``tensorflow`` function classifies through an adaptive ``Batcher`` (up to
  ``batching.max_concurrent_batches`` batches at once, all functions together bounded by
  the process's ``InferencePool``); each batch resolves the model object's current
  version through the ``ModelCache`` when it starts and runs decoding and inference on
  a pool thread; the event loop never waits on TensorFlow, except for a batch measured
  to be short (``limits.trigger_inline_batch_ms_max``) while no other batch runs, which
  is cheaper inline than the two thread wake-ups of the hop (``_runs_inline``).
  TensorFlow's own thread pools are sized once, before its first use
  (``configure_tensorflow_threads``): with one intra-op thread per batch, concurrent
  batches share the cores without oversubscribing them (measured: docs/triggers.md,
  "Concurrency").
* With ``runtime: litert`` the model runs on the version's LiteRT interpreters
  (``triggers.litert``: converted and verified once per version, in a background
  thread; TensorFlow judges meanwhile) and decoding stays a compiled TensorFlow graph; a
  version LiteRT cannot run faithfully runs on TensorFlow, and each prediction says
  which runtime made it. An interpreter that fails on a real batch after verification
  makes the version fall back too, and that batch is re-run on TensorFlow.
* A ``python`` function is ``package.module:callable``, imported at registration (an
  import error is a registration error) and called as ``callable(event, store)`` with
  the ``api.WriteEvent`` (zero-copy views of the body) and the ``api.StorageClient``.
  It may be a coroutine function (run on the event loop: it must not block) or a plain
  function (run in a thread). It returns a label, a (label, score) pair, a mapping with
  'label' (and optionally 'score', 'details'), or a ``Prediction``.
* A body a function cannot judge (undecodable image, wrong tensor shape, an exception in
  a python function) is ``FunctionFailed``; the hook applies the definition's
  ``on_error`` (reject, by default, or store unjudged).
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import functools
import hashlib
import importlib
import inspect
import json
import logging
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.api import (
    CHANGES_OBJECTS,
    SYSTEM_BUCKET,
    SYSTEM_OWNER_ID,
    BucketAlreadyOwnedByYou,
    Histogram,
    InvalidArgument,
    NoSuchKey,
    PutSpec,
    StorageClient,
    WriteEvent,
    limits,
)
from triggers.actions import Prediction
from triggers.batching import Batcher, InferencePool
from triggers.config import (
    FunctionDefinition,
    InputSpec,
    definition_from_document,
    parse_definition,
)
from triggers.devices import (
    CPU_DEVICE,
    CPU_NAME,
    DEFAULT_SETTINGS,
    Placement,
    TensorFlowSettings,
    configure_tensorflow,
)
from triggers.litert import LiteRTFailed, runtime_of
from triggers.models import LabelCache, LoadedModel, ModelCache, read_object, resolve

_log = logging.getLogger(__name__)

FUNCTIONS_PREFIX = "functions/"


class FunctionFailed(Exception):
    """A function could not judge a body (bad input, or its own error)."""


# --- TensorFlow's threads and devices (triggers.devices) ------------------------------------


def configure_tensorflow_threads(intra_op_threads: int, inter_op_threads: int) -> None:
    """Size TensorFlow's thread pools once per process, before its first op (imports
    TensorFlow: call from a worker thread), with the default device settings
    (``triggers.devices.configure_tensorflow``). Too late is logged."""
    configure_tensorflow(TensorFlowSettings(intra_op_threads, inter_op_threads))


# --- input decoding (in a worker thread) -------------------------------------------------


@functools.lru_cache(maxsize=32)
def _image_decoder(height: int, width: int, channels: int) -> Callable[[Any], Any]:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def decode(data: Any) -> Any:
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        return tf.image.resize(tf.cast(image, tf.float32), (height, width))

    return decode


def _decode_image(data: bytes, spec: InputSpec, input_shape: tuple[int, ...]) -> Any:
    import tensorflow as tf

    if spec.size is not None:
        height, width = spec.size
    elif len(input_shape) == 3:
        height, width = input_shape[0], input_shape[1]
    else:
        raise FunctionFailed(f"the model's input {input_shape} is not an image: give input.size")
    channels = spec.channels or (input_shape[2] if len(input_shape) == 3 else 3)
    try:
        with tf.device(CPU_DEVICE):  # decode ops have CPU kernels only (see _image_pipeline)
            image = _image_decoder(height, width, channels)(tf.constant(data)).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise FunctionFailed(f"not a decodable image: {error.message.splitlines()[0]}") from None
    return image


_NPY_MAGIC = b"\x93NUMPY"


def decode_npy(view: memoryview | bytes) -> Any:
    """An .npy body as an array that VIEWS the body (no copy); object arrays refused."""
    import numpy as np

    view = memoryview(view).cast("B")
    if bytes(view[:6]) != _NPY_MAGIC or len(view) < 10:
        raise FunctionFailed("not an .npy file")
    major = view[6]
    if major == 1:
        header_start, header_length = 10, struct.unpack_from("<H", view, 8)[0]
    elif major in (2, 3) and len(view) >= 12:
        header_start, header_length = 12, struct.unpack_from("<I", view, 8)[0]
    else:
        raise FunctionFailed(f"unsupported .npy version {major}")
    try:
        header = ast.literal_eval(
            bytes(view[header_start:header_start + header_length]).decode("latin-1"))
        dtype = np.dtype(header["descr"])
        shape = tuple(header["shape"])
        fortran = bool(header["fortran_order"])
    except (ValueError, SyntaxError, KeyError, TypeError) as error:
        raise FunctionFailed(f"bad .npy header: {error}") from None
    if dtype.hasobject:
        raise FunctionFailed(".npy object arrays are refused")
    count = int(np.prod(shape))
    offset = header_start + header_length
    if len(view) - offset != count * dtype.itemsize:
        raise FunctionFailed(f".npy body has {len(view) - offset} bytes, shape {shape} needs "
                             f"{count * dtype.itemsize}")
    array = np.frombuffer(view, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran else "C")


def _decode(body: memoryview | bytes, spec: InputSpec, input_shape: tuple[int, ...]) -> Any:
    import numpy as np

    if len(body) > limits.trigger_input_bytes_max:
        raise FunctionFailed(f"bodies over {limits.trigger_input_bytes_max} bytes are not "
                             "decoded")
    if spec.format == "npy":
        array = decode_npy(body).astype(np.float32) * spec.scale + spec.offset
    else:
        array = _decode_image(bytes(body), spec, input_shape) * spec.scale + spec.offset
    if array.shape != input_shape:
        if array.size != int(np.prod(input_shape)):
            raise FunctionFailed(f"input of shape {array.shape} does not fit the model's "
                                 f"input {input_shape}")
        array = array.reshape(input_shape)
    return array


def _image_size(spec: InputSpec, input_shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(height, width, channels) an image body decodes to, or None when not an image model."""
    if spec.size is not None:
        height, width = spec.size
    elif len(input_shape) == 3:
        height, width = input_shape[0], input_shape[1]
    else:
        return None
    return height, width, spec.channels or (input_shape[2] if len(input_shape) == 3 else 3)


def _image_pipeline(
    model: LoadedModel, spec: InputSpec, device: str | None = None, with_model: bool = True
) -> Callable[[Any], Any] | None:
    """ONE compiled graph for a batch of image bodies: decode each, resize, scale, offset
    (pinned to the CPU), predict (under ``device``; None: wherever TensorFlow places it):
    one dispatch per batch instead of one per body plus one for the model. Without the
    model (another runtime predicts), the graph ends with the input batch. Cached on the
    loaded model per input spec and device; None where the per-body path must decide
    (not an image model, or a decoded size that does not fit the model's input)."""
    import numpy as np

    cache_key = (spec, device) if with_model else (spec, "decode")
    if cache_key in model.pipelines:
        return model.pipelines[cache_key]  # type: ignore[no-any-return]
    size = _image_size(spec, model.input_shape)
    pipeline = None
    if size is not None and int(np.prod(size)) == int(np.prod(model.input_shape)):
        import tensorflow as tf

        height, width, channels = size
        predict, input_shape = model.predict, model.input_shape

        def decode(data: Any) -> Any:
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
            return tf.image.resize(tf.cast(image, tf.float32), (height, width))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def traced(bodies: Any) -> Any:
            # The input stage on the CPU: TensorFlow's image decode ops have no GPU
            # kernels, and resizing and scaling beside them keep each body on the host
            # (left unpinned, the placer may put the resize on the GPU and the decode on
            # the CPU inside map_fn's loop: copies per body); one float batch then
            # crosses to the model's device.
            with tf.device(CPU_DEVICE):
                images = tf.map_fn(decode, bodies, fn_output_signature=tf.TensorSpec(
                    size, tf.float32))
                images = tf.reshape(images * spec.scale + spec.offset, (-1, *input_shape))
            if not with_model:
                return images
            if device is None:
                return predict(images)
            with tf.device(device):
                return predict(images)

        # Its one concrete function: calling it skips tf.function's per-call signature
        # binding and cache lookup (measured: ~150-200 us of ~800 us per call of the
        # shapes model; docs/benchmarks.md). The signature is fixed, so nothing retraces.
        pipeline = traced.get_concrete_function()
    model.pipelines[cache_key] = pipeline
    return pipeline


def infer(
    model: LoadedModel,
    spec: InputSpec,
    bodies: Sequence[memoryview | bytes],
    predict: Callable[[Any], Any] | None = None,
    device: str | None = None,
) -> list[Any]:
    """One probability row per body, or the ``FunctionFailed`` of a body that cannot be
    judged (its neighbours are still judged). What a tensorflow function runs in its
    worker thread, and what ``bench/ml_pipeline.py`` calls as bare inference.
    ``predict``: another runtime's (LiteRT's) float32 [batch, *input] -> [batch, outputs]
    instead of the model's TensorFlow one; images are then decoded by a compiled
    decode-only graph and the batch handed to it. ``device``: where TensorFlow runs the
    model ('/device:GPU:0'; None: where TensorFlow places it); decoding is on the CPU."""
    import numpy as np

    if spec.format == "image" and all(
            len(body) <= limits.trigger_input_bytes_max for body in bodies):
        pipeline = _image_pipeline(model, spec, device, with_model=predict is None)
        if pipeline is not None:
            import tensorflow as tf

            try:
                outputs = pipeline(tf.constant([bytes(b) for b in bodies]))
            except tf.errors.InvalidArgumentError:
                pass  # a body that is not an image: each body is decoded alone below
            else:
                if predict is not None:
                    outputs = predict(outputs.numpy())
                return list(np.asarray(outputs))
    results: list[Any] = []
    inputs = []
    for body in bodies:
        try:
            inputs.append(_decode(body, spec, model.input_shape))
            results.append(None)
        except FunctionFailed as error:
            results.append(error)
    if inputs:
        batch = np.stack(inputs).astype(np.float32, copy=False)
        rows = iter(np.asarray(_predict_on(predict or model.predict, batch, device)))
        results = [next(rows) if result is None else result for result in results]
    return results


def _predict_on(predict: Callable[[Any], Any], batch: Any, device: str | None) -> Any:
    """``predict(batch)``, under ``device`` when one is given (LiteRT ignores it)."""
    if device is None:
        return predict(batch)
    import tensorflow as tf

    with tf.device(device):
        return predict(batch)


def _top_k(probabilities: Any, labels: Sequence[str], k: int) -> tuple[tuple[str, float], ...]:
    order = probabilities.argsort()[::-1][:k]
    return tuple((labels[i], float(probabilities[i])) for i in order)


# --- functions -----------------------------------------------------------------------------


class TensorFlowFunction:
    def __init__(
        self,
        definition: FunctionDefinition,
        models: ModelCache,
        labels: LabelCache,
        pool: InferencePool,
        tensorflow: TensorFlowSettings = DEFAULT_SETTINGS,
    ) -> None:
        assert definition.kind == "tensorflow" and definition.model is not None
        self.definition = definition
        self._models = models
        self._labels = labels
        self._pool = pool
        self._tensorflow = tensorflow
        # Where the model runs (set by the first batch, which configures TensorFlow for
        # the process if nothing did yet); a placement with an error refuses every batch.
        self.placement: Placement | None = None
        # Each batch's inference time (``Prediction.inference_ms``), observed on the loop.
        self.inference_time = Histogram()
        # Batch timing (``_measured``): the model measured, its moving average, and the
        # model whose batches may run inline (None: none yet, or too slow).
        self._measured_model: LoadedModel | None = None
        self._batch_ms = 0.0
        self._inline_model: LoadedModel | None = None
        batching = definition.batching
        self.batcher = Batcher(
            definition.name,
            self._run_batch,
            max_batch_size=batching.max_batch_size,
            max_queue_delay_ms=batching.max_queue_delay_ms,
            queue_length_max=batching.queue_length_max,
            max_concurrent_batches=batching.max_concurrent_batches,
            pool=pool,
        )

    async def predict(self, event: WriteEvent) -> tuple[Prediction, int]:
        result: tuple[Prediction, int] = await self.batcher.submit(event)
        return result

    async def close(self) -> None:
        """Refuse new requests, fail the queued ones, wait for the running batches (the
        registry closes a retired version only once it is idle: nothing fails then)."""
        await self.batcher.close()

    async def _label_names(self, model: LoadedModel) -> tuple[str, ...]:
        labels = self.definition.labels
        if labels is None:
            return tuple(str(i) for i in range(model.output_size))
        names = await self._labels.get(labels) if not isinstance(labels, tuple) else labels
        if len(names) != model.output_size:
            raise InvalidArgument(f"function {self.definition.name!r}: the model has "
                                  f"{model.output_size} outputs but {len(names)} labels")
        return names

    async def _run_batch(self, events: Sequence[WriteEvent]) -> list[Prediction | Exception]:
        assert self.definition.model is not None
        loop = asyncio.get_running_loop()
        if self.placement is None:  # TensorFlow is configured before any model loads
            self.placement = await loop.run_in_executor(
                self._pool.executor, configure_tensorflow, self._tensorflow)
        if self.placement.device is None:  # --tensorflow-device gpu on a host without one
            return [FunctionFailed(self.placement.error) for _ in events]
        model = await self._models.get(self.definition.model)
        labels = await self._label_names(model)
        if self._runs_inline(model, events):
            results = self._infer(model, labels, events)
        else:
            results = await loop.run_in_executor(self._pool.executor, self._infer, model,
                                                 labels, events)
        observe_inference(self.inference_time, results)
        return results

    def _runs_inline(self, model: LoadedModel, events: Sequence[WriteEvent]) -> bool:
        """Whether this batch runs on the event loop thread instead of a pool thread.

        The hop to a pool thread and back costs two thread wake-ups, each a scheduler
        delay on a busy machine: more than a whole inference of a small model. So a batch
        runs inline when this model's batches were measured (``_infer``) to take at most
        ``limits.trigger_inline_batch_ms_max``, no other batch of any function is running
        (only this batch holds a pool slot: inline work would delay theirs) and none waits
        (it could start on a free slot meanwhile), and its bodies are small (a large
        body's decoding was not what was measured). For a small model the hop buys little
        parallelism anyway: TensorFlow's Python dispatch holds the GIL for most of it. A new model
        version is measured on a thread first (its graphs are traced on first use)."""
        return (
            self._inline_model is model
            and self._pool.busy <= 1
            and self.batcher.queued == 0
            and sum(event.size_bytes for event in events) <= limits.trigger_inline_body_bytes_max
        )

    def _infer(
        self, model: LoadedModel, labels: Sequence[str], events: Sequence[WriteEvent]
    ) -> list[Prediction | Exception]:
        began_s = time.perf_counter()
        results = self._predictions(model, labels, events)
        self._measured(model, (time.perf_counter() - began_s) * 1000)
        return results

    def _measured(self, model: LoadedModel, batch_ms: float) -> None:
        """A moving average of this model's batch times decides ``_runs_inline``. Pool
        threads of one function may race here: each write is one reference or float, and
        a stale read only picks the thread once more or inline once more."""
        if self._measured_model is not model:
            self._measured_model, self._batch_ms, self._inline_model = model, batch_ms, None
            return
        self._batch_ms += (batch_ms - self._batch_ms) / 8
        fast = self._batch_ms <= limits.trigger_inline_batch_ms_max
        self._inline_model = model if fast else None

    def _predictions(
        self, model: LoadedModel, labels: Sequence[str], events: Sequence[WriteEvent]
    ) -> list[Prediction | Exception]:
        assert self.placement is not None and self.placement.device is not None
        device = self.placement.device
        predict, runtime = select_runtime(model, self.definition)
        bodies = [event.body_view() for event in events]
        began_s = time.perf_counter()
        try:
            rows = infer(model, self.definition.input, bodies, predict,
                         device if predict is None else None)
        except LiteRTFailed:
            # The version fell back to TensorFlow for good (logged, reason in its status):
            # this batch is judged there, so its writes do not fail.
            began_s = time.perf_counter()
            rows = infer(model, self.definition.input, bodies, device=device)
            runtime = "tensorflow"
        inference_ms = (time.perf_counter() - began_s) * 1000
        # LiteRT runs on the CPU (and falls back to TensorFlow where a GPU is visible).
        device_name = self.placement.device_name if runtime == "tensorflow" else CPU_NAME
        results: list[Prediction | Exception] = []
        for row in rows:
            if isinstance(row, Exception):
                results.append(row)
            else:
                top = _top_k(row, labels, self.definition.top_k)
                results.append(Prediction(top[0][0], top[0][1], top, model.version_id,
                                          runtime=runtime, device=device_name,
                                          inference_ms=inference_ms))
        return results


def select_runtime(
    model: LoadedModel, definition: FunctionDefinition
) -> tuple[Callable[[Any], Any] | None, str]:
    """(the ``predict`` to hand ``infer``, the runtime's name) for one batch: LiteRT when
    the definition asks for it and the version runs on it (the first call starts its
    conversion in the background, see ``triggers.litert``), else TensorFlow (None)."""
    if definition.runtime == "litert":
        runtime = runtime_of(model)
        threads = definition.litert_threads
        if runtime.ready(threads):
            return functools.partial(runtime.predict, threads=threads), "litert"
    return None, "tensorflow"


def function_status(
    definition: FunctionDefinition, models: ModelCache, placement: Placement | None = None
) -> dict[str, Any]:
    """What runs a tensorflow function now: each loaded version of its model (format,
    shapes, LiteRT state and fallback reason) with the runtime and the device that judge
    with it, and the process's device placement (``triggers.devices``: requested, chosen
    or the error that refuses every batch, GPUs, GPU memory)."""
    assert definition.model is not None
    versions = []
    for status in models.status(definition.model):
        litert = status.get("litert", {})
        in_use = "litert" if definition.runtime == "litert" and litert.get(
            "state") == "litert" else "tensorflow"
        entry = {**status, "runtime": in_use}
        if placement is not None and placement.device is not None:
            entry["device"] = placement.device_name if in_use == "tensorflow" else CPU_NAME
        versions.append(entry)
    shown: dict[str, Any] = {"runtime": definition.runtime, "loaded_versions": versions}
    if placement is not None:
        shown["device"] = placement.status()
    return shown


def observe_inference(histogram: Histogram, results: Sequence[object]) -> None:
    """One observation per batch: its predictions share the batch's time (a batch
    whose every body failed to decode has none)."""
    for result in results:
        if isinstance(result, Prediction) and result.inference_ms is not None:
            histogram.observe(result.inference_ms / 1000)
            return


def import_entry_point(entry_point: str) -> Callable[..., Any]:
    module_name, _, attribute = entry_point.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise InvalidArgument(f"entry_point: cannot import {entry_point!r}: {error}") from None
    if not callable(target):
        raise InvalidArgument(f"entry_point: {entry_point!r} is not callable")
    return target  # type: ignore[no-any-return]


def as_prediction(result: Any) -> Prediction:
    if isinstance(result, Prediction):
        return result
    if isinstance(result, str):
        return Prediction(result, 1.0)
    if isinstance(result, tuple) and len(result) == 2:
        return Prediction(str(result[0]), float(result[1]))
    if isinstance(result, Mapping) and "label" in result:
        score = result.get("score")
        return Prediction(str(result["label"]), None if score is None else float(score),
                          details=dict(result.get("details", {})))
    raise FunctionFailed(f"returned {type(result).__name__}: expected a label, (label, "
                         "score), a mapping with 'label', or a Prediction")


class PythonFunction:
    def __init__(self, definition: FunctionDefinition, storage: StorageClient) -> None:
        assert definition.kind == "python" and definition.entry_point is not None
        self.definition = definition
        self._storage = storage
        self._callable = import_entry_point(definition.entry_point)
        self.inference_time = Histogram()  # each call's, observed on the loop

    async def predict(self, event: WriteEvent) -> tuple[Prediction, int]:
        began_s = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(self._callable):
                result = await self._callable(event, self._storage)
            else:
                work = asyncio.ensure_future(asyncio.to_thread(self._callable, event,
                                                               self._storage))
                try:
                    result = await asyncio.shield(work)
                except asyncio.CancelledError:
                    await asyncio.wait({work})  # it reads the body views until it returns
                    raise
        except (FunctionFailed, InvalidArgument):
            raise
        except Exception as error:  # the user's code: its failure is a verdict, logged
            _log.warning("function %s raised", self.definition.name, exc_info=True)
            raise FunctionFailed(f"{type(error).__name__}: {error}") from error
        prediction = as_prediction(result)
        if prediction.inference_ms is None:
            elapsed_ms = (time.perf_counter() - began_s) * 1000
            prediction = dataclasses.replace(prediction, inference_ms=elapsed_ms)
        observe_inference(self.inference_time, (prediction,))
        return prediction, 1

    async def close(self) -> None:
        """Nothing to release."""


Function = TensorFlowFunction | PythonFunction


# --- the registry -----------------------------------------------------------------------


@dataclass(slots=True)
class _Running:
    """A running function, the definition version it was built for, and the system
    bucket's change count read before that version was looked up."""

    version_id: str
    function: Function
    change_count: int | None


class Registry:
    """The running functions, one per registered name: the one built for the
    definition's current version. A version that is replaced or removed is RETIRED: it
    gets no new request (``function`` never returns it again) and its batcher is closed
    once its queued and running batches have ended (``Batcher.wait_idle``), so no request
    fails because its version was retired under it. At most
    ``limits.trigger_retired_functions_max`` retired versions wait for their batches at
    once; retiring one more first waits for the oldest to end (bounded by its batches,
    which are bounded by the judge timeout)."""

    def __init__(
        self,
        storage: StorageClient,
        models: ModelCache,
        labels: LabelCache,
        pool: InferencePool,
        tensorflow: TensorFlowSettings = DEFAULT_SETTINGS,
    ) -> None:
        self._storage = storage
        self._models = models
        self._labels = labels
        self._pool = pool
        self._tensorflow = tensorflow
        self._placement: Placement | None = None  # for show: set by its first call
        self._functions: dict[str, _Running] = {}
        # Retired versions whose batches are still running, oldest first, each with the
        # task that closes it once they end (it removes itself from here).
        self._retiring: dict[TensorFlowFunction, asyncio.Task[None]] = {}
        self.retired_closed = 0  # retired versions closed so far (show, tests)

    def counts(self) -> dict[str, int]:
        """How many functions run, how many retired versions still drain, how many
        retired versions were closed (``squall function show``: 'registry')."""
        return {"running": len(self._functions), "retiring": len(self._retiring),
                "retired_closed": self.retired_closed}

    def running_batchers(self) -> list[tuple[str, Batcher]]:
        """(name, batcher) of each running tensorflow function (metrics)."""
        return [(name, running.function.batcher) for name, running in self._functions.items()
                if isinstance(running.function, TensorFlowFunction)]

    def running_functions(self) -> list[tuple[str, Function]]:
        """(name, function) of each running function (metrics)."""
        return [(name, running.function) for name, running in self._functions.items()]

    async def start(self) -> None:
        try:
            await self._storage.create_bucket(SYSTEM_BUCKET, SYSTEM_OWNER_ID)
        except BucketAlreadyOwnedByYou:
            pass  # made by an earlier start

    def _key(self, name: str) -> str:
        return FUNCTIONS_PREFIX + name

    async def _validate(self, definition: FunctionDefinition) -> None:
        if definition.kind == "python":
            assert definition.entry_point is not None
            import_entry_point(definition.entry_point)
            return
        assert definition.model is not None
        try:
            await resolve(self._storage, definition.model)
        except InvalidArgument as error:
            raise InvalidArgument(f"model: {error} (upload the model first)") from None
        if definition.labels is not None and not isinstance(definition.labels, tuple):
            try:
                await resolve(self._storage, definition.labels)
            except InvalidArgument as error:
                raise InvalidArgument(f"labels: {error}") from None

    async def put(self, name: str, raw: bytes) -> dict[str, Any]:
        definition = parse_definition(name, raw)
        await self._validate(definition)
        existing = await self.list_names()
        if name not in existing and len(existing) >= limits.functions_max:
            raise InvalidArgument(f"at most {limits.functions_max} functions can be registered")
        document = json.dumps(definition.to_document(), sort_keys=True).encode()
        async with self._storage.open_upload(SYSTEM_BUCKET, self._key(name)) as upload:
            await upload.write(document)
            version = await upload.commit(PutSpec(etag=hashlib.md5(document).hexdigest(),
                                                  content_type="application/json"))
        return {**definition.to_document(), "version_id": version.version_id}

    async def _document(self, name: str) -> tuple[str, dict[str, Any]]:
        try:
            version = await self._storage.get_version(SYSTEM_BUCKET, self._key(name))
        except NoSuchKey:
            raise NoSuchKey(f"no function named {name!r}") from None
        if version.is_delete_marker:
            raise NoSuchKey(f"no function named {name!r}")
        body = await read_object(self._storage, version, limits.function_definition_bytes_max)
        return version.version_id, json.loads(body)

    async def show(self, name: str) -> dict[str, Any]:
        """The stored definition, its version id and, for a tensorflow function, its
        ``status`` (the loaded model versions, what runs them and on which device:
        ``function_status``) and, while the function of that version runs, its
        batcher's counts ('stats'); and this process's registry counts ('registry':
        ``counts``). The first show of a tensorflow function configures TensorFlow for
        the process (as its first batch would), so the device and its error are known."""
        version_id, document = await self._document(name)
        shown = {**document, "version_id": version_id}
        if document.get("kind") == "tensorflow":
            definition = definition_from_document(name, document)
            shown["status"] = function_status(definition, self._models,
                                              await self._device_placement())
        running = self._functions.get(name)
        if running is not None and running.version_id == version_id and isinstance(
                running.function, TensorFlowFunction):
            stats = running.function.batcher.stats
            shown["stats"] = {"batches": stats.batches, "requests": stats.requests,
                              "largest_batch": stats.largest_batch,
                              "running_batches_max": stats.running_max}
        shown["registry"] = self.counts()
        return shown

    async def _device_placement(self) -> Placement:
        if self._placement is None:  # imports TensorFlow: on a pool thread, once
            self._placement = await asyncio.get_running_loop().run_in_executor(
                self._pool.executor, configure_tensorflow, self._tensorflow)
        return self._placement

    async def list_names(self) -> list[str]:
        page = await self._storage.list_objects(SYSTEM_BUCKET, prefix=FUNCTIONS_PREFIX,
                                                max_keys=limits.functions_max)
        return [o.key[len(FUNCTIONS_PREFIX):] for o in page.objects]

    async def delete(self, name: str) -> None:
        await self._document(name)  # NoSuchKey when there is none
        await self._storage.delete_object(SYSTEM_BUCKET, self._key(name))
        self._retire_name(name)  # (another node's delete is seen by the next lookup)

    async def function(self, name: str) -> Function:
        """The running function for the definition's current version."""
        # Read BEFORE the lookup: a definition written after this read changes it.
        change_count = self._storage.change_count(SYSTEM_BUCKET, CHANGES_OBJECTS)
        cached = self._functions.get(name)
        if cached is not None and change_count is not None and (
                cached.change_count == change_count):
            return cached.function
        try:
            version = await self._storage.get_version(SYSTEM_BUCKET, self._key(name))
        except NoSuchKey:
            version = None
        if version is None or version.is_delete_marker:
            self._retire_name(name)
            raise NoSuchKey(f"no function named {name!r}")
        # Every await may let another lookup install a version: decide on what runs NOW.
        current = self._current(name, version.version_id, change_count)
        if current is not None:
            return current.function
        version_id, document = await self._document(name)
        definition = definition_from_document(name, document)
        function: Function
        if definition.kind == "tensorflow":
            function = TensorFlowFunction(definition, self._models, self._labels, self._pool,
                                          self._tensorflow)
        else:
            function = PythonFunction(definition, self._storage)
        await self._retirement_room()
        current = self._current(name, version_id, change_count)
        if current is not None:  # built meanwhile by another lookup: this one never ran
            await function.close()
            return current.function
        self._retire_name(name)  # no await from the room check to here: the bound holds
        self._functions[name] = _Running(version_id, function, change_count)
        return function

    def _current(self, name: str, version_id: str, change_count: int | None) -> _Running | None:
        """The running entry to use instead of building one: the same version, or one
        installed by a lookup that began after this one's (a newer change count)."""
        current = self._functions.get(name)
        if current is None:
            return None
        if current.version_id == version_id:
            if change_count is not None and (current.change_count is None
                                             or current.change_count < change_count):
                current.change_count = change_count
            return current
        if (change_count is not None and current.change_count is not None
                and current.change_count > change_count):
            return current
        return None

    async def _retirement_room(self) -> None:
        """Wait until fewer than ``limits.trigger_retired_functions_max`` retired versions
        are draining (the oldest first)."""
        while len(self._retiring) >= limits.trigger_retired_functions_max:
            oldest = next(iter(self._retiring.values()))
            await asyncio.wait({oldest})

    def _retire_name(self, name: str) -> None:
        """Stop using the running function of ``name`` (if any): a tensorflow function is
        closed once its batches end; a python function holds nothing to close (calls in
        flight keep it alive)."""
        running = self._functions.pop(name, None)
        if running is None or not isinstance(running.function, TensorFlowFunction):
            return
        function = running.function
        if function.batcher.idle:
            task = asyncio.ensure_future(self._close_retired(function))
        else:
            task = asyncio.ensure_future(self._close_when_idle(function))
        self._retiring[function] = task

    async def _close_when_idle(self, function: TensorFlowFunction) -> None:
        await function.batcher.wait_idle()
        await self._close_retired(function)

    async def _close_retired(self, function: TensorFlowFunction) -> None:
        try:
            await function.close()
        finally:
            self._retiring.pop(function, None)
            self.retired_closed += 1

    async def close(self) -> None:
        for task in list(self._retiring.values()):
            task.cancel()
        functions = [r.function for r in self._functions.values()] + list(self._retiring)
        self._functions.clear()
        self._retiring.clear()
        for function in functions:
            await function.close()
