"""feedhub/replica.py's rules, message by message, without sockets.

The replica's handlers are fed PUB frames built with matcher/codec.py, as the matcher
builds them; what the hub would be told is recorded. The end-to-end behaviour (real
matcher, real hub) is in test_replica.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from clients.checksum import book_checksum
from feedhub.replica import OutOfSync, Replica
from matcher import codec
from matcher.config import build_symbol

SYMBOL = "BTC-USDT"
EPOCH = 1_795_693_624_465_719


class Recorder:
    """The hub's side of the Fanout protocol: what the replica publishes, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def book_update(self, symbol: str, text: str) -> None:
        self.events.append(("book", json.loads(text)))

    def book_reset(self, symbol: str) -> None:
        self.events.append(("reset", symbol))

    def trade(self, symbol: str, text: str) -> None:
        self.events.append(("trade", json.loads(text)))


def bbo(bid: tuple[str, str] | None, ask: tuple[str, str] | None, book_seq: int) -> dict:
    return {
        "symbol": SYMBOL,
        "book_seq": book_seq,
        "bid_price": bid[0] if bid else None,
        "bid_quantity": bid[1] if bid else None,
        "ask_price": ask[0] if ask else None,
        "ask_quantity": ask[1] if ask else None,
    }


def book_frame(
    book_seq: int,
    changes: list[list[str]],
    best_bid: tuple[str, str] | None,
    best_ask: tuple[str, str] | None,
    epoch: int = EPOCH,
) -> bytes:
    return codec.encode_pub(
        f"book.{SYMBOL}".encode(),
        {
            "symbol": SYMBOL,
            "epoch": epoch,
            "book_seq": book_seq,
            "changes": changes,
            "bbo": bbo(best_bid, best_ask, book_seq),
            "timestamp": "2026-11-26T00:00:00.000001Z",
        },
    )


def heartbeat(book_seq: int, last_trade_id: int = 0, epoch: int = EPOCH) -> bytes:
    return codec.encode_pub(
        f"hb.{SYMBOL}".encode(),
        {
            "symbol": SYMBOL,
            "epoch": epoch,
            "book_seq": book_seq,
            "last_trade_id": last_trade_id,
            "timestamp": "2026-11-26T00:00:00.000001Z",
        },
    )


def trade(trade_id: int) -> bytes:
    return codec.encode_pub(
        f"trade.{SYMBOL}".encode(),
        {
            "trade_id": trade_id,
            "symbol": SYMBOL,
            "price": "100.00",
            "quantity": "1.0000",
            "aggressor_side": "buy",
            "maker_order_id": 1,
            "taker_order_id": 2,
            "maker_fee": "0.01",
            "taker_fee": "0.02",
            "timestamp": "2026-11-26T00:00:00.000001Z",
        },
    )


def live_replica() -> tuple[Replica, Recorder]:
    """A replica loaded from a snapshot at book_seq 10: bid 99@2, ask 101@3."""
    recorder = Recorder()
    config = build_symbol(SYMBOL, {}, "127.0.0.1", 1, 2)
    replica = Replica(config, recorder)

    async def load() -> None:
        await replica.load_snapshot(
            {
                "symbol": SYMBOL,
                "epoch": EPOCH,
                "book_seq": 10,
                "last_trade_id": 5,
                "bids": [["99.00", "2.0000"], ["98.00", "1.0000"]],
                "asks": [["101.00", "3.0000"]],
                "bbo": bbo(("99.00", "2.0000"), ("101.00", "3.0000"), 10),
            }
        )

    asyncio.run(load())
    return replica, recorder


def handle(replica: Replica, frame: bytes) -> None:
    assert replica.handle(frame) is None  # no trade gap: nothing to fetch


def test_a_snapshot_makes_it_live_and_tells_the_hub() -> None:
    replica, recorder = live_replica()
    assert replica.synced and replica.book.book_seq == 10 and replica.last_trade_id == 5
    assert recorder.events == [("reset", SYMBOL)]
    snapshot = json.loads(replica.snapshot_text())
    assert snapshot["bids"] == [["99.00", "2.0000"], ["98.00", "1.0000"]]
    assert snapshot["checksum"] == book_checksum(snapshot["asks"], snapshot["bids"])


def test_the_next_update_is_applied_checksummed_and_published_once() -> None:
    replica, recorder = live_replica()
    handle(
        replica,
        book_frame(
            11,
            [["buy", "99.00", "0"], ["sell", "100.50", "1.0000"]],
            ("98.00", "1.0000"),
            ("100.50", "1.0000"),
        ),
    )
    kind, update = recorder.events[-1]
    assert kind == "book"
    assert update["type"] == "l2update" and update["book_seq"] == 11
    assert update["changes"] == [["buy", "99.00", "0"], ["sell", "100.50", "1.0000"]]
    assert update["checksum"] == book_checksum(replica.book.asks.top(10), replica.book.bids.top(10))
    depth = json.loads(replica.depth_text(1))
    assert (depth["bids"], depth["asks"]) == ([["98.00", "1.0000"]], [["100.50", "1.0000"]])


def test_updates_already_in_the_snapshot_are_dropped() -> None:
    replica, recorder = live_replica()
    handle(replica, book_frame(10, [["buy", "50.00", "1.0000"]], None, None))
    handle(replica, book_frame(7, [["buy", "50.00", "1.0000"]], None, None))
    assert recorder.events == [("reset", SYMBOL)] and replica.book.book_seq == 10


@pytest.mark.parametrize(
    "frame, reason",
    [
        (
            book_frame(12, [["buy", "97.00", "1.0000"]], ("99.00", "2.0000"), ("101.00", "3.0000")),
            "gap",
        ),
        (heartbeat(11), "behind_heartbeat"),
        (heartbeat(10, epoch=EPOCH + 1), "matcher_restarted"),
        (
            book_frame(
                11,
                [["buy", "97.00", "1.0000"]],
                ("99.00", "2.0000"),
                ("101.00", "3.0000"),
                epoch=EPOCH + 1,
            ),
            "matcher_restarted",
        ),
        (
            book_frame(11, [["buy", "97.00", "1.0000"]], ("97.00", "1.0000"), ("101.00", "3.0000")),
            "bad_update",
        ),  # the matcher's bbo disagrees with the replica
        (book_frame(11, [["hold", "97.00", "1.0000"]], None, None), "bad_update"),
    ],
)
def test_doubt_means_resynchronise(frame: bytes, reason: str) -> None:
    replica, _ = live_replica()
    with pytest.raises(OutOfSync) as raised:
        handle(replica, frame)
    assert raised.value.reason == reason


def test_stale_messages_of_an_older_matcher_process_are_dropped() -> None:
    replica, recorder = live_replica()
    handle(replica, heartbeat(99, epoch=EPOCH - 1))
    handle(replica, book_frame(11, [["buy", "97.00", "1.0000"]], None, None, epoch=EPOCH - 1))
    assert recorder.events == [("reset", SYMBOL)] and replica.book.book_seq == 10


def test_trades_are_forwarded_once_in_order() -> None:
    replica, recorder = live_replica()
    for trade_id in (4, 5, 6, 6, 7):  # 4 and 5 were before the snapshot; 6 comes twice
        handle(replica, trade(trade_id))
    assert [e[1]["trade_id"] for e in recorder.events if e[0] == "trade"] == [6, 7]
    assert recorder.events[-1][1]["type"] == "trade"
    # A jump in trade ids is filled from the matcher's `trades` op: see test_replica.py.


def test_garbage_frames_are_dropped_not_fatal() -> None:
    replica, recorder = live_replica()
    for frame in (
        b"no delimiter",
        b"book.BTC-USDT\x00\xc1",
        b"other.BTC-USDT\x00\x80",
        codec.encode_pub(b"book.BTC-USDT", [1, 2]),
    ):
        handle(replica, frame)
    assert recorder.events == [("reset", SYMBOL)] and replica.synced


def test_depth_texts_equal_the_whole_encoding_at_every_depth_and_version() -> None:
    """depth_text encodes each level once per version and joins per depth: the text must
    stay exactly dumps() of the whole message, whatever order the depths are asked in."""
    import copy
    import random

    from feedhub.replica import dumps

    replica, _ = live_replica()
    rng = random.Random(5)
    for book_seq in range(11, 41):
        changes = []
        for _ in range(rng.randint(1, 40)):
            side = rng.choice(("buy", "sell"))
            price = 95 - rng.randint(0, 80) if side == "buy" else 105 + rng.randint(0, 80)
            changes.append([side, f"{price}.00", rng.choice(("0", "1.0000", "2.5000"))])
        mirror = copy.deepcopy(replica.book)
        for side, price, quantity in changes:
            (mirror.bids if side == "buy" else mirror.asks).set(price, quantity)
        handle(replica, book_frame(book_seq, changes, mirror.bids.best(), mirror.asks.best()))
        book = replica.book
        for depth in rng.sample(range(1, 130), 12):
            expected = dumps(
                {
                    "type": "depth",
                    "timestamp": replica.timestamp,
                    "symbol": SYMBOL,
                    "book_seq": book.book_seq,
                    "bids": book.bids.top(depth),
                    "asks": book.asks.top(depth),
                    "bbo": replica.bbo,
                }
            )
            assert replica.depth_text(depth) == expected, (book_seq, depth)
