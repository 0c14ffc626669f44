"""Fan-out: the replicas' messages to WebSocket clients, one bounded queue per client.

The replicas' SUB loops call `book_update`, `book_reset` and `trade`, which never
await: they `put_nowait` the already-encoded text into each client's queue. Each client
has its own sender task that does the awaiting (`send_text` applies the WebSocket's
backpressure), so a slow client only ever delays itself. When a queue is full:

- market data (deltas): the queue is cleared and the client is marked to get a fresh
  snapshot next; it sees the jump in book_seq and takes the snapshot as its new book;
- depth (`?depth=N`): coalesced — at most one "send the latest top N" marker is ever
  queued, so a slow client simply gets fewer, newer states;
- trades: no state can replace missed trades, so the client is closed with code 1013
  (try again later) and a reason.

Queues hold the ASGI message to send — built once per update and shared by every
client — or a marker that the sender turns into a message when it gets there (a
snapshot or a depth view of the book as it is *then*). Senders use the server's own ASGI
`send`: Starlette's per-call state checks would run once per client per message.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections import Counter
from typing import Any

from starlette.types import Message, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from feedhub.replica import Replica, dumps
from matcher.config import SymbolConfig

log = logging.getLogger("matchwire.feedhub")

CLIENT_QUEUE = 1000
CLOSE_TOO_SLOW = 1013  # "try again later": the client fell too far behind the trade feed


class Feed(enum.Enum):
    BOOK = "market_data"
    DEPTH = "depth"
    TRADES = "trades"


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


SNAPSHOT = _Marker("snapshot")  # send the book as it is when the sender gets here
DEPTH = _Marker("depth")  # send the top N as it is when the sender gets here
PONG = dumps({"type": "pong"})


def ws_text(text: str) -> Message:
    return {"type": "websocket.send", "text": text}


class Client:
    """One WebSocket subscriber and its queue."""

    __slots__ = ("websocket", "send", "feed", "symbol", "depth", "queue", "needs_snapshot",
                 "depth_pending", "sent", "closing", "sender", "closer")

    def __init__(self, websocket: WebSocket, send: Send, feed: Feed, symbol: str | None,
                 depth: int = 0, queue_size: int = CLIENT_QUEUE) -> None:
        self.websocket = websocket
        self.send = send  # the server's ASGI send, for data messages
        self.feed = feed
        self.symbol = symbol
        self.depth = depth
        self.queue: asyncio.Queue[Message | _Marker] = asyncio.Queue(queue_size)
        self.needs_snapshot = False
        self.depth_pending = False
        self.sent = 0
        self.closing: tuple[int, str] | None = None
        self.sender: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[None] | None = None

    def clear(self) -> None:
        queue = self.queue
        while not queue.empty():
            queue.get_nowait()


class Hub:
    """Every replica and every client of one feed hub process."""

    def __init__(
        self,
        symbols: dict[str, SymbolConfig],
        *,
        queue_size: int = CLIENT_QUEUE,
        heartbeat_timeout: float | None = None,
    ) -> None:
        options = {} if heartbeat_timeout is None else {"heartbeat_timeout": heartbeat_timeout}
        self.replicas = {name: Replica(config, self, **options) for name, config in symbols.items()}
        self.queue_size = queue_size
        self._book: dict[str, set[Client]] = {name: set() for name in symbols}
        self._depth: dict[str, set[Client]] = {name: set() for name in symbols}
        self._trades_all: set[Client] = set()
        self._trades: dict[str, set[Client]] = {name: set() for name in symbols}
        self._tasks: list[asyncio.Task[None]] = []
        self.sent_by_gone: Counter[Feed] = Counter()  # messages sent to clients now gone
        self.drops: Counter[tuple[Feed, str]] = Counter()  # (feed, "resync" | "close")
        self.connections: Counter[Feed] = Counter()  # accepted since start

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        for replica in self.replicas.values():
            self._tasks.append(asyncio.create_task(replica.run(), name=f"replica-{replica.symbol}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # -- from the replicas (never await) -----------------------------------------------

    def book_update(self, symbol: str, text: str) -> None:
        message = ws_text(text)
        for client in self._book[symbol]:
            if client.needs_snapshot:
                continue  # its queue holds a snapshot marker that covers this update
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                self.drops[Feed.BOOK, "resync"] += 1
                self._want_snapshot(client)
        self._mark_depth(symbol)

    def book_reset(self, symbol: str) -> None:
        for client in self._book[symbol]:
            self._want_snapshot(client)
        self._mark_depth(symbol)

    def trade(self, symbol: str, text: str) -> None:
        message = ws_text(text)
        for clients in (self._trades_all, self._trades[symbol]):
            for client in clients:
                if client.closing is not None:
                    continue
                try:
                    client.queue.put_nowait(message)
                except asyncio.QueueFull:
                    self.drops[Feed.TRADES, "close"] += 1
                    self._close(client, CLOSE_TOO_SLOW,
                                f"too slow: more than {self.queue_size} trades behind")

    def _want_snapshot(self, client: Client) -> None:
        client.clear()
        client.needs_snapshot = True
        client.queue.put_nowait(SNAPSHOT)

    def _mark_depth(self, symbol: str) -> None:
        for client in self._depth[symbol]:
            if not client.depth_pending:
                try:
                    client.queue.put_nowait(DEPTH)
                except asyncio.QueueFull:  # full of replies it does not read: skip a state
                    continue
                client.depth_pending = True

    def _close(self, client: Client, code: int, reason: str) -> None:
        """Stop sending to a client and close it, without awaiting it here."""
        client.closing = (code, reason)
        client.clear()
        if client.sender is not None:
            client.sender.cancel()  # it may be stuck in a send to a full socket
        client.closer = asyncio.create_task(self._send_close(client, code, reason))

    @staticmethod
    async def _send_close(client: Client, code: int, reason: str) -> None:
        try:
            await client.websocket.close(code, reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # gone already: nothing left to tell it

    # -- clients -------------------------------------------------------------------------

    def client_counts(self) -> dict[Feed, int]:
        return {
            Feed.BOOK: sum(map(len, self._book.values())),
            Feed.DEPTH: sum(map(len, self._depth.values())),
            Feed.TRADES: len(self._trades_all) + sum(map(len, self._trades.values())),
        }

    def sent_counts(self) -> Counter[Feed]:
        sent = Counter(self.sent_by_gone)
        for group in (*self._book.values(), *self._depth.values(), self._trades_all,
                      *self._trades.values()):
            for client in group:
                sent[client.feed] += client.sent
        return sent

    def _register(self, client: Client) -> set[Client]:
        symbol = client.symbol
        if client.feed is Feed.BOOK:
            group = self._book[symbol]  # type: ignore[index]
            client.needs_snapshot = True
            client.queue.put_nowait(SNAPSHOT)
        elif client.feed is Feed.DEPTH:
            group = self._depth[symbol]  # type: ignore[index]
            client.depth_pending = True
            client.queue.put_nowait(DEPTH)
        else:
            group = self._trades_all if symbol is None else self._trades[symbol]
        group.add(client)
        self.connections[client.feed] += 1
        return group

    async def serve(self, websocket: WebSocket, send: Send, feed: Feed, symbol: str | None,
                    depth: int = 0) -> None:
        """A subscriber's whole life, once accepted: register, send and read, unregister.

        `send` is the server's ASGI send under `websocket`, used for the data messages.
        """
        client = Client(websocket, send, feed, symbol, depth, self.queue_size)
        group = self._register(client)
        client.sender = sender = asyncio.create_task(self._send_loop(client))
        try:
            await self._receive_loop(client, sender)
        finally:
            group.discard(client)
            sender.cancel()
            self.sent_by_gone[feed] += client.sent
            if client.closer is not None:
                await client.closer  # returning first would drop the connection unclosed

    async def _receive_loop(self, client: Client, sender: asyncio.Task[None]) -> None:
        """Client messages until it goes, or until the sender gives up on it."""
        websocket = client.websocket
        receive: asyncio.Task[Any] | None = None
        try:
            while True:
                receive = asyncio.ensure_future(websocket.receive())
                done, _ = await asyncio.wait((receive, sender),
                                             return_when=asyncio.FIRST_COMPLETED)
                if receive not in done:
                    return  # the sender ended: the connection is closed or closing
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    return
                self._on_message(client, message.get("text"), message.get("bytes"))
        finally:
            if receive is not None and not receive.done():
                receive.cancel()

    def _on_message(self, client: Client, text: str | None, data: bytes | None) -> None:
        """{"op": "ping"} gets {"type": "pong"}; anything else an error reply, never a crash."""
        if text is None:
            self._reply(client, error="binary frames are not supported: send JSON text")
            return
        try:
            message = json.loads(text)
        except ValueError:
            self._reply(client, error=f"not JSON: {text[:60]!r}")
            return
        if not isinstance(message, dict):
            self._reply(client, error='expected a JSON object such as {"op": "ping"}')
            return
        op = message.get("op")
        if op == "ping":
            self._reply(client, text=PONG)
        else:
            self._reply(client, error=f"unknown op {str(op)[:40]!r}: the only op is \"ping\"")

    def _reply(self, client: Client, *, text: str | None = None, error: str = "") -> None:
        if text is None:
            text = dumps({"type": "error", "message": error})
        try:
            client.queue.put_nowait(ws_text(text))
        except asyncio.QueueFull:
            pass  # a client that does not read its feed does not read replies either

    async def _send_loop(self, client: Client) -> None:
        # Bound once: these run for every message of every client.
        send = client.send
        get = client.queue.get
        replica = self.replicas.get(client.symbol) if client.symbol else None
        try:
            while True:
                item = await get()
                if item is SNAPSHOT:
                    if not client.needs_snapshot:
                        continue  # a snapshot sent since this marker was queued covers it
                    assert replica is not None
                    while not replica.synced:
                        await replica.live.wait()
                    client.needs_snapshot = False  # updates queue up again from here
                    message = ws_text(replica.snapshot_text())
                elif item is DEPTH:
                    assert replica is not None
                    while not replica.synced:
                        await replica.live.wait()
                    client.depth_pending = False
                    message = ws_text(replica.depth_text(client.depth))
                else:
                    message = item  # type: ignore[assignment]
                await send(message)
                client.sent += 1
        except OSError:
            return  # the client went away (uvicorn's ClientDisconnected)
        except RuntimeError as exc:  # uvicorn: sending after a close
            log.debug("sender of a closed websocket stops: %s", exc)
