"""``TriggerHook``: storage's pre-commit hook and the function admin, in one object.

The composition root (``squall serve``) builds it from the import string
``triggers.hook:TriggerHook`` and hands it to the storage node (``api.PreCommitHook``)
and to the gateway (``api.FunctionAdmin``). It reaches the store only through
``storage.api``.

Theory of operation, per write:

1. ``bindings``: the bucket's 'notification' document gives the function rules whose
   events and prefix/suffix filters match the write. Most writes stop here. The parsed
   document is kept per bucket with the bucket's configuration change counter
   (``StorageClient.change_count(bucket, CHANGES_CONFIGURATION)``, read BEFORE the
   document is read; no I/O) and reused while the counter is unchanged. Storage bumps
   the counter before it acknowledges a configuration write (see
   ``storage.engine.writer.ChangeCounters``), so the first write after a notification
   change is acknowledged obeys it; object writes to the bucket do not touch that
   counter, so a bucket busy with judged PUTs keeps its cached configuration.
2. ``judge``: each bound function runs in order on the same event; a ``chain`` action
   appends the function it names (at most ``limits.trigger_chain_depth_max`` in all).
   Each step's prediction goes through its actions (``triggers.actions``); reject or
   discard end the judgement; a route changes where the object will be committed.
3. The verdict carries the last step's annotations, whether they are stored as user
   metadata and as object tags (each when any step's ``annotate`` asked), the final
   bucket/key and a JSON summary of every step, which the response carries.

A bound function that is not registered (removed after binding) fails CLOSED: the write
is rejected with a message saying so.

Inference threads: the hook owns the process's ``InferencePool`` (``inference_threads``
batches of all functions at once; default: the usable cores, at most
``limits.trigger_inference_threads_max``) and the TensorFlow thread settings each batch
runs with (``tensorflow_intra_op_threads``, default 1: measured, docs/triggers.md), and
where TensorFlow runs the models (``tensorflow_device`` auto | cpu | gpu and
``gpu_memory_limit_mib``: ``triggers.devices``).

Post-commit notifications: with ``webhooks`` (``squall serve --webhook ID=URL``), ``start``
also starts the ``triggers.events.EventDispatcher`` that delivers the outbox's events to
them, and ``close`` cancels it; ``delivery_status`` (``api.EventDelivery``) reports it.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from storage.api import (
    CHANGES_CONFIGURATION,
    NOTIFICATION_CONFIG,
    Histogram,
    InvalidArgument,
    MetricFamily,
    NoSuchBucket,
    NoSuchKey,
    NotificationConfiguration,
    StorageClient,
    Verdict,
    WriteEvent,
    WriteRejected,
    limits,
)
from triggers.actions import Prediction, evaluate, verdict_annotations
from triggers.batching import InferencePool
from triggers.config import FunctionDefinition, check_function_name
from triggers.devices import DEVICE_DEFAULT, TensorFlowSettings
from triggers.events import EventDispatcher
from triggers.functions import SYSTEM_BUCKET, FunctionFailed, Registry
from triggers.models import LabelCache, ModelCache

_log = logging.getLogger(__name__)

FUNCTION_ARN_PREFIX = "arn:squall:function:"


class TriggerHook:
    def __init__(
        self,
        model_cache_bytes_max: int = limits.model_cache_bytes_max,
        *,
        webhooks: Mapping[str, str] | None = None,
        region: str = "us-east-1",
        inference_threads: int | None = None,
        tensorflow_intra_op_threads: int = 1,
        tensorflow_device: str = DEVICE_DEFAULT,
        gpu_memory_limit_mib: int | None = None,
    ) -> None:
        self._model_cache_bytes_max = model_cache_bytes_max
        self._inference_threads = inference_threads or min(
            len(os.sched_getaffinity(0)), limits.trigger_inference_threads_max)
        assert 1 <= self._inference_threads <= limits.trigger_inference_threads_max
        self._tensorflow = TensorFlowSettings(tensorflow_intra_op_threads, 1,
                                              tensorflow_device, gpu_memory_limit_mib)
        self.pool: InferencePool | None = None
        self._webhooks = dict(webhooks or {})
        self._region = region
        self.events: EventDispatcher | None = None
        self._storage: StorageClient | None = None
        self._registry: Registry | None = None
        self.models: ModelCache | None = None
        # bucket -> (configuration change count read before the document, the document,
        # parsed): reused while the count is unchanged; re-parsed when the document is.
        self._configs: dict[str, tuple[int | None, bytes, NotificationConfiguration]] = {}
        # (function that decided, action) -> verdicts given; action 'error' when judging
        # failed (an unknown function, a timeout, an overloaded queue): metrics.
        self.verdicts: collections.Counter[tuple[str, str]] = collections.Counter()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, storage: StorageClient) -> None:
        self._storage = storage
        self.models = ModelCache(storage, self._model_cache_bytes_max)
        self.pool = InferencePool(self._inference_threads)
        self._registry = Registry(storage, self.models, LabelCache(storage), self.pool,
                                  self._tensorflow)
        await self._registry.start()
        if self._webhooks:
            self.events = EventDispatcher(storage, self._webhooks, self._region)
            await self.events.start()

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        if self._registry is not None:
            await self._registry.close()
        if self.pool is not None:
            self.pool.close()

    def delivery_status(self) -> Mapping[str, Any]:
        """``api.EventDelivery``: the webhooks' delivery state ({} without webhooks)."""
        return {} if self.events is None else self.events.delivery_status()

    def metric_families(self) -> list[MetricFamily]:
        """``api.MetricsSource``: verdicts, each running tensorflow function's batcher
        (its counts start again when a new definition version replaces it), the
        inference slots, the model cache and the webhooks' delivery."""
        Sample = tuple[tuple[tuple[str, str], ...], float | Histogram]

        def family(name: str, kind: str, text: str, samples: Iterable[Sample]) -> MetricFamily:
            return MetricFamily(name, kind, text, tuple(samples))

        batchers = self._registry.running_batchers() if self._registry is not None else []
        functions = self._registry.running_functions() if self._registry is not None else []
        families = [
            family("squall_trigger_verdicts_total", "counter",
                   "Writes judged, by the function that decided and its action (store, "
                   "discard, reject; error: judging failed).",
                   [((("function", f), ("action", a)), n)
                   for (f, a), n in sorted(self.verdicts.items())]),
            family("squall_trigger_batches_total", "counter",
                   "Inference batches run by a tensorflow function.",
                   [((("function", n),), b.stats.batches) for n, b in batchers]),
            family("squall_trigger_batched_requests_total", "counter",
                   "Writes classified in those batches.",
                   [((("function", n),), b.stats.requests) for n, b in batchers]),
            family("squall_trigger_queued_requests", "gauge",
                   "Writes waiting for a batch of a tensorflow function.",
                   [((("function", n),), b.queued) for n, b in batchers]),
            family("squall_trigger_overloaded_total", "counter",
                   "Writes refused with SlowDown because a function's queue was full.",
                   [((("function", n),), b.stats.overloaded) for n, b in batchers]),
            family("squall_trigger_queue_wait_seconds", "histogram",
                   "From a write's arrival at a tensorflow function to the start of its "
                   "batch.",
                   [((("function", n),), b.stats.queue_wait) for n, b in batchers]),
            family("squall_trigger_inference_seconds", "histogram",
                   "Per batch of a tensorflow function: decoding and the model on the "
                   "inference thread; per call of a python function: its entry point.",
                   [((("function", n),), f.inference_time) for n, f in functions]),
        ]
        if self.pool is not None:
            families += [
                family("squall_inference_slots", "gauge",
                       "Batches the process runs at once (--inference-threads).",
                       [((), self.pool.threads)]),
                family("squall_inference_slots_busy", "gauge", "Batches running now.",
                       [((), self.pool.busy)]),
            ]
        if self.models is not None:
            families += [
                family("squall_model_cache_bytes", "gauge",
                       "Memory of the loaded model versions (weights and runtimes).",
                       [((), self.models.cached_bytes)]),
                family("squall_model_cache_versions", "gauge", "Model versions loaded.",
                       [((), len(self.models.cached_versions()))]),
                family("squall_model_loads_total", "counter", "Model versions loaded so far.",
                       [((), self.models.loads)]),
                family("squall_model_evictions_total", "counter",
                       "Model versions evicted to stay within the cache budget.",
                       [((), self.models.evictions)]),
            ]
        if self.events is not None:
            targets = self.events.delivery_status()["targets"]

            def per_target(field: str) -> Iterable[tuple[tuple[tuple[str, str], ...], float]]:
                return ((((("webhook", t["webhook"]), ("shard", str(t["shard"]))),
                          float(t[field]))) for t in targets)

            families += [
                family("squall_webhook_events_delivered_total", "counter",
                       "Notification events a webhook acknowledged.", per_target("delivered")),
                family("squall_webhook_failed_attempts_total", "counter",
                       "Deliveries that failed and will be retried.",
                       per_target("failed_attempts")),
                family("squall_webhook_failures_in_a_row", "gauge",
                       "Consecutive failures (0: the webhook is up).",
                       per_target("failures_in_a_row")),
            ]
        return families

    @property
    def tensorflow(self) -> TensorFlowSettings:
        """What this hook asks of TensorFlow: threads, device, GPU memory."""
        return self._tensorflow

    @property
    def registry(self) -> Registry:
        assert self._registry is not None, "TriggerHook.start was not called"
        return self._registry

    # --- api.PreCommitHook -----------------------------------------------------------------

    async def _configuration(self, bucket: str) -> NotificationConfiguration | None:
        assert self._storage is not None
        change_count = self._storage.change_count(bucket, CHANGES_CONFIGURATION)
        cached = self._configs.get(bucket)
        if cached is not None and change_count is not None and cached[0] == change_count:
            return cached[2] if cached[1] else None
        try:
            raw = await self._storage.get_bucket_config(bucket, NOTIFICATION_CONFIG)
        except NoSuchBucket:
            return None  # the commit itself will say so
        raw = b"" if raw is None else bytes(raw)
        if cached is not None and cached[1] == raw:
            configuration = cached[2]
        else:
            configuration = NotificationConfiguration.from_json(raw) if raw else (
                NotificationConfiguration())
        if len(self._configs) >= limits.trigger_lookups_cached_max and bucket not in self._configs:
            self._configs.clear()  # bounded: dropped whole, read again
        self._configs[bucket] = (change_count, raw, configuration)
        return configuration if raw else None

    async def bindings(self, bucket: str, key: str, event_name: str) -> Sequence[str]:
        if bucket == SYSTEM_BUCKET:
            return ()
        configuration = await self._configuration(bucket)
        if configuration is None:
            return ()
        return tuple(
            rule.arn[len(FUNCTION_ARN_PREFIX):]
            for rule in configuration.rules
            if rule.kind == "function" and rule.arn.startswith(FUNCTION_ARN_PREFIX)
            and rule.matches(key, event_name)
        )

    async def judge(self, event: WriteEvent, functions: Sequence[str]) -> Verdict:
        try:
            verdict = await self._judge(event, functions)
        except WriteRejected as rejected:
            self.verdicts[(rejected.verdict.function, "reject")] += 1
            raise
        except Exception:
            self.verdicts[(functions[0] if functions else "", "error")] += 1
            raise
        self.verdicts[(verdict.function, verdict.action)] += 1
        return verdict

    async def _judge(self, event: WriteEvent, functions: Sequence[str]) -> Verdict:
        pending = list(functions)
        steps: list[dict[str, Any]] = []
        bucket, key = event.bucket, event.key
        stored: set[str] = set()  # where an annotating step asked: ANNOTATE_TARGETS
        shown: dict[str, str] = {}
        last: tuple[FunctionDefinition, Prediction] | None = None
        while pending:
            name = pending.pop(0)
            if len(steps) >= limits.trigger_chain_depth_max:
                raise WriteRejected(
                    f"more than {limits.trigger_chain_depth_max} functions judged "
                    f"{event.bucket}/{event.key} (a chain loop?)",
                    self._verdict(name, "reject", steps, shown, stored, event, bucket, key,
                                  last))
            definition, prediction, batch_size = await self._predict(name, event, steps)
            if prediction is None:
                continue  # on_error: store -- the step is recorded, the write goes on
            outcome = evaluate(definition, prediction, event.bucket, event.key)
            step_annotations = verdict_annotations(definition, prediction)
            shown.update(step_annotations)
            stored.update(outcome.annotate)
            if outcome.key is not None:
                bucket, key = outcome.bucket or bucket, outcome.key
            steps.append(_step(definition, prediction, batch_size, outcome.terminal))
            last = (definition, prediction)
            if outcome.terminal is not None:
                verdict = self._verdict(name, outcome.terminal, steps, shown, stored, event,
                                        bucket, key, last, reason=outcome.reason)
                if outcome.terminal == "reject":
                    raise WriteRejected(outcome.reason, verdict)
                return verdict
            if outcome.chain is not None:
                pending.append(outcome.chain)
        if bucket != event.bucket:
            await self._check_route_bucket(bucket, steps)
        return self._verdict(steps[-1]["function"] if steps else functions[0], "store", steps,
                             shown, stored, event, bucket, key, last)

    async def _predict(
        self, name: str, event: WriteEvent, steps: list[dict[str, Any]]
    ) -> tuple[FunctionDefinition, Prediction | None, int]:
        try:
            function = await self.registry.function(name)
        except NoSuchKey:
            message = (f"function {name!r} is bound to bucket {event.bucket!r} but is not "
                       "registered")
            raise WriteRejected(message, Verdict(function=name, action="reject",
                                                 reason=message)) from None
        definition = function.definition
        try:
            prediction, batch_size = await function.predict(event)
        except FunctionFailed as error:
            message = f"function {name!r} could not judge {event.key!r}: {error}"
            if definition.on_error == "reject":
                steps.append({"function": name, "error": str(error), "action": "reject"})
                raise WriteRejected(message, Verdict(
                    function=name, action="reject", reason=message,
                    summary={"action": "reject", "steps": steps})) from None
            steps.append({"function": name, "error": str(error), "action": "store"})
            return definition, None, 0
        return definition, prediction, batch_size

    async def _check_route_bucket(self, bucket: str, steps: list[dict[str, Any]]) -> None:
        assert self._storage is not None
        try:
            await self._storage.get_bucket(bucket)
        except NoSuchBucket:
            names = ", ".join(step["function"] for step in steps)
            raise InvalidArgument(f"function {names} routes to bucket {bucket!r}, which does "
                                  "not exist") from None

    @staticmethod
    def _verdict(
        function: str,
        action: str,
        steps: list[dict[str, Any]],
        shown: Mapping[str, str],
        stored: Collection[str],
        event: WriteEvent,
        bucket: str,
        key: str,
        last: tuple[FunctionDefinition, Prediction] | None,
        reason: str = "",
    ) -> Verdict:
        summary: dict[str, Any] = {"action": action, "steps": steps}
        if (bucket, key) != (event.bucket, event.key):
            summary["bucket"], summary["key"] = bucket, key
        if reason:
            summary["reason"] = reason
        prediction = last[1] if last is not None else None
        return Verdict(
            function=function,
            action=action,
            label=prediction.label if prediction else "",
            score=prediction.score if prediction else None,
            model_version=prediction.model_version if prediction else "",
            reason=reason,
            annotations=dict(shown),
            store_annotations="metadata" in stored,
            tag_annotations="tags" in stored,
            bucket=bucket if bucket != event.bucket else None,
            key=key if key != event.key or bucket != event.bucket else None,
            summary=summary,
        )

    # --- api.FunctionAdmin -------------------------------------------------------------------

    async def put_function(self, name: str, document: bytes) -> Mapping[str, Any]:
        check_function_name(name)
        return await self.registry.put(name, document)

    async def get_function(self, name: str) -> Mapping[str, Any]:
        check_function_name(name)
        return await self.registry.show(name)

    async def list_functions(self) -> list[Mapping[str, Any]]:
        return [await self.registry.show(name) for name in await self.registry.list_names()]

    async def delete_function(self, name: str) -> None:
        check_function_name(name)
        await self.registry.delete(name)


def _step(
    definition: FunctionDefinition, prediction: Prediction, batch_size: int, terminal: str | None
) -> dict[str, Any]:
    step: dict[str, Any] = {"function": definition.name, "label": prediction.label}
    if prediction.score is not None:
        step["score"] = round(prediction.score, 4)
    if prediction.model_version:
        step["model_version"] = prediction.model_version
    if prediction.runtime:
        step["runtime"] = prediction.runtime
    if prediction.device:
        step["device"] = prediction.device
    if prediction.inference_ms is not None:
        step["inference_ms"] = round(prediction.inference_ms, 3)
    if len(prediction.top) > 1:
        step["top"] = [[label, round(score, 4)] for label, score in prediction.top]
    if batch_size > 1:
        step["batch_size"] = batch_size
    if terminal is not None:
        step["action"] = terminal
    return step
