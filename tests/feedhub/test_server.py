"""feedhub/server.py: routes, refusals, client messages, health and metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients.ws_client import BookFeed, FeedError
from tests.feedhub.conftest import SYMBOL, System
from tests.feedhub.rawws import RawWebSocket
from tests.support import Child, wait_until


async def close_code_of(url: str) -> tuple[int | None, str]:
    async with connect(url, proxy=None) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await ws.recv()
    received = closed.value.rcvd
    assert received is not None
    return received.code, received.reason


def test_unknown_symbols_and_bad_depths_are_closed_with_a_reason(system: System) -> None:
    async def scenario() -> list[tuple[int | None, str]]:
        return [
            await close_code_of(f"{system.url}/ws/market_data/NOPE-USDT"),
            await close_code_of(f"{system.url}/ws/market_data/NOPE-USDT?depth=5"),
            await close_code_of(f"{system.url}/ws/trades?symbol=NOPE-USDT"),
            await close_code_of(f"{system.url}/ws/market_data/{SYMBOL}?depth=0"),
            await close_code_of(f"{system.url}/ws/market_data/{SYMBOL}?depth=ten"),
            # A reason must fit a close frame (123 bytes), however long the name's UTF-8.
            await close_code_of(f"{system.url}/ws/market_data/{'%F0%9F%98%80' * 40}"),
            await close_code_of(f"{system.url}/ws/trades?symbol={'%00' * 40}"),
            # int() would take these; the API says ASCII digits.
            await close_code_of(f"{system.url}/ws/market_data/{SYMBOL}?depth=%2B5"),
            await close_code_of(f"{system.url}/ws/market_data/{SYMBOL}?depth=1_000"),
            await close_code_of(f"{system.url}/ws/market_data/{SYMBOL}?depth=%D9%A5"),
        ]

    closes = asyncio.run(scenario())
    assert [code for code, _ in closes] == [
        4404,
        4404,
        4404,
        4400,
        4400,
        4404,
        4404,
        4400,
        4400,
        4400,
    ]
    assert "unknown symbol 'NOPE-USDT'" in closes[0][1]
    assert "depth must be an integer from 1 to 1000" in closes[3][1]
    assert closes[5][1].startswith("unknown symbol '\U0001f600")  # cut, not dropped


def test_a_book_feed_of_an_unknown_symbol_fails_instead_of_retrying(system: System) -> None:
    async def scenario() -> None:
        async with BookFeed(system.url, "NOPE-USDT") as feed:
            with pytest.raises(FeedError, match="4404"):
                await feed.wait_synced(5)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "path", [f"/ws/market_data/{SYMBOL}", f"/ws/market_data/{SYMBOL}?depth=3", "/ws/trades"]
)
def test_client_messages_get_replies_and_never_break_the_feed(system: System, path: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with connect(f"{system.url}{path}", proxy=None) as ws:
            if "market_data" in path:
                assert json.loads(await ws.recv())["type"] in ("snapshot", "depth")
            for garbage in (
                "not json",
                "[1, 2]",
                '{"op": "subscribe"}',
                '{"no": "op"}',
                "",
                "\x00\xff",
                "[" * 50_000,
                '{"op": "ping"}',
            ):
                await ws.send(garbage)
            await ws.send(b"\x00binary")
            replies = [json.loads(await ws.recv()) for _ in range(9)]
            # Still a working subscription: an order reaches it.
            system.client().request(
                "new_order", side="buy", order_type="limit", price="100", quantity="1"
            )
            system.client().request(
                "new_order", side="sell", order_type="limit", price="100", quantity="1"
            )
            update = json.loads(await ws.recv())
            assert update["type"] in ("l2update", "depth", "trade")
            return replies

    replies = asyncio.run(scenario())
    assert [r["type"] for r in replies] == ["error"] * 7 + ["pong", "error"]
    assert all(
        isinstance(r.get("message"), str) and r["message"] for r in replies if r["type"] == "error"
    )
    assert "not JSON" in replies[0]["message"]
    assert "binary" in replies[8]["message"]
    assert system.hub is not None and system.hub.alive


def test_health_and_metrics(system: System) -> None:
    async def scenario() -> tuple[dict[str, Any], str]:
        async with BookFeed(system.url, SYMBOL) as feed:
            await feed.wait_synced()
            client = system.client()
            client.request("new_order", side="buy", order_type="limit", price="100", quantity="1")
            await feed.wait_for_seq(client.request("ping")["book_seq"])
            return system.health(), system.metrics()

    health, metrics = asyncio.run(scenario())
    assert health["status"] == "ok"
    assert health["symbols"][SYMBOL]["synced"] is True
    assert health["symbols"][SYMBOL]["book_seq"] == 1
    assert health["clients"]["market_data"] == 1
    assert 'feedhub_clients{feed="market_data"} 1.0' in metrics
    assert 'feedhub_messages_sent_total{feed="market_data"} 2.0' in metrics  # snapshot+update
    assert 'feedhub_replica_synced{symbol="BTC-USDT"} 1.0' in metrics
    assert "feedhub_slow_client_drops" in metrics.replace("# HELP", "")


def test_sigterm_is_a_clean_exit(system: System) -> None:
    async def scenario() -> int | None:
        async with BookFeed(system.url, SYMBOL, reconnect_delay=5) as feed:
            await feed.wait_synced()
            assert system.hub is not None
            return await asyncio.to_thread(system.hub.stop, 5.0)

    assert asyncio.run(scenario()) == 0
    assert system.hub is not None
    assert "Traceback" not in system.hub.log()


def order_that_rests_then_trades(system: System) -> None:
    client = system.client()
    client.request("new_order", side="buy", order_type="limit", price="100", quantity="1")
    client.request("new_order", side="sell", order_type="limit", price="100", quantity="1")


def test_connections_over_the_cap_are_refused_with_1013_while_the_others_work(
    tmp_path: Path,
) -> None:
    system = System(tmp_path)
    try:
        system.start_matcher()
        system.start_hub("--max-connections", "3", "--drain-timeout", "2")
        book = RawWebSocket(system.ws_port, f"/ws/market_data/{SYMBOL}")
        depth = RawWebSocket(system.ws_port, f"/ws/market_data/{SYMBOL}?depth=5")
        trades = RawWebSocket(system.ws_port, "/ws/trades")
        late: list[RawWebSocket] = []
        try:
            for ws in (book, depth):
                first = ws.recv()
                assert first is not None and first["type"] in ("snapshot", "depth")
            wait_until(lambda: sum(system.health()["clients"].values()) == 3)
            # One more, on either route: accepted, closed with 1013 and a reason, gone.
            for path in (f"/ws/market_data/{SYMBOL}", "/ws/trades"):
                refused = RawWebSocket(system.ws_port, path)
                late.append(refused)
                assert refused.recv() is None
                assert refused.close_code == 1013
                assert "connection limit (3)" in refused.close_reason
                assert refused.read_to_end() in ("eof", "reset")
            assert system.metric("feedhub_connections_refused_total", reason="max_connections") == 2
            # The three admitted ones still get their feeds.
            order_that_rests_then_trades(system)
            assert {book.recv()["type"], depth.recv()["type"], trades.recv()["type"]} == {
                "l2update",
                "depth",
                "trade",
            }  # type: ignore[index]
            # One leaves: once its connection is gone, there is room for another.
            book.close()
            wait_until(lambda: system.metric("feedhub_open_connections") == 2)
            again = RawWebSocket(system.ws_port, f"/ws/market_data/{SYMBOL}")
            late.append(again)
            first = again.recv()
            assert first is not None and first["type"] == "snapshot"
        finally:
            for ws in (book, depth, trades, *late):
                ws.close()
    finally:
        system.stop()


def test_ws_max_connections_comes_from_the_config_file(tmp_path: Path) -> None:
    system = System(tmp_path)
    text = system.config_path.read_text()
    system.config_path.write_text(
        text.replace("[server]\n", "[server]\nws_max_connections = 1\n", 1)
    )
    try:
        system.start_matcher()
        system.start_hub()

        async def scenario() -> tuple[int | None, str]:
            async with connect(f"{system.url}/ws/trades", proxy=None):
                return await close_code_of(f"{system.url}/ws/market_data/{SYMBOL}")

        code, reason = asyncio.run(scenario())
        assert code == 1013 and "connection limit (1)" in reason
    finally:
        system.stop()


@pytest.mark.parametrize(
    "setting, flags, message",
    [
        ("ws_max_connections = 0", (), "ws_max_connections must be positive, not 0"),
        ('ws_max_connections = "many"', (), "ws_max_connections must be int"),
        ("", ("--max-connections", "0"), "--max-connections: expected a finite number above 0"),
        ("", ("--drain-timeout", "nan"), "--drain-timeout: expected a finite number above 0"),
    ],
)
def test_bad_connection_settings_stop_the_hub_with_a_reason(
    tmp_path: Path,
    setting: str,
    flags: tuple[str, ...],
    message: str,
) -> None:
    system = System(tmp_path)
    text = system.config_path.read_text()
    system.config_path.write_text(text.replace("[server]\n", f"[server]\n{setting}\n", 1))
    hub = Child(
        ["-m", "feedhub.server", "--config", str(system.config_path), *flags], tmp_path / "hub.log"
    ).start()
    try:
        assert hub.process is not None
        assert hub.process.wait(timeout=30) == 2
        assert message in hub.log()
    finally:
        hub.stop()


@pytest.mark.parametrize(
    "soft, hard, expected_soft, warned",
    [
        (64, 4096, 356, False),  # raised to fit 100 connections + 256
        (64, 128, 128, True),  # as far as the hard limit goes, with a warning
    ],
)
def test_the_descriptor_limit_is_raised_to_fit_the_cap(
    tmp_path: Path,
    soft: int,
    hard: int,
    expected_soft: int,
    warned: bool,
) -> None:
    system = System(tmp_path)
    start = (
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); "
        "sys.argv = ['feedhub.server', *sys.argv[1:]]; "
        "runpy.run_module('feedhub.server', run_name='__main__')"
    )
    hub = Child(
        ["-c", start, "--config", str(system.config_path), "--max-connections", "100"],
        tmp_path / "hub.log",
    ).start()
    try:
        wait_until(lambda: "feed hub for" in hub.log(), timeout=30)
        assert hub.process is not None
        limits = Path(f"/proc/{hub.process.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(expected_soft), str(hard)], line
        assert ("descriptor limit 128 is below ws_max_connections 100" in hub.log()) is warned
    finally:
        hub.stop()
