"""/ws/trades?symbol=S&from_trade_id=N: the kept trades from N, then live ones, no gap and
no duplicate; refusals are an error message, then the close (docs/feeds.md)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from clients.zmq_client import MatcherClient
from tests.feedhub.conftest import SYMBOL, System


class Trader(threading.Thread):
    """Prints trades, one per pair of orders, until told to stop (bounded)."""

    def __init__(self, endpoint: str, most: int = 5000) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.most = most
        self.stop = threading.Event()
        self.last_trade_id = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        client = MatcherClient(self.endpoint, timeout=10.0)
        try:
            for _ in range(self.most):
                if self.stop.is_set():
                    break
                client.request(
                    "new_order",
                    side="sell",
                    order_type="limit",
                    price="100",
                    quantity="0.01",
                    account="maker",
                )
                order = client.request(
                    "new_order", side="buy", order_type="market", quantity="0.01", account="taker"
                )
                self.last_trade_id = order["trades"][-1]["trade_id"]
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            client.close()


async def trades_of(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while len(got) < count:
            message = json.loads(await ws.recv())
            assert message["type"] == "trade", message
            got.append(message)
    return got


def test_a_client_that_resumes_sees_every_trade_once_while_trades_flow(system: System) -> None:
    trader = Trader(system.endpoints[SYMBOL][0])

    async def scenario() -> list[int]:
        seen: list[int] = []
        url = f"{system.url}/ws/trades?symbol={SYMBOL}"
        async with connect(url, proxy=None) as ws:
            trader.start()
            seen += [t["trade_id"] for t in await trades_of(ws, 20)]
        for _ in range(4):  # trades go on printing while the client is away
            async with connect(f"{url}&from_trade_id={seen[-1] + 1}", proxy=None) as ws:
                seen += [t["trade_id"] for t in await trades_of(ws, 25)]
        trader.stop.set()
        await asyncio.to_thread(trader.join, 30)
        assert trader.error is None, trader.error
        async with connect(f"{url}&from_trade_id={seen[-1] + 1}", proxy=None) as ws:
            seen += [t["trade_id"] for t in await trades_of(ws, trader.last_trade_id - seen[-1])]
        return seen

    seen = asyncio.run(scenario())
    assert seen == list(range(seen[0], seen[0] + len(seen)))  # contiguous, each once
    assert seen[-1] == trader.last_trade_id


def test_a_resume_from_the_next_trade_waits_for_it(system: System) -> None:
    """from_trade_id one past the last trade: nothing kept to send, then the new trade."""
    client = system.client()
    client.request("new_order", side="sell", order_type="limit", price="100", quantity="1")
    client.request("new_order", side="buy", order_type="market", quantity="1")

    async def scenario() -> list[dict[str, Any]]:
        url = f"{system.url}/ws/trades?symbol={SYMBOL}&from_trade_id=2"
        async with connect(url, proxy=None) as ws:
            await asyncio.sleep(0.2)  # not a threshold: the answer is the same either way
            await asyncio.to_thread(
                client.request,
                "new_order",
                side="sell",
                order_type="limit",
                price="101",
                quantity="1",
            )
            await asyncio.to_thread(
                client.request, "new_order", side="buy", order_type="market", quantity="1"
            )
            return await trades_of(ws, 1)

    [trade] = asyncio.run(scenario())
    assert (trade["trade_id"], trade["price"]) == (2, "101.00")


async def refusal(url: str) -> tuple[dict[str, Any], int, str]:
    async with connect(url, proxy=None) as ws:
        async with asyncio.timeout(10):
            message = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    received = closed.value.rcvd
    assert received is not None
    return message, received.code, received.reason


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("0", "from_trade_id must be a positive integer"),
        ("-3", "from_trade_id must be a positive integer"),
        ("abc", "from_trade_id must be a positive integer"),
        ("1", "needs symbol"),
    ],
)
def test_a_bad_from_trade_id_is_an_error_then_the_close(
    system: System,
    value: str,
    needle: str,
) -> None:
    symbol = "" if needle == "needs symbol" else f"symbol={SYMBOL}&"
    message, code, reason = asyncio.run(
        refusal(f"{system.url}/ws/trades?{symbol}from_trade_id={value}")
    )
    assert message["type"] == "error" and needle in message["message"]
    assert code == 4400 and needle in reason


def test_a_trade_older_than_the_kept_ones_is_an_error_then_the_close(system: System) -> None:
    client = system.client()
    for _ in range(1001):  # one market order then prints 1001 trades: trade 1 is not kept
        client.request(
            "new_order",
            side="sell",
            order_type="limit",
            price="100",
            quantity="0.0001",
            account="maker",
        )
    order = client.request(
        "new_order", side="buy", order_type="market", quantity="0.1001", account="taker"
    )
    assert order["trades"][-1]["trade_id"] == 1001
    message, code, reason = asyncio.run(
        refusal(f"{system.url}/ws/trades?symbol={SYMBOL}&from_trade_id=1")
    )
    assert message == {
        "type": "error",
        "message": "from_trade_id 1 is older than the kept trades (2 to 1001)",
    }
    assert code == 4400

    async def from_the_oldest_kept() -> list[dict[str, Any]]:
        url = f"{system.url}/ws/trades?symbol={SYMBOL}&from_trade_id=2"
        async with connect(url, proxy=None) as ws:
            return await trades_of(ws, 1000)

    assert [t["trade_id"] for t in asyncio.run(from_the_oldest_kept())] == list(range(2, 1002))


def test_the_python_trade_feed_resumes_with_next_trade_id(system: System) -> None:
    from clients.ws_client import TradeFeed

    client = system.client()
    for price in ("100", "101", "102"):
        client.request("new_order", side="sell", order_type="limit", price=price, quantity="1")
        client.request("new_order", side="buy", order_type="market", quantity="1")

    async def scenario() -> tuple[list[int], int]:
        async with TradeFeed(system.url, SYMBOL, from_trade_id=1) as feed:
            first = [(await anext(feed))["trade_id"] for _ in range(2)]
            assert feed.next_trade_id == 3
        async with TradeFeed(system.url, SYMBOL, from_trade_id=feed.next_trade_id) as again:
            rest = [(await anext(again))["trade_id"]]
        return first + rest, feed.gaps + again.gaps

    assert asyncio.run(scenario()) == ([1, 2, 3], 0)
