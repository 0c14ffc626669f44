"""An L2 book of decimal strings, as the feeds carry it: the hub's replica and the
WebSocket client's local copy are both this class, so they sort and checksum alike.

Pure: no I/O, no clock. Levels are kept per side as a dict price -> quantity (the
strings exactly as the matcher formatted them) plus a sorted list of numeric keys,
computed once when a level appears, so the top of the book and the checksum never
re-parse or re-sort anything.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from decimal import Decimal

from clients.checksum import CHECKSUM_DEPTH, checksum_of_tokens, level_token


def is_zero(quantity: str) -> bool:
    """ "0", "0.0000" and "" all mean "no quantity" (a removed level)."""
    return not quantity.strip("0.")


class BookSide:
    """One side: price -> quantity, best level first.

    Bids are keyed by -price so that both sides keep their best level at index 0.
    Costs: `set` O(log n) to find a level plus an O(n) list shift (a memmove) when a
    level appears or goes; `top(k)` O(k); `best` O(1).
    """

    __slots__ = ("is_bid", "levels", "_keys", "_price_of", "_tokens")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[str, str] = {}
        self._keys: list[Decimal] = []  # sorted, best first
        self._price_of: dict[Decimal, str] = {}
        self._tokens: dict[str, str] = {}  # price -> checksum token, kept per level

    def __len__(self) -> int:
        return len(self.levels)

    def _key(self, price: str) -> Decimal:
        key = Decimal(price)
        if not key.is_finite() or key <= 0:
            raise ValueError(f"bad price {price!r}")
        return -key if self.is_bid else key

    def set(self, price: str, quantity: str) -> None:
        """The new total of a level; a zero quantity removes it (absent: nothing to do)."""
        levels = self.levels
        if is_zero(quantity):
            if price in levels:
                del levels[price]
                del self._tokens[price]
                key = self._key(price)
                keys = self._keys
                del keys[bisect_left(keys, key)]
                del self._price_of[key]
            return
        if price not in levels:
            key = self._key(price)
            if key in self._price_of:  # "30000.0" after "30000.00": one level, two spellings
                raise ValueError(f"price {price!r} duplicates {self._price_of[key]!r}")
            insort(self._keys, key)
            self._price_of[key] = price
        levels[price] = quantity
        self._tokens[price] = level_token(price, quantity)

    def clear(self) -> None:
        self.levels.clear()
        self._keys.clear()
        self._price_of.clear()
        self._tokens.clear()

    def load(self, levels: Iterable[Sequence[str]]) -> None:
        """Replace the side with [[price, quantity], ...] in any order."""
        self.clear()
        for price, quantity in levels:
            self.set(price, quantity)

    def top(self, depth: int) -> list[list[str]]:
        """The `depth` best levels as [[price, quantity], ...], best first. O(depth)."""
        price_of, levels = self._price_of, self.levels
        result = []
        for key in self._keys[:depth]:
            price = price_of[key]
            result.append([price, levels[price]])
        return result

    def all(self) -> list[list[str]]:
        return self.top(len(self._keys))

    def best(self) -> tuple[str, str] | None:
        if not self._keys:
            return None
        price = self._price_of[self._keys[0]]
        return price, self.levels[price]

    def top_tokens(self, depth: int) -> list[str]:
        price_of, tokens = self._price_of, self._tokens
        return [tokens[price_of[key]] for key in self._keys[:depth]]

    def check(self) -> None:
        """Raise AssertionError unless the index, the keys and the tokens agree."""
        assert len(self._keys) == len(self.levels) == len(self._price_of) == len(self._tokens)
        assert self._keys == sorted(self._keys), "keys out of order"
        for key in self._keys:
            price = self._price_of[key]
            assert self._key(price) == key, f"key of {price} is wrong"
            assert not is_zero(self.levels[price]), f"empty level {price} kept"
            assert self._tokens[price] == level_token(price, self.levels[price])


class L2Book:
    """Both sides of one symbol's book and the sequence number it stands at."""

    __slots__ = ("bids", "asks", "book_seq")

    def __init__(self) -> None:
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        self.book_seq: int | None = None

    def load(
        self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]], book_seq: int
    ) -> None:
        self.bids.load(bids)
        self.asks.load(asks)
        self.book_seq = book_seq

    def apply(self, changes: Iterable[Sequence[str]]) -> None:
        """[[side, price, quantity], ...] with side "buy"/"sell": new level totals.

        Raises ValueError on a malformed change; the book may then be partly updated,
        and its owner must resynchronise it.
        """
        bids, asks = self.bids, self.asks
        for side, price, quantity in changes:
            if side == "buy":
                bids.set(price, quantity)
            elif side == "sell":
                asks.set(price, quantity)
            else:
                raise ValueError(f"unknown side {side!r}")

    def checksum(self) -> int:
        """Kraken CRC32 of the top 10 levels (clients/checksum.py). O(10)."""
        tokens = self.asks.top_tokens(CHECKSUM_DEPTH)
        tokens.extend(self.bids.top_tokens(CHECKSUM_DEPTH))
        return checksum_of_tokens(tokens)

    def crossed(self) -> bool:
        bid, ask = self.bids.best(), self.asks.best()
        return bid is not None and ask is not None and Decimal(bid[0]) >= Decimal(ask[0])

    def check(self) -> None:
        self.bids.check()
        self.asks.check()
        assert not self.crossed(), "book is crossed"
