"""Candles (OHLCV) of one symbol, built from its trades as replayed state, and the ticker.

Pure, like the engine: the matcher feeds it each trade (time, price in ticks, quantity in
lots) in trade-id order, so a replay of the journal rebuilds exactly the same candles.
Intervals are aligned to the epoch in UTC; an interval with no trade has no candle.

A candle is `(open_time_us, open, high, low, close, volume, quote_volume, trade_count)`
with prices in ticks, volume in lots and quote_volume in ticks x lots (exact integers:
the edges turn them into decimals). docs/api.md shows the public shape.

Cost: a trade updates one 1-second candle (O(1)); when a second closes, its candle is
folded once into each longer interval's open candle. So the longer intervals cost
nothing per trade, and a query folds at most the one open second into what it returns.
"""

from __future__ import annotations

from collections import deque
from typing import Any

INTERVALS: dict[str, int] = {  # name -> length in µs
    "1s": 1_000_000,
    "1m": 60_000_000,
    "5m": 300_000_000,
    "15m": 900_000_000,
    "1h": 3_600_000_000,
    "4h": 14_400_000_000,
    "1d": 86_400_000_000,
}
KEPT = 1000  # closed candles kept live per interval (the journal has the whole history)
KEPT_1M = 1440  # the 1-minute series keeps a whole day: the ticker's rolling 24 hours
DAY_MINUTES = 1440

Candle = tuple[int, int, int, int, int, int, int, int]
LONGER = tuple(name for name in INTERVALS if name != "1s")


def merged(first: Candle, later: Candle) -> Candle:
    """Two candles of one interval, `later` after `first`: one candle."""
    return (
        first[0],
        first[1],
        max(first[2], later[2]),
        min(first[3], later[3]),
        later[4],
        first[5] + later[5],
        first[6] + later[6],
        first[7] + later[7],
    )


def rebased(candle: Candle, length: int) -> Candle:
    """A shorter interval's candle as the start of the `length` interval holding it."""
    return (candle[0] - candle[0] % length, *candle[1:])  # type: ignore[return-value]


class Candles:
    """The candles of every interval: closed ones in bounded series, open ones apart."""

    def __init__(self) -> None:
        self.closed: dict[str, deque[Candle]] = {
            name: deque(maxlen=KEPT_1M if name == "1m" else KEPT) for name in INTERVALS
        }
        # The open 1s candle as a list (updated in place per trade), and each longer
        # interval's open candle made of the seconds already closed in it.
        self.second: list[int] | None = None
        self.open: dict[str, Candle | None] = dict.fromkeys(LONGER)

    def add_trade(self, ts: int, price: int, quantity: int) -> None:
        """One trade at time `ts` (µs since the epoch). Trades come in trade-id order;
        a trade stamped before the open second (a clock step back) joins that second."""
        second = self.second
        if second is not None and ts - second[0] < 1_000_000:
            if price > second[2]:
                second[2] = price
            elif price < second[3]:
                second[3] = price
            second[4] = price
            second[5] += quantity
            second[6] += price * quantity
            second[7] += 1
            return
        if second is not None:
            self._close_second()
        self.second = [
            ts - ts % 1_000_000,
            price,
            price,
            price,
            price,
            quantity,
            price * quantity,
            1,
        ]

    def _close_second(self) -> None:
        assert self.second is not None
        candle: Candle = tuple(self.second)  # type: ignore[assignment]
        self.closed["1s"].append(candle)
        for name in LONGER:
            length = INTERVALS[name]
            piece = rebased(candle, length)
            current = self.open[name]
            if current is None:
                self.open[name] = piece
            elif current[0] == piece[0]:
                self.open[name] = merged(current, piece)
            else:
                self.closed[name].append(current)
                self.open[name] = piece
        self.second = None

    def _open_candles(self, name: str) -> list[Candle]:
        """The interval's open candle(s), the open second folded in: 0, 1 or 2 of them."""
        second = tuple(self.second) if self.second is not None else None
        if name == "1s":
            return [second] if second is not None else []  # type: ignore[list-item]
        current = self.open[name]
        if second is None:
            return [current] if current is not None else []
        piece = rebased(second, INTERVALS[name])  # type: ignore[arg-type]
        if current is None:
            return [piece]
        if current[0] == piece[0]:
            return [merged(current, piece)]
        return [current, piece]

    def series(
        self, name: str, limit: int = 500, start: int | None = None, end: int | None = None
    ) -> list[Candle]:
        """Up to `limit` candles of the interval, oldest first: the newest ones whose
        open_time is within [start, end] (µs; either may be None). O(kept)."""
        candles = [*self.closed[name], *self._open_candles(name)]
        if start is not None or end is not None:
            low = start if start is not None else -1
            high = end if end is not None else 1 << 63
            candles = [c for c in candles if low <= c[0] <= high]
        return candles[-limit:] if limit < len(candles) else candles

    def day(self, now: int) -> Candle | None:
        """The rolling 24 hours to the minute: the 1-minute candles of the 1440 minutes
        ending with the one holding `now`, as one candle (None without a trade)."""
        minute = INTERVALS["1m"]
        first = now - now % minute - (DAY_MINUTES - 1) * minute
        window = [c for c in self.series("1m", KEPT_1M + 2) if first <= c[0] <= now]
        if not window:
            return None
        total = window[0]
        for candle in window[1:]:
            total = merged(total, candle)
        return total

    # -- state -----------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """Plain values for a snapshot; `from_state` rebuilds exactly this. Volumes are
        text: sums of lots and of ticks x lots can exceed msgpack's 64 bits."""
        return {
            "closed": {
                name: [_stored(c) for c in candles] for name, candles in self.closed.items()
            },
            "open": {name: _stored(c) for name, c in self.open.items() if c is not None},
            "second": None if self.second is None else _stored(self.second),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Candles:
        candles = cls()
        for name, rows in state["closed"].items():
            candles.closed[name].extend(_loaded(row) for row in rows)
        for name, row in state["open"].items():
            candles.open[name] = _loaded(row)
        second = state["second"]
        candles.second = None if second is None else list(_loaded(second))
        return candles


def _stored(candle: Candle | list[int]) -> tuple:
    return (*candle[:5], str(candle[5]), str(candle[6]), candle[7])


def _loaded(row: tuple | list) -> Candle:
    return (row[0], row[1], row[2], row[3], row[4], int(row[5]), int(row[6]), row[7])


def rescale_state(state: dict[str, Any], price_factor: int, quantity_factor: int) -> dict[str, Any]:
    """`Candles.export_state()` output in finer grid units (a rules change,
    matcher/rules.py): prices times `price_factor`, volumes times `quantity_factor`,
    quote volumes times both. Exact."""
    p, q = price_factor, quantity_factor

    def row(r: tuple | list) -> tuple:
        return (
            r[0],
            r[1] * p,
            r[2] * p,
            r[3] * p,
            r[4] * p,
            str(int(r[5]) * q),
            str(int(r[6]) * p * q),
            r[7],
        )

    return {
        "closed": {name: [row(r) for r in rows] for name, rows in state["closed"].items()},
        "open": {name: row(r) for name, r in state["open"].items()},
        "second": None if state["second"] is None else row(state["second"]),
    }
