"""feedhub/replica.py end to end: real matcher, real hub, real WebSocket clients.

The clients are clients/ws_client.BookFeed, which proves its book after every update
(book_seq + 1, Kraken checksum); the matcher's own `book` op is the oracle at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
from typing import Any

from clients.ws_client import BookFeed, TradeFeed
from tests.feedhub.conftest import SYMBOL, System
from tests.feedhub.flow import OrderFlow


def matcher_state(system: System, symbol: str = SYMBOL) -> tuple[int, list, list]:
    book = system.book(symbol)
    return book["book_seq"], book["bids"], book["asks"]


async def converge(system: System, feed: BookFeed, timeout: float = 20.0) -> None:
    """Wait until the feed stands at the matcher's book_seq, then compare the books."""
    book_seq, bids, asks = matcher_state(system)
    await feed.wait_for_seq(book_seq, timeout)
    assert feed.book_seq == book_seq
    assert feed.book() == (bids, asks)


class SeqLog:
    """Every message a BookFeed applied, to check book_seq continuity afterwards."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, int]] = []

    def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] in ("snapshot", "l2update"):
            self.messages.append((message["type"], message["book_seq"]))

    def assert_contiguous(self) -> None:
        """Each update is exactly one after the previous message (snapshot or update)."""
        assert self.messages and self.messages[0][0] == "snapshot"
        for (_, previous), (kind, book_seq) in itertools.pairwise(self.messages):
            if kind == "l2update":
                assert book_seq == previous + 1, self.messages


def test_random_flow_ends_with_the_matchers_book(system: System) -> None:
    seqs = SeqLog()
    flow = OrderFlow(system.client(), seed=1)

    async def scenario() -> BookFeed:
        async with BookFeed(system.url, SYMBOL, on_message=seqs) as feed:
            await feed.wait_synced()
            await asyncio.to_thread(flow.run, 2500)
            await converge(system, feed)
            return feed

    feed = asyncio.run(scenario())
    assert flow.sent == 2500
    assert feed.checks_failed == 0
    assert feed.snapshots == 1 and feed.gaps == 0 and feed.resyncs == 0
    assert feed.checks_passed == feed.updates + 1  # the snapshot carries a checksum too
    assert feed.updates > 1500
    seqs.assert_contiguous()
    assert seqs.messages[-1][1] == feed.book_seq
    # A deep book with both sides populated was exercised, not a trivial one.
    bids, asks = feed.book()
    assert len(bids) > 10 and len(asks) > 10


def test_a_client_joining_mid_flow_gets_a_consistent_snapshot(system: System) -> None:
    flow = OrderFlow(system.client(), seed=2)
    half_done = threading.Event()
    early_log, late_log = SeqLog(), SeqLog()

    def run_flow() -> None:
        flow.run(1000)
        half_done.set()
        flow.run(1000)

    async def scenario() -> tuple[BookFeed, BookFeed]:
        async with BookFeed(system.url, SYMBOL, on_message=early_log) as early:
            await early.wait_synced()
            sender = asyncio.create_task(asyncio.to_thread(run_flow))
            await asyncio.to_thread(half_done.wait, 30)
            async with BookFeed(system.url, SYMBOL, on_message=late_log) as late:
                await late.wait_synced()
                await sender
                await converge(system, early)
                await converge(system, late)
                return early, late

    early, late = asyncio.run(scenario())
    for feed, log in ((early, early_log), (late, late_log)):
        assert feed.checks_failed == 0 and feed.gaps == 0 and feed.snapshots == 1
        log.assert_contiguous()
    assert 0 < late_log.messages[0][1] < late.book_seq  # its snapshot was taken mid-flow


def test_a_matcher_killed_and_restarted_mid_flow(system: System) -> None:
    """The book converges again, and /ws/trades still has every trade exactly once: those
    the new matcher printed before the hub's SUB reconnected come from the `trades` op."""
    flow = OrderFlow(system.client(), seed=3)

    async def scenario() -> tuple[BookFeed, list[int], int]:
        async with BookFeed(system.url, SYMBOL) as feed, TradeFeed(system.url) as trades:
            await feed.wait_synced()
            await asyncio.to_thread(flow.run, 800)
            await converge(system, feed)
            system.matchers[SYMBOL].kill()
            await asyncio.to_thread(system.start_matcher, SYMBOL)
            flow.client = system.client()  # the old DEALER may hold requests for the dead one
            await asyncio.to_thread(flow.run, 800)
            await converge(system, feed)
            last_trade_id = system.client().request("trades", limit=1)["trades"][0]["trade_id"]
            trade_ids: list[int] = []
            async with asyncio.timeout(20):
                while not trade_ids or trade_ids[-1] < last_trade_id:
                    trade_ids.append((await anext(trades))["trade_id"])
            return feed, trade_ids, last_trade_id

    feed, trade_ids, last_trade_id = asyncio.run(scenario())
    assert trade_ids == list(range(1, last_trade_id + 1))
    assert feed.checks_failed == 0 and feed.gaps == 0
    assert feed.snapshots >= 2  # the hub resynchronised and sent a fresh snapshot
    assert (
        system.metric("feedhub_replica_resyncs_total", symbol=SYMBOL, reason="matcher_restarted")
        >= 1
    )
    assert system.health()["symbols"][SYMBOL]["synced"]


def test_the_hub_restarted_mid_flow(system: System) -> None:
    flow = OrderFlow(system.client(), seed=4)

    async def scenario() -> BookFeed:
        async with BookFeed(system.url, SYMBOL, reconnect_delay=0.1) as feed:
            await feed.wait_synced()
            sender = asyncio.create_task(asyncio.to_thread(flow.run, 3000, 50))
            await asyncio.sleep(0.3)
            assert system.hub is not None
            assert await asyncio.to_thread(system.hub.stop) == 0  # SIGTERM: a clean exit
            await asyncio.sleep(0.2)
            await asyncio.to_thread(system.start_hub)
            await sender
            await converge(system, feed)
            return feed

    feed = asyncio.run(scenario())
    assert feed.connects >= 2 and feed.snapshots >= 2
    assert feed.checks_failed == 0 and feed.gaps == 0


def test_a_silent_matcher_is_noticed_and_resynchronised(system: System) -> None:
    """No heartbeat for 3 s: the replica says it is not synced, then takes a new snapshot."""
    flow = OrderFlow(system.client(), seed=5)
    matcher = system.matchers[SYMBOL].process
    assert matcher is not None

    async def wait_health(synced: bool, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while system.health()["symbols"][SYMBOL]["synced"] is not synced:
                await asyncio.sleep(0.1)

    async def scenario() -> BookFeed:
        async with BookFeed(system.url, SYMBOL) as feed:
            await feed.wait_synced()
            await asyncio.to_thread(flow.run, 300)
            await converge(system, feed)
            os.kill(matcher.pid, signal.SIGSTOP)
            try:
                await wait_health(synced=False)
            finally:
                os.kill(matcher.pid, signal.SIGCONT)
            await wait_health(synced=True)
            await asyncio.to_thread(flow.run, 300)
            await converge(system, feed)
            return feed

    feed = asyncio.run(scenario())
    assert feed.snapshots == 2 and feed.checks_failed == 0 and feed.gaps == 0
    assert (
        system.metric("feedhub_replica_resyncs_total", symbol=SYMBOL, reason="heartbeat_timeout")
        == 1
    )
