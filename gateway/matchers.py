"""The gateway's side of the matchers: one asyncio DEALER link per symbol.

Each symbol's matcher is reached at `config.symbols[symbol].order_endpoint` through one
`MatcherLink`, shared by every request of the process; replies are correlated by
`req_id`, so any number of requests may be in flight (the matcher keeps the order of one
client's requests). Nothing here blocks the event loop. `MatcherLink` keeps the contract
of `clients.zmq_client.AsyncMatcherClient` (same wire format, same `MatcherTimeout`) but
drives a plain zmq socket from the event loop: see its docstring for why and the figures.

A matcher that does not answer within `timeout` seconds gives 503 `matcher_unavailable`.
The link's socket is then replaced (`reconnect()`, once per outage however many
requests time out together, failing at once every request still waiting on the old
socket) so that requests queued for a dead peer are dropped instead of being delivered
to a restarted matcher long after their caller gave up. A 503 on an order endpoint
therefore means "outcome unknown": the request may or may not have been executed before
the matcher died; retry with the same `client_order_id` (a duplicate is refused with
409) or look the order up.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import zmq
import zmq.backend

from clients.zmq_client import MatcherTimeout
from gateway.errors import ApiError
from matcher import codec
from matcher.config import SymbolConfig
from matcher.protocol import Code

DEFAULT_TIMEOUT = 2.0
PING_TIMEOUT = 0.5

# The per-reply zmq calls, without pyzmq's conveniences: the sugar `Socket.send` is a
# Python wrapper around the Cython one, and its constants are enum members, whose `&`
# builds a new enum. Plain ints and the Cython methods took the EVENTS check from 3.8
# to 1.5 µs, and there are two or three of them per request.
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_get = zmq.backend.Socket.get
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
NOBLOCK = int(zmq.NOBLOCK)


class MatcherLink:
    """One DEALER socket to one matcher, read by the event loop itself.

    The same contract as `clients.zmq_client.AsyncMatcherClient` (`request_raw`,
    `reconnect`, `close`; the same frames and `MatcherTimeout`), without `zmq.asyncio`
    and `asyncio.wait_for`. Measured here (2 cores): that client's round trip was
    ~136 µs p50 and ~11k requests/s with 50 coroutines, this one ~90 µs and ~25k/s;
    docs/api.md ("Performance") has the gateway-level figures.

    How it works:
    - Reading: the socket's ZMQ_FD is registered with `loop.add_reader`. That FD is
      edge-triggered: it says libzmq has commands to process, not that a message is
      waiting, and any zmq call (a send included) may consume the signal. So `_drain`
      reads while ZMQ_EVENTS says POLLIN, and it also runs after every flush.
    - Writing: requests made during one loop iteration are queued and sent back to back
      by one `_flush` at the end of the iteration. Each send that finds libzmq's I/O
      thread asleep wakes it, and on a busy 2-core machine that wake-up often preempts
      the event loop's thread (send() measured 10 µs p50 but 135 µs mean under 50
      concurrent requests); one burst per iteration wakes it once. With 50 concurrent
      requests this raised throughput by about a third. A request that finds no other
      in flight is sent at once: it has nobody to share a burst with, and waiting for
      the end of the iteration cost it one more loop pass (16 µs p50 in the gateway
      under the bench's one-in-flight load).
    - Timeouts: one timer per request (`call_later`), cancelled when the reply comes.
    """

    def __init__(self, endpoint: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._context: zmq.Context = zmq.Context.instance()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._socket: zmq.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._outbox: list[tuple[bytes, asyncio.Future[dict[str, Any]]]] = []

    def _open(self, loop: asyncio.AbstractEventLoop) -> zmq.Socket:
        self._close_socket()
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.connect(self.endpoint)
        self._fd = sock.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._drain)
        self._socket, self._loop = sock, loop
        return sock

    def _close_socket(self) -> None:
        if self._socket is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            self._socket.close(0)
            self._socket = None

    def _drain(self) -> None:
        sock = self._socket
        if sock is None:
            return
        # Locals: this runs once per reply (sortedcontainers-style binding).
        pending = self._pending
        recv = _recv.__get__(sock)
        events = _get.__get__(sock)
        decode = codec.decode_reply
        while events(EVENTS) & POLLIN:
            try:
                frame = recv(NOBLOCK)
            except zmq.Again:
                break
            try:
                reply = decode(frame)
            except Exception:  # not a reply of ours: nobody waits for it
                continue
            future = pending.pop(reply.get("req_id"), None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(reply)

    def _flush(self) -> None:
        """Send every request queued during this loop iteration, back to back."""
        outbox, self._outbox = self._outbox, []
        sock = self._socket
        if sock is None or not outbox:
            return
        send = _send.__get__(sock)
        for index, (frame, _) in enumerate(outbox):
            try:
                send(frame, NOBLOCK)
            except zmq.Again:  # the queue to the matcher is full (HWM): fail the rest now
                for _, waiting in outbox[index:]:
                    if not waiting.done():
                        waiting.set_exception(
                            MatcherTimeout(f"the queue to {self.endpoint} is full")
                        )
                break
        self._drain()  # a send may have consumed the FD's edge: see the class docstring

    @staticmethod
    def _expire(future: asyncio.Future[dict[str, Any]], message: str) -> None:
        if not future.done():
            future.set_exception(MatcherTimeout(message))

    async def request_raw(
        self, op: str, timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send one request and return the whole reply map; MatcherTimeout if none comes."""
        return await self.send(fields, op, timeout)

    async def send(
        self, message: dict[str, Any], op: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """Like request_raw, but `message` (fields only; `op` and `req_id` are added to
        it) is sent as it is, saving a dict copy on the hot path."""
        loop = asyncio.get_running_loop()
        if self._socket is None or self._loop is not loop:
            self._open(loop)
        req_id = next(self._ids)
        message["op"] = op
        message["req_id"] = req_id
        future = loop.create_future()
        pending = self._pending
        pending[req_id] = future
        outbox = self._outbox
        outbox.append((codec.encode_request(message), future))
        if len(pending) == 1:  # alone in flight: nothing to share a burst with, send now
            self._flush()
        elif len(outbox) == 1:
            loop.call_soon(self._flush)
        wait = timeout or self.timeout
        timer = loop.call_later(
            wait, self._expire, future, f"no reply from {self.endpoint} in {wait:g}s"
        )
        try:
            return await future
        finally:
            timer.cancel()
            pending.pop(req_id, None)

    def reconnect(self) -> None:
        """A fresh socket on the next request; every reply owed to the old one is
        abandoned, and the requests waiting for them fail at once."""
        self._close_socket()
        self._outbox = []
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(MatcherTimeout(f"the link to {self.endpoint} was reset"))

    async def close(self) -> None:
        self.reconnect()


class Matchers:
    """Routes requests to the matcher of their symbol and maps its answers."""

    def __init__(self, symbols: dict[str, SymbolConfig], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.endpoints = {symbol: config.order_endpoint for symbol, config in symbols.items()}
        self.clients = {
            symbol: MatcherLink(endpoint, timeout)
            for symbol, endpoint in self.endpoints.items()
        }
        # Bumped by each reconnect, so a batch of requests that time out together
        # replaces the socket once, not once per request.
        self.generations = dict.fromkeys(self.clients, 0)
        # Whether the last exchange with each matcher got an answer (the matcher_up gauge).
        self.up = dict.fromkeys(self.clients, False)

    async def request(
        self, symbol: str, op: str, fields: dict[str, Any], timeout: float | None = None
    ) -> Any:
        """The matcher's result for one request, or ApiError (its code, or 503).

        `fields` must hold request fields only (gateway/validation.py builds them).
        """
        client = self.clients[symbol]
        generation = self.generations[symbol]
        try:
            reply = await client.send(fields, op, timeout)
        except MatcherTimeout:
            self._lost(symbol, generation)
            raise ApiError(
                Code.UNAVAILABLE,
                f"the {symbol} matcher did not answer within {timeout or self.timeout:g}s; "
                "an order request may or may not have been executed: retry with the same "
                "client_order_id or look the order up",
            ) from None
        except zmq.ZMQError as exc:
            self._lost(symbol, generation)
            raise ApiError(
                Code.UNAVAILABLE, f"the {symbol} matcher cannot be reached: {exc}"
            ) from None
        self.up[symbol] = True
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise ApiError(str(error.get("code")), str(error.get("message")))

    def _lost(self, symbol: str, generation: int) -> None:
        self.up[symbol] = False
        if self.generations[symbol] == generation:
            self.generations[symbol] = generation + 1
            self.clients[symbol].reconnect()

    async def ping(self, symbol: str, timeout: float = PING_TIMEOUT) -> dict[str, Any] | None:
        """The matcher's ping result ({symbol, seq, book_seq, epoch}), or None if it is down."""
        try:
            result = await self.request(symbol, "ping", {}, timeout)
        except ApiError:
            return None
        return result if isinstance(result, dict) else None

    async def ping_all(self, timeout: float = PING_TIMEOUT) -> dict[str, dict[str, Any] | None]:
        """Every matcher pinged concurrently: the whole check takes at most `timeout`."""
        symbols = list(self.clients)
        results = await asyncio.gather(*(self.ping(symbol, timeout) for symbol in symbols))
        return dict(zip(symbols, results, strict=True))

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
