"""Core values -> the public shapes of DESIGN.md §4 (decimal strings, names, ISO times).

Used by the matcher service for replies and PUB messages, so the gateway and the feed
hub pass the matcher's answers through without re-formatting them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from matcher.book import Order
from matcher.protocol import (
    BUY,
    ORDER_TYPE_NAMES,
    SIDE_NAMES,
    STATUS_NAMES,
    TIF_NAMES,
)
from matcher.units import Units

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_timestamp(micros: int) -> str:
    """ISO 8601 UTC with microseconds: 2026-11-26T11:29:05.123456Z."""
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Views:
    """Formats one symbol's orders, trades, levels and BBO."""

    def __init__(self, units: Units) -> None:
        self.units = units
        self.symbol = units.symbol
        self._last_micros = -1
        self._last_iso = ""
        self._last_bbo: tuple[int | None, int, int | None, int] | None = None
        self._last_bbo_view: dict[str, Any] = {}

    def timestamp(self, micros: int) -> str:
        # A batch shares one timestamp: format it once.
        if micros != self._last_micros:
            self._last_micros = micros
            self._last_iso = iso_timestamp(micros)
        return self._last_iso

    def trade(self, trade: tuple) -> dict[str, Any]:
        _, trade_id, price, quantity, side, maker_id, taker_id, maker_fee, taker_fee, ts = trade
        units = self.units
        return {
            "trade_id": trade_id,
            "symbol": self.symbol,
            "price": units.format_price(price),
            "quantity": units.format_quantity(quantity),
            "aggressor_side": SIDE_NAMES[side],
            "maker_order_id": maker_id,
            "taker_order_id": taker_id,
            "maker_fee": units.format_fee(maker_fee),
            "taker_fee": units.format_fee(taker_fee),
            "timestamp": self.timestamp(ts),
        }

    def order(self, order: Order) -> dict[str, Any]:
        units = self.units
        price = order.price
        kind = order.kind
        return {
            "order_id": order.order_id,
            "client_order_id": order.client_order_id,
            "account": order.account,
            "symbol": self.symbol,
            "side": SIDE_NAMES[order.side],
            "order_type": ORDER_TYPE_NAMES[kind & 7],
            "time_in_force": TIF_NAMES[(kind >> 3) & 3],
            "post_only": bool(kind & 128),
            "price": units.format_price(price) if price is not None else None,
            "stop_price": (
                units.format_price(order.stop_price) if order.stop_price is not None else None
            ),
            "quantity": units.format_quantity(order.quantity),
            "filled_quantity": units.format_quantity(order.quantity - order.leaves),
            "remaining_quantity": units.format_quantity(order.remaining),
            "status": STATUS_NAMES[order.status],
            "reject_reason": order.reason,
            "timestamp": self.timestamp(order.timestamp),
            "trades": [self.trade(trade) for trade in order.trades] if order.trades else [],
        }

    def levels(self, levels: list[tuple[int, int]]) -> list[list[str]]:
        price, quantity = self.units.format_price, self.units.format_quantity
        return [[price(p), quantity(q)] for p, q in levels]

    def bbo(self, bbo: tuple[int | None, int, int | None, int], book_seq: int) -> dict[str, Any]:
        # Most book changes leave the top of the book alone: reuse the formatted prices.
        if bbo == self._last_bbo:
            return {**self._last_bbo_view, "book_seq": book_seq}
        view = self._format_bbo(bbo, book_seq)
        self._last_bbo, self._last_bbo_view = bbo, view
        return view

    def _format_bbo(self, bbo: tuple[int | None, int, int | None, int], book_seq: int) -> dict[str, Any]:
        bid, bid_total, ask, ask_total = bbo
        price, quantity = self.units.format_price, self.units.format_quantity
        return {
            "symbol": self.symbol,
            "book_seq": book_seq,
            "bid_price": price(bid) if bid is not None else None,
            "bid_quantity": quantity(bid_total) if bid is not None else None,
            "ask_price": price(ask) if ask is not None else None,
            "ask_quantity": quantity(ask_total) if ask is not None else None,
        }

    def change(self, side: int, price: int, total: int) -> list[str]:
        """One l2 change; a removed level's quantity is "0" (DESIGN.md §5)."""
        return [
            "buy" if side == BUY else "sell",
            self.units.format_price(price),
            self.units.format_quantity(total) if total else "0",
        ]
