"""The gateway's side of the matchers: one asyncio DEALER link per symbol.

Each symbol's matcher is reached at `config.symbols[symbol].order_endpoint` through one
link, shared by every request of the process; replies are correlated by `req_id`, so any
number of requests may be in flight (the matcher keeps the order of one client's
requests). Nothing here blocks the event loop. Two transports keep one contract (the
messages and `MatcherTimeout` of `clients.zmq_client.AsyncMatcherClient`, and
everything below): `PyzmqLink` (gateway/zmq_link.py), the library path, always
available and the only one under CURVE; and `MatcherLink`, an accelerator that speaks
ZeroMQ's wire protocol itself over a plain asyncio connection (gateway/zmtp.py; see its
docstring for why and the figures). `[server] gateway_link`, the gateway's
`--gateway-link` or MATCHWIRE_GATEWAY_LINK choose (choose_link).

Deadlines (docs/api.md, docs/protocol.md): every request is sent with `deadline` = its
send time + `timeout`, and the matcher refuses a mutating command it reaches after that.
A request gets no 503 before its deadline has passed: its timer fires at `timeout` +
DEADLINE_GRACE (a reply may be in flight when the deadline passes: the matcher applied
the command just before it, and replies only after the batch's group commit), then takes
one last look at the socket, and only then answers 503 `matcher_timeout`. So a 503
`matcher_timeout` (or the matcher's own `deadline_exceeded`) from an order endpoint means
the command was not executed. The residual cases, where that is not known, answer 503
`matcher_unavailable` "outcome unknown" instead: the connection closed while the request
was in flight (the matcher may have committed it and died before replying). What no
gateway can see is documented in docs/api.md: a matcher frozen, or stalled in fsync,
between its clock read and its reply for longer than the grace, and clocks of the
gateway's and the matcher's hosts that disagree by more than the grace.

After a timeout the link's connection is retired (`retire()`, once per outage however
many requests time out together): new requests go over a fresh connection, and the old
one stays open for the replies still owed on it until their deadlines have passed, so a
late reply is never thrown away before its request is answered.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import Any

from clients.curve import CurveKeys, client_keys
from clients.zmq_client import DEADLINE_GRACE, MatcherTimeout
from gateway import zmtp
from gateway.correlation import Correlator, Future, LinkLost
from gateway.errors import ApiError
from gateway.zmq_link import PyzmqLink
from matcher import codec
from matcher.config import SymbolConfig
from matcher.protocol import MUTATING_OPS, Code
from matcher.system import SystemConfig

log = logging.getLogger("matchwire.gateway")

DEFAULT_TIMEOUT = SystemConfig.matcher_timeout  # one default: [server] matcher_timeout
LINK_ENV = "MATCHWIRE_GATEWAY_LINK"
LINKS = ("auto", "zmtp", "pyzmq")
PING_TIMEOUT = 0.5
RECONNECT_INTERVAL = 0.1  # between connection attempts while requests wait (libzmq's default)
# ZMTP 3.1 heartbeats of the ZMTP link: a PING after a silent interval; a connection
# silent (no reply, no PONG) this long is retired, so a half-open peer (a host gone
# without closing its connections) is found before the next request times out on it.
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TIMEOUT = 3.0


def parse_endpoint(endpoint: str) -> tuple[str, int] | str:
    """(host, port) of `tcp://host:port` (`[v6 address]` allowed), the path of `ipc://path`."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint[len("ipc://") :]
    if not endpoint.startswith("tcp://"):
        raise ValueError(f"matcher endpoint {endpoint!r}: tcp://host:port or ipc://path")
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"matcher endpoint {endpoint!r} is not tcp://host:port")
    return host.strip("[]"), int(port)


class MatcherLink(Correlator["_Connection"]):
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
    - Deadlines and timeouts: each request carries `deadline` (send time + timeout, µs)
      and has one timer (`call_later`) at timeout + grace, cancelled when the reply
      comes; a request still waiting in the outbox then is never sent.
    - Lost connections: each connection knows the range of request ids written to it
      (ids are written in order), so when it closes, exactly those still unanswered fail
      at once with `LinkLost` (outcome unknown); those not yet written go out on the next.
    """

    def __init__(
        self, endpoint: str, timeout: float = DEFAULT_TIMEOUT, grace: float = DEADLINE_GRACE
    ) -> None:
        super().__init__(endpoint, timeout, grace)
        self.heartbeat_interval = HEARTBEAT_INTERVAL
        self.heartbeat_timeout = HEARTBEAT_TIMEOUT
        self._address = parse_endpoint(endpoint)
        self._outbox: list[tuple[bytes, Future, int]] = []
        self._dialing: asyncio.Task[None] | None = None
        # self._current (gateway/correlation.py) is set once its handshake is done.

    # -- requests ----------------------------------------------------------------------

    async def send(
        self, message: dict[str, Any], op: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """Like request_raw, but `message` (fields only; `op`, `req_id` and `deadline` are
        added to it) is sent as it is, saving a dict copy on the hot path."""
        loop, req_id, timeout, future = self._stamp(message, op, timeout)
        data = zmtp.frame(codec.encode_request(message))
        pending = self._pending
        connection = self._current
        outbox = self._outbox
        if connection is not None and len(pending) == 1:
            connection.write(data, req_id)  # alone in flight: nothing to share a write with
        else:
            outbox.append((data, future, req_id))
            if connection is None:
                self._dial(loop)
            elif len(outbox) == 1:
                loop.call_soon(self._flush)
        timer = self._arm(loop, future, op, timeout)
        try:
            return await future
        finally:
            timer.cancel()
            pending.pop(req_id, None)

    def _flush(self) -> None:
        """Write every request queued during this loop iteration, in one write."""
        connection = self._current
        if connection is None or not self._outbox:
            return  # sent when the connection is ready
        outbox, self._outbox = self._outbox, []
        live = [(data, req_id) for data, future, req_id in outbox if not future.done()]
        if live:
            connection.write(b"".join([data for data, _ in live]), live[-1][1])

    # -- the connection ----------------------------------------------------------------

    def _dial(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._dialing is None or self._dialing.done():
            self._dialing = loop.create_task(self._connect(loop))

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connect and shake hands, retrying while requests wait to be sent."""
        while True:
            # Requests whose callers gave up wait no more: nothing to connect for.
            self._outbox = [entry for entry in self._outbox if not entry[1].done()]
            if not self._outbox:
                return
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
            self._current = connection
            self._flush()
            return

    def _replace(self) -> None:
        """The connection is gone (lost or retired: gateway/correlation.py): requests
        still queued for it go out on a new one."""
        if self._outbox and self._loop is not None and not self._loop.is_closed():
            self._dial(self._loop)

    def _silent(self, connection: _Connection) -> None:
        """`connection` has answered nothing, not even PINGs, for HEARTBEAT_TIMEOUT: new
        requests go over a fresh one. Those in flight on it keep their deadlines (their
        outcome is known only then), as after a timeout."""
        if connection is self._current:
            log.warning(
                "matcher link %s: no answer to heartbeats in %gs; reconnecting",
                self.endpoint,
                self.heartbeat_timeout,
            )
            self.retire()
        elif connection not in self._retired:
            connection.abort()

    def _reset(self) -> None:
        """`reconnect` (gateway/correlation.py) closed every connection: stop dialing,
        and what waits to be sent is never sent."""
        if self._dialing is not None:
            self._dialing.cancel()
            self._dialing = None
        self._outbox = []


class _Connection(asyncio.Protocol):
    """One TCP connection of a MatcherLink: the ZMTP handshake, then reply frames."""

    def __init__(self, link: MatcherLink) -> None:
        self.link = link
        self.reader = zmtp.FrameReader()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.parts: list[bytes] = []  # the frames so far of a multi-frame message
        # Heartbeats: `heard` is set by every read; a tick that finds it unset PINGs.
        self.heard = False
        self.silent_ticks = 0
        self.beat: asyncio.TimerHandle | None = None
        # The ids of the first and last requests written here (0: none yet): a link
        # writes its requests in id order, so these are exactly the ones it carried.
        self.first_id = 0
        self.last_id = 0

    def write(self, data: bytes, last_id: int = 0) -> None:
        """Send bytes (requests up to id `last_id`, or a command); dropped once the
        connection is closing (its requests then fail with LinkLost when it is lost)."""
        if last_id:
            if not self.first_id:
                self.first_id = last_id  # the first request is the last of its write
            self.last_id = last_id
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
        self.heard = True
        reply = self.link._reply
        for flags, body in frames:
            if flags & zmtp.COMMAND:
                self._command(body)
            elif flags & zmtp.MORE or self.parts:
                self._part(flags, body)
            else:
                reply(body)

    def _part(self, flags: int, body: bytes) -> None:
        """A frame of a multi-frame message: no matcher reply is one, so it is dropped."""
        self.parts.append(body)
        if not flags & zmtp.MORE:
            log.warning(
                "matcher link %s: dropped a message of %d frames (a reply is one)",
                self.link.endpoint,
                len(self.parts),
            )
            self.parts = []

    def _tick(self) -> None:
        """Every heartbeat interval: PING a connection silent since the last tick; one
        silent for the heartbeat timeout is half-open or its peer frozen: retired."""
        if self.transport is None or self.transport.is_closing():
            return
        link = self.link
        if self.heard:
            self.heard = False
            self.silent_ticks = 0
        else:
            self.silent_ticks += 1
            if self.silent_ticks * link.heartbeat_interval >= link.heartbeat_timeout:
                link._silent(self)
                return
            self.write(zmtp.PING)
        self.beat = self.loop.call_later(link.heartbeat_interval, self._tick)

    def _command(self, body: bytes) -> None:
        try:
            name, data = zmtp.split_command(body)
            if name == b"READY":
                socket_type = zmtp.parse_metadata(data).get(b"socket-type")
                if socket_type != b"ROUTER":
                    raise zmtp.ProtocolError(f"the peer is a {socket_type!r} socket, not ROUTER")
                if not self.ready.done():
                    self.ready.set_result(None)
                    self.beat = self.loop.call_later(self.link.heartbeat_interval, self._tick)
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
        if self.beat is not None:
            self.beat.cancel()
        self._settle(ConnectionResetError("closed during the handshake"))
        self.link._lost(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def not_executed(symbol: str, op: str, exc: Exception) -> str:
    """The 503 `matcher_timeout` message: the request's deadline has passed unanswered."""
    if op in MUTATING_OPS:
        return (
            f"not executed: the {symbol} matcher did not answer by the request's "
            f"deadline ({exc}), and it refuses a command it reaches later; retry"
        )
    return f"the {symbol} matcher did not answer in time ({exc}); retry"


def unknown_outcome(symbol: str, op: str, exc: Exception) -> str:
    """The 503 `matcher_unavailable` message: the link broke with the request in flight."""
    if op in MUTATING_OPS:
        return (
            f"outcome unknown: {exc}; the {symbol} matcher may have executed it before "
            "it went away: look the order up (client_order_id) once it is back"
        )
    return f"the {symbol} matcher went away ({exc}); retry"


def gateway_curve(config: SystemConfig) -> dict[str, CurveKeys]:
    """Each symbol's CURVE client keys under `[curve]` (none: the NULL mechanism); ValueError
    if the gateway's own key or the matchers' public key cannot be read."""
    curve = config.curve
    if curve is None:
        return {}
    if curve.gateway_secret is None:
        raise ValueError("[curve] needs gateway_secret: the gateway's key pair")
    keys = client_keys(curve.matcher_public, curve.gateway_secret)
    return dict.fromkeys(config.symbols, keys)


def public_key(curve: dict[str, CurveKeys], symbol: str) -> dict[str, str]:
    """GET /'s `curve_public_key` of a symbol's matcher (public: clients need it)."""
    keys = curve.get(symbol)
    return {"curve_public_key": keys.server_public.decode()} if keys is not None else {}


def choose_link(requested: str | None, curve: bool = False) -> str:
    """The transport to use: "zmtp" (the accelerator) or "pyzmq" (the library path).

    `requested` is the flag or `[server] gateway_link`; None reads MATCHWIRE_GATEWAY_LINK
    (CI runs the gateway's tests once more with it set to pyzmq), then "auto": the ZMTP
    link where it applies, pyzmq under CURVE. ValueError for anything else, or for
    "zmtp" under CURVE (the accelerator speaks only the NULL mechanism)."""
    choice = requested or os.environ.get(LINK_ENV) or "auto"
    if choice not in LINKS:
        raise ValueError(f"gateway link {choice!r}: one of {', '.join(LINKS)}")
    if choice == "zmtp" and curve:
        raise ValueError("gateway link 'zmtp' speaks no CURVE: use 'pyzmq' or 'auto'")
    if choice == "auto":
        return "pyzmq" if curve else "zmtp"
    return choice


class Matchers:
    """Routes requests to the matcher of their symbol and maps its answers.

    `link`: see choose_link. `curve`: each symbol's client keys, when its matcher
    speaks CURVE (the pyzmq link only)."""

    def __init__(
        self,
        symbols: dict[str, SymbolConfig],
        timeout: float = DEFAULT_TIMEOUT,
        grace: float = DEADLINE_GRACE,
        link: str | None = None,
        curve: dict[str, CurveKeys] | None = None,
    ) -> None:
        self.timeout = timeout
        curve = curve or {}
        self.link = choose_link(link, bool(curve))
        self.endpoints = {symbol: config.order_endpoint for symbol, config in symbols.items()}
        self.clients: dict[str, MatcherLink | PyzmqLink] = {
            symbol: (
                PyzmqLink(endpoint, timeout, grace, curve.get(symbol))
                if self.link == "pyzmq"
                else MatcherLink(endpoint, timeout, grace)
            )
            for symbol, endpoint in self.endpoints.items()
        }
        # Bumped by each retirement, so a batch of requests that time out together
        # replaces the connection once, not once per request.
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
        except LinkLost as exc:
            self.up[symbol] = False
            raise ApiError(Code.UNAVAILABLE, unknown_outcome(symbol, op, exc)) from None
        except MatcherTimeout as exc:
            self._timed_out(symbol, generation)
            raise ApiError(Code.TIMEOUT, not_executed(symbol, op, exc)) from None
        self.up[symbol] = True
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise ApiError(str(error.get("code")), str(error.get("message")))

    def _timed_out(self, symbol: str, generation: int) -> None:
        self.up[symbol] = False
        if self.generations[symbol] == generation:
            self.generations[symbol] = generation + 1
            self.clients[symbol].retire()

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
