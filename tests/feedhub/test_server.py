"""feedhub/server.py: routes, refusals, client messages, health and metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients.ws_client import BookFeed, FeedError
from tests.feedhub.conftest import SYMBOL, System


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
    assert [code for code, _ in closes] == [4404, 4404, 4404, 4400, 4400, 4404, 4404, 4400,
                                            4400, 4400]
    assert "unknown symbol 'NOPE-USDT'" in closes[0][1]
    assert "depth must be an integer from 1 to 1000" in closes[3][1]
    assert closes[5][1].startswith("unknown symbol '\U0001f600")  # cut, not dropped


def test_a_book_feed_of_an_unknown_symbol_fails_instead_of_retrying(system: System) -> None:
    async def scenario() -> None:
        async with BookFeed(system.url, "NOPE-USDT") as feed:
            with pytest.raises(FeedError, match="4404"):
                await feed.wait_synced(5)

    asyncio.run(scenario())


@pytest.mark.parametrize("path", [f"/ws/market_data/{SYMBOL}", f"/ws/market_data/{SYMBOL}?depth=3",
                                  "/ws/trades"])
def test_client_messages_get_replies_and_never_break_the_feed(system: System, path: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with connect(f"{system.url}{path}", proxy=None) as ws:
            if "market_data" in path:
                assert json.loads(await ws.recv())["type"] in ("snapshot", "depth")
            for garbage in ("not json", "[1, 2]", '{"op": "subscribe"}', '{"no": "op"}', "",
                            "\x00\xff", "[" * 50_000, '{"op": "ping"}'):
                await ws.send(garbage)
            await ws.send(b"\x00binary")
            replies = [json.loads(await ws.recv()) for _ in range(9)]
            # Still a working subscription: an order reaches it.
            system.client().request("new_order", side="buy", order_type="limit",
                                    price="100", quantity="1")
            system.client().request("new_order", side="sell", order_type="limit",
                                    price="100", quantity="1")
            update = json.loads(await ws.recv())
            assert update["type"] in ("l2update", "depth", "trade")
            return replies

    replies = asyncio.run(scenario())
    assert [r["type"] for r in replies] == ["error"] * 7 + ["pong", "error"]
    assert all(isinstance(r.get("message"), str) and r["message"] for r in replies if
               r["type"] == "error")
    assert "not JSON" in replies[0]["message"]
    assert "binary" in replies[8]["message"]
    assert system.hub is not None and system.hub.alive


def test_health_and_metrics(system: System) -> None:
    async def scenario() -> tuple[dict[str, Any], str]:
        async with BookFeed(system.url, SYMBOL) as feed:
            await feed.wait_synced()
            client = system.client()
            client.request("new_order", side="buy", order_type="limit", price="100",
                           quantity="1")
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
