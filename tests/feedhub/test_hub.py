"""feedhub/hub.py: fan-out and the slow-client policies, seen from real clients."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from clients.ws_client import BookFeed, TradeFeed
from tests.feedhub.conftest import OTHER, SYMBOL, System
from tests.feedhub.flow import OrderFlow
from tests.feedhub.rawws import RawWebSocket
from tests.support import wait_until


def matcher_book_seq(system: System) -> int:
    return int(system.client().request("ping")["book_seq"])


def test_a_client_that_never_reads_does_not_slow_a_reading_one(system: System) -> None:
    """Catch-up time of a reading client, per chunk of orders, without then with a stuck
    client on the same feed: the stuck one is resynchronised, the reader is unaffected."""
    flow = OrderFlow(system.client(), seed=11)

    async def catch_up_times(feed: BookFeed, chunks: int, size: int) -> list[float]:
        times = []
        for _ in range(chunks):
            await asyncio.to_thread(flow.run, size)
            done = time.perf_counter()
            await feed.wait_for_seq(matcher_book_seq(system), 20)
            times.append(time.perf_counter() - done)
        return times

    async def scenario() -> tuple[BookFeed, list[float], list[float], RawWebSocket]:
        async with BookFeed(system.url, SYMBOL) as feed:
            await feed.wait_synced()
            baseline = await catch_up_times(feed, 6, 300)
            stuck = RawWebSocket(system.ws_port, f"/ws/market_data/{SYMBOL}")
            with_stuck = await catch_up_times(feed, 6, 300)
            for _ in range(10):  # bounded: enough to overflow the stuck client's queue
                if (
                    system.metric(
                        "feedhub_slow_client_drops_total", feed="market_data", action="resync"
                    )
                    >= 1
                ):
                    break
                with_stuck += await catch_up_times(feed, 1, 600)
            return feed, baseline, with_stuck, stuck

    feed, baseline, with_stuck, stuck = asyncio.run(scenario())
    try:
        assert (
            system.metric("feedhub_slow_client_drops_total", feed="market_data", action="resync")
            >= 1
        )
        # The reader saw every update, in order, with every checksum right, and no slower.
        assert feed.gaps == 0 and feed.checks_failed == 0 and feed.snapshots == 1
        assert statistics.median(with_stuck) <= 5 * statistics.median(baseline) + 0.05, (
            baseline,
            with_stuck,
        )
        # The stuck client, once it reads, finds a jump in book_seq and a fresh snapshot.
        first = stuck.recv()
        assert first is not None and first["type"] == "snapshot"
        seqs = [first["book_seq"]]
        snapshot_after_jump = False
        final = matcher_book_seq(system)
        while seqs[-1] < final:
            message = stuck.recv()
            assert message is not None
            if message["type"] == "snapshot":
                snapshot_after_jump = snapshot_after_jump or message["book_seq"] > seqs[-1] + 1
            else:
                assert message["book_seq"] == seqs[-1] + 1
            seqs.append(message["book_seq"])
        assert snapshot_after_jump
    finally:
        stuck.close()


def test_depth_messages_top_n_after_each_change(system: System) -> None:
    flow = OrderFlow(system.client(), seed=12)
    received: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with connect(f"{system.url}/ws/market_data/{SYMBOL}?depth=5", proxy=None) as ws:
            first = json.loads(await ws.recv())
            assert first["type"] == "depth"
            await asyncio.to_thread(flow.run, 300)
            final = matcher_book_seq(system)
            async with asyncio.timeout(20):
                while not received or received[-1]["book_seq"] < final:
                    received.append(json.loads(await ws.recv()))

    asyncio.run(scenario())
    book = system.client().request("book", depth=5)
    last = received[-1]
    assert (last["bids"], last["asks"], last["book_seq"]) == (
        book["bids"],
        book["asks"],
        book["book_seq"],
    )
    assert {tuple(m) for m in received} == {
        ("type", "timestamp", "symbol", "book_seq", "bids", "asks", "bbo")
    }
    for message in received:
        assert message["type"] == "depth" and message["symbol"] == SYMBOL
        assert len(message["bids"]) <= 5 and len(message["asks"]) <= 5
        assert message["bbo"]["book_seq"] == message["book_seq"]
    seqs = [m["book_seq"] for m in received]
    assert seqs == sorted(set(seqs))  # one message per change, never stale, never twice


def test_a_slow_depth_client_gets_fewer_newer_states(system: System) -> None:
    flow = OrderFlow(system.client(), seed=13)
    slow = RawWebSocket(system.ws_port, f"/ws/market_data/{SYMBOL}?depth=10")
    try:
        flow.run(2000)
        final = matcher_book_seq(system)
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["book_seq"] < final:
            message = slow.recv()
            assert message is not None and message["type"] == "depth"
            messages.append(message)
        book = system.client().request("book", depth=10)
        assert (messages[-1]["bids"], messages[-1]["asks"]) == (book["bids"], book["asks"])
        seqs = [m["book_seq"] for m in messages]
        assert seqs == sorted(set(seqs))
        # Coalesced: while it was not reading, intermediate states were skipped.
        assert len(messages) < final
        assert any(later - earlier > 1 for earlier, later in itertools.pairwise(seqs))
    finally:
        slow.close()


def test_trades_match_the_matcher_one_for_one(two_symbols: System) -> None:
    system = two_symbols
    flows = [
        OrderFlow(system.client(SYMBOL), seed=14),
        OrderFlow(system.client(OTHER), seed=15, symbol=OTHER, mid=2000, lot="0.001"),
    ]

    async def collect(feed: TradeFeed, last_ids: dict[str, int]) -> list[dict[str, Any]]:
        trades: list[dict[str, Any]] = []
        seen = dict.fromkeys(last_ids, 0)
        async with asyncio.timeout(20):
            while any(seen[s] < last_ids[s] for s in last_ids):
                trade = await anext(feed)
                seen[trade["symbol"]] = trade["trade_id"]
                trades.append(trade)
        return trades

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        async with TradeFeed(system.url) as every, TradeFeed(system.url, OTHER) as one:
            for flow in flows:
                await asyncio.to_thread(flow.run, 400)
            history = {
                s: system.client(s).request("trades", limit=1000)["trades"] for s in (SYMBOL, OTHER)
            }
            last_ids = {s: trades[0]["trade_id"] for s, trades in history.items()}
            all_trades = await collect(every, last_ids)
            other_trades = await collect(one, {OTHER: last_ids[OTHER]})
            assert every.gaps == 0 and one.gaps == 0
            return all_trades, other_trades, history

    all_trades, other_trades, history = asyncio.run(scenario())
    for symbol in (SYMBOL, OTHER):
        expected = [{"type": "trade", **trade} for trade in reversed(history[symbol])]
        assert 20 < len(expected) < 1000
        assert [t for t in all_trades if t["symbol"] == symbol] == expected
        assert all(trade["maker_fee"] and trade["taker_fee"] for trade in expected)
    assert other_trades == [{"type": "trade", **t} for t in reversed(history[OTHER])]


def test_a_trade_client_too_far_behind_is_closed_with_1013(tmp_path: Path) -> None:
    system = System(tmp_path)
    try:
        system.start_matcher()
        # A small kernel buffer per client, so that a few hundred trades fill it.
        system.start_hub("--queue-size", "100", "--client-sndbuf", "16384")
        client = system.client()
        slow = RawWebSocket(system.ws_port, "/ws/trades")
        reader = RawWebSocket(system.ws_port, f"/ws/trades?symbol={SYMBOL}", receive_buffer=1 << 20)
        received: list[int] = []

        def keep_reading() -> None:  # the client that keeps up: it reads all along
            try:
                while (message := reader.recv()) is not None:
                    received.append(message["trade_id"])
            except OSError:
                return  # closed at the end of the test (or idle for 10 s)

        threading.Thread(target=keep_reading, daemon=True).start()
        try:
            for _ in range(6):  # bounded: each round prints 300 trades in one command
                client.pipeline(
                    [
                        {
                            "op": "new_order",
                            "side": "sell",
                            "order_type": "limit",
                            "price": "30000",
                            "quantity": "0.0001",
                        }
                    ]
                    * 300
                )
                client.request("new_order", side="buy", order_type="market", quantity="0.0300")
                if (
                    system.metric("feedhub_slow_client_drops_total", feed="trades", action="close")
                    >= 1
                ):
                    break
            assert (
                system.metric("feedhub_slow_client_drops_total", feed="trades", action="close") == 1
            )
            while slow.recv() is not None:
                pass  # what it had been sent before falling behind, then the close
            assert slow.close_code == 1013
            assert "too slow" in slow.close_reason
            # The client that kept reading got every trade.
            last_trade_id = client.request("trades", limit=1)["trades"][0]["trade_id"]
            wait_until(lambda: received and received[-1] >= last_trade_id, timeout=30)
            assert received[:last_trade_id] == list(range(1, last_trade_id + 1))
        finally:
            slow.close()
            reader.close()
    finally:
        system.stop()


def test_a_depth_client_full_of_unread_replies_still_gets_the_newest_view(
    tmp_path: Path,
) -> None:
    """A depth client that floods pings and reads nothing fills its backlog with pongs.
    A book change must still reach it once it reads: the view goes in, the newest reply
    goes out. Before, the change was skipped and the client kept a stale book."""
    system = System(tmp_path)
    try:
        system.start_matcher()
        system.start_hub("--queue-size", "100", "--client-sndbuf", "16384")
        client = system.client()
        flooder = RawWebSocket(system.ws_port, f"/ws/market_data/{SYMBOL}?depth=5")
        try:
            first = flooder.recv()
            assert first is not None and first["type"] == "depth"
            ping = b'{"op":"ping"}'
            mask = b"\x00\x00\x00\x00"  # a zero mask leaves the payload as it is
            frame = bytes((0x81, 0x80 | len(ping))) + mask + ping
            flooder.sock.sendall(frame * 20_000)  # far more pongs than socket + backlog hold
            time.sleep(1.0)  # let the hub read them all and fill the backlog
            for price in ("29000", "29001", "29002"):
                client.request(
                    "new_order", side="buy", order_type="limit", price=price, quantity="1"
                )
            final = matcher_book_seq(system)
            views = []
            flooder.sock.settimeout(3)
            try:
                while (message := flooder.recv()) is not None:
                    if message["type"] == "depth":
                        views.append(message)
            except TimeoutError:
                pass  # read everything the hub had for it
            assert views and views[-1]["book_seq"] == final, [v["book_seq"] for v in views]
        finally:
            flooder.close()
    finally:
        system.stop()


def test_a_client_that_stops_reading_is_closed_and_its_connection_dropped(
    tmp_path: Path,
) -> None:
    """A market-data client that never reads, while the book changes a lot: once its
    socket has not drained for the drain timeout it is closed (1013), unregistered, and
    its TCP connection is gone from the hub's side, with nothing read by the client.
    Before, it was resynchronised forever, stayed registered until the 20 s ping timed
    out, and its TCP connection outlived the close in the hub's kernel (FIN-WAIT-1 with
    the unsent bytes). The clients that read get every message meanwhile."""
    system = System(tmp_path)
    try:
        system.start_matcher()
        system.start_hub("--drain-timeout", "2")
        flow = OrderFlow(system.client(), seed=21)
        trade_ids: list[int] = []

        def stalled() -> float:
            return system.metric(
                "feedhub_slow_client_drops_total", feed="market_data", action="stalled"
            )

        async def scenario() -> tuple[BookFeed, TradeFeed, RawWebSocket]:
            async with (
                BookFeed(system.url, SYMBOL) as feed,
                TradeFeed(system.url, SYMBOL) as trades,
            ):
                await feed.wait_synced()

                async def read_trades() -> None:
                    async for trade in trades:
                        trade_ids.append(trade["trade_id"])

                reader = asyncio.create_task(read_trades())
                stuck = RawWebSocket(system.ws_port, f"/ws/market_data/{SYMBOL}")
                for _ in range(100):  # bounded: until its buffers fill and stay full
                    await asyncio.to_thread(flow.run, 300)
                    if stalled() >= 1:
                        break
                await asyncio.to_thread(wait_until, lambda: not stuck.hub_side_open(), 30)
                # Unregistered: the one market-data client left is the reader.
                assert system.health()["clients"]["market_data"] == 1
                await feed.wait_for_seq(matcher_book_seq(system), 30)
                last_trade = system.client().request("trades", limit=1)["trades"][0]
                await asyncio.to_thread(
                    wait_until, lambda: trade_ids and trade_ids[-1] >= last_trade["trade_id"]
                )
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                return feed, trades, stuck

        feed, trades, stuck = asyncio.run(scenario())
        try:
            assert stalled() == 1
            # Reading now finds what had been buffered, then the end: the hub's side is gone.
            assert stuck.read_to_end() in ("reset", "eof")
            assert stuck.close_code in (None, 1013)
        finally:
            stuck.close()
        # The readers got every update and every trade, with no resync or reconnect.
        assert (feed.gaps, feed.checks_failed, feed.snapshots, feed.connects) == (0, 0, 1, 1)
        assert trades.gaps == 0 and trade_ids == list(range(1, trade_ids[-1] + 1))
        assert flow.sent >= 300 and len(trade_ids) > 20
        assert system.hub is not None and "Traceback" not in system.hub.log()
    finally:
        system.stop()


def test_a_trade_client_closed_with_1013_has_its_connection_dropped(tmp_path: Path) -> None:
    """Closed for falling behind, it reads nothing more: its TCP connection must still go
    from the hub's side within the drain timeout. Before, the close frame sat behind the
    unsent trades, and the connection stayed in the hub's kernel for as long as the
    client answered zero-window probes."""
    system = System(tmp_path)
    try:
        system.start_matcher()
        system.start_hub("--queue-size", "100", "--client-sndbuf", "16384", "--drain-timeout", "2")
        client = system.client()
        slow = RawWebSocket(system.ws_port, "/ws/trades")
        try:
            for _ in range(6):  # bounded: each round prints 300 trades in one command
                client.pipeline(
                    [
                        {
                            "op": "new_order",
                            "side": "sell",
                            "order_type": "limit",
                            "price": "30000",
                            "quantity": "0.0001",
                        }
                    ]
                    * 300
                )
                client.request("new_order", side="buy", order_type="market", quantity="0.0300")
                if (
                    system.metric("feedhub_slow_client_drops_total", feed="trades", action="close")
                    >= 1
                ):
                    break
            assert (
                system.metric("feedhub_slow_client_drops_total", feed="trades", action="close") == 1
            )
            wait_until(lambda: not slow.hub_side_open(), timeout=30)
            assert slow.read_to_end() in ("reset", "eof")
            assert system.health()["clients"]["trades"] == 0
            assert system.hub is not None and "Traceback" not in system.hub.log()
        finally:
            slow.close()
    finally:
        system.stop()
