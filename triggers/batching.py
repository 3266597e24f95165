"""Adaptive batching of concurrent inferences for one function.

Theory of operation:

* Requests are queued (bounded by ``queue_length_max``: a full queue raises
  ``Overloaded``, which the gateway answers 503 SlowDown). One collector task per
  function takes the first waiting request, then keeps taking more until the batch has
  ``max_batch_size`` requests or ``max_queue_delay_ms`` have passed since the first, and
  runs the batch (the caller's ``run_batch``, which does its work in a thread).
* The batch size adapts to load with no tuning: under light load a request waits at most
  ``max_queue_delay_ms``; under heavy load, everything that arrived while the previous
  batch ran is taken at once, up to ``max_batch_size``.
* The wait is only worth paying when company is likely: the collector opens the window
  only while requests have recently been arriving less than ``max_queue_delay_ms``
  apart (a moving average of the gaps between arrivals, each gap counted as at most
  twice the window). A lone request after a quiet spell, or a single sequential client
  slower than the window, runs at once instead of paying the delay for nothing. With
  ``max_batch_size: 1`` there is no window and no timer at all.
* The queue is a deque; the collector sleeps on one future that ``submit`` resolves (and
  one timer handle while a window is open), not on a task per awaited request.
* A request's inputs may be views that are valid only until its ``submit`` returns; so a
  request cancelled while its batch runs waits (shielded) for the batch to finish before
  its ``submit`` returns. A request cancelled while still queued is skipped.
* ``run_batch`` returns one result or one exception per request: one bad input does not
  fail its neighbours. The collector task is owned here and ended by ``close``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.api import Overloaded

_log = logging.getLogger(__name__)

RunBatch = Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]


@dataclass(slots=True)
class _Request:
    item: Any
    future: asyncio.Future[Any]
    batch: asyncio.Future[Any] | None = None  # set once the request is in a running batch


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest_batch: int = 0
    sizes: list[int] = field(default_factory=list)  # the last few, for tests and metrics


class Batcher:
    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        *,
        max_batch_size: int,
        max_queue_delay_ms: float,
        queue_length_max: int,
    ) -> None:
        assert max_batch_size >= 1 and queue_length_max >= 1 and max_queue_delay_ms >= 0
        self.name = name
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_queue_delay_s = max_queue_delay_ms / 1000
        self._queue_length_max = queue_length_max
        self._queue: collections.deque[_Request] = collections.deque()
        self._wakeup: asyncio.Future[None] | None = None  # the collector waits on it
        self._collector: asyncio.Task[None] | None = None
        self._closed = False
        self._last_arrival_s: float | None = None
        self._arrival_gap_s = float("inf")  # moving average of the gaps between arrivals
        self.stats = BatchStats()

    async def submit(self, item: Any) -> tuple[Any, int]:
        """The result for ``item`` and the size of the batch it ran in."""
        if self._closed:
            raise Overloaded(f"function {self.name!r} is shutting down")
        if len(self._queue) >= self._queue_length_max:
            raise Overloaded(f"function {self.name!r} has {self._queue_length_max} "
                             "inferences queued")
        loop = asyncio.get_running_loop()
        self._note_arrival(loop.time())
        request = _Request(item, loop.create_future())
        self._queue.append(request)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        if self._collector is None:
            self._collector = asyncio.create_task(self._collect(), name=f"batcher-{self.name}")
        try:
            return await request.future
        except asyncio.CancelledError:
            if request.batch is not None and not request.batch.done():
                await asyncio.wait({request.batch})  # its inputs are in use until then
            raise

    def _note_arrival(self, now_s: float) -> None:
        if self._max_batch_size == 1:
            return
        if self._last_arrival_s is not None:
            gap_s = min(now_s - self._last_arrival_s, 2 * self._max_queue_delay_s)
            if self._arrival_gap_s == float("inf"):
                self._arrival_gap_s = gap_s
            else:
                self._arrival_gap_s += (gap_s - self._arrival_gap_s) / 8
        self._last_arrival_s = now_s

    def _window_open(self) -> bool:
        """Whether waiting for company is likely to pay: arrivals are denser than it."""
        return 0 < self._max_queue_delay_s and self._arrival_gap_s < self._max_queue_delay_s

    async def _wait(self, timeout_s: float | None) -> None:
        """Until a request is queued, or ``timeout_s`` passes (None: no timeout)."""
        loop = asyncio.get_running_loop()
        wakeup: asyncio.Future[None] = loop.create_future()
        self._wakeup = wakeup
        timer = None if timeout_s is None else loop.call_later(timeout_s, _wake, wakeup)
        try:
            await wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    async def _next_batch(self) -> list[_Request]:
        while not self._queue:
            await self._wait(None)
        batch = [self._queue.popleft()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_queue_delay_s
        while len(batch) < self._max_batch_size:
            if self._queue:
                batch.append(self._queue.popleft())
                continue
            remaining_s = deadline - loop.time()
            if remaining_s <= 0 or not self._window_open():
                break
            await self._wait(remaining_s)
        return [request for request in batch if not request.future.done()]

    async def _collect(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            running = asyncio.ensure_future(self._run_batch([r.item for r in batch]))
            for request in batch:
                request.batch = running
            try:
                results = await asyncio.shield(running)
            except asyncio.CancelledError:
                await asyncio.wait({running})
                for request in batch:
                    request.future.cancel()
                raise
            except Exception as error:  # the whole batch failed: each caller gets it
                results = [error] * len(batch)
            self._record(len(batch))
            for request, result in zip(batch, results, strict=True):
                if request.future.done():
                    continue
                if isinstance(result, BaseException):
                    request.future.set_exception(result)
                else:
                    request.future.set_result((result, len(batch)))

    def _record(self, size: int) -> None:
        self.stats.batches += 1
        self.stats.requests += size
        self.stats.largest_batch = max(self.stats.largest_batch, size)
        self.stats.sizes = [*self.stats.sizes[-63:], size]

    async def close(self) -> None:
        self._closed = True
        if self._collector is not None:
            self._collector.cancel()
            try:
                await self._collector
            except asyncio.CancelledError:
                pass
        while self._queue:
            request = self._queue.popleft()
            if not request.future.done():
                request.future.set_exception(Overloaded(f"function {self.name!r} closed"))


def _wake(wakeup: asyncio.Future[None]) -> None:
    if not wakeup.done():
        wakeup.set_result(None)
