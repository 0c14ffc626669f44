"""The hot replies and PUB messages as msgpack bytes, assembled from pre-packed pieces.

Packing a 19-field order map with msgpack costs ~2.5 us, more than matching the order:
every key and every text is re-encoded each time. Here the constant parts (keys,
symbol, side and status names, epoch) are packed once, prices, quantities and fees are
cached as packed texts, and a message is one `b"".join` of the pieces (~0.4 us).

The bytes are exactly `codec.pack` of the dict that `Views` builds for the same value
(same keys, same order): tests/matcher/test_packed_views.py checks it on random flows, so
a field added to `Views` and not here fails there.
"""

from __future__ import annotations

from typing import Any

from matcher.book import Order, kind_order_type, kind_post_only, kind_side, kind_tif
from matcher.caches import remember
from matcher.codec import array_header, map_header, pack
from matcher.protocol import ORDER_TYPE_NAMES, SIDE_NAMES, STATUS_NAMES, TIF_NAMES
from matcher.views import Views

_NONE = pack(None)


def _key(name: str) -> bytes:
    return pack(name)


def _pair(name: str, value: Any) -> bytes:
    return pack(name) + pack(value)


class PackedViews:
    """Formats one symbol's order replies, trades and book updates straight to bytes."""

    def __init__(self, views: Views, epoch: int) -> None:
        self.views = views
        symbol = views.symbol
        self._prices: dict[int, bytes] = {}
        self._quantities: dict[int, bytes] = {}
        self._fees: dict[int, bytes] = {}
        self._accounts: dict[str, bytes] = {}
        self._last_micros = -1
        self._last_timestamp = b""
        self._last_bbo: tuple[int | None, int, int | None, int] | None = None
        self._last_bbo_tail = b""
        # Replies: {"req_id", "ok": true, "result"}.
        self._reply_head = map_header(3) + _key("req_id")
        self._reply_ok = _pair("ok", True) + _key("result")
        # Orders (Views.order's fields, in its order).
        self._order_head = map_header(19) + _key("order_id")
        self._k_client_order_id = _key("client_order_id")
        self._k_account = _key("account")
        self._symbol = _pair("symbol", symbol)
        self._sides = [_pair("side", name) for name in SIDE_NAMES]
        self._order_types = [_pair("order_type", name) for name in ORDER_TYPE_NAMES]
        self._tifs = [_pair("time_in_force", name) for name in TIF_NAMES]
        self._post_only = (_pair("post_only", False), _pair("post_only", True))
        self._k_price = _key("price")
        self._k_stop_price = _key("stop_price")
        self._k_quantity = _key("quantity")
        self._k_filled = _key("filled_quantity")
        self._k_remaining = _key("remaining_quantity")
        self._no_fills = _pair("average_price", None) + _pair("cumulative_quote", "0")
        self._statuses = [_pair("status", name) for name in STATUS_NAMES]
        self._k_reason = _key("reject_reason")
        self._k_timestamp = _key("timestamp")
        self._k_trades = _key("trades")
        self._no_trades = array_header(0)
        # Trades.
        self._trade_head = map_header(10) + _key("trade_id")
        self._aggressor_sides = [_pair("aggressor_side", name) for name in SIDE_NAMES]
        self._k_maker_order_id = _key("maker_order_id")
        self._k_taker_order_id = _key("taker_order_id")
        self._k_maker_fee = _key("maker_fee")
        self._k_taker_fee = _key("taker_fee")
        # Book updates: {"symbol", "epoch", "book_seq", "changes", "bbo", "timestamp"}.
        self._book_head = map_header(6) + self._symbol + _pair("epoch", epoch) + _key("book_seq")
        self._k_changes = _key("changes")
        self._change_sides = [array_header(3) + pack(name) for name in SIDE_NAMES]
        self._k_bbo = _key("bbo")
        self._bbo_head = map_header(6) + self._symbol + _key("book_seq")
        self._zero = pack("0")
        # cancel_all's answer: {"symbol", "cancelled"}.
        self._cancelled_head = map_header(2) + self._symbol + _key("cancelled")

    # -- cached pieces ---------------------------------------------------------------

    def price(self, ticks: int) -> bytes:
        return self._prices.get(ticks) or remember(
            self._prices, ticks, pack(self.views.price(ticks))
        )

    def quantity(self, lots: int) -> bytes:
        return self._quantities.get(lots) or remember(
            self._quantities, lots, pack(self.views.quantity(lots))
        )

    def fee(self, fee_units: int) -> bytes:
        return self._fees.get(fee_units) or remember(
            self._fees, fee_units, pack(self.views.fee(fee_units))
        )

    def _account(self, account: str) -> bytes:
        return remember(self._accounts, account, pack(account))

    def timestamp(self, micros: int) -> bytes:
        # A batch shares one timestamp: pack it once.
        if micros != self._last_micros:
            self._last_timestamp = pack(self.views.timestamp(micros))
            self._last_micros = micros
        return self._last_timestamp

    # -- messages --------------------------------------------------------------------

    def reply(self, req_id: Any, result: bytes) -> bytes:
        """An ok reply around an already packed result."""
        return b"".join((self._reply_head, pack(req_id), self._reply_ok, result))

    def order(self, order: Order) -> bytes:
        price, stop_price, quantity, leaves = (
            order.price,
            order.stop_price,
            order.quantity,
            order.leaves,
        )
        kind, ts, trades = order.kind, order.timestamp, order.trades
        account, client_order_id, reason = order.account, order.client_order_id, order.reason
        prices, quantities = self._prices, self._quantities
        filled = quantity - leaves
        remaining = order.remaining
        return b"".join(
            (
                self._order_head,
                pack(order.order_id),
                self._k_client_order_id,
                _NONE if client_order_id is None else pack(client_order_id),
                self._k_account,
                self._accounts.get(account) or self._account(account),
                self._symbol,
                self._sides[kind_side(kind)],
                self._order_types[kind_order_type(kind)],
                self._tifs[kind_tif(kind)],
                self._post_only[kind_post_only(kind)],
                self._k_price,
                _NONE if price is None else prices.get(price) or self.price(price),
                self._k_stop_price,
                _NONE if stop_price is None else prices.get(stop_price) or self.price(stop_price),
                self._k_quantity,
                quantities.get(quantity) or self.quantity(quantity),
                self._k_filled,
                quantities.get(filled) or self.quantity(filled),
                self._k_remaining,
                quantities.get(remaining) or self.quantity(remaining),
                self.fills(trades) if trades else self._no_fills,
                self._statuses[order.status],
                self._k_reason,
                _NONE if reason is None else pack(reason),
                self._k_timestamp,
                self._last_timestamp if ts == self._last_micros else self.timestamp(ts),
                self._k_trades,
                array_header(len(trades)) + b"".join(map(self.trade, trades))
                if trades
                else self._no_trades,
            )
        )

    def cancelled(self, orders: list[Order]) -> bytes:
        """cancel_all's answer (Views.cancelled)."""
        return b"".join((self._cancelled_head, array_header(len(orders)), *map(self.order, orders)))

    def fills(self, trades: list[tuple]) -> bytes:
        """average_price and cumulative_quote of an order with fills (Views.fills)."""
        return b"".join(_pair(name, value) for name, value in self.views.fills(trades).items())

    def trade(self, trade: tuple) -> bytes:
        _, trade_id, price, quantity, side, maker_id, taker_id, maker_fee, taker_fee, ts = trade
        fees = self._fees
        return b"".join(
            (
                self._trade_head,
                pack(trade_id),
                self._symbol,
                self._k_price,
                self._prices.get(price) or self.price(price),
                self._k_quantity,
                self._quantities.get(quantity) or self.quantity(quantity),
                self._aggressor_sides[side],
                self._k_maker_order_id,
                pack(maker_id),
                self._k_taker_order_id,
                pack(taker_id),
                self._k_maker_fee,
                fees.get(maker_fee) or self.fee(maker_fee),
                self._k_taker_fee,
                fees.get(taker_fee) or self.fee(taker_fee),
                self._k_timestamp,
                self._last_timestamp if ts == self._last_micros else self.timestamp(ts),
            )
        )

    def book_update(
        self,
        book_seq: int,
        changes: dict[tuple[int, int], int],
        bbo: tuple[int | None, int, int | None, int],
        ts: int,
    ) -> bytes:
        """The `book.<SYMBOL>` body: the changed levels ("0" for a removed one) and the BBO."""
        prices, quantities, sides, zero = (
            self._prices,
            self._quantities,
            self._change_sides,
            self._zero,
        )
        changed = [
            sides[side]
            + (prices.get(price) or self.price(price))
            + ((quantities.get(total) or self.quantity(total)) if total else zero)
            for (side, price), total in changes.items()
        ]
        return b"".join(
            (
                self._book_head,
                pack(book_seq),
                self._k_changes,
                array_header(len(changed)),
                *changed,
                self._k_bbo,
                self.bbo(bbo, book_seq),
                self._k_timestamp,
                self._last_timestamp if ts == self._last_micros else self.timestamp(ts),
            )
        )

    def bbo(self, bbo: tuple[int | None, int, int | None, int], book_seq: int) -> bytes:
        # Most book changes leave the top of the book alone: reuse its packed tail.
        if bbo != self._last_bbo:
            bid, bid_total, ask, ask_total = bbo
            self._last_bbo_tail = b"".join(
                (
                    _key("bid_price"),
                    _NONE if bid is None else self.price(bid),
                    _key("bid_quantity"),
                    _NONE if bid is None else self.quantity(bid_total),
                    _key("ask_price"),
                    _NONE if ask is None else self.price(ask),
                    _key("ask_quantity"),
                    _NONE if ask is None else self.quantity(ask_total),
                )
            )
            self._last_bbo = bbo
        return b"".join((self._bbo_head, pack(book_seq), self._last_bbo_tail))
