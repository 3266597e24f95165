"""Models loaded from objects in the store, cached by version id.

Rules and theory of operation:

* A model is an object (``s3://models/shapes.keras``): a Keras ``.keras`` file, or a
  SavedModel directory in a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` archive. Which one
  is decided by the body's content (``triggers.archives``), not its name. An archive is
  unpacked (safely, within ``limits.model_archive_*``) into a private temporary
  directory that is deleted as soon as ``tf.saved_model.load`` has read it; its
  ``serving_default`` signature (one float32 input ``[None, ...]``, the only output or
  the first by name) is wrapped in the same fixed-signature ``tf.function`` as a Keras
  model, so everything downstream (batching, labels, top_k, decoding) is unchanged.
* Each batch resolves the name to
  its latest version (one metadata seek) unless the definition pins a version id, and
  runs on the model loaded for THAT version: a PUT of a new model version switches
  triggers at the next batch, while batches already running finish on the version they
  hold. A loaded model is never mutated, so no request can see a torn model.
* Resolving costs a metadata seek per batch, so the resolved version is kept per
  reference with the model bucket's change counter (``StorageClient.change_count``,
  read BEFORE the seek) and reused while the counter is unchanged. Any write to the
  bucket's objects changes the counter before it is acknowledged, so a batch that
  starts after a model PUT was acknowledged resolves again and gets the new version;
  no time-based staleness. (A counter of None, a store that cannot tell, resolves
  every time.) Label lists are resolved the same way.
* Versions are immutable, so the loaded-model cache needs no invalidation: the key is
  (bucket, key, version id). It is bounded by ``limits.model_cache_bytes_max`` (the sum
  of the loaded models' weight sizes) with least-recently-used eviction; a model in use
  by a running batch stays alive through its reference even if evicted. What a model
  version builds later for another runtime (``LoadedModel.runtimes``: the LiteRT
  flatbuffer and interpreters, ``triggers.litert``) is counted with it
  (``LoadedModel.memory_bytes``), and the budget is checked again as soon as it grows
  (``LoadedModel.memory_grew``): least-recently-used OTHER versions are evicted, never
  the one that grew (a batch is using it). That growth happens on other threads (the
  conversion thread, a pool thread adding an interpreter) while the cache belongs to
  the event loop (``get`` mutates it without a lock, once per batch): the growth is
  handed to the loop with ``loop.call_soon_threadsafe``, so the cache keeps one owner
  thread and the per-batch path takes no lock; the cache is over budget for one turn
  of the loop at most, instead of until the next model loads.
* Concurrent requests for a version that is loading wait for that one load.
* TensorFlow is imported here lazily, on the first load: a server with no tensorflow
  function never imports it. Loading (file I/O, graph tracing) runs in a thread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.api import (
    CHANGES_OBJECTS,
    InvalidArgument,
    NoSuchKey,
    NoSuchVersion,
    ObjectVersion,
    StorageClient,
    limits,
)
from triggers.archives import (
    ArchiveRefused,
    archive_format,
    extract,
    find_saved_model,
    is_saved_model_zip,
)
from triggers.config import ObjectRef

_log = logging.getLogger(__name__)


SERVING_SIGNATURE = "serving_default"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A Keras model or a SavedModel behind a compiled ``tf.function`` with a fixed input
    signature."""

    ref: ObjectRef
    version_id: str
    predict: Callable[[Any], Any]  # float32 [batch, *input_shape] -> [batch, classes]
    input_shape: tuple[int, ...]  # without the batch dimension
    output_size: int
    size_bytes: int
    # Compiled input pipelines for this model (decode + scale + predict in one graph),
    # keyed by what they were built for; filled lazily by triggers.functions.
    pipelines: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    format: str = "keras"  # 'keras' | 'saved_model'
    # What ``predict`` runs (the Keras model, or the loaded SavedModel object): kept alive
    # with the model, and what a converter to another runtime starts from.
    source: Any = field(default=None, compare=False, repr=False)
    output_name: str = ""  # a SavedModel's chosen output ('' for Keras)
    # Other runtimes built for this version, by name (``triggers.litert``); each has
    # ``memory_bytes()`` and ``status()``.
    runtimes: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # Called (from any thread) when ``memory_bytes`` grew; the ``ModelCache`` that holds
    # this version registers here.
    memory_listeners: list[Callable[[], None]] = field(default_factory=list, compare=False,
                                                       repr=False)

    def memory_grew(self) -> None:
        """A runtime of this version now holds more memory (any thread may call this)."""
        for listener in list(self.memory_listeners):
            listener()

    def memory_bytes(self) -> int:
        """Weights plus whatever other runtimes hold for this version."""
        return self.size_bytes + sum(int(r.memory_bytes()) for r in self.runtimes.values())

    def status(self) -> dict[str, Any]:
        """What ``squall function show`` reports about this loaded version."""
        status: dict[str, Any] = {"version_id": self.version_id, "format": self.format,
                                  "input_shape": list(self.input_shape),
                                  "outputs": self.output_size, "weight_bytes": self.size_bytes}
        if self.output_name:
            status["output_name"] = self.output_name
        for name, runtime in sorted(self.runtimes.items()):
            status[name] = runtime.status()
        return status


def load_keras_model(path: str, ref: ObjectRef, version_id: str) -> LoadedModel:
    """Load a .keras file and compile its inference (call from a thread)."""
    import keras
    import numpy as np
    import tensorflow as tf

    model = keras.saving.load_model(path, compile=False)
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    signature = tf.TensorSpec((None, *input_shape), tf.float32)

    @tf.function(input_signature=[signature])
    def predict(batch: Any) -> Any:
        return model(batch, training=False)

    # Trace now (and warm up) so that the first request does not pay for it.
    output = predict(tf.zeros((1, *input_shape), tf.float32))
    size_bytes = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)
    _log.info("loaded model %s version %s: input %s, %d outputs, %d bytes, devices %s",
              ref.uri(), version_id, input_shape, int(output.shape[-1]), size_bytes,
              [d.name for d in tf.config.list_logical_devices()])
    return LoadedModel(ref, version_id, predict, input_shape, int(output.shape[-1]),
                       max(size_bytes, 1), source=model)


def _serving_signature(loaded: Any) -> tuple[Any, str, tuple[int, ...], str]:
    """(signature, input name, input shape without the batch, output name), or a
    ValueError that says what the SavedModel lacks."""
    import tensorflow as tf

    signatures = getattr(loaded, "signatures", {})
    if SERVING_SIGNATURE not in signatures:
        raise ValueError(f"it has no {SERVING_SIGNATURE!r} signature (it has: "
                         f"{', '.join(sorted(signatures)) or 'none'})")
    signature = signatures[SERVING_SIGNATURE]
    _, inputs = signature.structured_input_signature
    if len(inputs) != 1:
        raise ValueError(f"{SERVING_SIGNATURE} takes {len(inputs)} inputs "
                         f"({', '.join(sorted(inputs))}); one is needed")
    ((input_name, spec),) = inputs.items()
    if spec.dtype != tf.float32:
        raise ValueError(f"{SERVING_SIGNATURE} input {input_name!r} is {spec.dtype.name}; "
                         "float32 is needed")
    dims = spec.shape.as_list() if spec.shape.rank is not None else None
    if not dims or len(dims) < 2 or dims[0] is not None or None in dims[1:]:
        raise ValueError(f"{SERVING_SIGNATURE} input {input_name!r} has shape {spec.shape}; "
                         "[None (the batch), fixed sizes ...] is needed")
    outputs = signature.structured_outputs
    if not isinstance(outputs, dict) or not outputs:
        raise ValueError(f"{SERVING_SIGNATURE} has no named outputs")
    # One output, or the first by name (Keras exports name theirs output_0, output_1 ...).
    output_name = sorted(outputs)[0]
    return signature, input_name, tuple(int(d) for d in dims[1:]), output_name


def load_saved_model(path: str, ref: ObjectRef, version_id: str) -> LoadedModel:
    """Load a SavedModel directory and compile its serving signature behind a
    fixed-signature ``tf.function`` (call from a thread). Everything is read into memory:
    the directory can be deleted when this returns."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    signature, input_name, input_shape, output_name = _serving_signature(loaded)

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
    def predict(batch: Any) -> Any:
        return signature(**{input_name: batch})[output_name]

    output = predict(tf.zeros((1, *input_shape), tf.float32))
    if output.shape.rank != 2:
        raise ValueError(f"{SERVING_SIGNATURE} output {output_name!r} has shape "
                         f"{output.shape}; [batch, classes] is needed")
    variables = os.path.join(path, "variables")
    size_bytes = sum(entry.stat().st_size for entry in os.scandir(variables)
                     if entry.is_file()) if os.path.isdir(variables) else 0
    _log.info("loaded SavedModel %s version %s: input %s, output %r of %d, %d bytes",
              ref.uri(), version_id, input_shape, output_name, int(output.shape[-1]),
              size_bytes)
    return LoadedModel(ref, version_id, predict, input_shape, int(output.shape[-1]),
                       max(size_bytes, 1), format="saved_model", source=loaded,
                       output_name=output_name)


def _saved_model_errors() -> tuple[type[BaseException], ...]:
    """What a SavedModel that TensorFlow cannot load raises (besides ValueError & co.)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    return (ValueError, OSError, TypeError, KeyError, DecodeError, tf.errors.OpError)


def check_readable(version: ObjectVersion) -> None:
    """InvalidArgument for an object the server can never read: one stored with SSE-C
    (the server does not keep customer keys)."""
    if version.customer_key is not None:
        raise InvalidArgument(f"s3://{version.bucket}/{version.key} is encrypted with a "
                              "customer-provided key (SSE-C), which the server does not keep: "
                              "it cannot be loaded; store it without SSE-C")


async def read_object(storage: StorageClient, version: ObjectVersion, size_max: int) -> bytes:
    check_readable(version)
    if version.size_bytes > size_max:
        raise InvalidArgument(f"s3://{version.bucket}/{version.key} is {version.size_bytes} "
                              f"bytes; at most {size_max} can be loaded")
    body = bytearray()
    stream = storage.read_body(version)
    try:
        async for piece in stream:
            body += piece
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    return bytes(body)


async def resolve(storage: StorageClient, ref: ObjectRef) -> ObjectVersion:
    """The version a reference names now (the latest, unless pinned)."""
    try:
        version = await storage.get_version(ref.bucket, ref.key, version_id=ref.version_id)
    except (NoSuchKey, NoSuchVersion):
        raise InvalidArgument(f"{ref.uri()} does not exist") from None
    if version.is_delete_marker:
        raise InvalidArgument(f"{ref.uri()} is deleted")
    check_readable(version)  # refused at registration already, not at the first write
    return version


class ResolvedVersions:
    """``resolve`` with its answers kept while the bucket's change counter says they
    still hold (see the module's rules); at most ``limits.trigger_lookups_cached_max``."""

    def __init__(self, storage: StorageClient) -> None:
        self._storage = storage
        self._resolved: dict[ObjectRef, tuple[int, ObjectVersion]] = {}
        self.lookups = 0  # how many times the store was asked (tests, metrics)

    async def resolve(self, ref: ObjectRef) -> ObjectVersion:
        change_count = self._storage.change_count(ref.bucket, CHANGES_OBJECTS)
        cached = self._resolved.get(ref)
        if cached is not None and cached[0] == change_count:
            return cached[1]
        self.lookups += 1
        version = await resolve(self._storage, ref)
        if change_count is not None:
            if len(self._resolved) >= limits.trigger_lookups_cached_max:
                self._resolved.clear()  # bounded: dropped whole, looked up again
            self._resolved[ref] = (change_count, version)
        return version


class ModelCache:
    def __init__(
        self,
        storage: StorageClient,
        budget_bytes: int = limits.model_cache_bytes_max,
        loader: Callable[[str, ObjectRef, str], LoadedModel] = load_keras_model,
        saved_model_loader: Callable[[str, ObjectRef, str], LoadedModel] = load_saved_model,
    ) -> None:
        self._storage = storage
        self._budget_bytes = budget_bytes
        self._loader = loader
        self._saved_model_loader = saved_model_loader
        self._models: collections.OrderedDict[tuple[str, str, str], LoadedModel] = (
            collections.OrderedDict())
        self._loading: dict[tuple[str, str, str], asyncio.Future[LoadedModel]] = {}
        self.versions = ResolvedVersions(storage)
        self.loads = 0
        self.evictions = 0

    @property
    def cached_bytes(self) -> int:
        return sum(model.memory_bytes() for model in self._models.values())

    def cached_versions(self) -> list[tuple[str, str, str]]:
        return list(self._models)

    def status(self, ref: ObjectRef) -> list[dict[str, Any]]:
        """The loaded versions of one model object (oldest first) and their runtimes."""
        return [model.status() for (bucket, key, _), model in self._models.items()
                if (bucket, key) == (ref.bucket, ref.key)]

    async def get(self, ref: ObjectRef) -> LoadedModel:
        version = await self.versions.resolve(ref)
        cache_key = (ref.bucket, ref.key, version.version_id)
        model = self._models.get(cache_key)
        if model is not None:
            self._models.move_to_end(cache_key)
            return model
        loading = self._loading.get(cache_key)
        if loading is not None:
            return await asyncio.shield(loading)
        loading = asyncio.get_running_loop().create_future()
        self._loading[cache_key] = loading
        try:
            model = await self._load(ref, version)
        except BaseException as error:
            loading.set_exception(error)
            loading.exception()  # retrieved: waiters (if any) get it too
            raise
        finally:
            del self._loading[cache_key]
        loading.set_result(model)
        self._insert(cache_key, model)
        return model

    async def _load(self, ref: ObjectRef, version: ObjectVersion) -> LoadedModel:
        body = await read_object(self._storage, version, limits.model_object_bytes_max)
        self.loads += 1
        return await asyncio.to_thread(self._load_file, body, ref, version.version_id)

    def _load_file(self, body: bytes, ref: ObjectRef, version_id: str) -> LoadedModel:
        kind = archive_format(body)
        if kind in ("tar", "tar.gz") or (kind == "zip" and is_saved_model_zip(body)):
            return self._load_archive(body, ref, version_id)
        # Keras loads from a path whose name ends in '.keras'.
        descriptor, path = tempfile.mkstemp(suffix=".keras", prefix="squall-model-")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(body)
            try:
                return self._loader(path, ref, version_id)
            except (ValueError, OSError, TypeError) as error:
                raise InvalidArgument(f"{ref.uri()} (version {version_id}) is not a loadable "
                                      f"Keras model: {error}") from error
        finally:
            os.unlink(path)

    def _load_archive(self, body: bytes, ref: ObjectRef, version_id: str) -> LoadedModel:
        directory = tempfile.mkdtemp(prefix="squall-model-")  # private: mode 0700
        try:
            try:
                extract(body, Path(directory))
                model_directory = find_saved_model(Path(directory))
            except ArchiveRefused as error:
                raise InvalidArgument(f"{ref.uri()} (version {version_id}) is not a usable "
                                      f"SavedModel archive: {error}") from error
            try:
                return self._saved_model_loader(str(model_directory), ref, version_id)
            except _saved_model_errors() as error:
                message = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise InvalidArgument(f"{ref.uri()} (version {version_id}) is not a loadable "
                                      f"SavedModel: {message}") from error
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _insert(self, cache_key: tuple[str, str, str], model: LoadedModel) -> None:
        self._models[cache_key] = model
        self._models.move_to_end(cache_key)
        loop = asyncio.get_running_loop()
        model.memory_listeners.append(
            lambda: self._hand_to_loop(loop, cache_key, model))
        self._evict_others(cache_key)

    def _hand_to_loop(self, loop: asyncio.AbstractEventLoop, cache_key: tuple[str, str, str],
                      model: LoadedModel) -> None:
        """From the thread where the model's memory grew: re-check on the loop."""
        try:
            loop.call_soon_threadsafe(self._memory_grew, cache_key, model)
        except RuntimeError:  # the loop is closed (the server stopped): no cache to keep
            pass

    def _memory_grew(self, cache_key: tuple[str, str, str], model: LoadedModel) -> None:
        """On the loop: ``model`` holds more memory; it is in use, so others go first."""
        if self._models.get(cache_key) is not model:
            return  # evicted meanwhile: its batches hold it until they end
        self._models.move_to_end(cache_key)
        self._evict_others(cache_key)

    def _evict_others(self, kept_key: tuple[str, str, str]) -> None:
        """Evict least-recently-used versions other than ``kept_key`` until within the
        budget (``kept_key`` alone may exceed it: it is in use)."""
        while self.cached_bytes > self._budget_bytes and len(self._models) > 1:
            evicted_key = next(key for key in self._models if key != kept_key)
            del self._models[evicted_key]
            self.evictions += 1
            _log.info("model cache over %d bytes: evicted %s", self._budget_bytes, evicted_key)


class LabelCache:
    """Label lists kept as objects (one label per line), cached by version id."""

    def __init__(self, storage: StorageClient) -> None:
        self._storage = storage
        self._labels: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._versions = ResolvedVersions(storage)

    async def get(self, ref: ObjectRef) -> tuple[str, ...]:
        version = await self._versions.resolve(ref)
        cache_key = (ref.bucket, ref.key, version.version_id)
        labels = self._labels.get(cache_key)
        if labels is None:
            text = (await read_object(self._storage, version, 1024 * 1024)).decode("utf-8")
            labels = tuple(line.strip() for line in text.splitlines() if line.strip())
            if len(self._labels) >= 64:  # bounded: old label lists are simply dropped
                self._labels.clear()
            self._labels[cache_key] = labels
        return labels
