"""Prometheus metrics: ``GET /_squall/metrics`` (``router.METRICS_PATH``) in the text
exposition format 0.0.4.

Rules:

* Per request the gateway records (operation, status) and the wall time from the first
  byte of the request's handling to the end of its response body (``RequestMetrics``):
  two dict updates and a bisect on the event loop, no lock (one loop thread touches
  them). Operations are the router's names (``GetObject``); a request the router could
  not name is ``Unknown``. Both label sets are bounded: operations by the route table,
  statuses by HTTP.
* Everything else is read at scrape time from its owner, never kept twice: the outbox
  depth of every shard (``StorageClient.outbox_status``) and the ``MetricsSource``
  components given to the gateway (the triggers hook: verdicts, batches, queues, the
  model cache, webhook delivery).
* Who may scrape (``MetricsAccess``): by default a SigV4 request by the root credentials,
  like the rest of the admin API (``squall metrics`` prints them); ``squall serve
  --metrics-token-file F`` also lets a request with ``Authorization: Bearer <token in
  F>`` in (Prometheus's ``authorization.credentials_file``); ``--metrics-public`` lets
  anyone read them (a scraper inside a trusted network). Metrics carry no object data,
  only names of operations, functions, webhooks and shards.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.responses import Response

from gateway.errors import S3Error
from storage import api

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKET_LABELS = (*(repr(float(b)) for b in api.DURATION_BUCKETS_SECONDS), "+Inf")
UNKNOWN_OPERATION = "Unknown"


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """Who may read the metrics without SigV4 (see the module docstring)."""

    public: bool = False
    bearer_token: str | None = None

    def admits(self, authorization: str | None) -> bool:
        if self.public:
            return True
        if self.bearer_token is None or authorization is None:
            return False
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.bearer_token.encode())


class RequestMetrics:
    """Requests by (operation, status) and their durations by operation."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], int] = {}
        self._durations: dict[str, api.Histogram] = {}

    def observe(self, operation: str, status: int, seconds: float) -> None:
        key = (operation, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        histogram = self._durations.get(operation)
        if histogram is None:
            histogram = self._durations[operation] = api.Histogram()
        histogram.observe(seconds)

    def render(self) -> list[str]:
        lines = ["# HELP squall_requests_total S3 and admin requests answered, by operation "
                 "and HTTP status.", "# TYPE squall_requests_total counter"]
        for (operation, status), count in sorted(self._requests.items()):
            lines.append(f'squall_requests_total{{operation="{operation}",status="{status}"}}'
                         f" {count}")
        lines += ["# HELP squall_request_duration_seconds From the start of a request's "
                  "handling to the end of its response body.",
                  "# TYPE squall_request_duration_seconds histogram"]
        for operation, histogram in sorted(self._durations.items()):
            lines += _histogram_lines("squall_request_duration_seconds",
                                      f'operation="{operation}"', histogram)
        return lines


def _histogram_lines(name: str, shown: str, histogram: api.Histogram) -> list[str]:
    """A histogram's cumulative ``_bucket`` lines, ``_sum`` and ``_count``; ``shown``: its
    other labels, rendered."""
    lines = []
    cumulative = 0
    prefix = f"{shown}," if shown else ""
    for bound, count in zip(_BUCKET_LABELS, histogram.counts, strict=True):
        cumulative += count
        lines.append(f'{name}_bucket{{{prefix}le="{bound}"}} {cumulative}')
    labels = f"{{{shown}}}" if shown else ""
    lines.append(f"{name}_sum{labels} {_number(histogram.sum_seconds)}")
    lines.append(f"{name}_count{labels} {cumulative}")
    return lines


def outbox_families(statuses: Sequence[api.OutboxStatus]) -> list[api.MetricFamily]:
    def per_shard(value: str) -> tuple[tuple[tuple[tuple[str, str], ...], float], ...]:
        return tuple(((("shard", str(s.shard)),), float(getattr(s, value))) for s in statuses)

    return [
        api.MetricFamily("squall_outbox_events", "gauge",
                         "Notification events committed and not yet delivered, per shard.",
                         per_shard("depth")),
        api.MetricFamily("squall_outbox_events_max", "gauge",
                         "The outbox bound: a write that would pass it is SlowDown.",
                         per_shard("depth_max")),
    ]


def render(request_lines: list[str], families: Iterable[api.MetricFamily]) -> bytes:
    lines = list(request_lines)
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            shown = ",".join(f'{name}="{_escape_label(v)}"' for name, v in labels)
            if isinstance(value, api.Histogram):
                lines += _histogram_lines(family.name, shown, value)
            else:
                lines.append(f"{family.name}{{{shown}}} {_number(value)}" if shown
                             else f"{family.name} {_number(value)}")
    return ("\n".join(lines) + "\n").encode()


async def metrics_response(
    method: str, storage: api.StorageClient, requests: RequestMetrics,
    sources: Sequence[api.MetricsSource],
) -> Response:
    if method not in ("GET", "HEAD"):
        raise S3Error("MethodNotAllowed", "Use GET to read the metrics.", 405, Method=method,
                      ResourceType="METRICS")
    families = outbox_families(await storage.outbox_status())
    for source in sources:
        families.extend(source.metric_families())
    return Response(render(requests.render(), families), media_type=CONTENT_TYPE)


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")
