"""Price levels and the order index of one symbol: the data the engine matches against.

No I/O, no clock. Prices are integer ticks, quantities integer lots.

Layout, chosen for speed and memory in both builds (docs/architecture.md, "Two builds";
measured with tests/bench/core.py):
- each side is a dict price -> Level plus a plain sorted list of its prices (`bisect`),
  so the best price is `asks.prices[0]` / `bids.prices[-1]` (O(1)); a new or emptied
  level costs a bisect and a memmove of the list, cheaper than a SortedList's bookkeeping
  at the few hundred levels a live book has, and a list a compiler indexes directly;
- a Level keeps its orders in a deque (FIFO: append/popleft ~30 ns) and its total;
- `Order` uses __slots__ and packs order type, time in force, STP and post-only into one
  small int. The compiled build types these classes (book.pxd beside this file): ticks,
  lots, ids and timestamps become machine integers (they fit: max_price and max_quantity
  stay under 2**62, matcher/config.py); a level's total stays a Python int, since a sum
  of many orders near the bound could pass 64 bits.
"""

from __future__ import annotations

from matcher import _build

if __name__ == "matcher.book":
    # The compiled build of this very file takes its place, if one is selected
    # (matcher/_build.py). The rest of this file still runs once, unused: the cost of
    # keeping one plain source.
    _build.take_place(__name__, "book")

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator

from matcher.protocol import BUY, FINISHED_STATUSES, PARTIALLY_FILLED, SELL, TAKE_PROFIT

_KINDS = list(range(512))  # canonical int objects for every packed `kind` value


class Order:
    """One order. `leaves` is the quantity still open; filled = quantity - leaves.

    `kind` packs order_type (bits 0-2), time in force (3-4), stp (5-6), post_only (7) and
    the side (8); every value is one shared int object from _KINDS, so it costs no memory.
    """

    __slots__ = (
        "order_id",
        "account",
        "price",
        "quantity",
        "leaves",
        "status",
        "kind",
        "timestamp",
        "client_order_id",
        "stop_price",
        "trades",
        "reason",
    )

    def __init__(
        self,
        order_id: int,
        account: str,
        side: int,
        price: int | None,
        quantity: int,
        status: int,
        kind: int,
        timestamp: int,
        client_order_id: str | None = None,
        stop_price: int | None = None,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.kind = _KINDS[kind | (side << 8)]  # the side is bit 8: one slot less per order
        self.price = price
        self.quantity = quantity
        self.leaves = quantity
        self.status = status
        self.timestamp = timestamp
        self.client_order_id = client_order_id
        self.stop_price = stop_price
        self.trades: list[tuple] | None = None  # this order's fills, in execution order
        self.reason: str | None = None

    @property
    def side(self) -> int:
        return kind_side(self.kind)

    @property
    def order_type(self) -> int:
        return kind_order_type(self.kind)

    @property
    def tif(self) -> int:
        return kind_tif(self.kind)

    @property
    def stp(self) -> int:
        return kind_stp(self.kind)

    @property
    def post_only(self) -> bool:
        return kind_post_only(self.kind)

    @property
    def filled(self) -> int:
        return self.quantity - self.leaves

    @property
    def remaining(self) -> int:
        """Quantity still open (resting, or waiting as a pending stop): 0 once finished."""
        return 0 if self.status in FINISHED_STATUSES else self.leaves

    def to_tuple(self) -> tuple:
        """Every field, for snapshots and state hashes (trades by id only)."""
        trade_ids = [trade[1] for trade in self.trades] if self.trades else None
        return (
            self.order_id,
            self.account,
            self.side,
            self.price,
            self.quantity,
            self.leaves,
            self.status,
            self.kind,
            self.timestamp,
            self.client_order_id,
            self.stop_price,
            trade_ids,
            self.reason,
        )

    def __repr__(self) -> str:
        return f"Order{self.to_tuple()!r}"


# The packed `kind` of an order, its one encoder and its decoders: every module reads the
# bits through these (declared inline in book.pxd: the compiled build pays no call).


def pack_kind(order_type: int, tif: int, stp: int, post_only: bool) -> int:
    """order_type (bits 0-2), time in force (3-4), stp (5-6), post_only (7); Order adds
    the side as bit 8."""
    return order_type | (tif << 3) | (stp << 5) | (128 if post_only else 0)


def kind_side(kind: int) -> int:
    return (kind >> 8) & 1


def kind_order_type(kind: int) -> int:
    return kind & 7


def kind_tif(kind: int) -> int:
    return (kind >> 3) & 3


def kind_stp(kind: int) -> int:
    return (kind >> 5) & 3


def kind_post_only(kind: int) -> bool:
    return (kind & 128) != 0


def stop_rises(side: int, order_type: int) -> bool:
    """True when a stop of this side and type triggers on a trade at or above its stop
    price, False when at or below: stop_loss and stop_limit buy on a rise and sell on a
    fall, take_profit the other way round."""
    return (order_type != TAKE_PROFIT) == (side == BUY)


def is_live(order: Order) -> bool:
    """False for an order cancelled in place (`Book.cancel`) that still sits in a deque."""
    return order.status <= PARTIALLY_FILLED


class Level:
    """All resting orders at one price, oldest first, and their open total.

    `orders` may also hold `dead` orders cancelled in place: they are skipped (and
    dropped) when they reach the front, and compacted away when they outnumber the live.
    The level exists exactly as long as `total` > 0.
    """

    __slots__ = ("price", "total", "orders", "dead")

    def __init__(self, price: int) -> None:
        self.price = price
        self.total = 0
        self.orders: deque[Order] = deque()
        self.dead = 0

    def live_orders(self) -> Iterator[Order]:
        return (order for order in self.orders if order.status <= PARTIALLY_FILLED)


class Side:
    """One side of the book: levels by price and the ascending list of their prices."""

    __slots__ = ("side", "levels", "prices")

    def __init__(self, side: int) -> None:
        self.side = side
        self.levels: dict[int, Level] = {}
        self.prices: list[int] = []  # ascending on both sides: bids' best is the last

    def add_level(self, price: int) -> Level:
        """A new, empty level at `price`. Cost: O(log n) bisect + O(n) memmove."""
        level = self.levels[price] = Level(price)
        insort(self.prices, price)
        return level

    def drop_level(self, price: int) -> None:
        """Forget the (empty) level at `price`. Cost: O(log n) bisect + O(n) memmove."""
        del self.levels[price]
        prices = self.prices
        del prices[bisect_left(prices, price)]

    def best(self) -> int | None:
        """Best price or None. Cost: O(1)."""
        prices = self.prices
        if not prices:
            return None
        return prices[-1] if self.side == BUY else prices[0]

    def levels_best_first(self) -> Iterator[Level]:
        levels = self.levels
        prices = reversed(self.prices) if self.side == BUY else iter(self.prices)
        for price in prices:
            yield levels[price]


class Book:
    """Both sides plus the index of resting orders by id."""

    __slots__ = ("bids", "asks", "orders")

    def __init__(self) -> None:
        self.bids = Side(BUY)
        self.asks = Side(SELL)
        self.orders: dict[int, Order] = {}  # resting orders only

    def side(self, side: int) -> Side:
        return self.bids if side == BUY else self.asks

    def add(self, order: Order) -> Level:
        """Rest `order` at the back of its level. Cost: O(1), O(log n) for a new level."""
        book_side = self.bids if order.side == BUY else self.asks
        price = order.price
        assert price is not None
        level = book_side.levels.get(price)
        if level is None:
            level = book_side.add_level(price)
        else:
            order.price = level.price  # share one int object per level: saves 28 bytes
        level.orders.append(order)
        level.total += order.leaves
        self.orders[order.order_id] = order
        return level

    def remove(self, order: Order) -> Level:
        """Take a resting order out of its level now. Cost: O(k) in the level's order count."""
        book_side = self.bids if order.side == BUY else self.asks
        level = book_side.levels[order.price]  # type: ignore[index]
        level.orders.remove(order)
        return self._unlink(book_side, level, order)

    def cancel(self, order: Order) -> Level:
        """Take a resting order off the book in O(1), leaving it in its deque as dead.

        The caller must give the order a finished status. A deque.remove was a third of
        the benchmark flow's time; dead entries are dropped at the front by the match
        loop, and compacted here once they are over half of a level's deque.
        """
        book_side = self.bids if order.side == BUY else self.asks
        level = book_side.levels[order.price]  # type: ignore[index]
        level.dead += 1
        if level.dead > 16 and level.dead * 2 > len(level.orders):
            level.orders = deque([o for o in level.orders if o is not order and is_live(o)])
            level.dead = 0
        return self._unlink(book_side, level, order)

    def _unlink(self, book_side: Side, level: Level, order: Order) -> Level:
        level.total -= order.leaves
        del self.orders[order.order_id]
        if not level.total:
            book_side.drop_level(level.price)
        return level

    def depth(self, side: int, limit: int) -> list[tuple[int, int]]:
        """The best `limit` levels of one side as (price, total), best first."""
        book_side = self.side(side)
        result: list[tuple[int, int]] = []
        for level in book_side.levels_best_first():
            if len(result) >= limit:
                break
            result.append((level.price, level.total))
        return result

    def check(self) -> None:
        """Assert every invariant of the book. Cost: O(n); for tests and --verify."""
        seen = 0
        for book_side in (self.bids, self.asks):
            assert list(book_side.prices) == sorted(book_side.levels), "prices match levels"
            for price, level in book_side.levels.items():
                assert level.price == price, "level keyed by its price"
                assert level.total > 0, f"empty level at {price}"
                total = 0
                dead = [order for order in level.orders if not is_live(order)]
                for order in dead:
                    assert self.orders.get(order.order_id) is not order, (
                        f"finished order {order.order_id} still indexed"
                    )
                assert len(dead) == level.dead, f"level {price} dead count {level.dead}"
                for order in level.live_orders():
                    assert order.side == book_side.side, f"order {order.order_id} on wrong side"
                    assert order.price == price, f"order {order.order_id} at wrong level"
                    assert 0 < order.leaves <= order.quantity, f"order {order.order_id} leaves"
                    assert self.orders.get(order.order_id) is order, "index matches levels"
                    assert order.status not in FINISHED_STATUSES, "finished order resting"
                    total += order.leaves
                    seen += 1
                assert level.total == total, f"level {price} total {level.total} != {total}"
        assert seen == len(self.orders), "index holds only resting orders"
        best_bid, best_ask = self.bids.best(), self.asks.best()
        assert best_bid is None or best_ask is None or best_bid < best_ask, "book crossed"
