"""Where TensorFlow runs: the process's thread pools, GPU memory and device choice.

Rules and theory of operation:

* TensorFlow fixes its thread pools, its visible devices and its GPU memory settings at
  its first op, for the whole process. So they are set ONCE per process, together, under
  one lock (``configure_tensorflow``), by the first batch of any tensorflow function
  (or ``squall function show``), on a pool thread, before any model loads. Too late
  (TensorFlow already ran: an embedding program, a test) is logged, not an error: the
  process keeps what TensorFlow chose, and the choice below still pins the model.
* GPU memory: by default TensorFlow maps nearly all of a GPU's memory at its first use,
  which is wrong in a storage server that shares the host. For every GPU TensorFlow
  lists, either memory growth is enabled (the store takes what its models need, and
  keeps it), or, with ``squall serve --gpu-memory-limit-mib N``, one logical device
  of N MiB is made on it (``limits.tensorflow_gpu_memory_limit_mib_min``/``_max``).
* The device (``squall serve --tensorflow-device``, ``choose_device``, pure):
  ``auto`` (the default) runs the model on ``GPU:0`` when TensorFlow lists a GPU, else
  on ``CPU:0``; ``cpu`` hides the GPUs from TensorFlow before its first use (no GPU
  memory is taken at all) and runs on ``CPU:0``; ``gpu`` runs on ``GPU:0`` and, when
  TensorFlow lists none, REFUSES: the placement carries an error and no device, every
  batch of every tensorflow function fails with that error as ``FunctionFailed``
  (so the definition's ``on_error`` applies: 403 RejectedByFunction by default, or
  stored unjudged with ``on_error: store``), and ``squall function show`` reports it
  in ``status.device``. Not a silent CPU fallback: whoever asked for the GPU sized the
  host and the load for it, and the CPU may be orders of magnitude slower; not a 503
  either: retrying cannot help until the server is restarted on a host with a GPU.
* Placement inside a function's compiled pipeline (``triggers.functions``): image
  decoding, resizing and scaling are pinned to ``CPU:0`` (TensorFlow's image decode
  ops have only CPU kernels; keeping the whole input stage there avoids a copy to the
  GPU and back per body), the model runs under the chosen device, and one copy of the
  float batch crosses to the GPU. Each prediction records the device (``Prediction.
  device``: ``GPU:0`` / ``CPU:0``), which the verdict step carries.
* TensorFlow is imported only by ``configure_tensorflow`` (a server with no tensorflow
  function never imports it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.api import limits

_log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "gpu")
DEVICE_DEFAULT = "auto"
CPU_DEVICE = "/device:CPU:0"  # where decoding always runs, and the model without a GPU
CPU_NAME = "CPU:0"  # what a prediction made on the CPU records (Prediction.device)
GPU_DEVICE = "/device:GPU:0"  # the one GPU a model runs on (CUDA_VISIBLE_DEVICES picks it)
NO_GPU_REASON = "TensorFlow lists no GPU: tensorflow-cpu installed or no CUDA device"


@dataclass(frozen=True, slots=True)
class TensorFlowSettings:
    """What ``squall serve`` asks of TensorFlow for the whole process."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    device: str = DEVICE_DEFAULT  # one of DEVICE_CHOICES
    gpu_memory_limit_mib: int | None = None  # None: memory growth on every GPU

    def __post_init__(self) -> None:
        assert self.intra_op_threads >= 1 and self.inter_op_threads >= 1
        assert self.device in DEVICE_CHOICES, self.device
        assert self.gpu_memory_limit_mib is None or (
            limits.tensorflow_gpu_memory_limit_mib_min <= self.gpu_memory_limit_mib
            <= limits.tensorflow_gpu_memory_limit_mib_max)


DEFAULT_SETTINGS = TensorFlowSettings()  # one thread each, device auto, memory growth


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a tensorflow function's model runs (``device``), or why it may not run
    (``error``, with ``device`` None: ``--tensorflow-device gpu`` and no GPU)."""

    requested: str
    device: str | None
    error: str = ""
    gpus: tuple[str, ...] = ()  # the GPUs TensorFlow lists as visible
    gpu_memory: str = ""  # what was set on them: 'growth', 'limit N MiB', or why not

    def __post_init__(self) -> None:
        assert (self.device is None) == bool(self.error)

    @property
    def device_name(self) -> str:
        """The short name a verdict and ``squall function show`` carry: 'GPU:0'."""
        assert self.device is not None
        return self.device.removeprefix("/device:")

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"requested": self.requested, "gpus": list(self.gpus)}
        if self.device is not None:
            status["device"] = self.device_name
        else:
            status["error"] = self.error
        if self.gpu_memory:
            status["gpu_memory"] = self.gpu_memory
        return status


def choose_device(requested: str, gpus: Sequence[str], gpu_memory: str = "") -> Placement:
    """The placement for ``--tensorflow-device requested`` when TensorFlow lists
    ``gpus`` (names of visible GPU devices) as visible (see the module's rules)."""
    assert requested in DEVICE_CHOICES, requested
    listed = tuple(gpus)
    if requested == "cpu" or (requested == "auto" and not listed):
        return Placement(requested, CPU_DEVICE, gpus=listed, gpu_memory=gpu_memory)
    if not listed:
        return Placement(requested, None, f"--tensorflow-device gpu: {NO_GPU_REASON}; "
                         "tensorflow functions refuse to run (install squall[ml-gpu] on a "
                         "host with a CUDA GPU, or serve with --tensorflow-device auto)")
    return Placement(requested, GPU_DEVICE, gpus=listed, gpu_memory=gpu_memory)


@dataclass(frozen=True, slots=True)
class _Configured:
    """What the process's one configuration found and set."""

    visible_gpus: tuple[str, ...]
    gpu_memory: str


_configured: _Configured | None = None
_configure_lock = threading.Lock()  # the first batches of two functions may race


def configure_tensorflow(settings: TensorFlowSettings) -> Placement:
    """Configure TensorFlow once per process (threads, visible GPUs, GPU memory: imports
    TensorFlow, so call from a worker thread), and the placement for ``settings.device``
    on what it lists. Later calls configure nothing and only choose."""
    global _configured
    with _configure_lock:
        if _configured is None:
            _configured = _configure(settings)
        found = _configured
    return choose_device(settings.device, found.visible_gpus, found.gpu_memory)


def _configure(settings: TensorFlowSettings) -> _Configured:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)
    except RuntimeError as error:  # the runtime is initialised: its pools are fixed
        _log.warning("TensorFlow threads not set (%s): keeping %d intra-op, %d inter-op", error,
                     tf.config.threading.get_intra_op_parallelism_threads(),
                     tf.config.threading.get_inter_op_parallelism_threads())
    gpus = tf.config.list_physical_devices("GPU")
    gpu_memory = _configure_gpus(tf, gpus, settings) if gpus else ""
    visible = tuple(device.name.replace("/physical_device:", "")
                    for device in tf.config.get_visible_devices("GPU"))
    _log.info("TensorFlow: %d physical GPUs, visible %s, GPU memory %s, device %s requested",
              len(gpus), list(visible) or "none", gpu_memory or "-", settings.device)
    return _Configured(visible, gpu_memory)


def _configure_gpus(tf: Any, gpus: Sequence[Any], settings: TensorFlowSettings) -> str:
    """Hide the GPUs (device cpu) or bound their memory; what was set, or why not."""
    try:
        if settings.device == "cpu":
            tf.config.set_visible_devices([], "GPU")
            return "hidden (--tensorflow-device cpu)"
        if settings.gpu_memory_limit_mib is not None:
            for gpu in gpus:
                tf.config.set_logical_device_configuration(gpu, [
                    tf.config.LogicalDeviceConfiguration(
                        memory_limit=settings.gpu_memory_limit_mib)])
            return f"limit {settings.gpu_memory_limit_mib} MiB"
        for gpu in gpus:  # TensorFlow wants the same growth setting on every GPU
            tf.config.experimental.set_memory_growth(gpu, True)
        return "growth"
    except (RuntimeError, ValueError) as error:  # initialised already: fixed as they are
        _log.warning("TensorFlow GPU settings not applied (%s): GPUs keep TensorFlow's "
                     "defaults (all memory mapped at first use)", error)
        return f"TensorFlow's defaults (too late to set: {error})"
