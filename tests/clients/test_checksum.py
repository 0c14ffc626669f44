"""clients/checksum.py: Kraken's CRC32 of the top 10 levels, by the book."""

from __future__ import annotations

import zlib

from clients.checksum import book_checksum, checksum_of_tokens, level_token


def test_level_tokens_drop_the_point_and_leading_zeros() -> None:
    assert level_token("30000.00", "0.5000") == "3000000" + "5000"
    assert level_token("0.05005", "0.00000500") == "5005" + "500"  # Kraken's own example
    assert level_token("1", "10") == "110"  # trailing zeros stay


def test_the_crc_is_the_standard_unsigned_crc32() -> None:
    assert checksum_of_tokens(["123", "456789"]) == 0xCBF43926  # the CRC-32 check value
    assert checksum_of_tokens([]) == 0


def test_asks_come_first_then_bids_and_only_ten_levels_count() -> None:
    asks = [[f"{30001 + i}.00", "0.1000"] for i in range(12)]
    bids = [[f"{30000 - i}.00", "1.0000"] for i in range(12)]
    text = "".join(f"{30001 + i}00" + "1000" for i in range(10))
    text += "".join(f"{30000 - i}00" + "10000" for i in range(10))
    assert book_checksum(asks, bids) == zlib.crc32(text.encode())
    assert book_checksum(asks[:10], bids[:10]) == book_checksum(asks, bids)
    assert book_checksum(bids, asks) != book_checksum(asks, bids)


def test_an_empty_or_one_sided_book() -> None:
    assert book_checksum([], []) == 0
    assert book_checksum([["2.50", "3.000"]], []) == zlib.crc32(b"2503000")
