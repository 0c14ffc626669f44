"""One symbol's book replica, kept in step with its matcher (the ZeroMQ guide's Clone).

Synchronisation, top to bottom (`Replica.run`):
  1. the SUB socket subscribes to `book.SYM`, `trade.SYM` and `hb.SYM` first, and the
     replica waits until it hears the matcher (any message: the subscription is then in
     place, so nothing published after the snapshot can be missed);
  2. it asks for the `snapshot` op over a DEALER to the matcher's ROUTER, while the SUB
     keeps queueing updates (RCVHWM 1,000,000);
  3. it drops queued updates with book_seq <= the snapshot's and applies the rest, each
     exactly book_seq + 1, then follows the live stream.
It starts over from 1 by itself (`OutOfSync`, counted per reason) on a gap, a heartbeat
whose book_seq is ahead, a newer epoch (the matcher restarted), a malformed update, a BBO
that disagrees with the replica, or no heartbeat for `heartbeat_timeout` seconds (judged
only when the replica has caught up with its SUB queue: a backlog is not a silence).
Listeners see `book_reset` after every (re)synchronisation and send clients a snapshot.

Trades need no book: they are forwarded in trade_id order; a gap in trade ids (or a
heartbeat whose last_trade_id is ahead) is filled from the matcher's `trades` op.

Epochs: the matcher's epoch is its start time in microseconds, so a smaller epoch than
the replica's is a stale message still queued from a previous matcher process (dropped)
and a larger one is a restart (resynchronise). The heartbeat watchdog only counts
heartbeats of the replica's own epoch, so even a clock that went backwards ends in a
resynchronisation, not a stall.

Every message is decoded, applied, checksummed and JSON-encoded once here; the hub then
hands the same text to every client.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Protocol

import zmq
import zmq.asyncio

from clients.zmq_client import AsyncMatcherClient, MatcherError, MatcherTimeout
from feedhub.book import L2Book
from matcher import codec
from matcher.config import SymbolConfig

log = logging.getLogger("matchwire.feedhub")

SUB_RCVHWM = 1_000_000
HEARTBEAT_TIMEOUT = 3.0  # the matcher beats once a second
REQUEST_TIMEOUT = 2.0
POLL_MS = 500  # how often a silent SUB wakes up to check the heartbeat watchdog
FRESH_FEED = 1.5  # a SUB that heard the matcher this recently is known to be subscribed
# PUB frames handled before the client senders get to run. Far below the client queue
# size: a burst must not overflow the queue of a client that is keeping up.
DRAIN_BATCH = 64
TRADES_LIMIT = 1000  # the matcher's `trades` op answers at most this many

# One encoder, compact separators: the text is built once per update for every client.
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SyncState(enum.Enum):
    WAITING = "waiting"  # nothing heard from the matcher's PUB lately
    SNAPSHOT = "snapshot"  # snapshot requested; updates wait in the SUB queue
    LIVE = "live"  # snapshot applied; following the updates
    STOPPED = "stopped"


class OutOfSync(Exception):
    """The replica can no longer prove it equals the matcher's book: resynchronise."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Fanout(Protocol):
    """What the replica tells the hub. None of these may await."""

    def book_update(self, symbol: str, text: str) -> None: ...

    def book_reset(self, symbol: str) -> None: ...

    def trade(self, symbol: str, text: str) -> None: ...


class Replica:
    """One symbol's L2 book as the matcher publishes it, plus its trade stream."""

    def __init__(
        self,
        config: SymbolConfig,
        fanout: Fanout,
        *,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.config = config
        self.symbol = config.symbol
        self.fanout = fanout
        self.heartbeat_timeout = heartbeat_timeout
        self.request_timeout = request_timeout
        self.book = L2Book()
        self.state = SyncState.WAITING
        self.epoch: int | None = None
        self.bbo: dict[str, Any] | None = None
        self.timestamp = ""
        self.checksum = 0
        self.last_trade_id: int | None = None
        self.version = 0  # grows on every change of the book, snapshot included
        self.resyncs: Counter[str] = Counter()
        self.updates = 0
        self.trades = 0
        self.trades_recovered = 0  # missed on the SUB, fetched with the `trades` op
        self.trades_lost = 0  # missed, and too old for the `trades` op
        self.live = asyncio.Event()
        self._topics = {
            f"book.{self.symbol}": self._on_book,
            f"trade.{self.symbol}": self._on_trade,
            f"hb.{self.symbol}": self._on_heartbeat,
        }
        self._last_heard = float("-inf")  # any message
        self._last_heartbeat = float("-inf")  # a heartbeat of the current epoch
        self._snapshot_cache: tuple[int, str] | None = None
        self._depth_cache: dict[int, tuple[int, str]] = {}
        self._sub: zmq.asyncio.Socket | None = None
        self._requests: AsyncMatcherClient | None = None

    # -- state seen by the hub -----------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.state is SyncState.LIVE

    def snapshot_text(self) -> str:
        """The whole book as a `snapshot` message, encoded once per version."""
        cached = self._snapshot_cache
        if cached is not None and cached[0] == self.version:
            return cached[1]
        book = self.book
        text = dumps({
            "type": "snapshot",
            "symbol": self.symbol,
            "book_seq": book.book_seq,
            "bids": book.bids.all(),
            "asks": book.asks.all(),
            "bbo": self.bbo,
            "checksum": self.checksum,
            "timestamp": self.timestamp,
        })
        self._snapshot_cache = (self.version, text)
        return text

    def depth_text(self, depth: int) -> str:
        """The top `depth` levels as a `depth` message, encoded once per version and depth."""
        cached = self._depth_cache.get(depth)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        book = self.book
        text = dumps({
            "type": "depth",
            "timestamp": self.timestamp,
            "symbol": self.symbol,
            "book_seq": book.book_seq,
            "bids": book.bids.top(depth),
            "asks": book.asks.top(depth),
            "bbo": self.bbo,
        })
        self._depth_cache[depth] = (self.version, text)
        return text

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Synchronise, follow, and start over on any doubt, until cancelled."""
        context = zmq.asyncio.Context.instance()
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, SUB_RCVHWM)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVTIMEO, POLL_MS)  # a silent feed still wakes the watchdog
        for topic in self._topics:
            sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        sub.connect(self.config.feed_endpoint)
        self._sub = sub
        self._requests = AsyncMatcherClient(self.config.order_endpoint, self.request_timeout)
        # Draining with plain non-blocking recv() on a shadow of the same socket avoids a
        # Future per frame; the asyncio socket is only awaited when the queue is empty.
        drain = zmq.Socket.shadow(sub.underlying).recv
        try:
            while True:
                try:
                    pending = await self._synchronise(sub)
                    await self._follow(sub, drain, pending)
                except OutOfSync as exc:
                    self._lose_sync(exc)
        finally:
            self.state = SyncState.STOPPED
            self.live.clear()
            await self._requests.close()
            sub.close(0)

    def _lose_sync(self, exc: OutOfSync) -> None:
        self.resyncs[exc.reason] += 1
        self.state = SyncState.WAITING
        self.live.clear()
        log.warning("%s replica resynchronises: %s", self.symbol, exc)

    async def _synchronise(self, sub: zmq.asyncio.Socket) -> list[bytes]:
        """WAITING -> SNAPSHOT -> LIVE. Returns the frames read while waiting, to apply."""
        assert self._requests is not None
        pending: list[bytes] = []
        while True:
            self.state = SyncState.WAITING
            while time.monotonic() - self._last_heard > FRESH_FEED:
                try:
                    pending.append(await sub.recv())
                except zmq.Again:
                    continue
                self._last_heard = time.monotonic()
            self.state = SyncState.SNAPSHOT
            try:
                snapshot = await self._requests.request("snapshot", symbol=self.symbol)
            except MatcherTimeout:
                log.warning("%s: no snapshot from %s in %.1fs", self.symbol,
                            self.config.order_endpoint, self.request_timeout)
                self._requests.reconnect()  # a late reply to the old socket is dropped
                self._last_heard = float("-inf")
                continue
            except MatcherError as exc:
                raise OutOfSync("snapshot_refused", str(exc)) from exc
            await self.load_snapshot(snapshot)
            return pending

    async def load_snapshot(self, snapshot: dict[str, Any]) -> None:
        book = self.book
        try:
            book.load(snapshot["bids"], snapshot["asks"], int(snapshot["book_seq"]))
            self.epoch = int(snapshot["epoch"])
            last_trade_id = int(snapshot["last_trade_id"])
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise OutOfSync("bad_snapshot", repr(exc)) from exc
        self.bbo = snapshot.get("bbo")
        self.timestamp = now_iso()
        self.checksum = book.checksum()
        self.version += 1
        self.state = SyncState.LIVE
        self._last_heartbeat = time.monotonic()
        if self.last_trade_id is None or last_trade_id < self.last_trade_id:
            self.last_trade_id = last_trade_id  # first start, or another matcher's history
        elif last_trade_id > self.last_trade_id:
            await self._recover_trades(last_trade_id)  # published while we were away
        log.info("%s replica live at book_seq %s (epoch %s, %d bids, %d asks)", self.symbol,
                 book.book_seq, self.epoch, len(book.bids), len(book.asks))
        self.live.set()
        self.fanout.book_reset(self.symbol)

    async def _follow(self, sub: zmq.asyncio.Socket, drain: Any, pending: list[bytes]) -> None:
        handle = self.handle
        for queued in pending:
            await handle(queued)
        while True:
            try:
                frame = await sub.recv()
            except zmq.Again:  # RCVTIMEO: nothing for POLL_MS
                self._watchdog()
                continue
            self._last_heard = time.monotonic()
            await handle(frame)
            for _ in range(DRAIN_BATCH):
                try:
                    frame = drain(zmq.NOBLOCK)
                except zmq.Again:
                    self._watchdog()  # caught up: only now is an old heartbeat a missing one
                    break
                await handle(frame)
            else:
                # More is queued; awaiting a ready socket would not yield to the senders.
                await asyncio.sleep(0)

    def _watchdog(self) -> None:
        """Called with the SUB queue empty: a replica busy with a backlog is not out of sync."""
        silent = time.monotonic() - self._last_heartbeat
        if silent > self.heartbeat_timeout:
            raise OutOfSync("heartbeat_timeout", f"no heartbeat for {silent:.1f}s")

    async def handle(self, frame: bytes) -> None:
        """Apply one PUB frame. Only a trade gap makes it await (a `trades` request)."""
        try:
            topic, body = codec.decode_pub(frame)
            on_message = self._topics[topic]
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            log.warning("%s: dropping an undecodable PUB frame: %r", self.symbol, exc)
            return
        if not isinstance(body, dict):
            log.warning("%s: dropping a PUB frame that is not a map", self.symbol)
            return
        missing_upto = on_message(body)
        if missing_upto is not None:
            await self._recover_trades(missing_upto)
            if topic.startswith("trade."):
                on_message(body)

    def _current_epoch(self, body: dict[str, Any]) -> bool:
        """False for a stale message of an older matcher process; raises on a newer one."""
        epoch = body.get("epoch")
        if epoch == self.epoch:
            return True
        if isinstance(epoch, int) and self.epoch is not None and epoch < self.epoch:
            return False
        raise OutOfSync("matcher_restarted", f"epoch {epoch} after {self.epoch}")

    def _on_book(self, body: dict[str, Any]) -> None:
        if not self._current_epoch(body):
            return
        book = self.book
        book_seq = body.get("book_seq")
        assert book.book_seq is not None
        if not isinstance(book_seq, int):
            raise OutOfSync("bad_update", f"book_seq {book_seq!r}")
        if book_seq <= book.book_seq:
            return  # already in the snapshot
        if book_seq != book.book_seq + 1:
            raise OutOfSync("gap", f"book_seq {book_seq} after {book.book_seq}")
        changes = body.get("changes")
        bbo = body.get("bbo")
        try:
            book.apply(changes)  # type: ignore[arg-type]
            self._check_bbo(bbo)  # type: ignore[arg-type]
        except (TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise OutOfSync("bad_update", f"book_seq {book_seq}: {exc!r}") from exc
        book.book_seq = book_seq
        self.bbo = bbo
        self.timestamp = timestamp = body.get("timestamp") or now_iso()
        self.checksum = checksum = book.checksum()
        self.version += 1
        self.updates += 1
        self.fanout.book_update(self.symbol, dumps({
            "type": "l2update",
            "symbol": self.symbol,
            "book_seq": book_seq,
            "changes": changes,
            "bbo": bbo,
            "checksum": checksum,
            "timestamp": timestamp,
        }))

    def _check_bbo(self, bbo: dict[str, Any]) -> None:
        """The matcher's BBO must be the replica's best levels: a cheap proof of sync."""
        bid, ask = self.book.bids.best(), self.book.asks.best()
        if (bbo["bid_price"], bbo["bid_quantity"]) != (bid or (None, None)) or (
            bbo["ask_price"], bbo["ask_quantity"]) != (ask or (None, None)):
            raise ValueError(f"bbo {bbo} disagrees with the replica's {bid} / {ask}")

    def _on_heartbeat(self, body: dict[str, Any]) -> int | None:
        if not self._current_epoch(body):
            return None
        self._last_heartbeat = time.monotonic()
        book_seq = body.get("book_seq")
        assert self.book.book_seq is not None
        if isinstance(book_seq, int) and book_seq > self.book.book_seq:
            raise OutOfSync("behind_heartbeat", f"heartbeat at {book_seq}, replica at "
                            f"{self.book.book_seq}")
        last_trade_id = body.get("last_trade_id")
        if (isinstance(last_trade_id, int) and self.last_trade_id is not None
                and last_trade_id > self.last_trade_id):
            return last_trade_id
        return None

    def _on_trade(self, trade: dict[str, Any]) -> int | None:
        trade_id = trade.get("trade_id")
        last = self.last_trade_id
        if not isinstance(trade_id, int) or last is None:
            return None
        if trade_id <= last:
            return None  # a duplicate, or one the gap recovery already sent
        if trade_id != last + 1:
            return trade_id - 1
        self.last_trade_id = trade_id
        self.trades += 1
        self.fanout.trade(self.symbol, dumps({"type": "trade", **trade}))
        return None

    async def _recover_trades(self, upto: int) -> None:
        """Send trades last_trade_id+1 .. upto, fetched from the matcher's `trades` op."""
        assert self._requests is not None and self.last_trade_id is not None
        wanted = upto - self.last_trade_id
        if wanted <= 0:
            return
        try:
            # The most the op gives: trades may have gone on since `upto` was learnt.
            reply = await self._requests.request("trades", symbol=self.symbol,
                                                 limit=TRADES_LIMIT)
        except (MatcherTimeout, MatcherError) as exc:
            log.warning("%s: cannot fetch %d missed trades: %s", self.symbol, wanted, exc)
            reply = {"trades": []}
        fetched = sorted(
            (t for t in reply.get("trades", ()) if self.last_trade_id < t["trade_id"] <= upto),
            key=lambda t: t["trade_id"],
        )
        first = fetched[0]["trade_id"] if fetched else upto + 1
        if first != self.last_trade_id + 1:
            self.trades_lost += first - self.last_trade_id - 1
            log.warning("%s: trades %d..%d are lost to WebSocket clients", self.symbol,
                        self.last_trade_id + 1, first - 1)
        for trade in fetched:
            self.last_trade_id = trade["trade_id"]
            self.trades += 1
            self.fanout.trade(self.symbol, dumps({"type": "trade", **trade}))
        if fetched:
            self.trades_recovered += len(fetched)
            log.info("%s: %d missed trades fetched from the matcher", self.symbol, len(fetched))
        self.last_trade_id = max(self.last_trade_id, upto)
