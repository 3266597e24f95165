"""Adaptive batching of concurrent inferences for one function, several batches at once.

Theory of operation:

* Requests are queued (bounded by ``queue_length_max``: a full queue raises
  ``Overloaded``, which the gateway answers 503 SlowDown). There is no collector task:
  ``submit``, a batch finishing, and the window's timer each call ``_dispatch``, which
  starts batches while this function has fewer than ``max_concurrent_batches`` running
  and the process-wide ``InferencePool`` has a free slot. A batch takes the queue's
  oldest requests, up to ``max_batch_size``, and runs as one task (the caller's
  ``run_batch``, which does its work on the pool's threads).
* Ordering: requests are taken in arrival order, batches start in that order, and
  ``run_batch`` resolves what it needs (the model version) when its batch starts. So a
  request submitted after a model write was acknowledged runs on the new model, and a
  batch that started before keeps the version it resolved. Batches running at once may
  FINISH in any order (they are independent writes).
* The batch size adapts to load with no tuning: a request waits at most
  ``max_queue_delay_ms`` (from its arrival, or from the latest batch's start if it was
  left out of that full batch) for company; under heavy load, everything that arrived
  while the slots were busy is taken at once, up to ``max_batch_size``. While a batch
  runs, the next one waits until that batch has run the window too: a model faster than
  the window gets one bigger batch instead of two half batches at once.
* The wait is only worth paying when company is likely: the window is open only while
  requests have recently been arriving less than ``max_queue_delay_ms`` apart (a moving
  average of the gaps between arrivals, each gap counted as at most twice the window).
  A lone request after a quiet spell, or a single sequential client slower than the
  window, starts at once, on the caller's own turn of the event loop. With
  ``max_batch_size: 1`` there is no window and no timer.
* A request's inputs may be views that are valid only until its ``submit`` returns; so a
  request cancelled while its batch runs waits for the batch to finish before its
  ``submit`` returns. A request cancelled while still queued is skipped. A batch is
  never cancelled: ``close`` fails the queued requests and waits for running batches.
  A batcher whose function version is retired (``triggers.functions.Registry``) is
  closed only once ``wait_idle`` returns (nothing queued, nothing running), so retiring
  it fails no request.
* ``run_batch`` returns one result or one exception per request: one bad input does not
  fail its neighbours; an exception from ``run_batch`` itself fails its whole batch.
* ``InferencePool``: one per process (the hook owns it). It bounds how many batches of
  ALL functions run at once (its thread count), so many functions cannot oversubscribe
  the cores; a batcher that finds no free slot waits in the pool's FIFO and is called
  back when one frees.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.api import Histogram, Overloaded

_log = logging.getLogger(__name__)

RunBatch = Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]
# Called by the pool with a slot taken for it (True); returns whether it used the slot.
SlotWaiter = Callable[[bool], bool]


class InferencePool:
    """``threads`` inference slots and the threads that run them, shared by every
    function of the process."""

    def __init__(self, threads: int) -> None:
        assert threads >= 1
        self.threads = threads
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="squall-inference")
        self._free = threads
        self._waiting: collections.deque[SlotWaiter] = collections.deque()
        self.busy_max = 0  # the most slots ever in use at once

    @property
    def busy(self) -> int:
        return self.threads - self._free

    def try_acquire(self, on_free: SlotWaiter) -> bool:
        """Take a slot; or queue ``on_free`` (once) to be called when one frees."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            self.busy_max = max(self.busy_max, self.busy)
            return True
        if on_free not in self._waiting:
            self._waiting.append(on_free)
        return False

    def release(self) -> None:
        assert self._free < self.threads
        self._free += 1
        while self._free > 0 and self._waiting:
            waiter = self._waiting.popleft()
            self._free -= 1  # handed to the waiter, which releases it if it has no use
            self.busy_max = max(self.busy_max, self.busy)
            if not waiter(True):
                self._free += 1

    def forget(self, on_free: SlotWaiter) -> None:
        try:
            self._waiting.remove(on_free)
        except ValueError:
            pass

    def close(self) -> None:
        self.executor.shutdown(wait=True)


@dataclass(slots=True)
class _Request:
    item: Any
    future: asyncio.Future[Any]
    arrival_s: float
    batch: asyncio.Future[Any] | None = None  # set once the request is in a running batch


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest_batch: int = 0
    running_max: int = 0  # the most batches of this function ever running at once
    overloaded: int = 0  # requests refused because the queue was full (SlowDown)
    sizes: list[int] = field(default_factory=list)  # the last few, for tests and metrics
    # From a request's arrival to the start of the batch that runs it (metrics).
    queue_wait: Histogram = field(default_factory=Histogram)


class Batcher:
    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        *,
        max_batch_size: int,
        max_queue_delay_ms: float,
        queue_length_max: int,
        max_concurrent_batches: int = 1,
        pool: InferencePool | None = None,
    ) -> None:
        assert max_batch_size >= 1 and queue_length_max >= 1 and max_queue_delay_ms >= 0
        assert max_concurrent_batches >= 1
        self.name = name
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_queue_delay_s = max_queue_delay_ms / 1000
        self._queue_length_max = queue_length_max
        self._max_concurrent_batches = max_concurrent_batches
        self._pool = pool
        self._queue: collections.deque[_Request] = collections.deque()
        self._running: set[asyncio.Future[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at_s = 0.0
        self._last_start_s = 0.0  # when the latest batch started (loop time)
        self._closed = False
        self._last_arrival_s: float | None = None
        self._arrival_gap_s = float("inf")  # moving average of the gaps between arrivals
        self._idle_waiters: list[asyncio.Future[None]] = []  # ``wait_idle`` callers
        self.stats = BatchStats()

    @property
    def idle(self) -> bool:
        """No batch runs and no request waits (cancelled ones left in the queue aside)."""
        return not self._running and all(request.future.done() for request in self._queue)

    async def wait_idle(self) -> None:
        """Return once ``idle``: what a retired function waits for before it is closed.
        (The caller sends it no new requests; those in flight end within the judge
        timeout, so this ends too.)"""
        while not self.idle:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def _notify_idle(self) -> None:
        if self._idle_waiters and self.idle:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    @property
    def queued(self) -> int:
        """Requests waiting for a batch (some may have been cancelled)."""
        return len(self._queue)

    async def submit(self, item: Any) -> tuple[Any, int]:
        """The result for ``item`` and the size of the batch it ran in."""
        if self._closed:
            raise Overloaded(f"function {self.name!r} is shutting down")
        if len(self._queue) >= self._queue_length_max:
            self.stats.overloaded += 1
            raise Overloaded(f"function {self.name!r} has {self._queue_length_max} "
                             "inferences queued")
        loop = asyncio.get_running_loop()
        now_s = loop.time()
        self._note_arrival(now_s)
        request = _Request(item, loop.create_future(), now_s)
        self._queue.append(request)
        self._dispatch()
        try:
            return await request.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            if request.batch is not None and not request.batch.done():
                await asyncio.wait({request.batch})  # its inputs are in use until then
            self._notify_idle()  # a cancelled queued request may have been the last
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

    def _drop_cancelled_head(self) -> None:
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()

    def _ready_at(self) -> float | None:
        """None when a batch should start now; else when the head's window closes.

        While a batch of this function runs, the window also lasts until that batch has
        run ``max_queue_delay_ms``: a batch shorter than the window (a small model) is
        better joined by the next one than overlapped with half of it, and one longer (a
        large model) is overlapped as soon as the window closes."""
        if len(self._queue) >= self._max_batch_size or not self._window_open():
            return None
        deadline_s = max(self._queue[0].arrival_s, self._last_start_s if self._running
                         else 0.0) + self._max_queue_delay_s
        return None if asyncio.get_running_loop().time() >= deadline_s else deadline_s

    def _dispatch(self, held_slot: bool = False) -> bool:
        """Start every batch that may start now. ``held_slot``: called by the pool with a
        slot already taken for this batcher. Returns whether that slot was used."""
        used_held = False
        while not self._closed:
            self._drop_cancelled_head()
            if not self._queue or len(self._running) >= self._max_concurrent_batches:
                break
            ready_at = self._ready_at()
            if ready_at is not None:
                self._arm_timer(ready_at)
                break
            if held_slot and not used_held:
                used_held = True
            elif self._pool is not None and not self._pool.try_acquire(self._dispatch):
                break
            self._start(self._take())
        self._notify_idle()  # every change of the queue or of the running set ends here
        return used_held

    def _arm_timer(self, at_s: float) -> None:
        # The deadline is kept here: uvloop's timer handles have no ``when()``.
        if self._timer is not None and self._timer_at_s <= at_s:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(at_s, self._on_timer)
        self._timer_at_s = at_s

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> list[_Request]:
        batch: list[_Request] = []
        while self._queue and len(batch) < self._max_batch_size:
            request = self._queue.popleft()
            if not request.future.done():
                batch.append(request)
        return batch

    def _start(self, batch: list[_Request]) -> None:
        self._last_start_s = now_s = asyncio.get_running_loop().time()
        for request in batch:
            self.stats.queue_wait.observe(now_s - request.arrival_s)
        running = asyncio.ensure_future(self._run_batch([r.item for r in batch]))
        for request in batch:
            request.batch = running
        self._running.add(running)
        self.stats.running_max = max(self.stats.running_max, len(self._running))
        running.add_done_callback(functools.partial(self._finish, batch))

    def _finish(self, batch: list[_Request], running: asyncio.Future[Any]) -> None:
        self._running.discard(running)
        if self._pool is not None:
            self._pool.release()
        results: Sequence[Any]
        if running.cancelled():
            results = [asyncio.CancelledError()] * len(batch)
        elif running.exception() is not None:  # the whole batch failed: each caller gets it
            results = [running.exception()] * len(batch)
        else:
            results = running.result()
            if len(results) != len(batch):  # a bug in run_batch: fail loudly, never hang
                results = [RuntimeError(f"function {self.name!r}: {len(results)} results "
                                        f"for {len(batch)} requests")] * len(batch)
        if batch:
            self._record(len(batch))
        for request, result in zip(batch, results, strict=True):
            if request.future.done():
                continue
            if isinstance(result, asyncio.CancelledError):
                request.future.cancel()
            elif isinstance(result, BaseException):
                request.future.set_exception(result)
            else:
                request.future.set_result((result, len(batch)))
        self._dispatch()

    def _record(self, size: int) -> None:
        self.stats.batches += 1
        self.stats.requests += size
        self.stats.largest_batch = max(self.stats.largest_batch, size)
        self.stats.sizes = [*self.stats.sizes[-63:], size]

    async def close(self) -> None:
        """Refuse new requests, fail the queued ones, and wait for running batches."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pool is not None:
            self._pool.forget(self._dispatch)
        while self._queue:
            request = self._queue.popleft()
            if not request.future.done():
                request.future.set_exception(Overloaded(f"function {self.name!r} closed"))
        if self._running:
            await asyncio.wait(set(self._running))
