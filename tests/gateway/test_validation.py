"""The bad-input battery: every malformed request gets its 4xx and changes nothing.

For each case the test records the state (both books at full depth, the last 1000
trades, each matcher's command sequence number) before and after the request and
requires them equal, on a book that is not empty. Plus unit tests of
gateway/validation.py's helpers.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.errors import ApiError
from gateway.validation import NEW_ORDER_FIELDS, build_message, order_id
from tests.gateway.conftest import BTC, ETH, GatewaySystem
from tests.support import NOT_PLAIN_DECIMALS

ORDER = {"symbol": BTC, "order_type": "limit", "side": "buy", "price": "100", "quantity": "1"}
STOP = {
    "symbol": BTC,
    "order_type": "stop_limit",
    "side": "buy",
    "quantity": "1",
    "stop_price": "60000",
    "price": "60000",
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`base` with fields replaced; a value of ... removes the field."""
    merged = {**base, **changes}
    return {name: value for name, value in merged.items() if value is not ...}


def raw_order(price: str) -> bytes:
    """An order body with `price` spliced in as raw JSON text."""
    return (
        f'{{"symbol":"{BTC}","order_type":"limit","side":"buy","quantity":"1","price":{price}}}'
    ).encode()


# (id, method, path, body: dict | bytes | None, status, code)
CASES: list[tuple[Any, ...]] = [
    # The body is not a JSON object.
    ("truncated-json", "POST", "/submit_order", b'{"symbol": "BTC-USDT",', 400, "invalid_request"),
    ("not-json", "POST", "/submit_order", b"hello", 400, "invalid_request"),
    ("empty-body", "POST", "/submit_order", b"", 400, "invalid_request"),
    ("array", "POST", "/submit_order", b"[1, 2]", 400, "invalid_request"),
    ("string", "POST", "/submit_order", b'"order"', 400, "invalid_request"),
    ("null", "POST", "/submit_order", b"null", 400, "invalid_request"),
    ("number", "POST", "/submit_order", b"42", 400, "invalid_request"),
    ("bad-utf8", "POST", "/submit_order", b'{"symbol": "\xff\xfe"}', 400, "invalid_request"),
    ("deep-nesting", "POST", "/submit_order", b"[" * 50_000, 400, "invalid_request"),
    ("NaN", "POST", "/submit_order", raw_order("NaN"), 400, "invalid_request"),
    ("Infinity", "POST", "/submit_order", raw_order("Infinity"), 400, "invalid_request"),
    ("-Infinity", "POST", "/submit_order", raw_order("-Infinity"), 400, "invalid_request"),
    (
        "lone-surrogate-account",
        "POST",
        "/submit_order",
        b'{"symbol":"BTC-USDT","order_type":"limit","side":"buy","price":"100","quantity":"1",'
        b'"account":"\\ud800"}',
        400,
        "invalid_field",
    ),
    (
        "lone-surrogate-price",
        "POST",
        "/submit_order",
        raw_order('"1\\udfff"'),
        400,
        "invalid_field",
    ),
    (
        "lone-surrogate-cancel",
        "POST",
        "/cancel_order",
        b'{"symbol":"BTC-USDT","order_id":1,"account":"a\\udc00"}',
        400,
        "invalid_field",
    ),
    (
        "too-large",
        "POST",
        "/submit_order",
        json.dumps(with_(ORDER, client_order_id="x" * 70_000)).encode(),
        413,
        "request_too_large",
    ),
    # Missing fields.
    ("no-symbol", "POST", "/submit_order", with_(ORDER, symbol=...), 400, "invalid_field"),
    ("no-side", "POST", "/submit_order", with_(ORDER, side=...), 400, "invalid_field"),
    ("no-type", "POST", "/submit_order", with_(ORDER, order_type=...), 400, "invalid_field"),
    ("null-type", "POST", "/submit_order", with_(ORDER, order_type=None), 400, "invalid_field"),
    ("no-quantity", "POST", "/submit_order", with_(ORDER, quantity=...), 400, "invalid_quantity"),
    ("no-price", "POST", "/submit_order", with_(ORDER, price=...), 400, "invalid_price"),
    # Wrong JSON types.
    ("quantity-true", "POST", "/submit_order", with_(ORDER, quantity=True), 400, "invalid_field"),
    ("price-false", "POST", "/submit_order", with_(ORDER, price=False), 400, "invalid_field"),
    ("quantity-list", "POST", "/submit_order", with_(ORDER, quantity=[1]), 400, "invalid_field"),
    (
        "quantity-object",
        "POST",
        "/submit_order",
        with_(ORDER, quantity={"v": 1}),
        400,
        "invalid_field",
    ),
    ("side-number", "POST", "/submit_order", with_(ORDER, side=1), 400, "invalid_field"),
    ("symbol-number", "POST", "/submit_order", with_(ORDER, symbol=5), 400, "invalid_field"),
    ("symbol-list", "POST", "/submit_order", with_(ORDER, symbol=[BTC]), 400, "invalid_field"),
    (
        "post-only-string",
        "POST",
        "/submit_order",
        with_(ORDER, post_only="true"),
        400,
        "invalid_field",
    ),
    ("post-only-number", "POST", "/submit_order", with_(ORDER, post_only=1), 400, "invalid_field"),
    (
        "client-id-number",
        "POST",
        "/submit_order",
        with_(ORDER, client_order_id=123),
        400,
        "invalid_field",
    ),
    ("account-number", "POST", "/submit_order", with_(ORDER, account=5), 400, "invalid_field"),
    # Numbers out of range or off the grid.
    ("price-NaN-string", "POST", "/submit_order", with_(ORDER, price="NaN"), 400, "invalid_price"),
    (
        "price-inf-string",
        "POST",
        "/submit_order",
        with_(ORDER, price="Infinity"),
        400,
        "invalid_price",
    ),
    ("price-negative", "POST", "/submit_order", with_(ORDER, price=-1), 400, "invalid_price"),
    ("price-zero", "POST", "/submit_order", with_(ORDER, price="0"), 400, "invalid_price"),
    (
        "price-off-grid",
        "POST",
        "/submit_order",
        with_(ORDER, price="100.001"),
        400,
        "invalid_price",
    ),
    (
        "price-over-max",
        "POST",
        "/submit_order",
        with_(ORDER, price="10000000.01"),
        400,
        "invalid_price",
    ),
    ("price-1e20", "POST", "/submit_order", with_(ORDER, price="1e20"), 400, "invalid_price"),
    ("price-text", "POST", "/submit_order", with_(ORDER, price="abc"), 400, "invalid_price"),
    ("price-empty", "POST", "/submit_order", with_(ORDER, price=""), 400, "invalid_price"),
    ("price-41-chars", "POST", "/submit_order", with_(ORDER, price="1" * 41), 400, "invalid_price"),
    ("quantity-zero", "POST", "/submit_order", with_(ORDER, quantity=0), 400, "invalid_quantity"),
    (
        "quantity-negative",
        "POST",
        "/submit_order",
        with_(ORDER, quantity="-1"),
        400,
        "invalid_quantity",
    ),
    (
        "quantity-off-grid",
        "POST",
        "/submit_order",
        with_(ORDER, quantity="0.00001"),
        400,
        "invalid_quantity",
    ),
    (
        "quantity-over-max",
        "POST",
        "/submit_order",
        with_(ORDER, quantity="100000.0001"),
        400,
        "invalid_quantity",
    ),
    ("price-1e30", "POST", "/submit_order", with_(ORDER, price="1e30"), 400, "invalid_price"),
    (
        "quantity-1e400-number",
        "POST",
        "/submit_order",
        json.dumps(with_(ORDER, quantity="QTY")).replace('"QTY"', "1e400").encode(),
        400,
        "invalid_quantity",
    ),
    (
        "quantity-1e-400-number",
        "POST",
        "/submit_order",
        json.dumps(with_(ORDER, quantity="QTY")).replace('"QTY"', "1e-400").encode(),
        400,
        "invalid_quantity",
    ),
    (
        "quantity-26-digits",
        "POST",
        "/submit_order",
        with_(ORDER, quantity="9" * 26),
        400,
        "invalid_quantity",
    ),
    # Unknown names and conflicting options.
    (
        "type-unknown",
        "POST",
        "/submit_order",
        with_(ORDER, order_type="stop"),
        400,
        "invalid_field",
    ),
    (
        "type-uppercase",
        "POST",
        "/submit_order",
        with_(ORDER, order_type="LIMIT"),
        400,
        "invalid_field",
    ),
    (
        "type-stop-on-submit",
        "POST",
        "/submit_order",
        with_(ORDER, order_type="stop_loss"),
        400,
        "invalid_field",
    ),
    ("side-unknown", "POST", "/submit_order", with_(ORDER, side="long"), 400, "invalid_field"),
    (
        "tif-unknown",
        "POST",
        "/submit_order",
        with_(ORDER, time_in_force="day"),
        400,
        "invalid_field",
    ),
    ("stp-unknown", "POST", "/submit_order", with_(ORDER, stp="never"), 400, "invalid_field"),
    (
        "market-with-price",
        "POST",
        "/submit_order",
        with_(ORDER, order_type="market"),
        400,
        "invalid_price",
    ),
    (
        "market-gtc",
        "POST",
        "/submit_order",
        with_(ORDER, order_type="market", price=..., time_in_force="gtc"),
        400,
        "invalid_field",
    ),
    (
        "post-only-ioc",
        "POST",
        "/submit_order",
        with_(ORDER, order_type="ioc", post_only=True),
        400,
        "invalid_field",
    ),
    (
        "client-id-empty",
        "POST",
        "/submit_order",
        with_(ORDER, client_order_id=""),
        400,
        "invalid_field",
    ),
    (
        "client-id-65",
        "POST",
        "/submit_order",
        with_(ORDER, client_order_id="c" * 65),
        400,
        "invalid_field",
    ),
    (
        "client-id-newline",
        "POST",
        "/submit_order",
        with_(ORDER, client_order_id="a\nb"),
        400,
        "invalid_field",
    ),
    ("account-65", "POST", "/submit_order", with_(ORDER, account="a" * 65), 400, "invalid_field"),
    ("unknown-field", "POST", "/submit_order", with_(ORDER, foo=1), 400, "invalid_field"),
    ("smuggled-op", "POST", "/submit_order", with_(ORDER, op="cancel_order"), 400, "invalid_field"),
    ("smuggled-req-id", "POST", "/submit_order", with_(ORDER, req_id=1), 400, "invalid_field"),
    (
        "symbol-unknown",
        "POST",
        "/submit_order",
        with_(ORDER, symbol="DOGE-USDT"),
        404,
        "unknown_symbol",
    ),
    (
        "symbol-lowercase",
        "POST",
        "/submit_order",
        with_(ORDER, symbol="btc-usdt"),
        404,
        "unknown_symbol",
    ),
    # Stop orders.
    (
        "stop-type-limit",
        "POST",
        "/submit_stop_order",
        with_(STOP, order_type="limit"),
        400,
        "invalid_field",
    ),
    (
        "stop-no-stop-price",
        "POST",
        "/submit_stop_order",
        with_(STOP, stop_price=...),
        400,
        "invalid_price",
    ),
    (
        "stop-limit-no-price",
        "POST",
        "/submit_stop_order",
        with_(STOP, price=...),
        400,
        "invalid_price",
    ),
    (
        "stop-loss-with-price",
        "POST",
        "/submit_stop_order",
        with_(STOP, order_type="stop_loss"),
        400,
        "invalid_price",
    ),
    (
        "stop-negative",
        "POST",
        "/submit_stop_order",
        with_(STOP, stop_price="-5"),
        400,
        "invalid_price",
    ),
    (
        "stop-post-only",
        "POST",
        "/submit_stop_order",
        with_(STOP, post_only=True),
        400,
        "invalid_field",
    ),
    (
        "stop-symbol-unknown",
        "POST",
        "/submit_stop_order",
        with_(STOP, symbol="X"),
        404,
        "unknown_symbol",
    ),
    # Cancel and amend.
    ("cancel-no-id", "POST", "/cancel_order", {"symbol": BTC}, 400, "invalid_field"),
    (
        "cancel-id-text",
        "POST",
        "/cancel_order",
        {"symbol": BTC, "order_id": "abc"},
        400,
        "invalid_field",
    ),
    (
        "cancel-id-negative",
        "POST",
        "/cancel_order",
        {"symbol": BTC, "order_id": -1},
        400,
        "invalid_field",
    ),
    (
        "cancel-id-zero",
        "POST",
        "/cancel_order",
        {"symbol": BTC, "order_id": 0},
        400,
        "invalid_field",
    ),
    (
        "cancel-id-fraction",
        "POST",
        "/cancel_order",
        {"symbol": BTC, "order_id": 1.5},
        400,
        "invalid_field",
    ),
    (
        "cancel-id-bool",
        "POST",
        "/cancel_order",
        {"symbol": BTC, "order_id": True},
        400,
        "invalid_field",
    ),
    (
        "cancel-id-2**64",
        "POST",
        "/cancel_order",
        {"symbol": BTC, "order_id": 2**64},
        400,
        "invalid_field",
    ),
    (
        "cancel-id-superscript",
        "POST",
        "/cancel_order",
        {"symbol": BTC, "order_id": "\u00b2"},
        400,
        "invalid_field",
    ),
    (
        "cancel-unknown-order",
        "POST",
        "/cancel_order",
        {"symbol": BTC, "order_id": 10**15},
        404,
        "unknown_order",
    ),
    (
        "cancel-unknown-symbol",
        "POST",
        "/cancel_order",
        {"symbol": "X", "order_id": 1},
        404,
        "unknown_symbol",
    ),
    ("amend-nothing", "POST", "/amend_order", {"symbol": BTC, "order_id": 1}, 400, "invalid_field"),
    (
        "amend-unknown-order",
        "POST",
        "/amend_order",
        {"symbol": BTC, "order_id": 10**15, "quantity": "1"},
        404,
        "unknown_order",
    ),
    (
        "amend-off-grid",
        "POST",
        "/amend_order",
        {"symbol": BTC, "order_id": 1, "quantity": "0.00001"},
        400,
        "invalid_quantity",
    ),
    (
        "amend-unknown-field",
        "POST",
        "/amend_order",
        {"symbol": BTC, "order_id": 1, "side": "buy"},
        400,
        "invalid_field",
    ),
    # Query strings and paths.
    ("depth-0", "GET", "/orderbook/BTC-USDT?depth=0", None, 400, "invalid_field"),
    ("depth-1001", "GET", "/orderbook/BTC-USDT?depth=1001", None, 400, "invalid_field"),
    ("depth-text", "GET", "/orderbook/BTC-USDT?depth=abc", None, 400, "invalid_field"),
    ("depth-negative", "GET", "/orderbook/BTC-USDT?depth=-1", None, 400, "invalid_field"),
    ("depth-fraction", "GET", "/orderbook/BTC-USDT?depth=1.5", None, 400, "invalid_field"),
    ("depth-superscript", "GET", "/orderbook/BTC-USDT?depth=%C2%B2", None, 400, "invalid_field"),
    ("limit-0", "GET", "/trades/BTC-USDT?limit=0", None, 400, "invalid_field"),
    ("limit-1001", "GET", "/trades/BTC-USDT?limit=1001", None, 400, "invalid_field"),
    ("format-xml", "GET", "/trades/BTC-USDT?format=xml", None, 400, "invalid_field"),
    ("order-id-path-text", "GET", "/orders/BTC-USDT/abc", None, 400, "invalid_field"),
    ("order-id-path-zero", "GET", "/orders/BTC-USDT/0", None, 400, "invalid_field"),
    ("order-unknown", "GET", "/orders/BTC-USDT/999999999999", None, 404, "unknown_order"),
    ("orders-status", "GET", "/orders/BTC-USDT?status=closed", None, 400, "invalid_field"),
    ("orders-limit", "GET", "/orders/BTC-USDT?limit=0", None, 400, "invalid_field"),
    (
        "orders-account-65",
        "GET",
        "/orders/BTC-USDT?account=" + "a" * 65,
        None,
        400,
        "invalid_field",
    ),
    ("book-unknown-symbol", "GET", "/orderbook/DOGE-USDT", None, 404, "unknown_symbol"),
    ("bbo-unknown-symbol", "GET", "/bbo/DOGE-USDT", None, 404, "unknown_symbol"),
    ("trades-unknown-symbol", "GET", "/trades/DOGE-USDT", None, 404, "unknown_symbol"),
    ("orders-unknown-symbol", "GET", "/orders/DOGE-USDT", None, 404, "unknown_symbol"),
    ("order-unknown-symbol", "GET", "/orders/DOGE-USDT/1", None, 404, "unknown_symbol"),
    ("no-such-path", "GET", "/nope", None, 404, "not_found"),
    ("wrong-method", "GET", "/submit_order", None, 405, "method_not_allowed"),
]


@pytest.fixture(scope="module")
def resting(system: GatewaySystem) -> Iterator[None]:
    """A book that is not empty on both symbols (and a trade), left as found afterwards."""
    with system.rest(account="battery") as rest:
        orders = [
            (BTC, rest.submit_order(BTC, "limit", "buy", "0.5", price="25000")),
            (BTC, rest.submit_order(BTC, "limit", "sell", "0.7", price="50000")),
            (ETH, rest.submit_order(ETH, "limit", "sell", "3", price="3000")),
        ]
        yield
        for symbol, order in orders:
            rest.cancel_order(symbol, order["order_id"])


def state(http: httpx.Client) -> dict[str, Any]:
    """Everything a bad request must not change."""
    seen: dict[str, Any] = {
        "seq": {
            symbol: matcher["seq"]
            for symbol, matcher in http.get("/health").json()["matchers"].items()
        }
    }
    for symbol in (BTC, ETH):
        book = http.get(f"/orderbook/{symbol}?depth=1000").json()
        del book["timestamp"]
        seen[f"book {symbol}"] = book
        seen[f"trades {symbol}"] = http.get(f"/trades/{symbol}?limit=1000").json()
    return seen


PARAMS = [pytest.param(*case, id=case[0]) for case in CASES]


@pytest.mark.parametrize(("case", "method", "path", "body", "status", "code"), PARAMS)
def test_bad_request_is_refused_and_changes_nothing(
    http: httpx.Client,
    resting: None,
    case: str,
    method: str,
    path: str,
    body: dict[str, Any] | bytes | None,
    status: int,
    code: str,
) -> None:
    before = state(http)
    assert before["book BTC-USDT"]["bids"] and before["book BTC-USDT"]["asks"]
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    response = http.request(method, path, content=content)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["error"]["message"], str)
    assert set(response.json()) == {"error"}
    assert state(http) == before


def test_chunked_body_over_the_limit_is_413(http: httpx.Client, resting: None) -> None:
    before = state(http)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the gateway counts as it reads
        yield b'{"symbol": "BTC-USDT", "client_order_id": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    response = http.post("/submit_order", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert state(http) == before


def test_chunked_body_over_the_limit_in_one_write_is_413(http: httpx.Client, resting: None) -> None:
    """A chunked body sent in one write can reach the app whole, as one ASGI message
    (uvicorn buffers ~100 KB before it pauses reading): the limit must count it too."""
    before = state(http)
    order = json.dumps(ORDER).encode()
    body = order + b" " * (100_000 - len(order))  # a valid order, padded past 64 KiB
    url = httpx.URL(str(http.base_url))
    request = (
        (
            f"POST /submit_order HTTP/1.1\r\nHost: {url.host}\r\n"
            f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\n\r\n{len(body):x}\r\n"
        ).encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    for _ in range(5):  # whether it arrives as one message is up to the kernel: try a few
        with socket.create_connection((url.host, url.port), timeout=10) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), reply[:300]
        assert json.loads(payload)["error"]["code"] == "request_too_large"
    assert state(http) == before


def test_gateway_keeps_serving_after_the_battery(http: httpx.Client) -> None:
    assert http.get("/bbo/BTC-USDT").status_code == 200


# -- unit tests of gateway/validation.py ---------------------------------------------


def test_build_message_keeps_known_fields_and_drops_nulls() -> None:
    message = build_message({"symbol": BTC, "price": None, "quantity": "1"}, NEW_ORDER_FIELDS)
    assert message == {"symbol": BTC, "quantity": "1"}


@pytest.mark.parametrize("value", ["1", "9223372036854775807", 7])
def test_order_id_accepts_positive_63_bit_integers(value: Any) -> None:
    assert order_id(str(value)) == int(value)


@pytest.mark.parametrize(
    "value", ["0", "-1", "9223372036854775808", "1.0", "", "\u00b2", None, True, 5]
)
def test_order_id_refuses_the_rest(value: Any) -> None:
    # A JSON integer arrives as its text (gateway/formats.py): a Python int is refused.
    with pytest.raises(ApiError) as error:
        order_id(value)
    assert error.value.code == "invalid_field" and error.value.status == 400


# -- strict input (docs/api.md, "Strict input") ----------------------------------------
# Each of these was accepted, or refused without naming what was wrong, before: a repeated
# key took its last value ({"side": "buy", "side": "sell"} placed a sell), an unknown query
# parameter was ignored (?depht=1 answered 10 levels, ?client_order_id=X every order), and
# Decimal() read " 100", "1e2", "+100", ".5" and "5." as numbers.

ORDER_TEXT = '{"symbol":"BTC-USDT","order_type":"limit","side":"buy","price":"100","quantity":"1"'


def raw_field(field: str, value: str, base: str = ORDER_TEXT) -> bytes:
    """The order body with one more `"field": value` (raw JSON) spliced in at the end."""
    return f'{base},"{field}":{value}}}'.encode()


def raw_decimal(field: str, json_value: str) -> bytes:
    """The order body with `field` ("price" or "quantity") given as raw JSON text."""
    fields = {"price": '"100"', "quantity": '"1"', field: json_value}
    return (
        f'{{"symbol":"BTC-USDT","order_type":"limit","side":"buy",'
        f'"price":{fields["price"]},"quantity":{fields["quantity"]}}}'
    ).encode()


# "" is left out here: an empty price has a case of its own ("price-empty").
NOT_PLAIN = [text for text in NOT_PLAIN_DECIMALS if text]

# (id, method, path, body, status, code, what the message must name)
STRICT_CASES: list[tuple[Any, ...]] = [
    (
        "repeated-side",
        "POST",
        "/submit_order",
        raw_field("side", '"sell"'),
        400,
        "invalid_request",
        "repeated key 'side'",
    ),
    (
        "repeated-price",
        "POST",
        "/submit_order",
        raw_field("price", '"50000"'),
        400,
        "invalid_request",
        "repeated key 'price'",
    ),
    (
        "repeated-symbol",
        "POST",
        "/submit_order",
        b'{"symbol":"ETH-USDT","symbol":"BTC-USDT","order_type":"limit","side":"buy",'
        b'"price":"100","quantity":"1"}',
        400,
        "invalid_request",
        "repeated key 'symbol'",
    ),
    (
        "repeated-account",
        "POST",
        "/submit_order",
        raw_field("account", '"x"', ORDER_TEXT + ',"account":"y"'),
        400,
        "invalid_request",
        "repeated key 'account'",
    ),
    (
        "repeated-in-nested",
        "POST",
        "/submit_order",
        raw_field("stp", '{"a":1,"a":2}'),
        400,
        "invalid_request",
        "repeated key 'a'",
    ),
    (
        "repeated-stop",
        "POST",
        "/submit_stop_order",
        json.dumps(STOP)[:-1].encode() + b',"side":"sell"}',
        400,
        "invalid_request",
        "repeated key 'side'",
    ),
    (
        "repeated-cancel-id",
        "POST",
        "/cancel_order",
        b'{"symbol":"BTC-USDT","order_id":1,"order_id":1000000000000000}',
        400,
        "invalid_request",
        "repeated key 'order_id'",
    ),
    (
        "repeated-amend-quantity",
        "POST",
        "/amend_order",
        b'{"symbol":"BTC-USDT","order_id":1000000000000000,"quantity":"1","quantity":"2"}',
        400,
        "invalid_request",
        "repeated key 'quantity'",
    ),
    # Decimal text that is not plain, as JSON strings and as JSON numbers.
    *[
        (
            f"price-{text!r}",
            "POST",
            "/submit_order",
            raw_decimal("price", json.dumps(text)),
            400,
            "invalid_price",
            "price must be a plain decimal",
        )
        for text in NOT_PLAIN
    ],
    *[
        (
            f"quantity-{text!r}",
            "POST",
            "/submit_order",
            raw_decimal("quantity", json.dumps(text)),
            400,
            "invalid_quantity",
            "quantity must be a plain decimal",
        )
        for text in NOT_PLAIN
    ],
    (
        "price-number-1e2",
        "POST",
        "/submit_order",
        raw_decimal("price", "1e2"),
        400,
        "invalid_price",
        "'1e2'",
    ),
    (
        "price-number-1.0E+2",
        "POST",
        "/submit_order",
        raw_decimal("price", "1.0E+2"),
        400,
        "invalid_price",
        "'1.0E+2'",
    ),
    (
        "quantity-number-1e0",
        "POST",
        "/submit_order",
        raw_decimal("quantity", "1e0"),
        400,
        "invalid_quantity",
        "'1e0'",
    ),
    (
        "stop-price-1e4",
        "POST",
        "/submit_stop_order",
        with_(STOP, stop_price="6e4"),
        400,
        "invalid_price",
        "stop_price must be a plain decimal",
    ),
    (
        "amend-price-spaces",
        "POST",
        "/amend_order",
        {"symbol": BTC, "order_id": 10**15, "price": " 100"},
        400,
        "invalid_price",
        "price must be a plain decimal",
    ),
    # Query parameters an endpoint does not take, or given twice.
    (
        "depht",
        "GET",
        "/orderbook/BTC-USDT?depht=1",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'depht'; this endpoint takes depth",
    ),
    (
        "depth-twice",
        "GET",
        "/orderbook/BTC-USDT?depth=1&depth=2",
        None,
        400,
        "invalid_field",
        "query parameter 'depth' is given more than once",
    ),
    (
        "orders-client-order-id",
        "GET",
        "/orders/BTC-USDT?client_order_id=NOPE",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'client_order_id'",
    ),
    (
        "orders-status-twice",
        "GET",
        "/orders/BTC-USDT?status=open&status=all",
        None,
        400,
        "invalid_field",
        "'status' is given more than once",
    ),
    (
        "orders-account-twice",
        "GET",
        "/orders/BTC-USDT?account=a&account=b",
        None,
        400,
        "invalid_field",
        "'account' is given more than once",
    ),
    (
        "order-extra",
        "GET",
        "/orders/BTC-USDT/1?symbol=ETH-USDT",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'symbol'",
    ),
    (
        "bbo-depth",
        "GET",
        "/bbo/BTC-USDT?depth=5",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'depth'; this endpoint takes no query parameters",
    ),
    (
        "trades-limt",
        "GET",
        "/trades/BTC-USDT?limt=5",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'limt'",
    ),
    (
        "trades-format-twice",
        "GET",
        "/trades/BTC-USDT?format=csv&format=json",
        None,
        400,
        "invalid_field",
        "'format' is given more than once",
    ),
    (
        "trades-account",
        "GET",
        "/trades/BTC-USDT?account=a",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'account'",
    ),
    (
        "empty-name",
        "GET",
        "/orderbook/BTC-USDT?=5",
        None,
        400,
        "invalid_field",
        "unknown query parameter ''",
    ),
    (
        "health-verbose",
        "GET",
        "/health?verbose=1",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'verbose'",
    ),
    ("root-x", "GET", "/?x", None, 400, "invalid_field", "unknown query parameter 'x'"),
    (
        "metrics-x",
        "GET",
        "/metrics?format=json",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'format'",
    ),
    (
        "openapi-x",
        "GET",
        "/openapi.json?v=2",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'v'",
    ),
    (
        "dashboard-x",
        "GET",
        "/test?debug=1",
        None,
        400,
        "invalid_field",
        "unknown query parameter 'debug'",
    ),
    # The order endpoints take everything in the body: a query parameter is refused (it
    # was ignored: ?account=bob placed the order as anonymous).
    (
        "submit-query-account",
        "POST",
        "/submit_order?account=bob",
        ORDER,
        400,
        "invalid_field",
        "unknown query parameter 'account'; this endpoint takes no query",
    ),
    (
        "cancel-query",
        "POST",
        "/cancel_order?order_id=1",
        {"symbol": BTC, "order_id": 10**15},
        400,
        "invalid_field",
        "unknown query parameter 'order_id'",
    ),
]

STRICT_PARAMS = [pytest.param(*case, id=case[0]) for case in STRICT_CASES]


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "status", "code", "named"), STRICT_PARAMS
)
def test_strict_input_is_refused_naming_what_and_changes_nothing(
    http: httpx.Client,
    resting: None,
    case: str,
    method: str,
    path: str,
    body: dict[str, Any] | bytes | None,
    status: int,
    code: str,
    named: str,
) -> None:
    before = state(http)
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    response = http.request(method, path, content=content)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code, response.text
    assert named in error["message"], error["message"]
    assert state(http) == before


def test_plain_decimals_and_json_numbers_still_work(http: httpx.Client, account: str) -> None:
    """What strict input keeps: plain decimal strings, JSON integers and fractions (kept as
    the client's text), leading zeros, and every documented query parameter."""
    bodies = [
        b'{"price":"100","quantity":"1"',
        b'{"price":"100.50","quantity":"0.0001"',
        b'{"price":100,"quantity":1',
        b'{"price":100.5,"quantity":0.5',
        b'{"price":"0100.00","quantity":"01"',
    ]
    for body in bodies:
        content = (
            body + b',"symbol":"BTC-USDT","order_type":"limit","side":"buy",'
            b'"account":"' + account.encode() + b'"}'
        )
        response = http.post("/submit_order", content=content)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "new"
    assert http.get("/orderbook/BTC-USDT?depth=1").status_code == 200
    assert http.get("/trades/BTC-USDT?limit=1&format=csv").status_code == 200
    listed = http.get(f"/orders/BTC-USDT?status=open&limit=10&account={account}")
    assert listed.status_code == 200 and len(listed.json()["orders"]) == len(bodies)
    assert http.get("/bbo/BTC-USDT?").status_code == 200  # an empty query string is none
