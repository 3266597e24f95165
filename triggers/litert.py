"""The LiteRT runtime (``runtime: litert``): a model version converted once with
``tf.lite.TFLiteConverter`` and run by ``ai_edge_litert`` interpreters, or by TensorFlow
when that cannot be done faithfully.

Rules and theory of operation:

* Per model version, once: the first batch that asks for LiteRT for a version
  (``LiteRTRuntime.ready``) starts a **background conversion thread** and runs on
  TensorFlow itself, as do the batches that come while it converts (a conversion takes
  seconds: MobileNetV2 11-32 s here, more than a judged write may wait, see
  ``limits.trigger_judge_timeout_ms``). At most ``limits.litert_conversions_concurrent_max``
  conversions run at once (each holds a model's graph twice). The thread converts it
  (a Keras model through a SavedModel of its
  inference call, as ``from_keras_model`` does; a SavedModel from its fixed-signature
  serving function), builds an interpreter, and runs
  a **probe batch** (``PROBE_BATCH_SIZE`` rows of deterministic pseudo-random inputs of
  the model's input shape, seed ``PROBE_SEED``) through both LiteRT and TensorFlow. The
  outputs must agree within ``OUTPUT_TOLERANCE_ABS + OUTPUT_TOLERANCE_REL * |tf|``
  (``compare_outputs``). The thread is a daemon: a conversion holds nothing durable, and
  a server that stops must not wait for one.
* Fallback: when ``ai_edge_litert`` is not installed, TensorFlow sees a GPU (LiteRT
  would run on the CPU), the converter refuses the model, the interpreter cannot run it,
  or the probe outputs differ, the version runs on TensorFlow from then on. The reason
  is logged once (WARNING) and kept in ``status()``, which ``squall function show``
  reports; the version is not tried again (a new model version is).
* A failure after verification: an interpreter that raises on a real batch (the probe
  passed) makes the version fall back to TensorFlow the same way (logged once, reason in
  ``status()``), and ``predict`` raises ``LiteRTFailed``: the caller re-runs that batch on
  TensorFlow, so its writes are still judged. A batch that chose LiteRT just before
  another batch's failure gets ``LiteRTFailed`` too. Batches already inside an
  interpreter finish on it (each holds its interpreter); the pools are dropped.
* Interpreters are not thread-safe, so a version keeps a **pool** of them per thread
  count, at most ``limits.litert_interpreters_per_model_max``; a batch borrows one
  exclusively and gives it back. A pool rather than one interpreter per worker thread:
  batches run in asyncio's default executor (up to 32 threads) and every interpreter
  holds its own packed weights and tensor arena, so a pool bounds the memory however
  many threads run batches, and an idle interpreter serves any of them.
* An interpreter keeps the batch size it was last sized for. A batch takes an idle
  interpreter already at its size if there is one (the batcher makes few distinct
  sizes: 1 when load is light, ``max_batch_size`` when heavy), else resizes one
  (``resize_tensor_input`` + ``allocate_tensors``: ~1 ms for MobileNetV2 at a size it
  had before, tens of ms the first time).
* Memory: the flatbuffer once plus once per interpreter (XNNPACK packs the weights per
  interpreter) is what ``memory_bytes`` reports to the ``ModelCache`` budget; tensor
  arenas (activations) are not counted. The conversion's end and each new interpreter
  call ``LoadedModel.memory_grew`` (from their own thread), so the cache re-checks its
  budget then (``triggers.models``).
"""

from __future__ import annotations

import functools
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from storage.api import limits
from triggers.models import LoadedModel

_log = logging.getLogger(__name__)
# Conversions running at once, all versions of all models together.
_conversion_slots = threading.BoundedSemaphore(limits.litert_conversions_concurrent_max)

RUNTIME_NAME = "litert"
PROBE_BATCH_SIZE = 2  # rows of the probe batch (2: the resize path is exercised too)
PROBE_SEED = 20_261_128  # the probe's inputs are uniform in [-1, 1) from this seed
# Float32 LiteRT (XNNPACK) and TensorFlow differ by summation order only: ~1e-7 on the
# test models, 0 on MobileNetV2. A softmax that moves by more than 1e-4 is not the same
# model any more.
OUTPUT_TOLERANCE_ABS = 1e-4
OUTPUT_TOLERANCE_REL = 1e-3
REASON_CHARS_MAX = 300  # a fallback reason is cut to this (converter errors run to pages)


class LiteRTFailed(Exception):
    """LiteRT could not run this batch; the version now runs on TensorFlow (the reason is
    in ``LiteRTRuntime.reason``). Run the batch again on TensorFlow."""


def compare_outputs(expected: Any, actual: Any) -> tuple[bool, float]:
    """(whether ``actual`` matches ``expected`` within the tolerances, the largest
    absolute difference). Different shapes, or a NaN/inf where TensorFlow has a finite
    value, never match."""
    import numpy as np

    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    if expected.shape != actual.shape:
        return False, float("inf")
    if not np.isfinite(actual[np.isfinite(expected)]).all():
        return False, float("inf")
    difference = np.abs(actual - expected)
    difference[~np.isfinite(expected)] = 0.0  # both non-finite alike: no evidence either way
    allowed = OUTPUT_TOLERANCE_ABS + OUTPUT_TOLERANCE_REL * np.abs(expected)
    allowed[~np.isfinite(expected)] = 0.0
    largest = float(difference.max()) if difference.size else 0.0
    return bool((difference <= allowed).all()), largest


def probe_batch(input_shape: tuple[int, ...]) -> Any:
    import numpy as np

    rng = np.random.default_rng(PROBE_SEED)
    return rng.uniform(-1.0, 1.0, (PROBE_BATCH_SIZE, *input_shape)).astype(np.float32)


def _short_reason(error: BaseException) -> str:
    """The useful line of an error: for the converter's MLIR dumps, the first 'error:'."""
    text = str(error)
    found = re.search(r"error: ([^\n|]+)", text)
    line = found.group(1) if found else (text.strip().splitlines() or [""])[0]
    reason = f"{type(error).__name__}: {line.strip()}"
    return reason[:REASON_CHARS_MAX]


class _SizedInterpreter:
    """One interpreter and the batch size its input is allocated for."""

    def __init__(self, interpreter: Any) -> None:
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"the converted model has {len(inputs)} inputs and "
                             f"{len(outputs)} outputs; one of each is needed")
        self.interpreter = interpreter
        self.batch_size = 0  # nothing allocated yet
        self._input = inputs[0]["index"]
        self._output = outputs[0]["index"]
        self._row_shape = [int(d) for d in inputs[0]["shape"][1:]]

    def run(self, batch: Any) -> Any:
        import numpy as np

        if len(batch) != self.batch_size:
            self.interpreter.resize_tensor_input(self._input, [len(batch), *self._row_shape])
            self.interpreter.allocate_tensors()
            self.batch_size = len(batch)
        self.interpreter.set_tensor(self._input, np.ascontiguousarray(batch, np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output)  # a copy: the arena is reused


class InterpreterPool:
    """At most ``size_max`` interpreters of one flatbuffer, each used by one thread at a
    time."""

    def __init__(self, make: Callable[[], Any], size_max: int,
                 on_created: Callable[[], None] = lambda: None) -> None:
        assert size_max >= 1
        self._make = make
        self._on_created = on_created  # an interpreter was added: the memory grew
        self._size_max = size_max
        self._condition = threading.Condition()
        self._idle: list[_SizedInterpreter] = []
        self.count = 0

    def run(self, batch: Any) -> Any:
        interpreter = self._borrow(len(batch))
        try:
            return interpreter.run(batch)
        finally:
            with self._condition:
                self._idle.append(interpreter)
                self._condition.notify()

    def _borrow(self, batch_size: int) -> _SizedInterpreter:
        with self._condition:
            while True:
                for index, idle in enumerate(self._idle):
                    if idle.batch_size == batch_size:
                        return self._idle.pop(index)
                if self.count < self._size_max:
                    self.count += 1
                    break
                if self._idle:
                    return self._idle.pop(0)  # the longest idle one is resized
                self._condition.wait()
        try:
            interpreter = _SizedInterpreter(self._make())
        except BaseException:
            with self._condition:
                self.count -= 1
                self._condition.notify()
            raise
        self._on_created()
        return interpreter


def _convert(model: LoadedModel) -> bytes:
    import tensorflow as tf

    if model.format == "keras":
        return _convert_keras(model)
    # A SavedModel: its fixed-signature serving function (the loaded object, passed along,
    # holds the variables it captures).
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.predict.get_concrete_function()], model.source)  # type: ignore[attr-defined]
    flatbuffer: bytes = converter.convert()
    return flatbuffer


def _convert_keras(model: LoadedModel) -> bytes:
    """What ``TFLiteConverter.from_keras_model`` does for a Keras 3 model (export the
    inference call, training=False, as a SavedModel, convert that), but quietly: its
    export prints every captured tensor to stdout (hundreds of lines for MobileNetV2)."""
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="squall-litert-") as directory:
        archive = keras.export.ExportArchive()
        archive.track(model.source)
        archive.add_endpoint(
            "serve", functools.partial(model.source.__call__, training=False),
            [tf.TensorSpec((None, *model.input_shape), tf.float32)])
        archive.write_out(directory, verbose=False)
        flatbuffer: bytes = tf.lite.TFLiteConverter.from_saved_model(directory).convert()
    return flatbuffer


class LiteRTRuntime:
    """The LiteRT side of one model version (kept in ``LoadedModel.runtimes``)."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        self._lock = threading.Lock()
        self.state = "pending"  # -> "converting" -> "litert" | "tensorflow" (fell back)
        self.reason = ""
        self.max_difference: float | None = None
        self.conversion_seconds: float | None = None
        self._flatbuffer = b""
        self._pools: dict[int, InterpreterPool] = {}
        self._interpreter_class: Any = None
        self._converted = threading.Event()  # set once state is 'litert' or 'tensorflow'
        # Tests only (no configuration reaches it): raised where an interpreter's invoke
        # would raise, to provoke a failure after verification.
        self.invoke_fault_for_tests: BaseException | None = None

    def ready(self, threads: int) -> bool:
        """Whether batches of this version run on LiteRT now. The first call starts the
        conversion in the background and answers False, as every call does until the
        conversion is verified: those batches run on TensorFlow."""
        if self.state == "pending":
            with self._lock:
                if self.state == "pending":
                    self.state = "converting"
                    threading.Thread(target=self._convert_in_background, args=(threads,),
                                     name=f"litert-convert-{self._model.version_id}",
                                     daemon=True).start()
            return False
        return self.state == RUNTIME_NAME

    def wait_converted(self, timeout_s: float) -> bool:
        """Block until the conversion started by ``ready`` has ended (on LiteRT or fallen
        back); False when ``timeout_s`` passed first. For tests and benchmarks."""
        return self._converted.wait(timeout_s)

    def _convert_in_background(self, threads: int) -> None:
        try:
            with _conversion_slots:
                self._prepare(threads)
        except BaseException as error:
            # Not a converter refusal (those are handled in _prepare): a bug or memory
            # exhaustion. Logged with its traceback; the version stays on TensorFlow.
            _log.exception("converting model %s version %s for LiteRT failed",
                           self._model.ref.uri(), self._model.version_id)
            self._fall_back(f"the conversion failed: {_short_reason(error)}")
        finally:
            self._converted.set()

    def predict(self, batch: Any, threads: int) -> Any:
        """float32 [batch, *input_shape] -> [batch, outputs], on a pooled interpreter;
        ``LiteRTFailed`` when the version fell back (this batch's failure or another's)."""
        if self.state != RUNTIME_NAME:
            raise LiteRTFailed(self.reason)
        try:
            if self.invoke_fault_for_tests is not None:
                raise self.invoke_fault_for_tests
            return self._pool(threads).run(batch)
        # What the interpreter raises (as in the probe): the model cannot run this batch.
        except (RuntimeError, ValueError) as error:
            with self._lock:  # concurrent batches may fail together: fall back (log) once
                if self.state == RUNTIME_NAME:
                    self._fall_back(f"the interpreter failed on a batch after the probe "
                                    f"passed: {_short_reason(error)}")
            raise LiteRTFailed(self.reason) from error

    def _pool(self, threads: int) -> InterpreterPool:
        pool = self._pools.get(threads)
        if pool is None:
            flatbuffer, interpreter_class = self._flatbuffer, self._interpreter_class
            pool = self._pools.setdefault(threads, InterpreterPool(
                lambda: interpreter_class(model_content=flatbuffer, num_threads=threads),
                limits.litert_interpreters_per_model_max, self._model.memory_grew))
        return pool

    def _prepare(self, threads: int) -> None:
        model = self._model
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            self._fall_back(f"ai-edge-litert is not installed (pip install 'squall[ml]'): "
                            f"{error}")
            return
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            self._fall_back(f"TensorFlow sees a GPU ({gpus[0].name}); LiteRT would run on "
                            "the CPU")
            return
        began = time.perf_counter()
        try:
            self._flatbuffer = _convert(model)
        # The converter raises ConverterError, ValueError, RuntimeError ... from MLIR: any
        # of them means 'not convertible', which is recorded, not passed over.
        except Exception as error:
            self._fall_back(f"the converter refused it: {_short_reason(error)}")
            return
        self.conversion_seconds = round(time.perf_counter() - began, 3)
        self._interpreter_class = Interpreter
        probe = probe_batch(model.input_shape)
        expected = model.predict(probe)
        try:
            # A throwaway interpreter: the pool's are sized for real batches only.
            actual = _SizedInterpreter(Interpreter(model_content=self._flatbuffer,
                                                   num_threads=threads)).run(probe)
        except (RuntimeError, ValueError) as error:
            self._fall_back(f"the interpreter cannot run it: {_short_reason(error)}")
            return
        match, self.max_difference = compare_outputs(expected, actual)
        if not match:
            self._fall_back(f"LiteRT's outputs differ from TensorFlow's by up to "
                            f"{self.max_difference:.3g} on the probe batch (allowed: "
                            f"{OUTPUT_TOLERANCE_ABS} + {OUTPUT_TOLERANCE_REL} x |output|)")
            return
        self.state = RUNTIME_NAME  # last: batches use the pool once they see this
        self._model.memory_grew()  # the flatbuffer: the model cache checks its budget
        _log.info("model %s version %s runs on LiteRT: converted in %.1f s, %d bytes, "
                  "probe outputs within %.3g of TensorFlow's", model.ref.uri(),
                  model.version_id, self.conversion_seconds, len(self._flatbuffer),
                  self.max_difference)

    def _fall_back(self, reason: str) -> None:
        self.state = "tensorflow"
        self.reason = reason
        self._flatbuffer = b""
        self._pools.clear()
        _log.warning("model %s version %s: runtime litert falls back to TensorFlow: %s",
                     self._model.ref.uri(), self._model.version_id, reason)

    def memory_bytes(self) -> int:
        interpreters = sum(pool.count for pool in self._pools.values())
        return len(self._flatbuffer) * (1 + interpreters)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"state": self.state}
        if self.reason:
            status["reason"] = self.reason
        if self.max_difference is not None:
            status["max_difference"] = self.max_difference
        if self.conversion_seconds is not None:
            status["conversion_seconds"] = self.conversion_seconds
        if self._flatbuffer:
            status["flatbuffer_bytes"] = len(self._flatbuffer)
            status["interpreters"] = {str(threads): pool.count
                                      for threads, pool in sorted(self._pools.items())}
        return status


def runtime_of(model: LoadedModel) -> LiteRTRuntime:
    """The model version's LiteRT runtime (made on first use; dict.setdefault is atomic,
    so two threads get the same one)."""
    runtime = model.runtimes.get(RUNTIME_NAME)
    if runtime is None:
        runtime = model.runtimes.setdefault(RUNTIME_NAME, LiteRTRuntime(model))
    assert isinstance(runtime, LiteRTRuntime)
    return runtime
