"""The hub's two send paths: the ASGI server's own `send` (works alone, anywhere) and the
direct frames on uvicorn's websockets transport (an accelerator, only where it applies).

Each test says which path it wants, so they mean the same in CI's second pass of this
directory with MATCHWIRE_HUB_DIRECT=0.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from clients.ws_client import BookFeed, TradeFeed
from tests.feedhub.conftest import SYMBOL, System
from tests.feedhub.flow import OrderFlow
from tests.feedhub.rawws import RawWebSocket
from tests.support import Child, wait_until

AUTO = {"MATCHWIRE_HUB_DIRECT": ""}  # as if unset: CI's second pass sets it to 0

# The hub, with the direct path told it knows no installed uvicorn version.
UNKNOWN_VERSIONS = (
    "import runpy, sys, feedhub.wire as wire; "
    "wire.DIRECT_PATH_VERSIONS['uvicorn'] = ((0, 1), (0, 2)); "
    "sys.argv = ['feedhub.server', *sys.argv[1:]]; "
    "runpy.run_module('feedhub.server', run_name='__main__')"
)


def matcher_book_seq(system: System) -> int:
    return int(system.client().request("ping")["book_seq"])


def one_connection_path(system: System) -> dict[str, int]:
    """The send path a new connection gets, from /health's count per path."""
    before = system.health()["send_paths"]

    async def scenario() -> None:
        async with connect(f"{system.url}/ws/market_data/{SYMBOL}", proxy=None) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"

    asyncio.run(scenario())
    after = system.health()["send_paths"]
    return {path: after[path] - before[path] for path in after}


def test_the_asgi_path_alone_serves_every_feed(tmp_path: Path) -> None:
    """Snapshot and deltas with every checksum right, depth, and every trade, with the
    direct path off. Before, the endpoints refused to run without FeedProtocol."""
    system = System(tmp_path)
    try:
        system.start_matcher()
        system.start_hub("--ws-path", "asgi", env={"MATCHWIRE_HUB_DIRECT": "1"})  # flag wins
        flow = OrderFlow(system.client(), seed=31)
        depth_views: list[dict[str, Any]] = []
        trade_ids: list[int] = []

        async def scenario() -> BookFeed:
            async with (
                BookFeed(system.url, SYMBOL) as feed,
                TradeFeed(system.url, SYMBOL) as trades,
                connect(f"{system.url}/ws/market_data/{SYMBOL}?depth=5", proxy=None) as depth,
            ):
                await feed.wait_synced()
                depth_views.append(json.loads(await depth.recv()))
                await asyncio.to_thread(flow.run, 600)
                final = matcher_book_seq(system)
                last_trade = system.client().request("trades", limit=1)["trades"][0]["trade_id"]
                await feed.wait_for_seq(final, 30)
                async with asyncio.timeout(30):
                    while depth_views[-1]["book_seq"] < final:
                        depth_views.append(json.loads(await depth.recv()))
                    while not trade_ids or trade_ids[-1] < last_trade:
                        trade_ids.append((await anext(trades))["trade_id"])
                assert trades.gaps == 0
                return feed

        feed = asyncio.run(scenario())
        assert (feed.gaps, feed.checks_failed, feed.snapshots) == (0, 0, 1)
        assert feed.checks_passed > 100
        book = system.client().request("book", depth=5)
        assert (depth_views[-1]["bids"], depth_views[-1]["asks"]) == (book["bids"], book["asks"])
        seqs = [view["book_seq"] for view in depth_views]
        assert seqs == sorted(set(seqs))
        assert len(trade_ids) > 20 and trade_ids == list(range(1, trade_ids[-1] + 1))
        assert system.health()["send_paths"] == {"direct": 0, "asgi": 3}
        assert system.hub is not None and "Traceback" not in system.hub.log()
    finally:
        system.stop()


def test_a_stuck_client_on_the_asgi_path_is_closed_and_its_connection_dropped(
    tmp_path: Path,
) -> None:
    """The ASGI path's own stall rule: a send that waits the drain timeout closes the
    client (1013, counted as stalled) and unregisters it, and the kernel ends its TCP
    connection (TCP_USER_TIMEOUT) although uvicorn's transport would wait for it forever.
    The reading client gets every update meanwhile."""
    system = System(tmp_path)
    try:
        system.start_matcher()
        system.start_hub("--ws-path", "asgi", "--drain-timeout", "2")
        flow = OrderFlow(system.client(), seed=32)

        def stalled() -> float:
            return system.metric(
                "feedhub_slow_client_drops_total", feed="market_data", action="stalled"
            )

        async def scenario() -> tuple[BookFeed, RawWebSocket]:
            async with BookFeed(system.url, SYMBOL) as feed:
                await feed.wait_synced()
                stuck = RawWebSocket(system.ws_port, f"/ws/market_data/{SYMBOL}")
                for _ in range(100):  # bounded: until its buffers fill and stay full
                    await asyncio.to_thread(flow.run, 300)
                    if stalled() >= 1:
                        break
                await asyncio.to_thread(wait_until, lambda: not stuck.hub_side_open(), 30)
                assert system.health()["clients"]["market_data"] == 1
                await feed.wait_for_seq(matcher_book_seq(system), 30)
                return feed, stuck

        feed, stuck = asyncio.run(scenario())
        try:
            assert stalled() == 1
            assert stuck.read_to_end() in ("reset", "eof")
            assert stuck.close_code in (None, 1013)
        finally:
            stuck.close()
        assert (feed.gaps, feed.checks_failed, feed.snapshots, feed.connects) == (0, 0, 1, 1)
        assert system.health()["send_paths"]["direct"] == 0
        assert system.hub is not None and "Traceback" not in system.hub.log()
    finally:
        system.stop()


@pytest.mark.parametrize(
    "setting, flags, path",
    [
        ("", (), "direct"),  # auto: the versions it knows are installed
        ("0", (), "asgi"),
        ("1", (), "direct"),
        ("0", ("--ws-path", "direct"), "direct"),
        ("", ("--ws-path", "asgi"), "asgi"),
    ],
)
def test_the_send_path_follows_the_flag_then_the_environment(
    tmp_path: Path,
    setting: str,
    flags: tuple[str, ...],
    path: str,
) -> None:
    system = System(tmp_path)
    try:
        system.start_matcher()
        system.start_hub(*flags, env={"MATCHWIRE_HUB_DIRECT": setting})
        assert one_connection_path(system) == {
            "direct": int(path == "direct"),
            "asgi": int(path == "asgi"),
        }
        assert system.hub is not None and f"(send path: {path})" in system.hub.log()
    finally:
        system.stop()


def test_auto_falls_back_to_asgi_with_one_log_line_where_the_direct_path_does_not_apply(
    tmp_path: Path,
) -> None:
    system = System(tmp_path)
    try:
        system.start_matcher()
        hub = system.hub = Child(
            ["-c", UNKNOWN_VERSIONS, "--config", str(system.config_path)],
            tmp_path / "hub.log",
            AUTO,
        ).start()
        wait_until(lambda: "feed hub for" in hub.log(), timeout=30)
        system.wait_hub_synced()
        assert one_connection_path(system) == {"direct": 0, "asgi": 1}
        lines = [line for line in hub.log().splitlines() if "direct WebSocket path" in line]
        assert len(lines) == 1, lines
        assert "is not a version it knows (0.1 to before 0.2)" in lines[0]
        assert "sending through ASGI" in lines[0]
    finally:
        system.stop()


@pytest.mark.parametrize(
    "start, env, message",
    [
        (
            (UNKNOWN_VERSIONS, "--ws-path", "direct"),
            AUTO,
            "the direct WebSocket path cannot run here: uvicorn",
        ),
        (
            ("-m", "feedhub.server"),
            {"MATCHWIRE_HUB_DIRECT": "yes"},
            "MATCHWIRE_HUB_DIRECT must be 0 (the ASGI path) or 1 (the direct one), not 'yes'",
        ),
        (("-m", "feedhub.server", "--ws-path", "fast"), AUTO, "--ws-path: invalid choice: 'fast'"),
    ],
)
def test_a_send_path_that_cannot_run_stops_the_hub_with_a_reason(
    tmp_path: Path,
    start: tuple[str, ...],
    env: dict[str, str],
    message: str,
) -> None:
    system = System(tmp_path)
    args = ["-c", *start] if start[0] == UNKNOWN_VERSIONS else list(start)
    hub = Child([*args, "--config", str(system.config_path)], tmp_path / "hub.log", env).start()
    try:
        assert hub.process is not None
        assert hub.process.wait(timeout=30) == 2
        assert message in hub.log()
    finally:
        hub.stop()
