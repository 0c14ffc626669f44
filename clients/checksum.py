"""Kraken's CRC32 book checksum (docs/feeds.md): one implementation for hub and clients.

For the 10 best asks (lowest first) then the 10 best bids (highest first), take each
level's price and quantity strings exactly as sent, drop the "." and the leading zeros,
concatenate everything, and CRC32 it (unsigned).

Pure functions, no I/O: `clients/ws_client.py` imports this module too, so a client and
the hub can never disagree on the algorithm.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

CHECKSUM_DEPTH = 10


def level_token(price: str, quantity: str) -> str:
    """One level's contribution: "30000.00", "0.5000" -> "3000000" + "5000"."""
    return price.replace(".", "").lstrip("0") + quantity.replace(".", "").lstrip("0")


def checksum_of_tokens(tokens: Iterable[str]) -> int:
    """CRC32 of the concatenated level tokens (asks first, then bids), unsigned."""
    return zlib.crc32("".join(tokens).encode("ascii")) & 0xFFFFFFFF


def book_checksum(asks: Sequence[Sequence[str]], bids: Sequence[Sequence[str]]) -> int:
    """Checksum of a book given as [[price, quantity], ...] best first on each side.

    Only the first CHECKSUM_DEPTH levels of each side count. Cost: O(depth).
    """
    tokens = [level_token(p, q) for p, q in asks[:CHECKSUM_DEPTH]]
    tokens.extend(level_token(p, q) for p, q in bids[:CHECKSUM_DEPTH])
    return checksum_of_tokens(tokens)
