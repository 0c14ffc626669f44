"""The hub's GET / (what it serves) and its 404 for a WebSocket path that is no feed,
on both send paths (each test names its path, so CI's MATCHWIRE_HUB_DIRECT=0 pass means
the same)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.feedhub.conftest import OTHER, RULES, SYMBOL, System

NOT_FEEDS = (
    "/ws/nope",
    "/",
    "/ws/market_data",
    "/ws/market_data/",
    f"/ws/market_data/{SYMBOL}/x",
    "/ws/trades/BTC-USDT",
    "/health",
    "/metrics",
)


def test_get_root_lists_the_feeds_and_the_symbols_and_each_listed_feed_works(
    two_symbols: System,
) -> None:
    response = httpx.get(f"{two_symbols.http}/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    info = response.json()
    assert (info["name"], info["service"]) == ("matchwire", "feedhub")
    assert isinstance(info["version"], str) and info["version"]
    assert info["feeds"] == {
        "market_data": {"path": "/ws/market_data/{symbol}", "query": []},
        "depth": {"path": "/ws/market_data/{symbol}", "query": ["depth"]},
        "trades": {"path": "/ws/trades", "query": ["symbol", "from_trade_id"]},
    }
    assert set(info["symbols"]) == {SYMBOL, OTHER}
    for symbol, shown in info["symbols"].items():
        assert {key: shown[key] for key in RULES[symbol]} == RULES[symbol]
        assert (shown["order_endpoint"], shown["feed_endpoint"]) == two_symbols.endpoints[symbol]

    async def first_messages() -> list[str]:
        kinds = []
        for symbol in info["symbols"]:
            for feed, query in (("market_data", ""), ("depth", "?depth=5")):
                path = info["feeds"][feed]["path"].replace("{symbol}", symbol)
                async with connect(f"{two_symbols.url}{path}{query}", proxy=None) as ws:
                    kinds.append(json.loads(await ws.recv())["type"])
        return kinds

    assert asyncio.run(first_messages()) == ["snapshot", "depth"] * 2


def test_an_unknown_http_path_is_a_json_404(system: System) -> None:
    response = httpx.get(f"{system.http}/nope", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = httpx.post(f"{system.http}/health", timeout=10)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def refusal(url: str) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(10):
            async with connect(url, proxy=None):
                pass
    response = refused.value.response
    return response.status_code, response.body


@pytest.mark.parametrize("ws_path", ["direct", "asgi"])
def test_an_unknown_websocket_path_is_a_404_naming_it_and_the_feeds_go_on(
    tmp_path: Path,
    ws_path: str,
) -> None:
    """Before, Starlette closed before accepting, which uvicorn answers 403 Forbidden."""
    system = System(tmp_path)
    try:
        system.start_matcher()
        system.start_hub("--ws-path", ws_path)

        async def scenario() -> tuple[list[tuple[int, bytes]], str]:
            async with connect(f"{system.url}/ws/market_data/{SYMBOL}", proxy=None) as live:
                assert json.loads(await live.recv())["type"] == "snapshot"
                refusals = [await refusal(f"{system.url}{path}") for path in NOT_FEEDS]
                system.client().request(
                    "new_order", side="buy", order_type="limit", price="100", quantity="1"
                )
                return refusals, json.loads(await live.recv())["type"]

        refusals, after = asyncio.run(scenario())
        for path, (status, text) in zip(NOT_FEEDS, refusals, strict=True):
            assert status == 404, (path, status)
            body = json.loads(text)
            assert body["error"]["code"] == "not_found"
            assert body["error"]["message"].startswith(f"no feed at {path!r}: the feeds are")
        assert after == "l2update"
        health = system.health()
        assert health["send_paths"] == {
            "direct": int(ws_path == "direct"),
            "asgi": int(ws_path == "asgi"),
        }  # refusals not admitted
        assert system.hub is not None and "Traceback" not in system.hub.log()
    finally:
        system.stop()
