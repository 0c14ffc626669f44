"""Request maps (REST/ZeroMQ fields) -> core command tuples, or CommandError.

Everything a user can send is checked here, before the core sees it: types, names,
grids and ranges. A refused request changes nothing. The service passes the (seq, ts)
it would assign, and each parser returns the whole command tuple stamped with them. A
cancel or amend may name its order by client_order_id: the tuple then holds that str
where the order id goes, and the service resolves it (`Engine.resolve`) before applying.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from matcher.candles import INTERVALS
from matcher.protocol import (
    ANONYMOUS,
    CMD_AMEND,
    CMD_CANCEL,
    CMD_CANCEL_ALL,
    CMD_NEW_ORDER,
    CMD_NEW_STOP,
    GTC,
    LIMIT,
    MARKET,
    ORDER_TYPE_NAMES,
    SIDE_NAMES,
    STOP_LIMIT,
    STOP_LOSS,
    STOP_TYPES,
    STP_NAMES,
    TIF_IOC,
    TIF_NAMES,
    Code,
    CommandError,
)
from matcher.quoting import shown
from matcher.units import Units

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_ID_CHARS = 64
MAX_ORDER_ID = 2**63 - 1
SIDES = {name: code for code, name in enumerate(SIDE_NAMES)}
ORDER_TYPES = {name: code for code, name in enumerate(ORDER_TYPE_NAMES)}
TIFS = {name: code for code, name in enumerate(TIF_NAMES)}
STPS = {name: code for code, name in enumerate(STP_NAMES)}


# The fields each order op takes (docs/protocol.md), after "op" and "req_id". Anything
# else is refused, as the REST API does: a typo such as "postonly" must not quietly place
# an order that takes liquidity.
NEW_ORDER_FIELDS = (
    "symbol",
    "account",
    "order_type",
    "side",
    "quantity",
    "price",
    "time_in_force",
    "post_only",
    "client_order_id",
    "stp",
)
NEW_STOP_FIELDS = (
    "symbol",
    "account",
    "order_type",
    "side",
    "quantity",
    "stop_price",
    "price",
    "client_order_id",
    "stp",
)
CANCEL_FIELDS = ("symbol", "account", "order_id", "client_order_id")
AMEND_FIELDS = ("symbol", "account", "order_id", "client_order_id", "quantity", "price")
CANCEL_ALL_FIELDS = ("symbol", "account", "side")


def _accepted(fields: tuple[str, ...]) -> frozenset[str]:
    # `deadline` belongs to the request, not the order: matcher/service.py checks it
    # before the op's parser runs (docs/protocol.md).
    return frozenset(("op", "req_id", "deadline", *fields))


_NEW_ORDER_ACCEPTED = _accepted(NEW_ORDER_FIELDS)
_NEW_STOP_ACCEPTED = _accepted(NEW_STOP_FIELDS)
_CANCEL_ACCEPTED = _accepted(CANCEL_FIELDS)
_AMEND_ACCEPTED = _accepted(AMEND_FIELDS)
_CANCEL_ALL_ACCEPTED = _accepted(CANCEL_ALL_FIELDS)


def _invalid(message: str) -> CommandError:
    return CommandError(Code.INVALID_FIELD, message)


def _unknown_field(message: dict[str, Any], op: str, fields: tuple[str, ...]) -> CommandError:
    accepted = _accepted(fields)
    unknown = next(key for key in message if key not in accepted)
    return _invalid(f"unknown field {shown(unknown)}; {op} takes {', '.join(fields)}")


def _name(
    message: dict[str, Any], field: str, choices: dict[str, int], default: int | None = None
) -> int:
    value = message.get(field)
    if value.__class__ is str:  # the common case first (a list or map is unhashable)
        code = choices.get(value)
        if code is not None:
            return code
    if value is None:
        if default is None:
            raise _invalid(f"{field} is required ({', '.join(choices)})")
        return default
    if not isinstance(value, str) or value not in choices:
        raise _invalid(f"{field} must be one of {', '.join(choices)}, not {shown(value)}")
    return choices[value]


def _text(message: dict[str, Any], field: str) -> str | None:
    value = message.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS or not value.isprintable():
        raise _invalid(f"{field} must be a printable string of 1..{MAX_ID_CHARS} characters")
    return value


def deadline_refusal(deadline: Any, ts: int) -> CommandError:
    """Why a mutating request with this `deadline` is refused at time `ts` (µs): the
    service calls it only when `deadline` is not an int, or is one below `ts`."""
    if deadline.__class__ is not int:  # bool is an int subclass: refused too
        return _invalid(f"deadline must be an integer (µs since the epoch), not {shown(deadline)}")
    if deadline < 0:
        return _invalid(f"deadline must not be negative, not {deadline}")
    return CommandError(
        Code.DEADLINE_EXCEEDED,
        f"not executed: the matcher reached it {ts - deadline} µs after its deadline",
    )


def account_of(message: dict[str, Any]) -> str:
    return _text(message, "account") or ANONYMOUS


def order_id_of(message: dict[str, Any]) -> int:
    value = message.get("order_id")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ORDER_ID:
        raise _invalid("order_id must be a positive integer")
    return value


def order_reference(message: dict[str, Any]) -> int | str:
    """The order a cancel, amend or get names: its order id (an int) or its
    client_order_id (a str, resolved by the engine). Exactly one of the two."""
    if message.get("client_order_id") is None:
        value = message.get("order_id")
        if value.__class__ is int and 0 < value <= MAX_ORDER_ID:
            return value  # the common case, checked inline: cancels are frequent
        if value is None:
            raise _invalid("order_id or client_order_id is required (exactly one of the two)")
        return order_id_of(message)
    if message.get("order_id") is not None:
        raise _invalid("give order_id or client_order_id, not both")
    client_order_id = _text(message, "client_order_id")
    assert client_order_id is not None  # checked just above
    return client_order_id


def bounded_int(
    message: dict[str, Any], field: str, default: int, low: int = 1, high: int = 1000
) -> int:
    value = message.get(field)
    if value is None:
        return default
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"{field} must be an integer in {low}..{high}")
    return value


def interval_of(message: dict[str, Any]) -> str:
    """The candles op's `interval` (default 1m), one of matcher/candles.py's INTERVALS."""
    value = message.get("interval")
    if value is None:
        return "1m"
    if value.__class__ is str and value in INTERVALS:
        return value  # type: ignore[no-any-return]
    raise _invalid(f"interval must be one of {', '.join(INTERVALS)}, not {shown(value)}")


def time_of(message: dict[str, Any], field: str) -> int | None:
    """An ISO 8601 time (`2026-12-04T10:00:00Z`; no offset means UTC) as µs since the
    epoch, or None when absent."""
    value = message.get(field)
    if value is None:
        return None
    if value.__class__ is str and 0 < len(value) <= 40 and value.isascii():
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            since = moment - EPOCH
            return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds
    raise _invalid(
        f"{field} must be an ISO 8601 time such as 2026-12-04T10:00:00Z, not {shown(value)}"
    )


def trade_id_of(message: dict[str, Any], field: str) -> int | None:
    """A positive trade id (an integer or a string of digits), or None when absent."""
    value = message.get(field)
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ORDER_ID:
        raise _invalid(f"{field} must be a positive integer, not {shown(value)}")
    return value


def _flag(message: dict[str, Any], field: str) -> bool:
    value = message.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(f"{field} must be true or false")
    return value


class Validator:
    """Parses one symbol's requests into command tuples stamped with (seq, ts)."""

    def __init__(self, units: Units) -> None:
        self.units = units

    def new_order(self, message: dict[str, Any], seq: int, ts: int) -> tuple:
        # The hot path of the matcher: optional fields that are absent (most of them, most
        # of the time) cost one dict lookup each, not a checking call.
        if not message.keys() <= _NEW_ORDER_ACCEPTED:
            raise _unknown_field(message, "new_order", NEW_ORDER_FIELDS)
        units = self.units
        get = message.get
        order_type = _name(message, "order_type", ORDER_TYPES)
        if order_type in STOP_TYPES:
            raise _invalid(f"{ORDER_TYPE_NAMES[order_type]} orders go to new_stop_order")
        side = _name(message, "side", SIDES)
        quantity = units.quantity_lots(get("quantity"))
        tif_name = get("time_in_force")
        tif = GTC if tif_name is None else _name(message, "time_in_force", TIFS)
        post_only = get("post_only")
        if post_only is not True and post_only is not False:
            post_only = _flag(message, "post_only")
        if order_type == MARKET:
            if get("price") is not None:
                raise CommandError(Code.INVALID_PRICE, "a market order takes no price")
            if tif_name not in (None, "ioc"):
                raise _invalid("a market order never rests: time_in_force must be ioc or absent")
            price = None
            tif = TIF_IOC
        else:
            raw_price = get("price")
            if raw_price is None:
                raise CommandError(Code.INVALID_PRICE, "price is required for this order type")
            price = units.price_ticks(raw_price)
            if order_type != LIMIT and tif_name not in (None, ORDER_TYPE_NAMES[order_type]):
                raise _invalid(
                    f"time_in_force conflicts with order_type {ORDER_TYPE_NAMES[order_type]}"
                )
        if post_only and (order_type != LIMIT or tif != GTC):
            raise _invalid("post_only applies to gtc limit orders only")
        stp = 0 if get("stp") is None else _name(message, "stp", STPS)
        account = ANONYMOUS if get("account") is None else account_of(message)
        client_order_id = (
            None if get("client_order_id") is None else _text(message, "client_order_id")
        )
        return (
            CMD_NEW_ORDER,
            seq,
            ts,
            account,
            side,
            order_type,
            tif,
            price,
            quantity,
            post_only,
            stp,
            client_order_id,
        )

    def new_stop(self, message: dict[str, Any], seq: int, ts: int) -> tuple:
        if not message.keys() <= _NEW_STOP_ACCEPTED:
            raise _unknown_field(message, "new_stop_order", NEW_STOP_FIELDS)
        units = self.units
        order_type = _name(message, "order_type", ORDER_TYPES)
        if order_type not in STOP_TYPES:
            raise _invalid("order_type must be stop_loss, stop_limit or take_profit")
        side = _name(message, "side", SIDES)
        quantity = units.quantity_lots(message.get("quantity"))
        if message.get("stop_price") is None:
            raise CommandError(Code.INVALID_PRICE, "stop_price is required")
        stop_price = units.price_ticks(message["stop_price"], "stop_price")
        raw_price = message.get("price")
        if order_type == STOP_LOSS and raw_price is not None:
            raise CommandError(Code.INVALID_PRICE, "a stop_loss becomes a market order: no price")
        if order_type == STOP_LIMIT and raw_price is None:
            raise CommandError(Code.INVALID_PRICE, "a stop_limit needs a price")
        price = units.price_ticks(raw_price) if raw_price is not None else None
        stp = _name(message, "stp", STPS, 0)
        return (
            CMD_NEW_STOP,
            seq,
            ts,
            account_of(message),
            side,
            order_type,
            stop_price,
            price,
            quantity,
            stp,
            _text(message, "client_order_id"),
        )

    def cancel(self, message: dict[str, Any], seq: int, ts: int) -> tuple:
        if not message.keys() <= _CANCEL_ACCEPTED:
            raise _unknown_field(message, "cancel_order", CANCEL_FIELDS)
        return (CMD_CANCEL, seq, ts, account_of(message), order_reference(message))

    def amend(self, message: dict[str, Any], seq: int, ts: int) -> tuple:
        if not message.keys() <= _AMEND_ACCEPTED:
            raise _unknown_field(message, "amend_order", AMEND_FIELDS)
        order_id = order_reference(message)
        raw_quantity, raw_price = message.get("quantity"), message.get("price")
        if raw_quantity is None and raw_price is None:
            raise _invalid("amend needs a new quantity, a new price or both")
        quantity = self.units.quantity_lots(raw_quantity) if raw_quantity is not None else None
        price = self.units.price_ticks(raw_price) if raw_price is not None else None
        return (CMD_AMEND, seq, ts, account_of(message), order_id, quantity, price)

    def cancel_all(self, message: dict[str, Any], seq: int, ts: int) -> tuple:
        if not message.keys() <= _CANCEL_ALL_ACCEPTED:
            raise _unknown_field(message, "cancel_all", CANCEL_ALL_FIELDS)
        side = None if message.get("side") is None else _name(message, "side", SIDES)
        return (CMD_CANCEL_ALL, seq, ts, account_of(message), side)
