"""The ``x-amz-expiration`` response header: when the bucket's lifecycle rules will
expire the object a PUT wrote or a GET/HEAD read.

AWS sends it on PutObject, GetObject, HeadObject, CopyObject and
CompleteMultipartUpload when a lifecycle Expiration rule applies to the object:
``expiry-date="Fri, 23 Dec 2012 00:00:00 GMT", rule-id="picture-deletion-rule"``.
The date is the one the sweeper acts on (``api.current_version_expiry``: the earliest
enabled rule whose filter selects the version, "N days" rounded up to the next
midnight UTC), so the header never promises what storage will not do.

These are the hottest requests, and most buckets have no rules: the rules are kept per
bucket against storage's change counter for its configuration
(``StorageClient.change_count``, read without I/O), so a request reads them only after
a configuration write; a bucket without rules then costs a counter read and a dict
lookup. The cache holds at most ``limits.lifecycle_rules_cached_buckets_max`` buckets
and is dropped whole when full.
"""

from __future__ import annotations

from gateway.xml import http_date
from storage import api

EXPIRATION_HEADER = "x-amz-expiration"
_NO_RULES: tuple[api.LifecycleRule, ...] = ()


class LifecycleRulesCache:
    """Each bucket's lifecycle rules, as of its configuration change count."""

    def __init__(self) -> None:
        # (storage identity, bucket) -> (storage, change count, rules). The storage is kept
        # to tell two clients apart whose ids were reused.
        self._entries: dict[tuple[int, str], tuple[
            api.StorageClient, int, tuple[api.LifecycleRule, ...]]] = {}

    def cached_rules(
        self, storage: api.StorageClient, bucket: str, count: int | None
    ) -> tuple[api.LifecycleRule, ...] | None:
        """The rules kept for ``bucket`` if still current at change count ``count``."""
        entry = self._entries.get((id(storage), bucket))
        if count is not None and entry is not None and entry[0] is storage and entry[1] == count:
            return entry[2]
        return None

    async def rules(self, storage: api.StorageClient, bucket: str) -> tuple[api.LifecycleRule, ...]:
        # The count is read BEFORE the lookup (see StorageClient.change_count).
        count = storage.change_count(bucket, api.CHANGES_CONFIGURATION)
        cached = self.cached_rules(storage, bucket, count)
        if cached is not None:
            return cached
        key = (id(storage), bucket)
        document = await storage.get_bucket_config(bucket, api.LIFECYCLE_RULES_CONFIG)
        rules = (_NO_RULES if document is None
                 else api.LifecycleConfiguration.from_document(document).rules)
        if count is not None:
            if len(self._entries) >= api.limits.lifecycle_rules_cached_buckets_max:
                self._entries.clear()
            self._entries[key] = (storage, count, rules)
        return rules

    async def expiration_headers(
        self, storage: api.StorageClient, version: api.ObjectVersion, day_ms: int
    ) -> dict[str, str]:
        """``{"x-amz-expiration": ...}`` for ``version`` read or written as the current
        version of its key; ``{}`` when no rule will expire it."""
        # The common case (a bucket without rules, unchanged) without a coroutine.
        count = storage.change_count(version.bucket, api.CHANGES_CONFIGURATION)
        rules = self.cached_rules(storage, version.bucket, count)
        if rules is None:
            rules = await self.rules(storage, version.bucket)
        if not rules:
            return {}
        expiry = api.current_version_expiry(rules, version, day_ms)
        if expiry is None:
            return {}
        due_ms, rule_id = expiry
        return {EXPIRATION_HEADER: f'expiry-date="{http_date(due_ms)}", rule-id="{rule_id}"'}
