"""Hybrid logical clock (HLC) version ids: sortable, unique per node, and they encode time.

Theory: a version's HLC is one 64-bit integer, ``wall_ms << 16 | logical``. ``tick`` returns
a value strictly greater than every value it returned or observed before, and as close to
the wall clock as that allows: when the wall clock moves forward the logical counter
restarts at 0; when it stands still or goes backwards the previous value is incremented
(a logical counter overflow simply carries into the millisecond field, which keeps the
order). ``observe`` folds in a value seen from elsewhere (a replica, a value read back
from disk at start-up) so later ticks sort after it.

Because the millisecond field is the high part, ordering HLCs orders versions by time,
and "the version current at time T" is the newest version with
``hlc <= hlc_upper_bound_for_ms(T)``. Version ids are the HLC as 16 lowercase hex
characters, so they sort as strings exactly as the integers do.

Time is injected (``now_ms``) so tests can drive the clock through any sequence.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from storage.api import InvalidArgument

__all__ = [
    "HybridLogicalClock",
    "encode_version_id",
    "decode_version_id",
    "hlc_to_ms",
    "hlc_upper_bound_for_ms",
    "LOGICAL_BITS",
    "HLC_MAX",
]

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
HLC_MAX = (1 << 64) - 1
WALL_MS_MAX = HLC_MAX >> LOGICAL_BITS
VERSION_ID_LENGTH_CHARS = 16
_HEX_DIGITS = frozenset("0123456789abcdef")


class HybridLogicalClock:
    """Thread-safe HLC. ``tick`` is strictly increasing across all calls."""

    def __init__(self, now_ms: Callable[[], int], last_hlc: int = 0) -> None:
        assert 0 <= last_hlc <= HLC_MAX
        self._now_ms = now_ms
        self._last_hlc = last_hlc
        self._lock = threading.Lock()

    @property
    def last_hlc(self) -> int:
        return self._last_hlc

    def tick(self) -> int:
        wall_ms = min(max(self._now_ms(), 0), WALL_MS_MAX)
        candidate = wall_ms << LOGICAL_BITS
        with self._lock:
            if candidate > self._last_hlc:
                self._last_hlc = candidate
            else:
                self._last_hlc += 1
            # 2**48 ms is ~8900 years; running out is a bug, not an operating error.
            assert self._last_hlc <= HLC_MAX, "hybrid logical clock overflow"
            return self._last_hlc

    def observe(self, remote_hlc: int) -> None:
        assert 0 <= remote_hlc <= HLC_MAX
        with self._lock:
            if remote_hlc > self._last_hlc:
                self._last_hlc = remote_hlc


def encode_version_id(hlc: int) -> str:
    assert 0 <= hlc <= HLC_MAX
    return f"{hlc:016x}"


def decode_version_id(version_id: str) -> int:
    """The HLC named by ``version_id``; InvalidArgument for anything not made by encode."""
    if (
        not isinstance(version_id, str)
        or len(version_id) != VERSION_ID_LENGTH_CHARS
        or not _HEX_DIGITS.issuperset(version_id)
    ):
        raise InvalidArgument(f"invalid version id: {version_id!r}")
    return int(version_id, 16)


def hlc_to_ms(hlc: int) -> int:
    return hlc >> LOGICAL_BITS


def hlc_upper_bound_for_ms(time_ms: int) -> int:
    """The largest HLC whose wall time is ``time_ms`` (clamped to the representable range)."""
    if time_ms < 0:
        return 0  # no real version has HLC 0: ticks start above it
    return (min(time_ms, WALL_MS_MAX) << LOGICAL_BITS) | LOGICAL_MASK
