"""The feed hub's query strings: a parameter a feed does not take, or one given twice, is
refused (close 4400 with a reason naming it) instead of ignored: `?depht=1` used to be
the full l2update feed, `/ws/trades?symbl=X` every symbol's trades."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from tests.feedhub.conftest import SYMBOL, System
from tests.feedhub.test_server import close_code_of

REFUSED = [
    (f"/ws/market_data/{SYMBOL}?depht=1", "unknown query parameter 'depht'; this feed takes depth"),
    (f"/ws/market_data/{SYMBOL}?symbol={SYMBOL}", "unknown query parameter 'symbol'"),
    (
        f"/ws/market_data/{SYMBOL}?depth=5&depth=10",
        "query parameter 'depth' is given more than once",
    ),
    (f"/ws/market_data/{SYMBOL}?depth=5&x", "unknown query parameter 'x'"),
    ("/ws/market_data/NOPE-USDT?depht=1", "unknown query parameter 'depht'"),
    ("/ws/trades?symbl=BTC-USDT", "unknown query parameter 'symbl'; this feed takes symbol"),
    ("/ws/trades?depth=5", "unknown query parameter 'depth'"),
    (
        f"/ws/trades?symbol={SYMBOL}&symbol=ETH-USDT",
        "query parameter 'symbol' is given more than once",
    ),
    ("/ws/trades?=1", "unknown query parameter ''"),
    (f"/ws/trades?{'x' * 200}=1", "unknown query parameter '" + "x" * 40 + "'"),
]


def test_unknown_and_repeated_query_parameters_close_with_a_reason(system: System) -> None:
    async def scenario() -> list[tuple[int | None, str]]:
        return [await close_code_of(system.url + path) for path, _ in REFUSED]

    closes = asyncio.run(scenario())
    for (path, named), (code, reason) in zip(REFUSED, closes, strict=True):
        assert code == 4400, (path, code, reason)
        assert named in reason, (path, reason)
        assert len(reason.encode()) <= 123
    assert system.hub is not None and "Traceback" not in system.hub.log()


@pytest.mark.parametrize(
    "path",
    [
        f"/ws/market_data/{SYMBOL}",
        f"/ws/market_data/{SYMBOL}?",
        f"/ws/market_data/{SYMBOL}?depth=3",
        "/ws/trades",
        f"/ws/trades?symbol={SYMBOL}",
    ],
)
def test_the_documented_parameters_still_subscribe(system: System, path: str) -> None:
    async def scenario() -> None:
        async with connect(system.url + path, proxy=None) as ws:
            if "trades" in path:  # no message until a trade: a ping proves it is live
                await ws.send('{"op": "ping"}')
            async with asyncio.timeout(10):
                assert await ws.recv()

    asyncio.run(scenario())
