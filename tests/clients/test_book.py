"""clients/book.py against a naive model, with the invariants checked after every step."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from clients.book import BookSide, L2Book, is_zero
from clients.checksum import book_checksum


def naive_levels(levels: dict[str, str], is_bid: bool) -> list[list[str]]:
    return [[p, levels[p]] for p in sorted(levels, key=Decimal, reverse=is_bid)]


@pytest.mark.parametrize("seed", range(3))
def test_random_changes_match_a_naive_model(seed: int) -> None:
    rng = random.Random(seed)
    book = L2Book()
    model: dict[str, dict[str, str]] = {"buy": {}, "sell": {}}
    for step in range(800):
        changes = []
        for _ in range(rng.randint(1, 4)):
            side = rng.choice(("buy", "sell"))
            # Bids below 100, asks above: the model never crosses.
            ticks = rng.randint(1, 60) if side == "buy" else rng.randint(61, 120)
            price = f"{Decimal(ticks) * Decimal('1.65'):.2f}"
            quantity = "0" if rng.random() < 0.35 else f"{rng.randint(1, 9999) / 1000:.3f}"
            changes.append([side, price, quantity])
            if is_zero(quantity):
                model[side].pop(price, None)
            else:
                model[side][price] = quantity
        book.apply(changes)
        book.check()
        bids, asks = naive_levels(model["buy"], True), naive_levels(model["sell"], False)
        assert book.bids.all() == bids and book.asks.all() == asks, step
        assert book.bids.top(3) == bids[:3]
        assert book.checksum() == book_checksum(asks, bids)
        assert book.bids.best() == (tuple(bids[0]) if bids else None)


def test_zero_quantities_remove_and_absent_levels_are_ignored() -> None:
    side = BookSide(is_bid=False)
    side.set("10.00", "1.0")
    side.set("9.00", "2.0")
    side.set("11.00", "0")  # never there: nothing to do
    side.set("10.00", "0.000")
    assert side.all() == [["9.00", "2.0"]]
    side.check()


def test_load_replaces_everything() -> None:
    book = L2Book()
    book.apply([["buy", "1.00", "1"], ["sell", "3.00", "1"]])
    book.load([["2.00", "5"], ["1.50", "1"]], [["2.50", "2"]], book_seq=7)
    assert book.bids.all() == [["2.00", "5"], ["1.50", "1"]]
    assert book.asks.all() == [["2.50", "2"]]
    assert book.book_seq == 7
    book.check()


@pytest.mark.parametrize(
    "change",
    [["hold", "1.00", "1"], ["buy", "abc", "1"], ["buy", "-1.00", "1"], ["buy", "NaN", "1"]],
)
def test_malformed_changes_raise_value_errors(change: list[str]) -> None:
    with pytest.raises((ValueError, ArithmeticError)):
        L2Book().apply([change])


def test_one_price_spelt_twice_is_refused() -> None:
    side = BookSide(is_bid=True)
    side.set("10.00", "1")
    with pytest.raises(ValueError, match="duplicates"):
        side.set("10.0", "1")
