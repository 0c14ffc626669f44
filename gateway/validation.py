"""Request bodies and query strings -> matcher request maps, checked for shape.

The matcher is authoritative for the rules (grids, ranges, names: matcher/validation.py)
and answers `invalid_*` codes the gateway maps to 400. The gateway checks what only it
can, cheaply, before any matcher is contacted:

- only the endpoint's known fields (an unknown field is refused, so a typo such as
  `postonly` cannot silently change an order's meaning); the map sent to the matcher is
  built from those fields only, so a body cannot smuggle `op` or `req_id`;
- types: decimals are strings or JSON numbers (kept as their text, gateway/formats.py),
  names and ids are JSON strings, flags are booleans, order ids and depth/limit are
  integers in range; JSON null means "absent";
- the symbol exists (404 `unknown_symbol` otherwise);
- query strings: only the endpoint's parameters, each at most once (`check_query`), so
  `?depht=1` or `?client_order_id=X` is refused rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import parse_qsl

from gateway.errors import ApiError, invalid_field
from matcher import validation
from matcher.protocol import Code
from matcher.quoting import shown

# Field kinds.
DECIMAL = 0  # price, quantity, stop_price: a decimal string or a JSON number
NAME = 1  # a JSON string: side, order_type, time_in_force, stp, client_order_id, account
FLAG = 2  # true or false
ORDER_ID = 3  # a positive 63-bit integer (a JSON integer or a string of digits)

MAX_ORDER_ID = 2**63 - 1

# The kind of each request field; which fields each op takes is the matcher's rule,
# defined once in matcher/validation.py (the same names, in the same order).
KINDS = {
    "symbol": NAME,
    "account": NAME,
    "order_type": NAME,
    "side": NAME,
    "quantity": DECIMAL,
    "price": DECIMAL,
    "stop_price": DECIMAL,
    "time_in_force": NAME,
    "post_only": FLAG,
    "client_order_id": NAME,
    "stp": NAME,
    "order_id": ORDER_ID,
}


def _kinds(names: tuple[str, ...]) -> dict[str, int]:
    return {name: KINDS[name] for name in names}


NEW_ORDER_FIELDS = _kinds(validation.NEW_ORDER_FIELDS)
NEW_STOP_FIELDS = _kinds(validation.NEW_STOP_FIELDS)
# An order is named by order_id or by client_order_id: the matcher checks that exactly
# one is given (matcher/validation.py), so the rule and its message live in one place.
CANCEL_FIELDS = _kinds(validation.CANCEL_FIELDS)
AMEND_FIELDS = _kinds(validation.AMEND_FIELDS)
CANCEL_ALL_FIELDS = _kinds(validation.CANCEL_ALL_FIELDS)

_KIND_TEXT = {
    DECIMAL: "a decimal string or number",
    NAME: "a string",
    FLAG: "true or false",
    ORDER_ID: "a positive integer",
}


def order_id(value: Any, field: str = "order_id") -> int:
    """A positive 63-bit order id from a JSON integer (kept as text) or a digit string."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
        if 0 < number <= MAX_ORDER_ID:
            return number
    raise invalid_field(f"{field} must be a positive integer, not {shown(value)}")


def bounded(value: str | None, field: str, default: int, low: int = 1, high: int = 1000) -> int:
    """A query parameter that must be an integer in low..high (docs/api.md: 1..1000)."""
    if value is None:
        return default
    if value.isascii() and value.isdigit() and len(value) <= 6:
        number = int(value)
        if low <= number <= high:
            return number
    raise invalid_field(f"{field} must be an integer in {low}..{high}, not {value[:40]!r}")


def _is_unicode(text: str) -> bool:
    """False for a string JSON decoded from a lone surrogate escape such as "\\ud800": it
    cannot be encoded as UTF-8 (msgpack, the matcher), so it is refused here."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def build_message(body: dict[str, Any], fields: dict[str, int]) -> dict[str, Any]:
    """The matcher request fields of one POST body; raises ApiError for a bad shape.

    Cost: one pass over the body's keys, one dict built.
    """
    message: dict[str, Any] = {}
    for name, value in body.items():
        kind = fields.get(name)
        if kind is None:
            raise invalid_field(
                f"unknown field {shown(name)}; this endpoint takes {', '.join(fields)}"
            )
        if value is None:
            continue
        if kind == DECIMAL:
            ok = isinstance(value, str)  # a JSON string or a JSON number's text
        elif kind == NAME:
            ok = type(value) is str
        elif kind == FLAG:
            ok = value is True or value is False
        else:
            value = order_id(value, name)
            ok = True
        if not ok:
            raise invalid_field(f"{name} must be {_KIND_TEXT[kind]}, not {_json_type(value)}")
        if type(value) is str and not value.isascii() and not _is_unicode(value):
            raise invalid_field(f"{name} is not valid Unicode text (a lone surrogate escape)")
        message[name] = value
    return message


def check_query(items: Iterable[tuple[str, str]], accepted: Collection[str]) -> None:
    """Refuses (400 invalid_field, naming it) a query parameter the endpoint does not take
    or one given twice (which value would count?). `items` are the parsed pairs in order.
    """
    seen: set[str] = set()
    for name, _ in items:
        if name not in accepted:
            takes = ", ".join(sorted(accepted)) if accepted else "no query parameters"
            raise invalid_field(
                f"unknown query parameter {shown(name)}; this endpoint takes {takes}"
            )
        if name in seen:
            raise invalid_field(f"query parameter {shown(name)} is given more than once")
        seen.add(name)


def query_pairs(query_string: bytes) -> list[tuple[str, str]]:
    """The (name, value) pairs of a raw ASGI query string, parsed as Starlette does."""
    return parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)


def require_symbol(message: dict[str, Any], symbols: Any) -> str:
    """The request's symbol, which must be configured (404 otherwise)."""
    symbol = message.get("symbol")
    if symbol is None:
        raise invalid_field("symbol is required")
    if symbol not in symbols:
        raise unknown_symbol(symbol)
    return str(symbol)


def unknown_symbol(symbol: str) -> ApiError:
    return ApiError(Code.UNKNOWN_SYMBOL, f"unknown symbol {symbol[:40]!r}")


def _json_type(value: Any) -> str:
    if value is True or value is False:
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if type(value) is str:
        return "a string"
    return "a number"
