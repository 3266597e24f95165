"""Object lifecycle: which versions a bucket's rules expire, and the sweeper that does it.

Rules and theory of operation:

* The gateway validates a PutBucketLifecycleConfiguration and stores the rules in the
  storage-readable form ``api.LifecycleConfiguration`` under the bucket config
  ``api.LIFECYCLE_RULES_CONFIG``. Storage reads nothing else of S3's XML.
* The decision is pure (``rule_matches``, ``due_ms``, ``KeyPlanner``): no I/O, time is
  an argument. A ``KeyPlanner`` consumes ONE key's versions newest first, one at a time
  (a key may have more versions than fit in memory), and answers the ``ExpiryAction``
  each version calls for:

  - the current version (not a delete marker) expires when an enabled rule matching it
    has ``expiration_days`` elapsed since its creation, or ``expiration_date_ms`` passed;
  - a noncurrent version is removed when a matching rule's ``noncurrent_days`` elapsed
    since it became noncurrent (the creation of the next newer version) and at least
    ``newer_noncurrent_versions`` newer noncurrent versions exist;
  - a current delete marker that is the key's only version is removed when a matching
    rule has ``expired_object_delete_marker``.

  - an incomplete multipart upload is aborted (``aborts_upload``) when an enabled rule
    with ``abort_incomplete_multipart_days`` whose prefix matches its key has that many
    days elapsed since its initiation. The gateway refuses tag and size filters on such
    a rule, as AWS does: an upload has neither yet.

  As on AWS, "N days after T" is T + N days rounded up to the next midnight UTC. A
  day is ``SweeperSettings.day_ms`` long: 24 hours, unless a test shortens it (``squall
  serve --lifecycle-day-seconds``, as RGW's ``rgw_lc_debug_interval`` does), so that
  expiry can be watched in seconds; "midnight" is then a multiple of that day.
* ``LifecycleSweeper`` is one asyncio task per node, started by the node and cancelled by
  its ``close``. Every ``period_seconds`` it walks every bucket that has rules, reading
  versions in pages of one read transaction each on the event loop thread (microseconds
  per version, as every metadata read), and submits the actions in writer operations of
  at most ``deletes_per_txn_max``, pausing so that it applies at most
  ``deletes_per_second_max`` a second. Incomplete multipart uploads are read the same
  way (pages of ``scan_uploads_per_page_max``) before the versions; an upload abort
  counts as one delete against both bounds, as the expiry of a multipart version does,
  whatever its number of parts. Each action re-checks its reason at the commit point
  (``storage.engine.expiry``), so a key changed (or an upload completed) since the scan
  is left alone.
* Expirations make LifecycleExpiration notification events in their own transactions
  (``storage.engine.expiry``). When the notification outbox is full (or the writer's
  queue is), the sweep PAUSES: the batch's actions that did not fit are retried after a
  delay that doubles from ``overloaded_retry_delay_ms_min`` to ``_max``, for as long as
  it takes the targets to catch up (or until the sweeper is closed). Nothing is dropped
  and the pass does not fail; a warning is logged at most once per
  ``overloaded_log_period_seconds``.
* A failing pass is logged with its traceback and counted; the next period tries again.
  A bucket deleted mid-pass ends that bucket's pass quietly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.api import (
    LIFECYCLE_DAY_MS,
    LIFECYCLE_RULES_CONFIG,
    LifecycleConfiguration,
    LifecycleRule,
    NoSuchBucket,
    ObjectVersion,
    Overloaded,
    lifecycle_due_ms,
    limits,
)
from storage.engine import Engine, WriteOperation, multipart
from storage.engine.expiry import (
    Action,
    BatchOutcome,
    ExpiryAction,
    ExpiryKind,
    UploadAbort,
    abort_uploads,
    bucket_names,
    expire,
    scan_versions,
)

__all__ = [
    "DAY_MS",
    "KeyPlanner",
    "LifecycleSweeper",
    "SweeperSettings",
    "SweeperStats",
    "aborts_upload",
    "due_ms",
    "plan_key",
    "rule_matches",
]

_log = logging.getLogger(__name__)
DAY_MS = LIFECYCLE_DAY_MS


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the pure decision -------------------------------------------------------------------


# The rule arithmetic lives with the rule type in storage.api, where the gateway (its
# x-amz-expiration header) reads the same answers the sweeper acts on.
due_ms = lifecycle_due_ms


def version_tags(version: ObjectVersion) -> Mapping[str, str]:
    # Tests hand the planner stand-ins for api.ObjectVersion that may carry no tags.
    tags: Mapping[str, str] = getattr(version, "tags", None) or {}
    return tags


def rule_matches(rule: LifecycleRule, key: str, size_bytes: int, tags: Mapping[str, str]) -> bool:
    """Whether the rule's filter (prefix AND tags AND size bounds) selects this version."""
    return rule.matches(key, size_bytes, tags)


def aborts_upload(
    rules: Iterable[LifecycleRule], key: str, initiated_ms: int, now_ms: int,
    day_ms: int = DAY_MS,
) -> bool:
    """Whether an enabled AbortIncompleteMultipartUpload rule matching ``key`` is due for
    an upload initiated at ``initiated_ms`` (only the prefix filters: see the module doc)."""
    return any(
        rule.enabled
        and rule.abort_incomplete_multipart_days is not None
        and key.startswith(rule.prefix)
        and now_ms >= due_ms(initiated_ms, rule.abort_incomplete_multipart_days, day_ms)
        for rule in rules
    )


def _expires_current(
    rule: LifecycleRule, version: ObjectVersion, now_ms: int, day_ms: int
) -> bool:
    expiry_ms = rule.current_expiry_ms(version.last_modified_ms, day_ms)
    return expiry_ms is not None and now_ms >= expiry_ms


def _removes_noncurrent(
    rule: LifecycleRule, noncurrent_since_ms: int, newer_noncurrent_count: int, now_ms: int,
    day_ms: int,
) -> bool:
    if rule.noncurrent_days is None:
        return False
    if newer_noncurrent_count < (rule.newer_noncurrent_versions or 0):
        return False
    return now_ms >= due_ms(noncurrent_since_ms, rule.noncurrent_days, day_ms)


class KeyPlanner:
    """The expiry decisions for ONE key, fed its versions newest first."""

    def __init__(
        self, rules: Iterable[LifecycleRule], now_ms: int, key: str, day_ms: int = DAY_MS
    ) -> None:
        self.key = key
        self._day_ms = day_ms
        self._rules = tuple(r for r in rules if r.enabled and key.startswith(r.prefix))
        self._now_ms = now_ms
        self._seen = 0
        self._newer_last_modified_ms = 0
        self._current: ObjectVersion | None = None

    def consume(self, version: ObjectVersion) -> ExpiryAction | None:
        assert version.key == self.key
        index, self._seen = self._seen, self._seen + 1
        noncurrent_since_ms, self._newer_last_modified_ms = (
            self._newer_last_modified_ms,
            version.last_modified_ms,
        )
        tags = version_tags(version)
        matching = [r for r in self._rules if rule_matches(r, self.key, version.size_bytes, tags)]
        if index == 0:
            self._current = version
            if version.is_delete_marker:
                return None  # decided in finish(): only a marker with no other version
            if any(_expires_current(r, version, self._now_ms, self._day_ms) for r in matching):
                return ExpiryAction(ExpiryKind.EXPIRE_CURRENT, self.key, version.version_id)
            return None
        if any(_removes_noncurrent(r, noncurrent_since_ms, index - 1, self._now_ms, self._day_ms)
               for r in matching):  # fmt: skip
            return ExpiryAction(ExpiryKind.REMOVE_NONCURRENT, self.key, version.version_id)
        return None

    def finish(self) -> ExpiryAction | None:
        current = self._current
        if current is None or not current.is_delete_marker or self._seen != 1:
            return None
        tags = version_tags(current)
        if any(r.expired_object_delete_marker and rule_matches(r, self.key, 0, tags)
               for r in self._rules):  # fmt: skip
            return ExpiryAction(
                ExpiryKind.REMOVE_EXPIRED_DELETE_MARKER, self.key, current.version_id
            )
        return None


def plan_key(
    rules: Iterable[LifecycleRule], versions: Iterable[ObjectVersion], now_ms: int,
    day_ms: int = DAY_MS,
) -> list[ExpiryAction]:
    """Every action for one key's versions (newest first): the planner over a list."""
    planner: KeyPlanner | None = None
    actions: list[ExpiryAction | None] = []
    for version in versions:
        planner = planner or KeyPlanner(rules, now_ms, version.key, day_ms)
        actions.append(planner.consume(version))
    if planner is not None:
        actions.append(planner.finish())
    return [action for action in actions if action is not None]


# --- the sweeper ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweeperSettings:
    period_seconds: float = limits.lifecycle_sweep_period_seconds
    deletes_per_second_max: int = limits.lifecycle_deletes_per_second_max
    deletes_per_txn_max: int = limits.lifecycle_deletes_per_txn_max
    scan_versions_per_page_max: int = limits.lifecycle_scan_versions_per_page_max
    scan_uploads_per_page_max: int = limits.lifecycle_scan_uploads_per_page_max
    overloaded_retry_delay_ms_min: int = limits.lifecycle_overloaded_retry_delay_ms_min
    overloaded_retry_delay_ms_max: int = limits.lifecycle_overloaded_retry_delay_ms_max
    # The sweeper's notion of "now". Tests pass a clock days ahead of the engine's.
    now_ms: Callable[[], int] = wall_clock_ms
    # How long a lifecycle "day" is: 24 hours, shorter only to watch expiry in a test.
    day_ms: int = DAY_MS


@dataclass(slots=True)
class SweeperStats:
    passes_completed: int = 0
    passes_failed: int = 0
    versions_scanned: int = 0
    uploads_scanned: int = 0
    actions_planned: int = 0
    actions_applied: int = 0
    # Waits because the outbox (or the writer's queue) was full: the sweep paused.
    overloaded_pauses: int = 0
    last_error: BaseException | None = field(default=None, repr=False)


WriteFunction = Callable[[WriteOperation], Awaitable[Any]]
# A replicated shard's way to apply a batch: (bucket, actions) -> the batch's outcome,
# through the shard's log (``storage.cluster_node``); None: the node's own writer.
BatchFunction = Callable[[str, tuple[Any, ...]], Awaitable[Any]]


class LifecycleSweeper:
    def __init__(
        self,
        engine: Engine,
        write: WriteFunction,
        settings: SweeperSettings,
        *,
        apply_batch: BatchFunction | None = None,
        active: Callable[[], bool] | None = None,
        engine_of: Callable[[], Engine] | None = None,
    ) -> None:
        """``apply_batch``: how a batch is applied instead of a writer operation (a
        cluster's log); ``active``: a pass runs only while it says so (a cluster: the
        shard's ready leader); ``engine_of``: the engine to read, when it can be
        replaced under the sweeper (a replica that installs a snapshot)."""
        assert settings.period_seconds > 0 and settings.day_ms > 0
        assert settings.deletes_per_second_max > 0 and settings.deletes_per_txn_max > 0
        assert settings.scan_versions_per_page_max > 0
        assert settings.scan_uploads_per_page_max > 0
        assert 0 < settings.overloaded_retry_delay_ms_min <= settings.overloaded_retry_delay_ms_max
        self._engine_of = engine_of or (lambda: engine)
        self._apply_batch = apply_batch
        self._active = active or (lambda: True)
        self._last_overloaded_log = -float("inf")
        self._write = write
        self.settings = settings
        self.stats = SweeperStats()
        self._task: asyncio.Task[None] | None = None

    # --- task ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the periodic task (first pass at once). Needs a running event loop."""
        assert self._task is None, "the sweeper was already started"
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="squall-lifecycle-sweeper"
        )
        self._task.add_done_callback(self._task_done)

    async def close(self) -> None:
        """Cancel the task and wait until it has stopped (no write left in flight)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    @staticmethod
    def _task_done(task: asyncio.Task[None]) -> None:
        # _run never returns on its own and catches Exception per pass: reaching here
        # other than by cancellation is a bug that must not pass silently.
        if not task.cancelled() and task.exception() is not None:
            _log.error("lifecycle sweeper stopped", exc_info=task.exception())

    @property
    def _engine(self) -> Engine:
        return self._engine_of()

    async def _run(self) -> None:
        while True:
            try:
                if self._active():
                    await self.sweep_once()
            except Exception as error:
                # Logged with its traceback; the next period tries again (a failure
                # here must not take the node's reads and writes down with it).
                self.stats.passes_failed += 1
                self.stats.last_error = error
                _log.exception("lifecycle sweep pass failed")
            await asyncio.sleep(self.settings.period_seconds)

    # --- one pass ------------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """One pass over every bucket with rules; returns how many actions were applied."""
        applied = 0
        for bucket in bucket_names(self._engine):
            applied += await self._sweep_bucket(bucket)
        self.stats.passes_completed += 1
        return applied

    def _rules(self, bucket: str) -> tuple[LifecycleRule, ...]:
        try:
            document = self._engine.get_bucket_config(bucket, LIFECYCLE_RULES_CONFIG)
        except NoSuchBucket:
            return ()  # deleted since it was listed
        if document is None:
            return ()
        rules = LifecycleConfiguration.from_document(document).rules
        return tuple(rule for rule in rules if rule.enabled)

    async def _sweep_bucket(self, bucket: str) -> int:
        rules = self._rules(bucket)
        if not rules:
            return 0
        applied = await self._abort_incomplete_multipart_uploads(bucket, rules)
        now_ms = self.settings.now_ms()
        batch: list[ExpiryAction] = []
        planner: KeyPlanner | None = None
        resume_after: bytes | None = None
        while True:
            try:
                page = scan_versions(
                    self._engine, bucket, resume_after, self.settings.scan_versions_per_page_max
                )
            except NoSuchBucket:
                break
            self.stats.versions_scanned += len(page.versions)
            for version in page.versions:
                if planner is None or planner.key != version.key:
                    _append(batch, planner.finish() if planner is not None else None)
                    planner = KeyPlanner(rules, now_ms, version.key, self.settings.day_ms)
                _append(batch, planner.consume(version))
                if len(batch) >= self.settings.deletes_per_txn_max:
                    applied += await self._flush(bucket, batch, expire)
            if page.resume_after is None:
                break
            resume_after = page.resume_after
            await asyncio.sleep(0)  # let requests run between pages
        _append(batch, planner.finish() if planner is not None else None)
        applied += await self._flush(bucket, batch, expire)
        return applied

    async def _flush(
        self, bucket: str, batch: list[Action],
        operation_for: Callable[[str, tuple[Action, ...]], WriteOperation],
    ) -> int:
        """Apply a batch of actions in writer operations (``operation_for(bucket,
        actions)``, or ``apply_batch``),
        empty the batch, then pause for the rate bound. Returns how many were applied.
        While the outbox (or the writer's queue) is full, waits and retries what was not
        applied: a sweep pauses, it never drops an event."""
        if not batch:
            return 0
        actions = tuple(batch)
        batch.clear()
        self.stats.actions_planned += len(actions)
        applied = 0
        pending = actions
        delay_ms = self.settings.overloaded_retry_delay_ms_min
        while pending:
            reason = "the notification outbox is full"
            try:
                outcome: BatchOutcome[Action] = await self._submit(bucket, operation_for,
                                                                   pending)
            except NoSuchBucket:
                return applied
            except Overloaded as error:  # refused whole, e.g. the writer's queue is full
                outcome, reason = BatchOutcome(0, pending), str(error)
            applied += outcome.applied
            self.stats.actions_applied += outcome.applied
            pending = outcome.deferred
            if pending:
                self.stats.overloaded_pauses += 1
                self._log_overloaded(reason, len(pending))
                await asyncio.sleep(delay_ms / 1000)
                delay_ms = min(delay_ms * 2, self.settings.overloaded_retry_delay_ms_max)
        # The rate bound: this many deletes may not come faster than deletes_per_second.
        await asyncio.sleep(len(actions) / self.settings.deletes_per_second_max)
        return applied

    async def _submit(self, bucket: str,
                      operation_for: Callable[[str, tuple[Action, ...]], WriteOperation],
                      pending: tuple[Action, ...]) -> BatchOutcome[Action]:
        if self._apply_batch is None:
            outcome: BatchOutcome[Action] = await self._write(operation_for(bucket, pending))
            return outcome
        replicated: BatchOutcome[Action] = await self._apply_batch(bucket, pending)
        return replicated

    def _log_overloaded(self, reason: str, pending_count: int) -> None:
        now = time.monotonic()
        if now - self._last_overloaded_log >= limits.lifecycle_overloaded_log_period_seconds:
            self._last_overloaded_log = now
            _log.warning("lifecycle sweep paused: %s; %d actions wait to be retried", reason,
                         pending_count)

    async def _abort_incomplete_multipart_uploads(
        self, bucket: str, rules: tuple[LifecycleRule, ...]
    ) -> int:
        """AbortIncompleteMultipartUpload: abort the uploads whose rule is due; returns how
        many were aborted. Uploads are read in pages (one read transaction each) in key
        order, and aborted in batches under the same bounds as version expiry."""
        if not any(rule.abort_incomplete_multipart_days is not None for rule in rules):
            return 0
        now_ms = self.settings.now_ms()
        batch: list[UploadAbort] = []
        applied = 0
        key_marker, upload_id_marker = "", ""
        while True:
            try:
                page = multipart.list_uploads(
                    self._engine, bucket, key_marker=key_marker,
                    upload_id_marker=upload_id_marker,
                    max_uploads=self.settings.scan_uploads_per_page_max,
                )  # fmt: skip
            except NoSuchBucket:
                break
            self.stats.uploads_scanned += len(page.uploads)
            for upload in page.uploads:
                if aborts_upload(rules, upload.key, upload.initiated_ms, now_ms,
                                 self.settings.day_ms):
                    batch.append(UploadAbort(upload.key, upload.upload_id))
                if len(batch) >= self.settings.deletes_per_txn_max:
                    applied += await self._flush(bucket, batch, abort_uploads)
            if not page.is_truncated:
                break
            assert page.next_key_marker is not None and page.next_upload_id_marker is not None
            key_marker, upload_id_marker = page.next_key_marker, page.next_upload_id_marker
            await asyncio.sleep(0)  # let requests run between pages
        applied += await self._flush(bucket, batch, abort_uploads)
        return applied


def _append(batch: list[ExpiryAction], action: ExpiryAction | None) -> None:
    if action is not None:
        batch.append(action)
