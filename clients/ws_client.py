"""asyncio WebSocket clients of the feed hub (docs/feeds.md).

`BookFeed` keeps a local copy of one symbol's book from `/ws/market_data/{symbol}`:
a snapshot, then l2updates whose book_seq must grow by exactly 1 and whose Kraken
checksum must match the local top 10 after every update. A gap or a mismatch makes it
resynchronise by itself: drop the connection, reconnect, take the fresh snapshot. The
book and the checksum are feedhub's own pure modules, so the client and the hub cannot
disagree on ordering or on the checksum.

    async with BookFeed("ws://127.0.0.1:8001", "BTC-USDT") as feed:
        await feed.wait_synced()
        bids, asks = feed.book()

`TradeFeed` yields the trades of `/ws/trades` (optionally one symbol's):

    async with TradeFeed("ws://127.0.0.1:8001", "BTC-USDT") as trades:
        async for trade in trades:
            print(trade["price"], trade["quantity"])
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from clients.book import L2Book
from matcher.protocol import MAX_MESSAGE_BYTES

log = logging.getLogger("matchwire.ws_client")

MAX_MESSAGE = MAX_MESSAGE_BYTES  # a snapshot of a deep book is large
FATAL_CLOSE_CODES = frozenset((4400, 4404))  # bad request, unknown symbol: retrying is useless


class FeedError(Exception):
    """The hub refused the subscription (e.g. close code 4404 for an unknown symbol)."""


def _base(url: str) -> str:
    return url.rstrip("/")


def _connect(url: str) -> connect:
    # No compression (the hub does not offer it), no proxy from the environment.
    return connect(
        url, compression=None, proxy=None, max_size=MAX_MESSAGE, open_timeout=5, close_timeout=2
    )


class BookFeed:
    """One symbol's book from the hub, proven after every update by book_seq and checksum.

    Counters: `checks_passed` / `checks_failed` (checksums), `gaps` (book_seq jumps),
    `snapshots` (snapshots taken, the first included), `resyncs` (reconnects this client
    decided on), `connects`. `on_message`, if given, is called with every message after
    it has been applied.
    """

    def __init__(
        self,
        url: str,
        symbol: str,
        *,
        reconnect_delay: float = 0.2,
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.url = f"{_base(url)}/ws/market_data/{quote(symbol, safe='')}"
        self.symbol = symbol
        self.reconnect_delay = reconnect_delay
        self.on_message = on_message
        self.local = L2Book()
        self.bbo: dict[str, Any] | None = None
        self.synced = False
        self.checks_passed = 0
        self.checks_failed = 0
        self.gaps = 0
        self.snapshots = 0
        self.resyncs = 0
        self.connects = 0
        self.updates = 0
        self.error: FeedError | None = None
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: ClientConnection | None = None

    # -- the local book ----------------------------------------------------------------

    @property
    def book_seq(self) -> int | None:
        return self.local.book_seq

    def book(self, depth: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
        """(bids, asks) as [[price, quantity], ...], best first; all levels by default."""
        if depth is None:
            return self.local.bids.all(), self.local.asks.all()
        return self.local.bids.top(depth), self.local.asks.top(depth)

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> BookFeed:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def run(self) -> None:
        """Connect, follow, and reconnect on any doubt, until cancelled or refused."""
        while True:
            try:
                async with _connect(self.url) as connection:
                    self._connection = connection
                    self.connects += 1
                    await self._follow(connection)
                    # _follow returns only to resynchronise: close and start over
            except ConnectionClosed as exc:
                received = exc.rcvd
                if received is not None and received.code in FATAL_CLOSE_CODES:
                    self._fail(FeedError(f"{received.code}: {received.reason}"))
                    return
                log.info("%s feed closed (%s); reconnecting", self.symbol, exc)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                log.info("%s feed unreachable (%s); retrying", self.symbol, exc)
            except InvalidURI as exc:
                self._fail(FeedError(str(exc)))
                return
            finally:
                self._connection = None
                self.synced = False
            await asyncio.sleep(self.reconnect_delay)

    def _fail(self, error: FeedError) -> None:
        self.error = error
        self._signal()

    def _signal(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _follow(self, connection: ClientConnection) -> None:
        async for raw in connection:
            try:
                message = json.loads(raw)
                if not self._apply(message):
                    self.resyncs += 1
                    return
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                log.warning("%s: bad message (%r); resynchronising", self.symbol, exc)
                self.synced = False
                self.resyncs += 1
                return
            if self.on_message is not None:
                self.on_message(message)
            self._signal()

    def _apply(self, message: dict[str, Any]) -> bool:
        """Apply one message to the local book; False when a resync is needed."""
        local = self.local
        kind = message.get("type")
        if kind == "snapshot":
            local.load(message["bids"], message["asks"], int(message["book_seq"]))
            self.bbo = message.get("bbo")
            self.snapshots += 1
            self.synced = True
            expected = message.get("checksum")
            return expected is None or self._check(expected)
        if kind == "l2update":
            if not self.synced:
                return True
            book_seq = message["book_seq"]
            if local.book_seq is not None and book_seq != local.book_seq + 1:
                self.gaps += 1
                self.synced = False
                log.info(
                    "%s: book_seq %s after %s; resynchronising",
                    self.symbol,
                    book_seq,
                    local.book_seq,
                )
                return False
            local.apply(message["changes"])
            local.book_seq = book_seq
            self.bbo = message.get("bbo")
            self.updates += 1
            return self._check(message["checksum"])
        if kind == "error":
            log.warning("%s: the hub says %s", self.symbol, message.get("message"))
        return True

    def _check(self, expected: int) -> bool:
        if self.local.checksum() == expected:
            self.checks_passed += 1
            return True
        self.checks_failed += 1
        self.synced = False
        log.warning(
            "%s: checksum mismatch at book_seq %s; resynchronising",
            self.symbol,
            self.local.book_seq,
        )
        return False

    # -- waiting -------------------------------------------------------------------------

    async def wait_until(
        self, predicate: Callable[[BookFeed], bool], timeout: float = 10.0
    ) -> None:
        """Wait until predicate(self) holds after some message; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self.error is not None:
                    raise self.error
                await self._progress.wait()

    async def wait_synced(self, timeout: float = 10.0) -> None:
        await self.wait_until(lambda feed: feed.synced, timeout)

    async def wait_for_seq(self, book_seq: int, timeout: float = 10.0) -> None:
        """Wait until the local book stands at `book_seq` or later."""
        await self.wait_until(
            lambda feed: feed.synced and (feed.book_seq or 0) >= book_seq, timeout
        )

    async def send(self, message: dict[str, Any]) -> None:
        """Send a control message such as {"op": "ping"} on the current connection."""
        if self._connection is None:
            raise ConnectionError("not connected")
        await self._connection.send(json.dumps(message))


class TradeFeed:
    """The trades of `/ws/trades` (every symbol, or one), as an async iterator of dicts.

    It does not reconnect by itself. To resume one symbol's trades after a connection
    ends, open another with `from_trade_id=feed.next_trade_id`: the hub sends the trades
    it missed that the matcher still keeps (its last 1000), then live ones, with no gap
    and no duplicate (docs/feeds.md, "Resuming"). Iteration ends when the hub closes the
    connection; `close_code` / `close_reason` then say why (1013: this client fell too
    far behind; 4400: from_trade_id refused, e.g. older than what is kept).
    `gaps` counts jumps in trade_id per symbol.
    """

    def __init__(
        self, url: str, symbol: str | None = None, from_trade_id: int | None = None
    ) -> None:
        self.url = f"{_base(url)}/ws/trades"
        if symbol is not None:
            self.url += f"?symbol={quote(symbol, safe='')}"
        if from_trade_id is not None:
            if symbol is None:
                raise ValueError("from_trade_id needs a symbol: trade ids count per symbol")
            self.url += f"&from_trade_id={from_trade_id}"
        self.symbol = symbol
        self.gaps = 0
        self.received = 0
        self.close_code: int | None = None
        self.close_reason = ""
        # A resume expects from_trade_id first: anything else counts as a gap.
        self._last_ids: dict[str, int] = (
            {} if from_trade_id is None or symbol is None else {symbol: from_trade_id - 1}
        )
        self._connection: ClientConnection | None = None

    @property
    def next_trade_id(self) -> int | None:
        """The id after the last trade received of this feed's symbol (None: none yet)."""
        last = self._last_ids.get(self.symbol) if self.symbol is not None else None
        return None if last is None else last + 1

    async def __aenter__(self) -> TradeFeed:
        self._connection = await _connect(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    def __aiter__(self) -> TradeFeed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._connection is None:
            raise RuntimeError("use `async with TradeFeed(...)` first")
        while True:
            try:
                raw = await self._connection.recv()
            except ConnectionClosed as exc:
                received = exc.rcvd
                if received is not None:
                    self.close_code, self.close_reason = received.code, received.reason
                raise StopAsyncIteration from None
            message = json.loads(raw)
            if message.get("type") == "trade":
                symbol, trade_id = message.get("symbol"), message.get("trade_id")
                last = self._last_ids.get(symbol)
                if last is not None and isinstance(trade_id, int) and trade_id != last + 1:
                    self.gaps += 1
                if isinstance(trade_id, int):
                    self._last_ids[symbol] = trade_id
                self.received += 1
                return message
            if message.get("type") == "error":
                log.warning("trade feed: the hub says %s", message.get("message"))

    async def send(self, message: dict[str, Any]) -> None:
        if self._connection is None:
            raise ConnectionError("not connected")
        await self._connection.send(json.dumps(message))
