"""Core values -> the public shapes of docs/api.md (decimal strings, names, ISO times).

Used by the matcher service for replies and PUB messages, so the gateway and the feed
hub pass the matcher's answers through without re-formatting them.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from matcher.book import Order, kind_order_type, kind_post_only, kind_side, kind_tif
from matcher.caches import remember
from matcher.protocol import (
    ORDER_TYPE_NAMES,
    SIDE_NAMES,
    STATUS_NAMES,
    TIF_NAMES,
)
from matcher.units import Units


@lru_cache(maxsize=4)
def _second_prefix(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))


def iso_timestamp(micros: int) -> str:
    """ISO 8601 UTC with microseconds: 2026-11-26T11:29:05.123456Z.

    Formatting a whole datetime costs ~3.5 us, paid by every request when one is in
    flight (each has its own timestamp); the date and time up to the second change at
    most once a second, so only they go through strftime, cached.
    """
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_second_prefix(seconds)}{fraction:06d}Z"


class Views:
    """Formats one symbol's orders, trades, levels and BBO.

    The hot path meets the same few prices and quantities again and again, so the texts
    are cached per value: a dict hit (`cache.get(v) or self._miss(v)`, texts are never
    empty) costs ~50 ns where formatting costs ~0.6 us and a fee ~2 us. Each cache is
    bounded (matcher/caches.py).
    """

    def __init__(self, units: Units) -> None:
        self.units = units
        self.symbol = units.symbol
        self._last_micros = -1
        self._last_iso = ""
        self._last_bbo: tuple[int | None, int, int | None, int] | None = None
        self._last_bbo_view: dict[str, Any] = {}
        self._prices: dict[int, str] = {}
        self._quantities: dict[int, str] = {}
        self._fees: dict[int, str] = {}

    def timestamp(self, micros: int) -> str:
        # A batch shares one timestamp: format it once.
        if micros != self._last_micros:
            self._last_micros = micros
            self._last_iso = iso_timestamp(micros)
        return self._last_iso

    def _price(self, ticks: int) -> str:
        return remember(self._prices, ticks, self.units.format_price(ticks))

    def _quantity(self, lots: int) -> str:
        return remember(self._quantities, lots, self.units.format_quantity(lots))

    def _fee(self, fee_units: int) -> str:
        return remember(self._fees, fee_units, self.units.format_fee(fee_units))

    def price(self, ticks: int) -> str:
        return self._prices.get(ticks) or self._price(ticks)

    def quantity(self, lots: int) -> str:
        return self._quantities.get(lots) or self._quantity(lots)

    def fee(self, fee_units: int) -> str:
        return self._fees.get(fee_units) or self._fee(fee_units)

    def trade(self, trade: tuple) -> dict[str, Any]:
        _, trade_id, price, quantity, side, maker_id, taker_id, maker_fee, taker_fee, ts = trade
        fees = self._fees
        return {
            "trade_id": trade_id,
            "symbol": self.symbol,
            "price": self._prices.get(price) or self._price(price),
            "quantity": self._quantities.get(quantity) or self._quantity(quantity),
            "aggressor_side": SIDE_NAMES[side],
            "maker_order_id": maker_id,
            "taker_order_id": taker_id,
            "maker_fee": fees.get(maker_fee) or self._fee(maker_fee),
            "taker_fee": fees.get(taker_fee) or self._fee(taker_fee),
            "timestamp": self._last_iso if ts == self._last_micros else self.timestamp(ts),
        }

    def order(self, order: Order) -> dict[str, Any]:
        prices, quantities = self._prices, self._quantities
        price, stop_price = order.price, order.stop_price
        quantity, leaves, kind, ts = order.quantity, order.leaves, order.kind, order.timestamp
        filled = quantity - leaves
        remaining = order.remaining
        return {
            "order_id": order.order_id,
            "client_order_id": order.client_order_id,
            "account": order.account,
            "symbol": self.symbol,
            "side": SIDE_NAMES[kind_side(kind)],
            "order_type": ORDER_TYPE_NAMES[kind_order_type(kind)],
            "time_in_force": TIF_NAMES[kind_tif(kind)],
            "post_only": kind_post_only(kind),
            "price": None if price is None else prices.get(price) or self._price(price),
            "stop_price": (
                None if stop_price is None else prices.get(stop_price) or self._price(stop_price)
            ),
            "quantity": quantities.get(quantity) or self._quantity(quantity),
            "filled_quantity": quantities.get(filled) or self._quantity(filled),
            "remaining_quantity": quantities.get(remaining) or self._quantity(remaining),
            **self.fills(order.trades),
            "status": STATUS_NAMES[order.status],
            "reject_reason": order.reason,
            "timestamp": self._last_iso if ts == self._last_micros else self.timestamp(ts),
            "trades": [self.trade(trade) for trade in order.trades] if order.trades else [],
        }

    def cancelled(self, orders: list[Order]) -> dict[str, Any]:
        """The answer to cancel_all: the orders it cancelled, in order id order."""
        return {"symbol": self.symbol, "cancelled": [self.order(order) for order in orders]}

    def fills(self, trades: list[tuple] | None) -> dict[str, str | None]:
        """average_price and cumulative_quote over an order's fills (exact decimals)."""
        if not trades:
            return {"average_price": None, "cumulative_quote": "0"}
        quote = lots = 0
        for trade in trades:
            quote += trade[2] * trade[3]
            lots += trade[3]
        return {
            "average_price": self.units.format_average_price(quote, lots),
            "cumulative_quote": self.units.format_quote(quote),
        }

    def levels(self, levels: list[tuple[int, int]]) -> list[list[str]]:
        price, quantity = self.price, self.quantity
        return [[price(p), quantity(q)] for p, q in levels]

    def bbo(self, bbo: tuple[int | None, int, int | None, int], book_seq: int) -> dict[str, Any]:
        # Most book changes leave the top of the book alone: reuse the formatted prices.
        if bbo == self._last_bbo:
            return {**self._last_bbo_view, "book_seq": book_seq}
        view = self._format_bbo(bbo, book_seq)
        self._last_bbo, self._last_bbo_view = bbo, view
        return view

    def _format_bbo(
        self, bbo: tuple[int | None, int, int | None, int], book_seq: int
    ) -> dict[str, Any]:
        bid, bid_total, ask, ask_total = bbo
        price, quantity = self.price, self.quantity
        return {
            "symbol": self.symbol,
            "book_seq": book_seq,
            "bid_price": price(bid) if bid is not None else None,
            "bid_quantity": quantity(bid_total) if bid is not None else None,
            "ask_price": price(ask) if ask is not None else None,
            "ask_quantity": quantity(ask_total) if ask is not None else None,
        }

    def candle(self, candle: tuple) -> dict[str, Any]:
        """One candle (matcher/candles.py) in CANDLE_SHAPE: exact decimals."""
        open_time, first, high, low, close, volume, quote, count = candle
        price, units = self.price, self.units
        return {
            "open_time": iso_timestamp(open_time),
            "open": price(first),
            "high": price(high),
            "low": price(low),
            "close": price(close),
            "volume": units.format_quantity(volume),
            "quote_volume": units.format_quote(quote),
            "trade_count": count,
        }

    def ticker(
        self,
        day: tuple | None,
        last_price: int | None,
        bbo: tuple[int | None, int, int | None, int],
        now: int,
    ) -> dict[str, Any]:
        """TICKER_SHAPE from the rolling day's candle (`Candles.day`, None without a
        trade in it), the last trade's price, the BBO and the time (µs)."""
        price, units = self.price, self.units
        bid, _, ask, _ = bbo
        view: dict[str, Any] = {
            "symbol": self.symbol,
            "last_price": None if last_price is None else price(last_price),
            "bid_price": None if bid is None else price(bid),
            "ask_price": None if ask is None else price(ask),
        }
        if day is None:
            view.update(
                open_24h=None,
                high_24h=None,
                low_24h=None,
                volume_24h="0",
                quote_volume_24h="0",
                change_24h=None,
                change_percent_24h=None,
                trade_count_24h=0,
            )
        else:
            first, close = day[1], day[4]
            change = close - first
            view.update(
                open_24h=price(first),
                high_24h=price(day[2]),
                low_24h=price(day[3]),
                volume_24h=units.format_quantity(day[5]),
                quote_volume_24h=units.format_quote(day[6]),
                change_24h=("-" if change < 0 else "") + units.format_price(abs(change)),
                change_percent_24h=percent(change, first),
                trade_count_24h=day[7],
            )
        view["timestamp"] = iso_timestamp(now)
        return view


def percent(change: int, base: int) -> str:
    """100 * change / base with 2 decimals, rounded half-even; integers only."""
    hundredths, remainder = divmod(abs(change) * 10_000, base)
    if 2 * remainder > base or (2 * remainder == base and hundredths % 2):
        hundredths += 1
    sign = "-" if change < 0 and hundredths else ""
    return f"{sign}{hundredths // 100}.{hundredths % 100:02d}"
