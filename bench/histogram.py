"""Latency histogram with log-linear buckets: mergeable, small, and pure.

Theory: a latency ``v`` nanoseconds (v >= 1) falls into bucket
``floor(log(v) / log(1 + relative_error))``; a bucket's representative value is its
geometric midpoint, so any percentile read from the histogram is within
``relative_error / 2`` of an observed value (about 0.5 % at the default 1 %). Exact
count, sum, minimum and maximum are kept beside the buckets. Two histograms with the
same ``relative_error`` merge by adding bucket counts, which is how per-thread and
per-process histograms become one per workload.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

relative_error_default = 0.01


class Histogram:
    __slots__ = ("relative_error", "_log_base", "counts", "count", "sum_ns", "min_ns", "max_ns")

    def __init__(self, relative_error: float = relative_error_default) -> None:
        assert 0.0 < relative_error < 1.0
        self.relative_error = relative_error
        self._log_base = math.log1p(relative_error)
        self.counts: dict[int, int] = {}
        self.count = 0
        self.sum_ns = 0
        self.min_ns = 0
        self.max_ns = 0

    def bucket_of(self, value_ns: int) -> int:
        return int(math.log(max(value_ns, 1)) / self._log_base)

    def bucket_value_ns(self, bucket: int) -> float:
        """The geometric midpoint of ``bucket``: within relative_error/2 of any member."""
        return math.exp((bucket + 0.5) * self._log_base)

    def record(self, value_ns: int) -> None:
        bucket = int(math.log(value_ns if value_ns > 1 else 1) / self._log_base)
        counts = self.counts
        counts[bucket] = counts.get(bucket, 0) + 1
        if self.count == 0 or value_ns < self.min_ns:
            self.min_ns = value_ns
        if value_ns > self.max_ns:
            self.max_ns = value_ns
        self.count += 1
        self.sum_ns += value_ns

    def merge(self, other: Histogram) -> Histogram:
        assert other.relative_error == self.relative_error, "merge needs equal bucket widths"
        for bucket, count in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + count
        if other.count:
            self.min_ns = other.min_ns if self.count == 0 else min(self.min_ns, other.min_ns)
            self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.sum_ns += other.sum_ns
        return self

    def percentile_ns(self, percent: float) -> float:
        """The value at ``percent`` (0..100), nearest-rank; exact at 0 (min) and 100 (max)."""
        assert 0.0 <= percent <= 100.0
        if self.count == 0:
            return 0.0
        if percent >= 100.0:
            return float(self.max_ns)
        if percent <= 0.0:
            return float(self.min_ns)
        # The epsilon keeps float noise (99.9 * 5000 / 100 = 4995.000000000001) from
        # moving the rank by one.
        rank = max(1, math.ceil(percent * self.count / 100.0 - 1e-9))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                value = self.bucket_value_ns(bucket)
                return min(max(value, float(self.min_ns)), float(self.max_ns))
        return float(self.max_ns)

    def mean_ns(self) -> float:
        return self.sum_ns / self.count if self.count else 0.0

    def cdf_points(self) -> list[tuple[float, float]]:
        """(latency in ms, fraction of requests at or below it), one point per bucket."""
        points: list[tuple[float, float]] = []
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            value_ns = min(self.bucket_value_ns(bucket), float(self.max_ns))
            points.append((value_ns / 1e6, seen / self.count))
        return points

    def summary_ms(self) -> dict[str, float]:
        def ms(value_ns: float) -> float:
            return round(value_ns / 1e6, 4)

        return {
            "p50": ms(self.percentile_ns(50)),
            "p90": ms(self.percentile_ns(90)),
            "p99": ms(self.percentile_ns(99)),
            "max": ms(self.max_ns),
            "min": ms(self.min_ns),
            "mean": ms(self.mean_ns()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "relative_error": self.relative_error,
            "count": self.count,
            "sum_ns": self.sum_ns,
            "min_ns": self.min_ns,
            "max_ns": self.max_ns,
            # JSON object keys are strings; sorted so documents diff cleanly.
            "buckets": {str(bucket): self.counts[bucket] for bucket in sorted(self.counts)},
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Histogram:
        histogram = cls(float(document["relative_error"]))
        histogram.counts = {int(b): int(c) for b, c in document["buckets"].items()}
        histogram.count = int(document["count"])
        histogram.sum_ns = int(document["sum_ns"])
        histogram.min_ns = int(document["min_ns"])
        histogram.max_ns = int(document["max_ns"])
        assert sum(histogram.counts.values()) == histogram.count, "bucket counts != count"
        return histogram

    @classmethod
    def of(
        cls, values_ns: Iterable[int], relative_error: float = relative_error_default
    ) -> Histogram:
        histogram = cls(relative_error)
        for value in values_ns:
            histogram.record(value)
        return histogram
