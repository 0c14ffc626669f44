"""Each public shape is defined once (matcher/protocol.py): everything that shows one
follows that definition, field for field and in order."""

from __future__ import annotations

import re
from typing import get_type_hints

from clients import rest
from gateway.formats import TRADE_CSV_FIELDS
from matcher.engine import Engine
from matcher.protocol import (
    BBO_FIELDS,
    BUY,
    CANDLE_FIELDS,
    CMD_NEW_ORDER,
    GTC,
    LIMIT,
    ORDER_FIELDS,
    SELL,
    SHAPES,
    TICKER_FIELDS,
    TRADE_FIELDS,
)
from matcher.replay import CSV_HEADER
from matcher.system import load_config
from matcher.units import Units
from matcher.views import Views
from tests.support import REPO


def filled_order() -> tuple[Views, Engine]:
    units = Units(load_config().symbols["BTC-USDT"])
    engine = Engine(units.maker_rate, units.taker_rate)
    engine.apply((CMD_NEW_ORDER, 1, 10, "a", SELL, LIMIT, GTC, 100, 5, False, 0, None))
    engine.apply((CMD_NEW_ORDER, 2, 11, "b", BUY, LIMIT, GTC, 100, 5, False, 0, "c1"))
    return Views(units), engine


def test_views_build_exactly_the_shapes() -> None:
    views, engine = filled_order()
    order = engine.get_order(2)
    assert order is not None and order.trades
    assert tuple(views.order(order)) == ORDER_FIELDS
    assert tuple(views.trade(order.trades[0])) == TRADE_FIELDS
    assert tuple(views.bbo(engine.bbo(), engine.book_seq)) == BBO_FIELDS
    [candle] = engine.candles.series("1m")
    assert tuple(views.candle(candle)) == CANDLE_FIELDS
    for day in (engine.candles.day(11), None):  # with and without a trade in the window
        assert tuple(views.ticker(day, engine.last_price, engine.bbo(), 11)) == TICKER_FIELDS


def test_the_csv_headers_are_the_trade_fields() -> None:
    assert TRADE_CSV_FIELDS == TRADE_FIELDS
    assert CSV_HEADER == TRADE_FIELDS


def test_the_dashboard_keeps_no_copy_of_the_trade_fields() -> None:
    # The browser's CSV export writes the header row of the server's CSV (GET
    # /trades/{symbol}?format=csv; tests/dashboard sees other served columns exported), so
    # no list of the trade fields may be left in the script to drift from TRADE_FIELDS.
    script = (REPO / "gateway" / "static" / "dashboard.js").read_text()
    assert "?format=csv" in script
    for array in re.findall(r"\[[^\[\]]*\]", script):
        names = set(re.findall(r"[\"'`](\w+)[\"'`]", array))
        assert not set(TRADE_FIELDS) <= names, f"dashboard.js lists the trade fields: {array}"


def test_the_python_clients_types_follow_the_shapes() -> None:
    assert tuple(get_type_hints(rest.Order)) == ORDER_FIELDS
    assert tuple(get_type_hints(rest.Trade)) == TRADE_FIELDS
    assert tuple(get_type_hints(rest.Bbo)) == BBO_FIELDS
    assert tuple(get_type_hints(rest.Candle)) == CANDLE_FIELDS
    assert tuple(get_type_hints(rest.Ticker)) == TICKER_FIELDS


# The client's other types, by the shape each one is.
CLIENT_TYPES = {
    "OrderList": "OrderList",
    "CancelledOrders": "Cancelled",
    "OrderBook": "OrderBook",
    "TradeList": "TradeList",
    "CandleList": "CandleList",
    "MatcherState": "MatcherHealth",
    "FeedHubState": "FeedHubHealth",
    "Health": "Health",
    "SymbolRules": "SymbolRules",
    "ExchangeInfo": "Exchange",
}


def test_every_client_type_follows_its_shape() -> None:
    for type_name, shape in CLIENT_TYPES.items():
        fields = tuple(name for name, _, _ in SHAPES[shape])
        assert tuple(get_type_hints(getattr(rest, type_name))) == fields, type_name
