"""matcher/candles.py against a naive model: every candle of every interval, the ticker's
rolling day, and a snapshot round trip at any point."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher import codec
from matcher.candles import DAY_MINUTES, INTERVALS, KEPT, Candles
from matcher.engine import Engine
from matcher.protocol import BUY, CMD_NEW_ORDER, GTC, LIMIT, MARKET, SELL
from matcher.rules import rules_command, rules_of
from matcher.system import load_config
from matcher.units import CachedUnits
from matcher.views import Views, iso_timestamp, percent

T0 = 1_700_000_000_000_000


def naive(trades: list[tuple[int, int, int]], length: int) -> list[tuple]:
    buckets: dict[int, list[tuple[int, int, int]]] = {}
    for ts, price, quantity in trades:
        buckets.setdefault(ts - ts % length, []).append((ts, price, quantity))
    return [
        (
            start,
            group[0][1],
            max(p for _, p, _ in group),
            min(p for _, p, _ in group),
            group[-1][1],
            sum(q for _, _, q in group),
            sum(p * q for _, p, q in group),
            len(group),
        )
        for start, group in sorted(buckets.items())
    ]


# Gaps from 0 to ~2 days so that seconds, minutes, hours and days all open and close.
gaps = st.one_of(
    st.integers(0, 999_999),
    st.integers(0, 90_000_000),
    st.integers(0, 7_200_000_000),
    st.integers(0, 172_800_000_000),
)
trade_lists = st.lists(st.tuples(gaps, st.integers(1, 10**9), st.integers(1, 10**6)), max_size=300)


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
        assert got == expected[-len(got) :] if got else expected == []
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
        100,
        120,
        90,
        90,
        6,
        3,
    )
    later = candles.day(start + DAY_MINUTES * minute)  # the first minute has left
    assert later is not None and (later[1], later[5], later[7]) == (120, 5, 2)
    assert candles.day(start + (DAY_MINUTES + 61) * minute) is None


# -- wired into the engine (matcher/engine.py): replayed state, shown by matcher/views.py --

MINUTE = 60_000_000
DAY_START = T0 - T0 % MINUTE


def traded_engine(trades: list[tuple[int, int, int]]) -> Engine:
    """An engine where each (ts, price, quantity) is one trade, at that command time."""
    engine = Engine()
    seq = 0
    for ts, price, quantity in trades:
        engine.apply(
            (CMD_NEW_ORDER, seq + 1, ts, "a", SELL, LIMIT, GTC, price, quantity, False, 0, None)
        )
        engine.apply(
            (CMD_NEW_ORDER, seq + 2, ts, "b", BUY, MARKET, GTC, None, quantity, False, 0, None)
        )
        seq += 2
    return engine


def test_the_engine_builds_candles_from_its_trades_and_snapshots_them() -> None:
    trades = [(T0 + i * 17_000_000, 100 + i % 5, 1 + i % 3) for i in range(200)]
    engine = traded_engine(trades)
    expected = Candles()
    for trade in trades:
        expected.add_trade(*trade)
    for name in INTERVALS:
        assert engine.candles.series(name, 1000) == expected.series(name, 1000)
    state = codec.decode_state(codec.encode_state(engine.export_state()))
    restored = Engine.from_state(state)
    assert restored.candles.series("1m", 1000) == engine.candles.series("1m", 1000)
    assert restored.state_hash() == engine.state_hash()
    without = traded_engine(trades)
    without.candles = Candles()
    assert without.state_hash() != engine.state_hash(), "candles are in the state hash"


def test_a_version_1_state_is_refused_unless_taken_without_candles() -> None:
    engine = traded_engine([(T0, 100, 1)])
    state = dict(engine.export_state())
    del state["candles"]
    state["version"] = 1
    with pytest.raises(ValueError, match="has no candles"):
        Engine.from_state(state)
    taken = Engine.from_state(state, without_candles=True)
    assert taken.candles.series("1m") == [] and taken.trade_id == 1
    state["version"] = 3
    with pytest.raises(ValueError, match="version 3"):
        Engine.from_state(state, without_candles=True)


def test_a_finer_grid_rescales_the_candles_exactly() -> None:
    engine = Engine()
    btc = rules_of(load_config().symbols["BTC-USDT"])  # tick 0.01, lot 0.0001
    engine.apply(rules_command(1, T0, btc))
    engine.apply((CMD_NEW_ORDER, 2, T0, "a", SELL, LIMIT, GTC, 3_000_000, 5_000, False, 0, None))
    engine.apply((CMD_NEW_ORDER, 3, T0, "b", BUY, MARKET, GTC, None, 5_000, False, 0, None))
    views = Views(CachedUnits(load_config().symbols["BTC-USDT"]))
    [before] = [views.candle(c) for c in engine.candles.series("1m")]
    engine.apply(rules_command(4, T0 + 1, ("0.001", "0.00001", *btc[2:])))
    [candle] = engine.candles.series("1m")
    assert candle[1:7] == (
        30_000_000,
        30_000_000,
        30_000_000,
        30_000_000,
        50_000,
        30_000_000 * 50_000,
    )
    finer = Views(CachedUnits(load_config().symbols["BTC-USDT"], ("0.001", "0.00001")))
    after = finer.candle(candle)
    assert Decimal(after["quote_volume"]) == Decimal(before["quote_volume"]) == 15000
    assert Decimal(after["open"]) == Decimal(before["open"]) == 30000


def ticker(engine: Engine, now: int) -> dict:
    views = Views(CachedUnits(load_config().symbols["BTC-USDT"]))
    return views.ticker(engine.candles.day(now), engine.last_price, engine.bbo(), now)


def test_the_ticker_is_the_rolling_day_to_the_minute() -> None:
    engine = traded_engine(
        [
            (DAY_START, 10_000, 10_000),  # 100.00 x 1.0000, leaves at minute 1440
            (DAY_START + 30 * MINUTE, 12_000, 20_000),  # 120.00 x 2.0000
            (DAY_START + 60 * MINUTE + 5, 9_000, 30_000),  # 90.00 x 3.0000
        ]
    )
    engine.apply(
        (
            CMD_NEW_ORDER,
            7,
            DAY_START + 61 * MINUTE,
            "c",
            BUY,
            LIMIT,
            GTC,
            8_000,
            10_000,
            False,
            0,
            None,
        )
    )  # a bid, no trade
    now = DAY_START + 61 * MINUTE + 59_000_000
    assert ticker(engine, now) == {
        "symbol": "BTC-USDT",
        "last_price": "90.00",
        "bid_price": "80.00",
        "ask_price": None,
        "open_24h": "100.00",
        "high_24h": "120.00",
        "low_24h": "90.00",
        "volume_24h": "6.0000",
        "quote_volume_24h": "610",
        "change_24h": "-10.00",
        "change_percent_24h": "-10.00",
        "trade_count_24h": 3,
        "timestamp": iso_timestamp(now),
    }
    # The minute holding the first trade is the 1440th back until the next one starts.
    assert ticker(engine, DAY_START + 1439 * MINUTE + 59_999_999)["trade_count_24h"] == 3
    later = ticker(engine, DAY_START + 1440 * MINUTE)
    assert (
        later["open_24h"],
        later["volume_24h"],
        later["change_24h"],
        later["change_percent_24h"],
        later["trade_count_24h"],
    ) == ("120.00", "5.0000", "-30.00", "-25.00", 2)
    gone = ticker(engine, DAY_START + (1440 + 61) * MINUTE)
    assert (
        gone["last_price"],
        gone["open_24h"],
        gone["high_24h"],
        gone["volume_24h"],
        gone["quote_volume_24h"],
        gone["change_24h"],
        gone["trade_count_24h"],
    ) == ("90.00", None, None, "0", "0", None, 0)


def test_change_percent_is_rounded_half_even_to_two_places() -> None:
    assert [
        percent(c, b)
        for c, b in ((1, 8), (-1, 3), (1, 80_000), (1, 20_000), (0, 5), (3, 20_000), (-1, 40_000))
    ] == ["12.50", "-33.33", "0.00", "0.00", "0.00", "0.02", "0.00"]
