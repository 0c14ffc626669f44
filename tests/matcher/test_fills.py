"""average_price and cumulative_quote: exact decimals over an order's fills, the same in
the dict views and the packed replies, and against Decimal arithmetic on random fills."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given
from hypothesis import strategies as st

from matcher.config import build_symbol
from matcher.system import load_config
from matcher.units import Units
from matcher.views import Views

BTC = Units(load_config().symbols["BTC-USDT"])  # tick 0.01, lot 0.0001
WHOLE = Units(build_symbol("W-X", {"tick_size": "5", "lot_size": "2"}, "127.0.0.1", 1, 2))


def trade(price: int, quantity: int) -> tuple:
    return (0, 1, price, quantity, 0, 1, 2, 0, 0, 0)


def test_no_fill_yet() -> None:
    assert Views(BTC).fills(None) == {"average_price": None, "cumulative_quote": "0"}
    assert Views(BTC).fills([]) == {"average_price": None, "cumulative_quote": "0"}


def test_one_and_several_fills() -> None:
    views = Views(BTC)
    assert views.fills([trade(3_000_000, 10_000)]) == {  # 1 @ 30000
        "average_price": "30000.00",
        "cumulative_quote": "30000",
    }
    assert views.fills([trade(3_000_000, 5_000), trade(3_000_100, 5_000)]) == {
        "average_price": "30000.50",
        "cumulative_quote": "30000.5",
    }
    # 1/3 of the way: rounded half-even to tick + lot decimals (6 for BTC-USDT)
    assert views.fills([trade(100, 1), trade(100, 1), trade(101, 1)])["average_price"] == (
        "1.003333"
    )
    assert views.fills([trade(1, 1)])["cumulative_quote"] == "0.000001"


def test_whole_number_grid() -> None:
    assert Views(WHOLE).fills(
        [trade(3, 2), trade(4, 1)]
    ) == {  # 15 x 4 + 20 x 2 = 100 over 6: 16.67
        "average_price": "17",
        "cumulative_quote": "100",
    }


@given(st.lists(st.tuples(st.integers(1, 10**9), st.integers(1, 10**9)), min_size=1, max_size=20))
def test_against_decimal_arithmetic(fills: list[tuple[int, int]]) -> None:
    quote = sum(Decimal(p) * BTC.tick_size * Decimal(q) * BTC.lot_size for p, q in fills)
    quantity = sum(Decimal(q) * BTC.lot_size for _, q in fills)
    average = (quote / quantity).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
    got = Views(BTC).fills([trade(p, q) for p, q in fills])
    assert Decimal(got["cumulative_quote"]) == quote
    assert Decimal(got["average_price"]) == average
    assert "E" not in got["cumulative_quote"] and "E" not in got["average_price"]
    assert len(got["average_price"].split(".")[1]) >= 2  # at least the tick's decimals
