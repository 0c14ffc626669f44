"""Strict input over ZeroMQ: a real matcher process, raw msgpack frames on a DEALER.

A request map with a repeated key is refused naming the key (msgpack keeps the last
value: {"side": "buy", "side": "sell"} used to place a sell), whatever the header's
encoding (fixmap, map16, map32); decimal text must be plain ("123", "0.5"), while msgpack
integers and floats keep working. Every refusal leaves the state as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import msgpack
import pytest

from matcher import codec
from matcher.protocol import Code, CommandError
from matcher.units import parse_decimal
from tests.matcher.test_service import MatcherProcess
from tests.support import NOT_PLAIN_DECIMALS

NEW_ORDER = [
    ("op", "new_order"),
    ("order_type", "limit"),
    ("side", "buy"),
    ("price", "100"),
    ("quantity", "1"),
]


@pytest.fixture(scope="module")
def strict_matcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatcherProcess]:
    """A matcher with resting orders and a trade: the state the refusals must not touch."""
    folder = tmp_path_factory.mktemp("strict")
    process = MatcherProcess(folder / "data", folder / "matcher.log")
    try:
        process.start()
        process.request("new_order", order_type="limit", side="sell", price="30000", quantity="2")
        process.request("new_order", order_type="limit", side="buy", price="29990", quantity="1")
        process.request("new_order", order_type="market", side="buy", quantity="0.5")
        yield process
    finally:
        process.stop()


def frame(pairs: list[tuple[Any, Any]], header: str = "fixmap") -> bytes:
    """A msgpack map frame of exactly these pairs (repeats kept), with the header form
    asked for: msgpack allows any form for any size, so map16/map32 of few entries too."""
    size = len(pairs)
    head = {
        "fixmap": bytes((0x80 | size,)),
        "map16": b"\xde" + size.to_bytes(2, "big"),
        "map32": b"\xdf" + size.to_bytes(4, "big"),
    }[header]
    return head + b"".join(msgpack.packb(key) + msgpack.packb(value) for key, value in pairs)


def send(process: MatcherProcess, data: bytes) -> dict[str, Any]:
    assert process.client is not None
    process.client.send_raw(data)
    return process.client.recv_reply()


REPEATS = [
    ("side", [*NEW_ORDER, ("side", "sell")]),
    ("price", [*NEW_ORDER, ("price", "30000")]),
    ("quantity", [*NEW_ORDER, ("quantity", "5")]),
    ("op", [("op", "ping"), *NEW_ORDER]),
    ("req_id", [("req_id", 1), *NEW_ORDER, ("req_id", 2)]),
    ("account", [("account", "a"), *NEW_ORDER, ("account", "b")]),
    ("order_id", [("op", "cancel_order"), ("order_id", 10**15), ("order_id", 1)]),
    ("depth", [("op", "book"), ("depth", 1), ("depth", 1000)]),
    ("hash", [("op", "ping"), ("hash", False), ("hash", True)]),
    ("op", [("op", "ping")] * 16),  # 16 entries: the smallest count not a fixmap's
]


REPEAT_PARAMS = [
    pytest.param(key, pairs, header, id=f"{key}-{len(pairs)}-{header}")
    for key, pairs in REPEATS
    for header in ("fixmap", "map16", "map32")
    if header != "fixmap" or len(pairs) <= 15  # a fixmap holds at most 15 entries
]


@pytest.mark.parametrize(("key", "pairs", "header"), REPEAT_PARAMS)
def test_a_repeated_key_is_refused_naming_it(
    strict_matcher: MatcherProcess, key: str, pairs: list[tuple[Any, Any]], header: str
) -> None:
    before = strict_matcher.state()
    reply = send(strict_matcher, frame(pairs, header))
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == "invalid_request"
    assert f"repeated key {key!r}" in reply["error"]["message"]
    assert strict_matcher.state() == before


def test_a_non_string_key_repeated_by_value_is_refused(strict_matcher: MatcherProcess) -> None:
    """1 and True are one Python dict key: still a repeated key, not a silent merge."""
    before = strict_matcher.state()
    reply = send(strict_matcher, frame([("op", "ping"), (1, "a"), (True, "b")]))
    assert reply["ok"] is False and "repeated key True" in reply["error"]["message"]
    assert strict_matcher.state() == before


@pytest.mark.parametrize("header", ["fixmap", "map16", "map32"])
def test_every_header_form_without_repeats_is_served(
    strict_matcher: MatcherProcess, header: str
) -> None:
    reply = send(strict_matcher, frame([*NEW_ORDER, ("req_id", header)], header))
    assert reply["ok"] is True and reply["req_id"] == header, reply
    assert reply["result"]["side"] == "buy" and reply["result"]["status"] == "new"
    strict_matcher.request("cancel_order", order_id=reply["result"]["order_id"])


DECIMAL_FIELDS = [
    (
        "new_order",
        "price",
        "invalid_price",
        {"order_type": "limit", "side": "buy", "price": "100", "quantity": "1"},
    ),
    (
        "new_order",
        "quantity",
        "invalid_quantity",
        {"order_type": "limit", "side": "buy", "price": "100", "quantity": "1"},
    ),
    (
        "new_stop_order",
        "stop_price",
        "invalid_price",
        {
            "order_type": "stop_limit",
            "side": "buy",
            "stop_price": "40000",
            "price": "40000",
            "quantity": "1",
        },
    ),
    ("amend_order", "price", "invalid_price", {"order_id": 1, "price": "100"}),
]


@pytest.mark.parametrize("text", NOT_PLAIN_DECIMALS, ids=repr)
@pytest.mark.parametrize(
    ("op", "field", "code", "fields"),
    DECIMAL_FIELDS,
    ids=[f"{op}-{field}" for op, field, _, _ in DECIMAL_FIELDS],
)
def test_decimal_text_must_be_plain(
    strict_matcher: MatcherProcess,
    op: str,
    field: str,
    code: str,
    fields: dict[str, Any],
    text: str,
) -> None:
    before = strict_matcher.state()
    reply = strict_matcher.raw(op, **{**fields, field: text})
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == code
    assert f"{field} must be a plain decimal such as 123 or 0.5" in reply["error"]["message"]
    assert strict_matcher.state() == before


@pytest.mark.parametrize(
    ("price", "quantity"),
    [
        ("100", "1"),
        ("100.50", "0.0001"),
        ("0100", "01.0"),
        (100, 1),
        (100.5, 0.5),
    ],
)
def test_plain_text_and_msgpack_numbers_are_accepted(
    strict_matcher: MatcherProcess, price: Any, quantity: Any
) -> None:
    order = strict_matcher.request(
        "new_order", order_type="limit", side="buy", price=price, quantity=quantity
    )
    assert order["status"] == "new"
    strict_matcher.request("cancel_order", order_id=order["order_id"])


def test_the_matcher_logged_no_traceback(strict_matcher: MatcherProcess) -> None:
    assert strict_matcher.child is not None and strict_matcher.child.alive
    assert "Traceback" not in strict_matcher.log()


# -- decode_request by itself ----------------------------------------------------------


def test_decode_request_names_the_first_repeated_key() -> None:
    with pytest.raises(ValueError, match="repeated key 'side' in the request map"):
        codec.decode_request(frame([*NEW_ORDER, ("side", "sell")]))
    assert codec.decode_request(frame(NEW_ORDER, "map32")) == dict(NEW_ORDER)
    assert codec.decode_request(codec.encode_request({})) == {}


def test_a_repeat_inside_a_nested_map_cannot_change_a_request(
    strict_matcher: MatcherProcess,
) -> None:
    """Only the top level is counted: no field takes a map, so a nested one is refused as
    the wrong type (order ops) or ignored (query ops), whatever its keys."""
    before = strict_matcher.state()
    nested = b"\x82" + msgpack.packb("a") + msgpack.packb(1) + msgpack.packb("a") + b"\x02"
    side = frame([*NEW_ORDER[:2], *NEW_ORDER[3:]])[1:]  # the order's pairs without its side
    reply = send(strict_matcher, bytes((0x80 | 5,)) + side + msgpack.packb("side") + nested)
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_field", reply
    assert strict_matcher.state() == before


# -- parse_decimal by itself -----------------------------------------------------------


@pytest.mark.parametrize("text", NOT_PLAIN_DECIMALS, ids=repr)
def test_parse_decimal_refuses_text_that_is_not_plain(text: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_decimal(text, "price", Code.INVALID_PRICE)
    assert refused.value.code == Code.INVALID_PRICE
    assert refused.value.message.startswith("price must be a plain decimal such as 123 or 0.5")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("123", "123"),
        ("0.5", "0.5"),
        ("007.50", "7.50"),
        ("0", "0"),
        (100, "100"),
        (-5, "-5"),
        (0.1, "0.1"),
        (1e-05, "0.00001"),
    ],
)
def test_parse_decimal_reads_plain_text_and_numbers(value: Any, expected: str) -> None:
    # Signs and zero pass here as numbers: the grid checks (price_ticks) refuse them.
    assert parse_decimal(value, "price", Code.INVALID_PRICE) == Decimal(expected)


def test_a_repeated_key_refusal_carries_the_request_id(strict_matcher: MatcherProcess) -> None:
    # A pipelining client matches replies by req_id: the refusal must carry it (unless
    # req_id itself is the repeated key, and so cannot be trusted).
    reply = send(strict_matcher, frame([("req_id", 77), *NEW_ORDER, ("side", "sell")], "fixmap"))
    assert reply["ok"] is False and reply["req_id"] == 77
    reply = send(strict_matcher, frame([("req_id", 1), *NEW_ORDER, ("req_id", 2)], "fixmap"))
    assert reply["ok"] is False and reply["req_id"] is None
