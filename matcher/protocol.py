"""Commands, events and result codes of the matching core: defined once, here.

Everything the core takes and returns is a plain tuple of ints, strings and None,
so it is cheap to build, cheap to pack (one msgpack array) and replays exactly.
Type codes are stable: they are written to the journal, so never renumber them and
never change a layout in place; a new command or layout gets a new code at the end. The
codes are the journal's only version (docs/journal.md, "No format version").

Commands (input of `Engine.apply`; `seq` is the journal sequence number and also the
order id of an order the command creates; `ts` is microseconds since the Unix epoch):

    (CMD_NEW_ORDER, seq, ts, account, side, order_type, tif, price, quantity,
     post_only, stp, client_order_id)
    (CMD_NEW_STOP,  seq, ts, account, side, order_type, stop_price, price, quantity,
     stp, client_order_id)
    (CMD_CANCEL,    seq, ts, account, order_id)
    (CMD_AMEND,     seq, ts, account, order_id, quantity, price)   # None = unchanged
    (CMD_CANCEL_ALL, seq, ts, account, side)   # side None: both sides
    (CMD_RULES,     seq, ts, tick_size, lot_size, min_quantity, max_price, max_quantity,
     maker_fee_rate, taker_fee_rate)   # decimal texts; matcher/rules.py

A cancel or amend that names its order by client_order_id is resolved to the order id
before it is applied (`Engine.resolve`) and journaled by order id, like any other.

Prices are integer ticks, quantities integer lots (strictly: grid units, which are the
tick and the lot unless a rules change made them finer, matcher/rules.py); `price` is
None for market orders.

Events (output of `Engine.apply`, in the order they happened):

    (EV_TRADE, trade_id, price, quantity, aggressor_side, maker_order_id,
     taker_order_id, maker_fee, taker_fee, ts)   # also the stored trade record
    (EV_ORDER, order_id, status, filled_quantity, remaining_quantity, reason)
    (EV_LEVEL, side, price, total_quantity)        # total 0: the level is gone

Fees are integers in units of tick_size * lot_size / FEE_RATE_SCALE of the quote
currency: fee = price * quantity * rate, with rate an integer over FEE_RATE_SCALE.
"""

from __future__ import annotations

from typing import Any

# Fee rates are integers over this scale: 0.0001 -> 10_000.
FEE_RATE_SCALE = 100_000_000

# Sides.
BUY = 0
SELL = 1
SIDE_NAMES = ("buy", "sell")

# Order types, as the user named them.
MARKET = 0
LIMIT = 1
IOC = 2
FOK = 3
STOP_LOSS = 4
STOP_LIMIT = 5
TAKE_PROFIT = 6
ORDER_TYPE_NAMES = ("market", "limit", "ioc", "fok", "stop_loss", "stop_limit", "take_profit")
STOP_TYPES = (STOP_LOSS, STOP_LIMIT, TAKE_PROFIT)

# Time in force.
GTC = 0
TIF_IOC = 1
TIF_FOK = 2
TIF_NAMES = ("gtc", "ioc", "fok")

# Self-trade prevention: what happens when a taker meets its own account's order.
STP_CANCEL_NEWEST = 0
STP_CANCEL_OLDEST = 1
STP_CANCEL_BOTH = 2
STP_NAMES = ("cancel_newest", "cancel_oldest", "cancel_both")

# Order statuses. TRIGGERED appears only in events: the stop's status then moves on.
PENDING = 0
NEW = 1
PARTIALLY_FILLED = 2
FILLED = 3
CANCELLED = 4
REJECTED = 5
TRIGGERED = 6
STATUS_NAMES = (
    "pending",
    "new",
    "partially_filled",
    "filled",
    "cancelled",
    "rejected",
    "triggered",
)
FINISHED_STATUSES = frozenset((FILLED, CANCELLED, REJECTED))

# The account that never self-trade-prevents.
ANONYMOUS = "anonymous"

# Command type codes (journaled).
CMD_NEW_ORDER = 1
CMD_NEW_STOP = 2
CMD_CANCEL = 3
CMD_AMEND = 4
CMD_RULES = 5  # the symbol's rules: first record of a journal, and every change
CMD_CANCEL_ALL = 6  # every open order and pending stop of one account (and side)

# The ops that change state: the ones a `deadline` applies to (docs/protocol.md). Every
# op matcher/service.py applies as a command must be here (tests/matcher/test_deadline.py).
MUTATING_OPS = frozenset(
    ("new_order", "new_stop_order", "cancel_order", "amend_order", "cancel_all")
)

# Event type codes.
EV_TRADE = 1
EV_ORDER = 2
EV_LEVEL = 3

# The largest message a reader of the system accepts (a matcher's reply on the gateway's
# ZMTP link, a feed message in the WebSocket client): a snapshot of a deep book or a
# page of 1000 orders is well under it, so anything larger is a broken peer.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class Code:
    """Result codes, grouped by subsystem. The string is what clients see."""

    # Input validation (HTTP 400).
    INVALID_REQUEST = "invalid_request"
    INVALID_FIELD = "invalid_field"
    INVALID_PRICE = "invalid_price"
    INVALID_QUANTITY = "invalid_quantity"
    UNKNOWN_OP = "unknown_op"
    # Order state (HTTP 404 / 409 / 400).
    UNKNOWN_SYMBOL = "unknown_symbol"
    UNKNOWN_ORDER = "unknown_order"
    ORDER_NOT_OPEN = "order_not_open"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    WOULD_TRIGGER_IMMEDIATELY = "would_trigger_immediately"
    STOP_NOT_AMENDABLE = "stop_not_amendable"
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    RULES_REFUSED = "rules_refused"  # a rules change the state cannot take (at start only)
    # Reasons carried by cancelled or rejected orders (not errors).
    SELF_TRADE_PREVENTED = "self_trade_prevented"
    FOK_NOT_FILLABLE = "fok_not_fillable"
    IOC_REMAINDER = "ioc_remainder_cancelled"
    MARKET_REMAINDER = "market_remainder_cancelled"
    USER_CANCELLED = "cancelled_by_user"
    # Service (HTTP 5xx / 429 / 413 / 401).
    UNAVAILABLE = "matcher_unavailable"  # the gateway lost the link: outcome unknown
    TIMEOUT = "matcher_timeout"  # the gateway got no answer by the deadline: not executed
    DEADLINE_EXCEEDED = "deadline_exceeded"  # reached after its deadline: not executed
    JOURNAL_UNAVAILABLE = "journal_unavailable"  # the journal cannot be written (disk full)
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "request_too_large"
    UNAUTHORIZED = "unauthorized"
    INTERNAL = "internal_error"


class CommandError(Exception):
    """A command the core refuses as a whole: nothing changed, nothing is journaled."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- public shapes (docs/api.md) -----------------------------------------------------
# Each shape is defined here once, as (field, kind, nullable) in the order the API
# sends the fields. The views and packed views build exactly these keys (a test checks
# it), and the trades CSV header, the OpenAPI document, the CLI and the Python
# client's TypedDicts all follow them. Kinds: "integer", "string", "boolean",
# "decimal" (a plain decimal string), "signed_decimal" (one that may start with "-"),
# "timestamp" (ISO 8601 UTC, microseconds), an
# enum given as its names, or the name of another shape (a list of them).
Shape = tuple[tuple[str, Any, bool], ...]

TRADE_SHAPE: Shape = (
    ("trade_id", "integer", False),
    ("symbol", "string", False),
    ("price", "decimal", False),
    ("quantity", "decimal", False),
    ("aggressor_side", SIDE_NAMES, False),
    ("maker_order_id", "integer", False),
    ("taker_order_id", "integer", False),
    ("maker_fee", "decimal", False),
    ("taker_fee", "decimal", False),
    ("timestamp", "timestamp", False),
)
ORDER_SHAPE: Shape = (
    ("order_id", "integer", False),
    ("client_order_id", "string", True),
    ("account", "string", False),
    ("symbol", "string", False),
    ("side", SIDE_NAMES, False),
    ("order_type", ORDER_TYPE_NAMES, False),
    ("time_in_force", TIF_NAMES, False),
    ("post_only", "boolean", False),
    ("price", "decimal", True),
    ("stop_price", "decimal", True),
    ("quantity", "decimal", False),
    ("filled_quantity", "decimal", False),
    ("remaining_quantity", "decimal", False),
    ("average_price", "decimal", True),
    ("cumulative_quote", "decimal", False),
    ("status", STATUS_NAMES, False),
    ("reject_reason", "string", True),
    ("timestamp", "timestamp", False),
    ("trades", "Trade", False),
)
BBO_SHAPE: Shape = (
    ("symbol", "string", False),
    ("book_seq", "integer", False),
    ("bid_price", "decimal", True),
    ("bid_quantity", "decimal", True),
    ("ask_price", "decimal", True),
    ("ask_quantity", "decimal", True),
)
# One candle of GET /candles and the `candles` op: volume in the base currency,
# quote_volume the exact sum of price x quantity.
CANDLE_SHAPE: Shape = (
    ("open_time", "timestamp", False),
    ("open", "decimal", False),
    ("high", "decimal", False),
    ("low", "decimal", False),
    ("close", "decimal", False),
    ("volume", "decimal", False),
    ("quote_volume", "decimal", False),
    ("trade_count", "integer", False),
)
# GET /ticker and the `ticker` op: the rolling 24 hours, to the minute. The *_24h
# prices and the changes are null without a trade in the window.
TICKER_SHAPE: Shape = (
    ("symbol", "string", False),
    ("last_price", "decimal", True),
    ("bid_price", "decimal", True),
    ("ask_price", "decimal", True),
    ("open_24h", "decimal", True),
    ("high_24h", "decimal", True),
    ("low_24h", "decimal", True),
    ("volume_24h", "decimal", False),
    ("quote_volume_24h", "decimal", False),
    ("change_24h", "signed_decimal", True),
    ("change_percent_24h", "signed_decimal", True),
    ("trade_count_24h", "integer", False),
    ("timestamp", "timestamp", False),
)
TRADE_FIELDS = tuple(name for name, _, _ in TRADE_SHAPE)  # also the trades CSV header
ORDER_FIELDS = tuple(name for name, _, _ in ORDER_SHAPE)
BBO_FIELDS = tuple(name for name, _, _ in BBO_SHAPE)


class MapOf(str):
    """A shape kind: an object whose keys are names (symbols) and whose values are
    objects of the shape named (`MapOf("SymbolRules")`)."""

    __slots__ = ()


class One(str):
    """A shape kind: one object of the shape named (`One("FeedHubHealth")`), where a
    plain name means a list of them."""

    __slots__ = ()


# More kinds for the shapes below: "levels" ([[price, quantity], ...] as decimal strings,
# best first). Root and health are built by the gateway, not the views.
BOOK_SHAPE: Shape = (
    ("symbol", "string", False),
    ("book_seq", "integer", False),
    ("timestamp", "timestamp", False),
    ("bids", "levels", False),
    ("asks", "levels", False),
)
ORDER_LIST_SHAPE: Shape = (
    ("symbol", "string", False),
    ("orders", "Order", False),
)
CANCELLED_SHAPE: Shape = (
    ("symbol", "string", False),
    ("cancelled", "Order", False),
)
CANDLE_LIST_SHAPE: Shape = (
    ("symbol", "string", False),
    ("interval", "string", False),
    ("candles", "Candle", False),
)
TRADE_LIST_SHAPE: Shape = (
    ("symbol", "string", False),
    ("trades", "Trade", False),
)
UP_DOWN = ("up", "down")
MATCHER_HEALTH_SHAPE: Shape = (
    ("status", UP_DOWN, False),
    ("seq", "integer", True),  # null when the matcher is down
    ("book_seq", "integer", True),
)
FEEDHUB_HEALTH_SHAPE: Shape = (("status", UP_DOWN, False),)
HEALTH_SHAPE: Shape = (
    ("status", ("ok", "degraded"), False),
    ("matchers", MapOf("MatcherHealth"), False),
    ("feedhub", One("FeedHubHealth"), False),
)
SYMBOL_RULES_SHAPE: Shape = (
    ("tick_size", "decimal", False),
    ("lot_size", "decimal", False),
    ("min_quantity", "decimal", False),
    ("max_price", "decimal", False),
    ("max_quantity", "decimal", False),
    ("maker_fee_rate", "decimal", False),
    ("taker_fee_rate", "decimal", False),
    ("order_endpoint", "string", False),
    ("feed_endpoint", "string", False),
    ("metrics_endpoint", "string", True),  # the matcher's Prometheus URL; null: off
)
# GET /: the fields every version has; it may carry more (an open shape).
EXCHANGE_SHAPE: Shape = (
    ("name", "string", False),
    ("version", "string", False),
    ("feed_url", "string", False),
    ("symbols", MapOf("SymbolRules"), False),
)
ERROR_DETAIL_SHAPE: Shape = (
    ("code", "string", False),
    ("message", "string", False),
)
ERROR_SHAPE: Shape = (("error", One("ErrorDetail"), False),)

# Every shape by the name the kinds (and the OpenAPI document's schemas) use.
SHAPES: dict[str, Shape] = {
    "Trade": TRADE_SHAPE,
    "Order": ORDER_SHAPE,
    "Bbo": BBO_SHAPE,
    "OrderBook": BOOK_SHAPE,
    "OrderList": ORDER_LIST_SHAPE,
    "Cancelled": CANCELLED_SHAPE,
    "TradeList": TRADE_LIST_SHAPE,
    "MatcherHealth": MATCHER_HEALTH_SHAPE,
    "FeedHubHealth": FEEDHUB_HEALTH_SHAPE,
    "Health": HEALTH_SHAPE,
    "SymbolRules": SYMBOL_RULES_SHAPE,
    "Exchange": EXCHANGE_SHAPE,
    "ErrorDetail": ERROR_DETAIL_SHAPE,
    "Error": ERROR_SHAPE,
    "Candle": CANDLE_SHAPE,
    "CandleList": CANDLE_LIST_SHAPE,
    "Ticker": TICKER_SHAPE,
}
# May carry fields beyond those listed (a symbol's curve_public_key under CurveZMQ).
OPEN_SHAPES = frozenset(("Exchange", "SymbolRules"))
CANDLE_FIELDS = tuple(name for name, _, _ in CANDLE_SHAPE)  # also the replay's candle CSV header
TICKER_FIELDS = tuple(name for name, _, _ in TICKER_SHAPE)
