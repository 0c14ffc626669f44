"""gateway/formats.py: request JSON in (numbers kept as text), JSON and CSV out."""

from __future__ import annotations

import csv
import io
import json

import pytest

from gateway.errors import ApiError
from gateway.formats import JsonNumber, decode_object, encode, encode_result, trades_csv


def test_numbers_keep_the_text_the_client_sent() -> None:
    body = decode_object(b'{"price": 0.1, "quantity": 30000, "big": 1e400, "tiny": -1E-7}')
    assert body == {"price": "0.1", "quantity": "30000", "big": "1e400", "tiny": "-1E-7"}
    assert all(type(value) is JsonNumber for value in body.values())
    assert type(decode_object(b'{"price": "0.1"}')["price"]) is str  # a JSON string stays str


@pytest.mark.parametrize(
    "body",
    [
        b'{"price": NaN}',
        b'{"price": Infinity}',
        b'{"price": -Infinity}',
        b"[]",
        b"1",
        b"",
        b"{",
        b"\xff",
        b"[" * 50_000,
    ],
)
def test_only_json_objects_are_requests(body: bytes) -> None:
    with pytest.raises(ApiError) as error:
        decode_object(body)
    assert (error.value.status, error.value.code) == (400, "invalid_request")


def test_encode_is_compact_and_refuses_nan() -> None:
    assert encode({"a": [1, "x", None]}) == b'{"a":[1,"x",null]}'
    with pytest.raises(ValueError):
        encode({"a": float("nan")})


def test_encode_result_is_compact_json_of_the_same_value() -> None:
    result = {
        "order_id": 7,
        "client_order_id": "caf\u00e9",
        "post_only": False,
        "stop_price": None,
        "trades": [{"trade_id": 1, "price": "30000.00"}],
    }
    assert encode_result(result) == (
        b'{"order_id":7,"client_order_id":"caf\xc3\xa9","post_only":false,'
        b'"stop_price":null,"trades":[{"trade_id":1,"price":"30000.00"}]}'
    )
    assert json.loads(encode_result(result)) == json.loads(encode(result)) == result


def test_trades_csv_has_a_header_row() -> None:
    trade = {
        "trade_id": 7,
        "symbol": "BTC-USDT",
        "price": "30000.00",
        "quantity": "1.0000",
        "aggressor_side": "buy",
        "maker_order_id": 1,
        "taker_order_id": 2,
        "maker_fee": "3",
        "taker_fee": "6",
        "timestamp": "2026-01-01T00:00:00.000000Z",
    }
    rows = list(csv.DictReader(io.StringIO(trades_csv([trade]))))
    assert rows == [{name: str(value) for name, value in trade.items()}]
    assert trades_csv([]).strip().split(",")[0] == "trade_id"
