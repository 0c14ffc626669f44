"""The gateway's side of the matchers: one asyncio DEALER link per symbol.

Each symbol's matcher is reached at `config.symbols[symbol].order_endpoint` through one
`MatcherLink`, shared by every request of the process; replies are correlated by
`req_id`, so any number of requests may be in flight (the matcher keeps the order of one
client's requests). Nothing here blocks the event loop. `MatcherLink` keeps the contract
of `clients.zmq_client.AsyncMatcherClient` (same messages, same `MatcherTimeout`) but
speaks ZeroMQ's wire protocol itself over a plain asyncio connection (gateway/zmtp.py):
see its docstring for why and the figures.

A matcher that does not answer within `timeout` seconds gives 503 `matcher_unavailable`.
The link's connection is then replaced (`reconnect()`, once per outage however many
requests time out together, failing at once every request still waiting on the old
connection) so that requests queued for a dead peer are dropped instead of being
delivered to a restarted matcher long after their caller gave up. A 503 on an order
endpoint therefore means "outcome unknown": the request may or may not have been
executed before the matcher died; retry with the same `client_order_id` (a duplicate is
refused with 409) or look the order up.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from typing import Any

from clients.zmq_client import MatcherTimeout
from gateway import zmtp
from gateway.errors import ApiError
from matcher import codec
from matcher.config import SymbolConfig
from matcher.protocol import Code

log = logging.getLogger("matchwire.gateway")

DEFAULT_TIMEOUT = 2.0
PING_TIMEOUT = 0.5
RECONNECT_INTERVAL = 0.1  # between connection attempts while requests wait (libzmq's default)
MAX_IN_FLIGHT = 100_000  # requests awaiting a reply per matcher (the old socket's HWM)

Future = asyncio.Future[dict[str, Any]]


def parse_endpoint(endpoint: str) -> tuple[str, int] | str:
    """(host, port) of `tcp://host:port` (`[v6 address]` allowed), the path of `ipc://path`."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint[len("ipc://"):]
    if not endpoint.startswith("tcp://"):
        raise ValueError(f"matcher endpoint {endpoint!r}: tcp://host:port or ipc://path")
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"matcher endpoint {endpoint!r} is not tcp://host:port")
    return host.strip("[]"), int(port)


class MatcherLink:
    """One ZMTP connection to one matcher, as a DEALER, spoken by the event loop itself.

    The same contract as `clients.zmq_client.AsyncMatcherClient` (`request_raw`,
    `reconnect`, `close`; the same messages and `MatcherTimeout`) without libzmq on the
    gateway's side: the matcher's ROUTER sees a DEALER like any other (gateway/zmtp.py
    has the bytes). Why: libzmq does its I/O in a thread of its own, so each request
    crossed two more threads in the gateway (event loop -> I/O thread -> matcher, and
    back) and each crossing woke a sleeping thread, which on this 2-core virtual machine
    costs tens of µs. Measured here, one request in flight to the real matcher
    (fsync=batch): 200-290 µs p50 against 300-375 µs for the same loop driving a libzmq
    DEALER (`add_reader` on its ZMQ_FD); against an instant echo 40 against 64 µs.

    How it works:
    - Connecting: on the first request, and again after the connection is lost while
      requests wait to be sent, every RECONNECT_INTERVAL until it succeeds; requests
      made meanwhile wait in the outbox (as they would in a libzmq socket's queue) and
      are sent once the handshake is done, unless their caller gave up by then.
    - Writing: a request that finds no other in flight is written at once. Requests made
      while others are in flight are queued and written together, in one write, at the
      end of the loop iteration: one system call and one wake-up of the matcher for the
      lot, which is what makes 50 concurrent clients cheap.
    - Reading: `data_received` splits frames (zmtp.FrameReader) and resolves the future
      of each reply's `req_id`.
    - Timeouts: one timer per request (`call_later`), cancelled when the reply comes. A
      request written to a connection that then dies is answered by its timer, as with
      libzmq: the matcher may or may not have executed it.
    """

    def __init__(self, endpoint: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._address = parse_endpoint(endpoint)
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._outbox: list[tuple[bytes, Future]] = []
        self._connection: _Connection | None = None  # set once its handshake is done
        self._dialing: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- requests ----------------------------------------------------------------------

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
        if self._loop is not loop:  # a new event loop (tests, a restarted server)
            self.reconnect()
            self._loop = loop
        pending = self._pending
        if len(pending) >= MAX_IN_FLIGHT:
            raise MatcherTimeout(f"the queue to {self.endpoint} is full")
        req_id = next(self._ids)
        message["op"] = op
        message["req_id"] = req_id
        data = zmtp.frame(codec.encode_request(message))
        future = loop.create_future()
        pending[req_id] = future
        connection = self._connection
        outbox = self._outbox
        if connection is not None and len(pending) == 1:
            connection.write(data)  # alone in flight: nothing to share a write with
        else:
            outbox.append((data, future))
            if connection is None:
                self._dial(loop)
            elif len(outbox) == 1:
                loop.call_soon(self._flush)
        timer = loop.call_later(timeout or self.timeout, self._expire, future, timeout)
        try:
            return await future
        finally:
            timer.cancel()
            pending.pop(req_id, None)

    def _flush(self) -> None:
        """Write every request queued during this loop iteration, in one write."""
        connection = self._connection
        if connection is None or not self._outbox:
            return  # sent when the connection is ready
        outbox, self._outbox = self._outbox, []
        connection.write(b"".join([data for data, future in outbox if not future.done()]))

    def _expire(self, future: Future, timeout: float | None) -> None:
        if not future.done():
            future.set_exception(MatcherTimeout(
                f"no reply from {self.endpoint} in {timeout or self.timeout:g}s"
            ))

    def _reply(self, body: bytes) -> None:
        try:
            reply = codec.decode_reply(body)
        except Exception:  # not a reply of ours: nobody waits for it
            return
        future = self._pending.pop(reply.get("req_id"), None)  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_result(reply)

    # -- the connection ----------------------------------------------------------------

    def _dial(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._dialing is None or self._dialing.done():
            self._dialing = loop.create_task(self._connect(loop))

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connect and shake hands, retrying while requests wait to be sent."""
        while self._outbox:
            connection: _Connection | None = None
            try:
                factory = functools.partial(_Connection, self)
                if isinstance(self._address, str):
                    _, connection = await loop.create_unix_connection(factory, self._address)
                else:
                    _, connection = await loop.create_connection(factory, *self._address)
                await connection.ready
            except (OSError, zmtp.ProtocolError) as exc:
                if connection is not None:
                    connection.abort()
                if isinstance(exc, zmtp.ProtocolError):
                    log.warning("matcher link %s: %s", self.endpoint, exc)
                await asyncio.sleep(RECONNECT_INTERVAL)
                continue
            except BaseException:  # cancelled by reconnect(): leave no connection behind
                if connection is not None:
                    connection.abort()
                raise
            self._connection = connection
            self._flush()
            return

    def _lost(self, connection: _Connection) -> None:
        """The connection is gone: requests written to it are answered by their timers;
        those still queued go out on a new one."""
        if self._connection is connection:
            self._connection = None
            if self._outbox and self._loop is not None and not self._loop.is_closed():
                self._dial(self._loop)

    def reconnect(self) -> None:
        """A fresh connection on the next request; every reply owed to the old one is
        abandoned, and the requests waiting for them fail at once."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abort()
        if self._dialing is not None:
            self._dialing.cancel()
            self._dialing = None
        self._outbox = []
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(MatcherTimeout(f"the link to {self.endpoint} was reset"))

    async def close(self) -> None:
        self.reconnect()


class _Connection(asyncio.Protocol):
    """One TCP connection of a MatcherLink: the ZMTP handshake, then reply frames."""

    def __init__(self, link: MatcherLink) -> None:
        self.link = link
        self.reader = zmtp.FrameReader()
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def write(self, data: bytes) -> None:
        """Send bytes; dropped once the connection is closing (its requests then time
        out, like those written just before it died)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.write(zmtp.HANDSHAKE)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except zmtp.ProtocolError as exc:
            self._fail(exc)
            return
        reply = self.link._reply
        for flags, body in frames:
            if flags & zmtp.COMMAND:
                self._command(body)
            else:
                reply(body)

    def _command(self, body: bytes) -> None:
        try:
            name, data = zmtp.split_command(body)
            if name == b"READY":
                socket_type = zmtp.parse_metadata(data).get(b"socket-type")
                if socket_type != b"ROUTER":
                    raise zmtp.ProtocolError(f"the peer is a {socket_type!r} socket, not ROUTER")
                if not self.ready.done():
                    self.ready.set_result(None)
            elif name == b"PING":  # heartbeat: PONG with the PING's context
                self.write(zmtp.command(b"PONG", data[2:]))
            elif name == b"ERROR":
                raise zmtp.ProtocolError(f"the peer refused us: {data[1:]!r}")
        except zmtp.ProtocolError as exc:
            self._fail(exc)

    def _fail(self, exc: zmtp.ProtocolError) -> None:
        if self.ready.done():
            log.warning("matcher link %s: %s", self.link.endpoint, exc)
        self._settle(exc)
        self.abort()

    def _settle(self, exc: Exception) -> None:
        """The handshake failed: whoever awaits `ready` gets `exc`."""
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # retrieved: the dialer may have been cancelled

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle(ConnectionResetError("closed during the handshake"))
        self.link._lost(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


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
