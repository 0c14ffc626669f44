"""matcher/units.py: decimal text <-> ticks and lots, exact or refused; fee formatting."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matcher.config import build_symbol
from matcher.protocol import Code, CommandError
from matcher.system import load_config
from matcher.units import Units

BTC = Units(load_config().symbols["BTC-USDT"])  # tick 0.01, lot 0.0001, max 1e7 / 1e5


def refusal(call: Any, value: Any) -> str:
    with pytest.raises(CommandError) as error:
        call(value)
    return error.value.code


def test_on_grid_values_convert_exactly() -> None:
    assert BTC.price_ticks("30000") == 3_000_000
    assert BTC.price_ticks("30000.00") == 3_000_000
    assert BTC.price_ticks(30000) == 3_000_000
    assert BTC.price_ticks(0.1) == 10
    assert BTC.price_ticks("10000000") == 1_000_000_000  # max_price itself
    assert BTC.quantity_lots("1.5") == 15_000
    assert BTC.quantity_lots("0.0001") == 1
    assert BTC.quantity_lots("100000") == 1_000_000_000


def test_off_grid_price_rejected() -> None:
    assert refusal(BTC.price_ticks, "100.000000001") == Code.INVALID_PRICE
    assert refusal(BTC.price_ticks, "100.001") == Code.INVALID_PRICE
    assert refusal(BTC.price_ticks, "0.001") == Code.INVALID_PRICE  # under one tick
    assert refusal(BTC.quantity_lots, "1.00001") == Code.INVALID_QUANTITY


BAD_NUMBERS = [
    float("nan"),
    float("inf"),
    float("-inf"),
    "NaN",
    "nan",
    "sNaN",
    "inf",
    "Infinity",
    "-Infinity",
    "-1",
    -1,
    "-0.01",
    "0",
    0,
    0.0,
    "-0",
    "0.00",
    True,
    False,
    None,
    [],
    [1],
    {},
    {"a": 1},
    b"1",
    "",
    "   ",
    "1" * 41,
    "9" * 5000,
    "1e400",
    "1E+400",
    1e300,
    10**39,
    "1e30",
    "1e-400",
    "1e-999999999",
    "abc",
    "1.2.3",
    "0x10",
    "1_000",
    "١٢٣",
    "1 000",
]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
def test_bad_price_rejected_with_invalid_price(value: Any) -> None:
    assert refusal(BTC.price_ticks, value) == Code.INVALID_PRICE


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
def test_bad_quantity_rejected_with_invalid_quantity(value: Any) -> None:
    assert refusal(BTC.quantity_lots, value) == Code.INVALID_QUANTITY


def test_out_of_range_rejected() -> None:
    assert refusal(BTC.price_ticks, "10000000.01") == Code.INVALID_PRICE
    assert refusal(BTC.quantity_lots, "100000.0001") == Code.INVALID_QUANTITY
    eth = Units(load_config().symbols["ETH-USDT"])  # lot 0.001, min 0.001
    coarse = Units(
        build_symbol("X-Y", {"lot_size": "0.001", "min_quantity": "0.01"}, "127.0.0.1", 1, 2)
    )
    assert eth.quantity_lots("0.001") == 1
    assert refusal(coarse.quantity_lots, "0.009") == Code.INVALID_QUANTITY  # below minimum
    assert coarse.quantity_lots("0.01") == 10


def test_exact_formatting() -> None:
    assert BTC.format_price(3_000_000) == "30000.00"
    assert BTC.format_price(1) == "0.01"
    assert BTC.format_price(0) == "0.00"
    assert BTC.format_quantity(15_000) == "1.5000"
    assert BTC.format_quantity(1) == "0.0001"
    whole = Units(build_symbol("W-Z", {"tick_size": "5", "lot_size": "1"}, "127.0.0.1", 1, 2))
    assert whole.format_price(3) == "15" and whole.format_quantity(7) == "7"
    assert whole.price_ticks("15") == 3 and refusal(whole.price_ticks, "12") == Code.INVALID_PRICE


def test_fee_formatting_is_exact_and_never_scientific() -> None:
    notional = BTC.price_ticks("30000") * BTC.quantity_lots("1")
    assert BTC.format_fee(notional * BTC.maker_rate) == "3"
    assert BTC.format_fee(notional * BTC.taker_rate) == "6"
    assert BTC.format_fee(0) == "0"
    # One tick times one lot at the maker rate: 0.01 * 0.0001 * 0.0001.
    assert BTC.format_fee(1 * BTC.maker_rate) == "0.0000000001"
    assert BTC.fee_decimal(1 * BTC.maker_rate) == Decimal("1E-10")
    huge = BTC.max_price_ticks * BTC.max_quantity_lots * BTC.taker_rate
    assert BTC.format_fee(huge) == "200000000"  # 1e7 * 1e5 * 0.0002, exact


@given(st.integers(1, BTC.max_price_ticks))
def test_price_format_parse_roundtrip(ticks: int) -> None:
    assert BTC.price_ticks(BTC.format_price(ticks)) == ticks


@given(st.integers(BTC.min_quantity_lots, BTC.max_quantity_lots))
def test_quantity_format_parse_roundtrip(lots: int) -> None:
    assert BTC.quantity_lots(BTC.format_quantity(lots)) == lots
