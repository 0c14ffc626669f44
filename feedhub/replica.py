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

Every message is decoded, applied, checksummed and JSON-encoded once here, in the SUB
socket's `loop.add_reader` callback (no task or await on the way); the hub then frames
the text once and writes the same bytes to every client.
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

from clients.book import BookSide, L2Book
from clients.curve import CurveKeys
from clients.zmq_client import AsyncMatcherClient, MatcherError, MatcherTimeout
from matcher import codec
from matcher.config import SymbolConfig

log = logging.getLogger("matchwire.feedhub")

SUB_RCVHWM = 1_000_000
HEARTBEAT_TIMEOUT = 3.0  # the matcher beats once a second
REQUEST_TIMEOUT = 2.0
POLL_MS = 500  # how often the watchdog looks at a silent SUB (and re-reads, should an FD
# edge ever be missed)
FRESH_FEED = 1.5  # a SUB that heard the matcher this recently is known to be subscribed
# PUB frames handled before the client senders get to run. Far below the client queue
# size: a burst must not overflow the queue of a client that is keeping up.
DRAIN_BATCH = 64
TRADES_LIMIT = 1000  # the matcher's `trades` op answers at most this many

# One encoder, compact separators: the text is built once per update for every client.
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _encoded_top(side: BookSide, encoded: list[str], depth: int) -> str:
    """The best `depth` levels of `side` as JSON array items joined by commas, encoding
    into `encoded` (this version's cache) only the levels it lacks. It grows at least
    twofold, so clients at many different depths cost O(the deepest) per version."""
    have = len(encoded)
    if have < depth and have < len(side):
        encoded.extend(map(dumps, side.top(max(depth, 2 * have))[have:]))
    return ",".join(encoded[:depth])


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
        curve: CurveKeys | None = None,
    ) -> None:
        self.config = config
        self.curve = curve  # CURVE client keys for both sockets, when the matcher has it on
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
        self._depth_version = -1  # the version _depth_bids/_depth_asks encode
        self._depth_bids: list[str] = []  # the best levels, JSON-encoded, best first
        self._depth_asks: list[str] = []
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
        self._sub: zmq.Socket | None = None
        self._requests: AsyncMatcherClient | None = None
        self._reading = False  # LIVE: the SUB reader callback applies frames as they come
        self._trouble: asyncio.Future[bytes] | None = None  # what the callback cannot do
        self._heard: asyncio.Future[None] | None = None  # WAITING for any message
        self._ticker: asyncio.TimerHandle | None = None

    # -- state seen by the hub -----------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.state is SyncState.LIVE

    def snapshot_text(self) -> str:
        """The whole book as a `snapshot` message (the hub frames it once per `version`)."""
        book = self.book
        return dumps(
            {
                "type": "snapshot",
                "symbol": self.symbol,
                "book_seq": book.book_seq,
                "bids": book.bids.all(),
                "asks": book.asks.all(),
                "bbo": self.bbo,
                "checksum": self.checksum,
                "timestamp": self.timestamp,
            }
        )

    def depth_text(self, depth: int) -> str:
        """The top `depth` levels as a `depth` message (the hub frames it once per `version`
        and depth): the same text as dumps of {"type", "timestamp", "symbol", "book_seq",
        "bids", "asks", "bbo"}.

        Each level is encoded once per version, however many depths clients ask for:
        building every text whole made 100 clients at 100 different depths of a
        1,000-level book cost ~90 ms of hub CPU per update. Cost: O(depth) per call,
        plus O(the deepest depth asked) per version.
        """
        if self._depth_version != self.version:
            self._depth_version = self.version
            self._depth_bids.clear()
            self._depth_asks.clear()
        book = self.book
        bids = _encoded_top(book.bids, self._depth_bids, depth)
        asks = _encoded_top(book.asks, self._depth_asks, depth)
        return (
            f'{{"type":"depth","timestamp":{dumps(self.timestamp)},'
            f'"symbol":{dumps(self.symbol)},"book_seq":{dumps(book.book_seq)},'
            f'"bids":[{bids}],"asks":[{asks}],"bbo":{dumps(self.bbo)}}}'
        )

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Synchronise, follow, and start over on any doubt, until cancelled."""
        loop = asyncio.get_running_loop()
        sub: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, SUB_RCVHWM)
        sub.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.apply(sub)
        for topic in self._topics:
            sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        sub.connect(self.config.feed_endpoint)
        self._sub = sub
        self._requests = AsyncMatcherClient(
            self.config.order_endpoint, self.request_timeout, curve=self.curve
        )
        fd = sub.fileno()  # edge-triggered: see _drain
        loop.add_reader(fd, self._on_readable)
        self._ticker = loop.call_later(POLL_MS / 1000, self._tick, loop)
        try:
            while True:
                try:
                    await self._synchronise()
                    await self._follow()
                except OutOfSync as exc:
                    self._lose_sync(exc)
        finally:
            self._reading = False
            self.state = SyncState.STOPPED
            self.live.clear()
            if self._ticker is not None:
                self._ticker.cancel()
            loop.remove_reader(fd)
            await self._requests.close()
            sub.close(0)

    def _lose_sync(self, exc: OutOfSync) -> None:
        self.resyncs[exc.reason] += 1
        self.state = SyncState.WAITING
        self.live.clear()
        log.warning("%s replica resynchronises: %s", self.symbol, exc)

    async def _synchronise(self) -> None:
        """WAITING -> SNAPSHOT -> LIVE. The SUB socket queues the updates meanwhile."""
        assert self._requests is not None
        loop = asyncio.get_running_loop()
        while True:
            self.state = SyncState.WAITING
            if time.monotonic() - self._last_heard > FRESH_FEED:
                # Any message queued proves the subscription is in place: nothing published
                # after the snapshot below can be missed. It stays queued, to apply after it.
                self._heard = loop.create_future()
                try:
                    self._on_readable()
                    await self._heard
                finally:
                    self._heard = None
                self._last_heard = time.monotonic()
            self.state = SyncState.SNAPSHOT
            try:
                snapshot = await self._requests.request("snapshot", symbol=self.symbol)
            except MatcherTimeout:
                log.warning(
                    "%s: no snapshot from %s in %.1fs",
                    self.symbol,
                    self.config.order_endpoint,
                    self.request_timeout,
                )
                self._requests.reconnect()  # a late reply to the old socket is dropped
                self._last_heard = float("-inf")
                continue
            except MatcherError as exc:
                raise OutOfSync("snapshot_refused", str(exc)) from exc
            await self.load_snapshot(snapshot)
            return

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
        log.info(
            "%s replica live at book_seq %s (epoch %s, %d bids, %d asks)",
            self.symbol,
            book.book_seq,
            self.epoch,
            len(book.bids),
            len(book.asks),
        )
        self.live.set()
        self.fanout.book_reset(self.symbol)

    async def _follow(self) -> None:
        """LIVE: the SUB socket's reader callback applies every frame as it comes (no task,
        no await between the socket and the clients' transports). This coroutine only waits
        for what the callback cannot do itself: it raises OutOfSync, or fetches missed
        trades (the one await) while the frames that follow wait in the socket."""
        loop = asyncio.get_running_loop()
        while True:
            self._trouble = trouble = loop.create_future()
            self._reading = True
            self._drain()  # what queued while nobody read: the FD only signals new arrivals
            try:
                frame = await trouble
            finally:
                self._reading = False
                self._trouble = None
            await self.apply(frame)

    def _on_readable(self) -> None:
        """The SUB socket's FD said something happened (and the ticker, as a safety net)."""
        if self._reading:
            self._drain()
        elif self._heard is not None and not self._heard.done():
            sub = self._sub
            if sub is not None and sub.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # type: ignore[arg-type,operator]
                self._heard.set_result(None)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._ticker = loop.call_later(POLL_MS / 1000, self._tick, loop)
        self._on_readable()  # a silent feed still runs the watchdog

    def _drain(self) -> None:
        """Apply queued frames, DRAIN_BATCH at a time.

        The FD is edge-triggered (it signals that libzmq has something to do, and any call
        on the socket may consume that), so this reads until zmq.Again, and when it stops
        early it schedules itself: the FD would not say again that frames are waiting.
        """
        trouble = self._trouble
        assert trouble is not None and self._sub is not None
        # Locals: this runs once per PUB message.
        recv = self._sub.recv
        handle = self.handle
        try:
            for _ in range(DRAIN_BATCH):
                try:
                    frame = recv(zmq.NOBLOCK)
                except zmq.Again:
                    self._watchdog()  # caught up: only now is an old heartbeat a missing one
                    return
                self._last_heard = time.monotonic()
                if handle(frame) is not None:  # trades are missing: _follow fetches them
                    self._reading = False
                    trouble.set_result(frame)
                    return
            # More may be queued: let the clients' transports and senders run first, so a
            # burst does not overflow the backlog of a client that keeps up.
            asyncio.get_running_loop().call_soon(self._on_readable)
        except Exception as exc:  # OutOfSync, or a bug: either way _follow raises it
            self._reading = False
            trouble.set_exception(exc)

    def _watchdog(self) -> None:
        """Called with the SUB queue empty: a replica busy with a backlog is not out of sync."""
        silent = time.monotonic() - self._last_heartbeat
        if silent > self.heartbeat_timeout:
            raise OutOfSync("heartbeat_timeout", f"no heartbeat for {silent:.1f}s")

    def handle(self, frame: bytes) -> int | None:
        """Apply one PUB frame. Returns the trade id up to which trades are missing (fetch
        them, then handle the frame again: `apply` does both), else None."""
        try:
            topic, body = codec.decode_pub(frame)
            on_message = self._topics[topic]
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            log.warning("%s: dropping an undecodable PUB frame: %r", self.symbol, exc)
            return None
        if not isinstance(body, dict):
            log.warning("%s: dropping a PUB frame that is not a map", self.symbol)
            return None
        return on_message(body)

    async def apply(self, frame: bytes) -> None:
        """`handle`, fetching missed trades from the matcher when the frame reveals a gap."""
        while (missing_upto := self.handle(frame)) is not None:
            await self._recover_trades(missing_upto)  # then last_trade_id >= missing_upto

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
        self.fanout.book_update(
            self.symbol,
            dumps(
                {
                    "type": "l2update",
                    "symbol": self.symbol,
                    "book_seq": book_seq,
                    "changes": changes,
                    "bbo": bbo,
                    "checksum": checksum,
                    "timestamp": timestamp,
                }
            ),
        )

    def _check_bbo(self, bbo: dict[str, Any]) -> None:
        """The matcher's BBO must be the replica's best levels: a cheap proof of sync."""
        bid, ask = self.book.bids.best(), self.book.asks.best()
        if (bbo["bid_price"], bbo["bid_quantity"]) != (bid or (None, None)) or (
            bbo["ask_price"],
            bbo["ask_quantity"],
        ) != (ask or (None, None)):
            raise ValueError(f"bbo {bbo} disagrees with the replica's {bid} / {ask}")

    def _on_heartbeat(self, body: dict[str, Any]) -> int | None:
        if not self._current_epoch(body):
            return None
        self._last_heartbeat = time.monotonic()
        book_seq = body.get("book_seq")
        assert self.book.book_seq is not None
        if isinstance(book_seq, int) and book_seq > self.book.book_seq:
            raise OutOfSync(
                "behind_heartbeat", f"heartbeat at {book_seq}, replica at {self.book.book_seq}"
            )
        last_trade_id = body.get("last_trade_id")
        if (
            isinstance(last_trade_id, int)
            and self.last_trade_id is not None
            and last_trade_id > self.last_trade_id
        ):
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
            reply = await self._requests.request("trades", symbol=self.symbol, limit=TRADES_LIMIT)
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
            log.warning(
                "%s: trades %d..%d are lost to WebSocket clients",
                self.symbol,
                self.last_trade_id + 1,
                first - 1,
            )
        for trade in fetched:
            self.last_trade_id = trade["trade_id"]
            self.trades += 1
            self.fanout.trade(self.symbol, dumps({"type": "trade", **trade}))
        if fetched:
            self.trades_recovered += len(fetched)
            log.info("%s: %d missed trades fetched from the matcher", self.symbol, len(fetched))
        self.last_trade_id = max(self.last_trade_id, upto)
