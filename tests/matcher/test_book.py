"""matcher/book.py: levels, FIFO, depth, and a check() that catches every corruption."""

from __future__ import annotations

import pytest

from matcher.book import Book, Order, pack_kind
from matcher.protocol import BUY, CANCELLED, GTC, LIMIT, NEW, SELL, STP_CANCEL_NEWEST


def order(order_id: int, side: int, price: int, quantity: int) -> Order:
    return Order(
        order_id,
        "alice",
        side,
        price,
        quantity,
        NEW,
        pack_kind(LIMIT, GTC, STP_CANCEL_NEWEST, False),
        order_id * 1000,
    )


def small_book() -> Book:
    book = Book()
    book.add(order(1, BUY, 99, 5))
    book.add(order(2, BUY, 99, 3))
    book.add(order(3, BUY, 98, 1))
    book.add(order(4, SELL, 101, 2))
    book.add(order(5, SELL, 103, 4))
    book.check()
    return book


def test_add_keeps_fifo_and_totals_and_depth_is_best_first() -> None:
    book = small_book()
    assert [o.order_id for o in book.bids.levels[99].orders] == [1, 2]
    assert book.depth(BUY, 10) == [(99, 8), (98, 1)]
    assert book.depth(SELL, 10) == [(101, 2), (103, 4)]
    assert book.depth(SELL, 1) == [(101, 2)]
    assert book.bids.best() == 99 and book.asks.best() == 101


def test_remove_updates_total_and_drops_empty_level() -> None:
    book = small_book()
    level = book.remove(book.orders[1])
    assert level.total == 3 and 99 in book.bids.levels
    level = book.remove(book.orders[3])
    assert level.total == 0 and 98 not in book.bids.levels and 98 not in book.bids.prices
    book.check()


def test_order_packs_its_flags_into_kind() -> None:
    packed = Order(1, "a", BUY, 10, 1, NEW, pack_kind(LIMIT, 2, 1, True), 0)
    assert (packed.order_type, packed.tif, packed.stp, packed.post_only) == (LIMIT, 2, 1, True)
    assert packed.filled == 0 and packed.remaining == 1


def test_check_catches_corrupted_total() -> None:
    book = small_book()
    book.bids.levels[99].total += 1
    with pytest.raises(AssertionError, match="total"):
        book.check()


def test_check_catches_crossed_book() -> None:
    book = small_book()
    book.add(order(6, BUY, 101, 1))  # Book.add does no matching: only check() notices
    with pytest.raises(AssertionError, match="crossed"):
        book.check()


def test_check_catches_stale_index_entry() -> None:
    book = small_book()
    book.orders[99] = order(99, SELL, 101, 1)  # indexed but resting nowhere
    with pytest.raises(AssertionError, match="index"):
        book.check()


def test_check_catches_index_pointing_at_another_object() -> None:
    book = small_book()
    book.orders[4] = order(4, SELL, 101, 2)  # same id, not the resting object
    with pytest.raises(AssertionError, match="index"):
        book.check()


def test_check_catches_order_missing_from_index() -> None:
    book = small_book()
    del book.orders[5]
    with pytest.raises(AssertionError, match="index"):
        book.check()


def test_check_catches_empty_level_and_price_list_mismatch() -> None:
    book = small_book()
    book.asks.levels[103].orders.clear()
    book.asks.levels[103].total = 0
    del book.orders[5]
    with pytest.raises(AssertionError, match="empty level"):
        book.check()
    book = small_book()
    book.asks.prices.append(107)
    with pytest.raises(AssertionError, match="prices"):
        book.check()


def test_check_catches_finished_or_misplaced_order() -> None:
    book = small_book()
    book.orders[4].status = CANCELLED
    with pytest.raises(AssertionError, match="finished"):
        book.check()
    book = small_book()
    book.orders[4].price = 102
    with pytest.raises(AssertionError, match="wrong level"):
        book.check()
    book = small_book()
    book.orders[4].leaves = 0
    with pytest.raises(AssertionError, match="leaves"):
        book.check()


def test_cancelled_in_place_orders_are_compacted_not_kept_forever() -> None:
    """Book.cancel is O(1) by leaving dead entries; they must not pile up behind a live head."""
    book = Book()
    head = Order(1, "a", BUY, 100, 5, NEW, 1, 0)
    book.add(head)
    for order_id in range(2, 10_000):
        order = Order(order_id, "a", BUY, 100, 5, NEW, 1, 0)
        book.add(order)
        order.status = CANCELLED
        book.cancel(order)
        assert len(book.bids.levels[100].orders) <= 2 * 17 + 1
    book.check()
    assert [o.order_id for o in book.bids.levels[100].live_orders()] == [1]
    assert book.bids.levels[100].total == 5
