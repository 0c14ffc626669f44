"""matcher/candles.py against a naive model: every candle of every interval, the ticker's
rolling day, and a snapshot round trip at any point."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.candles import DAY_MINUTES, INTERVALS, KEPT, Candles

T0 = 1_700_000_000_000_000


def naive(trades: list[tuple[int, int, int]], length: int) -> list[tuple]:
    buckets: dict[int, list[tuple[int, int, int]]] = {}
    for ts, price, quantity in trades:
        buckets.setdefault(ts - ts % length, []).append((ts, price, quantity))
    return [
        (start, group[0][1], max(p for _, p, _ in group), min(p for _, p, _ in group),
         group[-1][1], sum(q for _, _, q in group), sum(p * q for _, p, q in group), len(group))
        for start, group in sorted(buckets.items())
    ]


# Gaps from 0 to ~2 days so that seconds, minutes, hours and days all open and close.
gaps = st.one_of(st.integers(0, 999_999), st.integers(0, 90_000_000),
                 st.integers(0, 7_200_000_000), st.integers(0, 172_800_000_000))
trade_lists = st.lists(st.tuples(gaps, st.integers(1, 10**9), st.integers(1, 10**6)),
                       max_size=300)


def timeline(steps: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    ts, trades = T0, []
    for gap, price, quantity in steps:
        ts += gap
        trades.append((ts, price, quantity))
    return trades


@settings(max_examples=200, deadline=None)
@given(trade_lists, st.integers(0, 300))
def test_every_interval_matches_the_naive_model(steps: list, cut: int) -> None:
    trades = timeline(steps)
    candles = Candles()
    for i, (ts, price, quantity) in enumerate(trades):
        if i == cut:  # a snapshot and restore in the middle changes nothing
            candles = Candles.from_state(candles.export_state())
        candles.add_trade(ts, price, quantity)
    for name, length in INTERVALS.items():
        expected = naive(trades, length)
        got = candles.series(name, limit=10_000)
        assert got == expected[-len(got):] if got else expected == []
        assert len(got) >= min(len(expected), KEPT)
        assert candles.series(name, limit=3) == got[-3:]


def test_volumes_add_up_to_the_trades() -> None:
    candles = Candles()
    trades = [(T0 + i * 7_000_001, 100 + i % 13, 1 + i % 5) for i in range(5000)]
    for trade in trades:
        candles.add_trade(*trade)
    for name in ("1m", "5m", "1h", "1d"):
        series = candles.series(name, limit=10_000)
        assert sum(c[5] for c in series) == sum(q for _, _, q in trades)
        assert sum(c[6] for c in series) == sum(p * q for _, p, q in trades)
        assert sum(c[7] for c in series) == len(trades)


def test_series_window_by_open_time() -> None:
    candles = Candles()
    for minute in range(10):
        candles.add_trade(T0 + minute * 60_000_000, 100 + minute, 1)
    base = T0 - T0 % 60_000_000
    window = candles.series("1m", start=base + 3 * 60_000_000, end=base + 5 * 60_000_000)
    assert [c[1] for c in window] == [103, 104, 105]
    assert [c[1] for c in candles.series("1m", limit=2, end=base + 5 * 60_000_000)] == [104, 105]


def test_the_rolling_day_is_to_the_minute() -> None:
    candles = Candles()
    minute = 60_000_000
    start = T0 - T0 % minute
    candles.add_trade(start, 100, 1)  # falls out of the window 1440 minutes later
    candles.add_trade(start + 30 * minute, 120, 2)
    candles.add_trade(start + 60 * minute, 90, 3)
    day = candles.day(start + 60 * minute)
    assert day is not None and (day[1], day[2], day[3], day[4], day[5], day[7]) == (
        100, 120, 90, 90, 6, 3)
    later = candles.day(start + DAY_MINUTES * minute)  # the first minute has left
    assert later is not None and (later[1], later[5], later[7]) == (120, 5, 2)
    assert candles.day(start + (DAY_MINUTES + 61) * minute) is None
