"""Fan-out: the replicas' messages to WebSocket clients, with a bounded backlog per client.

The replicas call `book_update`, `book_reset` and `trade` from their SUB socket's reader
callback, and none of them awaits. Each message is framed once (`wire.text_frame`) and the
same bytes go to every client: on the direct path straight into its transport when it
has nothing waiting and room to write (the hot path: no task, no await, no per-client
encoding), or else into its backlog, which its sender task writes out once the transport
has room again; on the ASGI path always into its backlog, which its sender task sends
through the server's `send` (`wire.Link`, docs/feeds.md "Send paths"). So a slow client
only ever delays itself. When a backlog is full (`queue_size` messages):

- market data (deltas): the backlog is cleared and the client is marked to get a fresh
  snapshot next; it sees the jump in book_seq and takes the snapshot as its new book;
- depth (`?depth=N`): coalesced — at most one "send the latest top N" marker is ever
  queued, so a slow client simply gets fewer, newer states;
- trades: no state can replace missed trades, so the client is closed with code 1013
  (try again later) and a reason.

A trades client may resume (`from_trade_id`, docs/feeds.md): it is registered for live
trades at once, behind a RESUME marker that holds them back; its sender then fetches the
kept trades from the matcher's `trades` op and sends those up to the first live one it
holds, then the live ones. Trades below `from_trade_id` are never sent, so there is no
gap and no duplicate.

Whatever the feed, a client whose socket has not drained for `drain_timeout` seconds is
closed with 1013: by its connection on the direct path (`direct.FeedProtocol`, which also
ends every close with the TCP connection gone within `drain_timeout`), by the hub when a
send has waited that long on the ASGI path (`wire.Stalled`). The hub also caps the
connections it holds (`max_connections`): one more is accepted, closed with 1013 and a reason, and that is all.

A backlog holds frames — shared by every client — or a marker that the sender turns into
a frame when it gets there (a snapshot or a depth view of the book as it is *then*).
Frames are written through the client's `wire.Link`; the Starlette WebSocket is used to
accept, receive and close.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections import Counter, deque
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from clients.curve import CurveKeys
from clients.zmq_client import AsyncMatcherClient, MatcherError, MatcherTimeout
from feedhub.replica import TRADES_LIMIT, Replica, dumps
from feedhub.wire import CLOSE_TRY_AGAIN_LATER, DRAIN_TIMEOUT, Link, Stalled, text_frame
from matcher.config import SymbolConfig
from matcher.quoting import shown
from matcher.system import SystemConfig

log = logging.getLogger("matchwire.feedhub")

CLIENT_QUEUE = 1000
MAX_CONNECTIONS = SystemConfig.ws_max_connections  # one default: [server] ws_max_connections
CLOSE_TOO_SLOW = CLOSE_TRY_AGAIN_LATER  # the client fell too far behind the trade feed
CLOSE_FULL = CLOSE_TRY_AGAIN_LATER  # the hub holds max_connections already
CLOSE_NOT_KEPT = 4400  # a resume from a trade the matcher no longer keeps (a bad request)


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
RESUME = _Marker("resume")  # fetch and send the kept trades, then what queued behind
PONG = text_frame(dumps({"type": "pong"}))


class Client:
    """One WebSocket subscriber and its backlog."""

    __slots__ = (
        "websocket",
        "link",
        "feed",
        "symbol",
        "depth",
        "backlog",
        "wake",
        "needs_snapshot",
        "depth_pending",
        "sent",
        "closing",
        "sender",
        "closer",
        "first_trade_id",
        "resume_upto",
    )

    def __init__(
        self,
        websocket: WebSocket,
        link: Link,
        feed: Feed,
        symbol: str | None,
        depth: int = 0,
        first_trade_id: int = 0,
    ) -> None:
        self.websocket = websocket
        self.link = link  # the connection the frames are written to
        self.feed = feed
        self.symbol = symbol
        self.depth = depth
        # What waits for the sender task, in order. Empty for a client that keeps up.
        self.backlog: deque[bytes | _Marker] = deque()
        self.wake = asyncio.Event()  # set when the backlog gets something
        self.needs_snapshot = False
        self.depth_pending = False
        self.sent = 0
        self.closing: tuple[int, str] | None = None
        self.sender: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[None] | None = None
        # Trades below this id are not sent (a resume: they come from the fetch, or were
        # seen before); resume_upto is the id before the first live one held back.
        self.first_trade_id = first_trade_id
        self.resume_upto: int | None = None


MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes


async def close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with `reason` cut to what a close frame holds; a client that is gone already
    (or closed first) is not an error: there is nothing left to tell it."""
    encoded = reason.encode()
    if len(encoded) > MAX_CLOSE_REASON_BYTES:
        reason = encoded[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
    try:
        await websocket.close(code, reason)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


class Hub:
    """Every replica and every client of one feed hub process."""

    def __init__(
        self,
        symbols: dict[str, SymbolConfig],
        *,
        queue_size: int = CLIENT_QUEUE,
        heartbeat_timeout: float | None = None,
        drain_timeout: float = DRAIN_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        curve: CurveKeys | None = None,
    ) -> None:
        options = {} if heartbeat_timeout is None else {"heartbeat_timeout": heartbeat_timeout}
        self.replicas = {
            name: Replica(config, self, curve=curve, **options) for name, config in symbols.items()
        }
        self.queue_size = queue_size
        self.drain_timeout = drain_timeout
        self.max_connections = max_connections
        self.open_connections = 0  # admitted or refused, until their TCP connection is gone
        self.refused: Counter[str] = Counter()  # by reason
        self._book: dict[str, set[Client]] = {name: set() for name in symbols}
        self._depth: dict[str, set[Client]] = {name: set() for name in symbols}
        self._trades_all: set[Client] = set()
        self._trades: dict[str, set[Client]] = {name: set() for name in symbols}
        self._tasks: list[asyncio.Task[None]] = []
        # (version, frame) per symbol, and per (symbol, depth): built once, sent to many.
        self._snapshot_frames: dict[str, tuple[int, bytes]] = {}
        self._depth_frames: dict[tuple[str, int], tuple[int, bytes]] = {}
        self.sent_by_gone: Counter[Feed] = Counter()  # messages sent to clients now gone
        # (feed, "resync" | "close" | "stalled"): queue overflows, and sockets not drained
        self.drops: Counter[tuple[Feed, str]] = Counter()
        self.connections: Counter[Feed] = Counter()  # accepted since start
        self._fetchers: dict[str, AsyncMatcherClient] = {}  # for resumes, made on demand
        self.send_paths: Counter[str] = Counter()  # connections by link: "direct", "asgi"

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        for replica in self.replicas.values():
            self._tasks.append(asyncio.create_task(replica.run(), name=f"replica-{replica.symbol}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for fetcher in self._fetchers.values():
            await fetcher.close()
        self._fetchers.clear()

    # -- from the replicas (never await) -----------------------------------------------

    def book_update(self, symbol: str, text: str) -> None:
        frame = text_frame(text)
        for client in self._book[symbol]:
            if client.needs_snapshot:
                continue  # its backlog holds a snapshot marker that covers this update
            link = client.link
            if not client.backlog and link.writable:  # the hot path: once per client
                link.write(frame)
                client.sent += 1
            elif not self._enqueue(client, frame):
                self.drops[Feed.BOOK, "resync"] += 1
                self._want_snapshot(client)
        self._mark_depth(symbol)

    def book_reset(self, symbol: str) -> None:
        for client in self._book[symbol]:
            self._want_snapshot(client)
        self._mark_depth(symbol)

    def trade(self, symbol: str, text: str) -> None:
        frame = text_frame(text)
        # The replica sets last_trade_id to a trade's id before it hands the trade here.
        trade_id = self.replicas[symbol].last_trade_id or 0
        for clients in (self._trades_all, self._trades[symbol]):
            for client in clients:
                if client.closing is not None or trade_id < client.first_trade_id:
                    continue
                link = client.link
                if not client.backlog and link.writable:  # the hot path: once per client
                    link.write(frame)
                    client.sent += 1
                    continue
                if client.resume_upto is None and client.backlog and client.backlog[0] is RESUME:
                    client.resume_upto = trade_id - 1  # the fetch sends the ones before
                if not self._enqueue(client, frame):
                    self.drops[Feed.TRADES, "close"] += 1
                    self._close(
                        client,
                        CLOSE_TOO_SLOW,
                        f"too slow: more than {self.queue_size} messages behind",
                    )

    def _enqueue(self, client: Client, item: bytes | _Marker) -> bool:
        """Add to the client's backlog for its sender; False when the backlog is full."""
        backlog = client.backlog
        if len(backlog) >= self.queue_size:
            return False
        if client.link.gone:
            return True  # closing: its sender and receiver are ending, nothing to keep
        backlog.append(item)
        if len(backlog) == 1:
            client.wake.set()
        return True

    def _want_snapshot(self, client: Client) -> None:
        client.backlog.clear()
        client.needs_snapshot = True
        self._enqueue(client, SNAPSHOT)

    def _mark_depth(self, symbol: str) -> None:
        clients = self._depth[symbol]
        if not clients:
            return
        replica = self.replicas[symbol]
        for client in clients:
            if client.depth_pending:
                continue  # its marker is queued: the sender will take the newest view
            link = client.link
            if not client.backlog and link.writable:
                link.write(self._depth_frame(replica, client.depth))
                client.sent += 1
            else:
                if len(client.backlog) >= self.queue_size:
                    # Full of replies (pongs, errors) it has not read: drop the newest one
                    # rather than this view, or the client would be left with a stale
                    # book once the book goes quiet.
                    client.backlog.pop()
                if self._enqueue(client, DEPTH):
                    client.depth_pending = True

    def _depth_frame(self, replica: Replica, depth: int) -> bytes:
        """The top `depth` levels, framed once per book version and depth."""
        key = (replica.symbol, depth)
        cached = self._depth_frames.get(key)
        if cached is not None and cached[0] == replica.version:
            return cached[1]
        frame = text_frame(replica.depth_text(depth))
        self._depth_frames[key] = (replica.version, frame)
        return frame

    def _snapshot_frame(self, replica: Replica) -> bytes:
        cached = self._snapshot_frames.get(replica.symbol)
        if cached is not None and cached[0] == replica.version:
            return cached[1]
        frame = text_frame(replica.snapshot_text())
        self._snapshot_frames[replica.symbol] = (replica.version, frame)
        return frame

    def _close(self, client: Client, code: int, reason: str) -> None:
        """Stop sending to a client and close it, without awaiting it here."""
        client.closing = (code, reason)
        client.backlog.clear()
        if client.sender is not None and client.sender is not asyncio.current_task():
            client.sender.cancel()  # it may be waiting for room in a full socket
        client.closer = asyncio.create_task(self._send_close(client, code, reason))

    @staticmethod
    async def _send_close(client: Client, code: int, reason: str) -> None:
        await close_quietly(client.websocket, code, reason)

    # -- clients -------------------------------------------------------------------------

    def admit(self, link: Link) -> bool:
        """Apply the connection policies to a new connection; False when the hub is full.

        A connection counts from here until its TCP connection is gone (the direct path)
        or the app is done with it (the ASGI path), refused ones too (their close is
        bounded by drain_timeout), so the count bounds the descriptors."""
        link.set_drain_timeout(self.drain_timeout)
        self.send_paths[link.send_path] += 1
        self.open_connections += 1
        link.on_lost(self._connection_gone)
        if self.open_connections > self.max_connections:
            self.refused["max_connections"] += 1
            return False
        return True

    def _connection_gone(self) -> None:
        self.open_connections -= 1

    def client_counts(self) -> dict[Feed, int]:
        return {
            Feed.BOOK: sum(map(len, self._book.values())),
            Feed.DEPTH: sum(map(len, self._depth.values())),
            Feed.TRADES: len(self._trades_all) + sum(map(len, self._trades.values())),
        }

    def sent_counts(self) -> Counter[Feed]:
        sent = Counter(self.sent_by_gone)
        for group in (
            *self._book.values(),
            *self._depth.values(),
            self._trades_all,
            *self._trades.values(),
        ):
            for client in group:
                sent[client.feed] += client.sent
        return sent

    def _register(self, client: Client) -> set[Client]:
        symbol = client.symbol
        if client.feed is Feed.BOOK:
            group = self._book[symbol]  # type: ignore[index]
            self._want_snapshot(client)
        elif client.feed is Feed.DEPTH:
            group = self._depth[symbol]  # type: ignore[index]
            client.depth_pending = True
            self._enqueue(client, DEPTH)
        else:
            group = self._trades_all if symbol is None else self._trades[symbol]
            if client.first_trade_id:
                self._enqueue(client, RESUME)  # holds live trades back until the fetch
        group.add(client)
        self.connections[client.feed] += 1
        return group

    async def serve(
        self,
        websocket: WebSocket,
        link: Link,
        feed: Feed,
        symbol: str | None,
        depth: int = 0,
        from_trade_id: int = 0,
    ) -> None:
        """A subscriber's whole life, once accepted: register, send and read, unregister.

        `link` is the connection under `websocket`, which the data frames are written to.
        A trades client of one symbol with `from_trade_id` resumes from that trade.
        """
        client = Client(websocket, link, feed, symbol, depth, from_trade_id)
        group = self._register(client)
        client.sender = sender = asyncio.create_task(self._send_loop(client))
        try:
            await self._receive_loop(client, sender)
        finally:
            group.discard(client)
            sender.cancel()
            self.sent_by_gone[feed] += client.sent
            if link.stalled:
                self.drops[feed, "stalled"] += 1
            if client.closer is not None:
                await client.closer  # returning first would drop the connection unclosed

    async def _receive_loop(self, client: Client, sender: asyncio.Task[None]) -> None:
        """Client messages until it goes, or until the sender gives up on it."""
        websocket = client.websocket
        receive: asyncio.Task[Any] | None = None
        try:
            while True:
                receive = asyncio.ensure_future(websocket.receive())
                done, _ = await asyncio.wait((receive, sender), return_when=asyncio.FIRST_COMPLETED)
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
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            self._reply(client, error=f"not JSON: {text[:60]!r}")
            return
        if not isinstance(message, dict):
            self._reply(client, error='expected a JSON object such as {"op": "ping"}')
            return
        op = message.get("op")
        if op == "ping":
            self._reply(client, frame=PONG)
        else:
            self._reply(client, error=f'unknown op {shown(op)}: the only op is "ping"')

    def _reply(self, client: Client, *, frame: bytes | None = None, error: str = "") -> None:
        """In order with the feed: after whatever the client's backlog holds."""
        if client.closing is not None:
            return
        if frame is None:
            frame = text_frame(dumps({"type": "error", "message": error}))
        if not client.backlog and client.link.writable:
            client.link.write(frame)
            client.sent += 1
        else:
            # Dropped when full: a client that does not read its feed does not read replies.
            self._enqueue(client, frame)

    async def _send_loop(self, client: Client) -> None:
        """Write out the client's backlog as its connection has room; idle while it is empty.

        The item being written stays at the head of the backlog until it is written, so
        the hot path, which only writes to clients with an empty backlog, never gets ahead
        of it.
        """
        backlog = client.backlog
        link = client.link
        wake = client.wake
        replica = self.replicas.get(client.symbol) if client.symbol else None
        try:
            while True:
                if not backlog:
                    wake.clear()
                    await wake.wait()
                    continue
                await link.wait_writable()
                if not backlog:
                    continue  # cleared meanwhile (a resync)
                item = backlog[0]
                if item is RESUME:
                    kept = await self._resume(client)
                    if kept is None or client.closing is not None:
                        return  # refused, or too slow meanwhile: the client is closing
                    backlog.popleft()
                    backlog.extendleft(reversed(kept))
                    continue
                if item is SNAPSHOT or item is DEPTH:
                    assert replica is not None
                    if not replica.synced:
                        await replica.live.wait()
                        continue
                    backlog.popleft()
                    if item is SNAPSHOT:
                        if not client.needs_snapshot:
                            continue  # a snapshot sent since this marker was queued covers it
                        client.needs_snapshot = False  # updates are sent again from here
                        frame = self._snapshot_frame(replica)
                    else:
                        client.depth_pending = False
                        frame = self._depth_frame(replica, client.depth)
                else:
                    backlog.popleft()
                    frame = item  # type: ignore[assignment]
                # Direct path: written at once (there is room now). ASGI path: the server's
                # send, which may wait; what comes meanwhile queues behind it.
                await link.send_frame(frame)
                client.sent += 1
        except Stalled as stall:  # the ASGI path: the direct one closes by itself
            self._close(client, CLOSE_TRY_AGAIN_LATER, str(stall))
        except ConnectionError:
            return  # closing or closed: the receive loop sees the end of this task

    async def _resume(self, client: Client) -> list[bytes] | None:
        """The frames of the kept trades from client.first_trade_id up to the first live
        one held behind its RESUME marker; None (and the client closed, after an error
        message) when the matcher does not keep them or does not answer. O(kept)."""
        symbol = client.symbol
        assert symbol is not None
        replica = self.replicas[symbol]
        fetcher = self._fetchers.get(symbol)
        if fetcher is None:
            fetcher = self._fetchers[symbol] = AsyncMatcherClient(
                replica.config.order_endpoint, replica.request_timeout, curve=replica.curve
            )
        try:
            reply = await fetcher.request(
                "trades", symbol=symbol, from_trade_id=client.first_trade_id, limit=TRADES_LIMIT
            )
        except (MatcherError, MatcherTimeout) as exc:
            problem = exc.message if isinstance(exc, MatcherError) else "the matcher did not answer"
            code = CLOSE_NOT_KEPT if isinstance(exc, MatcherError) else CLOSE_TRY_AGAIN_LATER
            try:  # the sender task's own way, on either send path
                await client.link.send_frame(
                    text_frame(dumps({"type": "error", "message": problem}))
                )
                client.sent += 1
            except ConnectionError:  # Stalled included: the close below is all it gets
                pass
            self._close(client, code, problem)
            return None
        # Live trades after the fetch was answered are held behind the marker (or were
        # below first_trade_id): with none held, everything up to the replica's last.
        upto = client.resume_upto
        if upto is None:
            upto = replica.last_trade_id or 0
        return [
            text_frame(dumps({"type": "trade", **trade}))
            for trade in reply["trades"]
            if trade["trade_id"] <= upto
        ]
