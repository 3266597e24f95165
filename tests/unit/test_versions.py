"""Hybrid logical clock and version id codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.api import InvalidArgument
from storage.versions import (
    HLC_MAX,
    HybridLogicalClock,
    decode_version_id,
    encode_version_id,
    hlc_to_ms,
    hlc_upper_bound_for_ms,
)


def _clock_from(values: list[int]) -> HybridLogicalClock:
    iterator = iter(values)
    return HybridLogicalClock(lambda: next(iterator))


@given(st.lists(st.integers(min_value=-5, max_value=2**48 + 5), min_size=1, max_size=200))
def test_tick_strictly_increases_under_any_wall_clock(wall_ms: list[int]) -> None:
    clock = _clock_from(wall_ms)
    ticks = [clock.tick() for _ in wall_ms]
    assert all(a < b for a, b in zip(ticks, ticks[1:], strict=False))
    assert all(0 < t <= HLC_MAX for t in ticks)


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(min_value=0, max_value=2**40)),
        min_size=1,
        max_size=100,
    )
)
def test_tick_after_observe_is_greater_than_everything_seen(steps: list[tuple[bool, int]]) -> None:
    wall_ms = iter(value for _, value in steps)
    clock = HybridLogicalClock(lambda: next(wall_ms))
    highest = 0
    for is_observe, value in steps:
        if is_observe:
            clock.observe(value << 16)
            highest = max(highest, value << 16)
        else:
            tick = clock.tick()
            assert tick > highest
            highest = tick


def test_tick_follows_the_wall_clock_when_it_moves_forward() -> None:
    clock = _clock_from([1000, 1000, 999, 2000])
    assert [hlc_to_ms(clock.tick()) for _ in range(4)] == [1000, 1000, 1000, 2000]


def test_restart_from_last_hlc_never_reuses_a_value() -> None:
    first = _clock_from([5000])
    last = first.tick()
    restarted = HybridLogicalClock(lambda: 10, last_hlc=last)  # wall clock went back
    assert restarted.tick() > last


@given(st.integers(min_value=0, max_value=HLC_MAX), st.integers(min_value=0, max_value=HLC_MAX))
def test_version_ids_sort_like_hlcs_and_round_trip(a: int, b: int) -> None:
    assert (encode_version_id(a) < encode_version_id(b)) == (a < b)
    assert decode_version_id(encode_version_id(a)) == a
    assert len(encode_version_id(a)) == 16


@pytest.mark.parametrize(
    "garbage", ["", "null", "0" * 15, "0" * 17, "ABCDEF0123456789", "g" * 16, " " * 16]
)
def test_decode_rejects_garbage(garbage: str) -> None:
    with pytest.raises(InvalidArgument):
        decode_version_id(garbage)


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_upper_bound_is_the_largest_hlc_of_that_ms(ms: int) -> None:
    bound = hlc_upper_bound_for_ms(ms)
    assert hlc_to_ms(bound) == ms
    assert hlc_to_ms(bound + 1) == ms + 1
