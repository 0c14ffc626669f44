"""The library path of the gateway's link to a matcher: a pyzmq `zmq.asyncio` DEALER.

The same contract as `gateway.matchers.MatcherLink` (the ZMTP accelerator): `send`,
`request_raw`, `retire`, `reconnect`, `close`; requests correlated by `req_id`, each
sent with `deadline` = send time + timeout; a mutating request waits its grace past the
deadline (and one last look) before MatcherTimeout, a read fails at its deadline; after
`retire()` new requests go over a fresh socket and the old one stays open for the
replies owed on it; a connection lost with requests written to it fails them at once
with LinkLost (outcome unknown). It is the only path under CurveZMQ (docs/operations.md).

How a lost connection is seen: libzmq reconnects by itself and says nothing to the
socket's user, so each socket has a monitor (handshake succeeded / disconnected, a few
events per connection, nothing per request). A disconnect after a handshake fails every
request sent on that socket and unanswered (some may have reached the matcher), and the
socket is replaced: its queued, unsent requests die with it (LINGER 0), so no request
answered "outcome unknown" is sent later. Requests sent before any handshake wait, as in
the ZMTP link, until their deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import zmq
import zmq.asyncio

from clients.curve import CurveKeys
from clients.zmq_client import DEADLINE_GRACE, MatcherTimeout
from matcher import codec
from matcher.protocol import MUTATING_OPS

log = logging.getLogger("matchwire.gateway")

MAX_IN_FLIGHT = 100_000  # the socket's high-water marks, as for the ZMTP link
LAST_LOOK = 0.001  # see gateway/matchers.py
WATCHED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED

Future = asyncio.Future[dict[str, Any]]


class LinkLost(MatcherTimeout):
    """The connection closed with the request written to it and unanswered: the matcher
    may have executed it (and died before replying) or not."""


class _Socket:
    """One DEALER of a PyzmqLink, its reader and its monitor."""

    def __init__(self, link: PyzmqLink, loop: asyncio.AbstractEventLoop) -> None:
        context = zmq.asyncio.Context.instance()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, MAX_IN_FLIGHT)
        sock.setsockopt(zmq.RCVHWM, MAX_IN_FLIGHT)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        if link.curve is not None:
            link.curve.apply(sock)
        self.monitor = sock.get_monitor_socket(WATCHED)
        sock.connect(link.endpoint)
        self.sock = sock
        self.link = link
        self.first_id = 0  # the first and last request ids sent here (0: none yet)
        self.last_id = 0
        self.handshakes = 0
        self.closed = False
        self.tasks = [loop.create_task(self._read()), loop.create_task(self._watch())]

    async def _read(self) -> None:
        recv = self.sock.recv_multipart
        reply = self.link._reply
        while True:
            frames = await recv()
            if len(frames) == 1:
                reply(frames[0])
            else:  # no matcher reply is more than one frame
                log.warning("matcher link %s: dropped a message of %d frames (a reply is "
                            "one)", self.link.endpoint, len(frames))

    async def _watch(self) -> None:
        while True:
            frames = await self.monitor.recv_multipart()
            event = int.from_bytes(frames[0][:2], "little")
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshakes += 1
            elif event == zmq.EVENT_DISCONNECTED and self.handshakes:
                self.link._lost(self)
                return

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            for task in self.tasks:
                task.cancel()
            self.sock.disable_monitor()
        except RuntimeError:  # their event loop is closed already (a restarted server)
            pass
        self.monitor.close(0)
        self.sock.close(0)


class PyzmqLink:
    """One pyzmq DEALER to one matcher (see the module docstring)."""

    def __init__(
        self, endpoint: str, timeout: float = 2.0, grace: float = DEADLINE_GRACE,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.grace = grace
        self.curve = curve
        self._longest = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._socket: _Socket | None = None
        self._retired: set[_Socket] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def request_raw(
        self, op: str, timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        return await self.send(fields, op, timeout)

    async def send(
        self, message: dict[str, Any], op: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """The reply map to `message` (fields only; op, req_id and deadline are added)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.reconnect()
            self._loop = loop
        pending = self._pending
        if len(pending) >= MAX_IN_FLIGHT:
            raise MatcherTimeout(f"the queue to {self.endpoint} is full")
        timeout = timeout or self.timeout
        if timeout > self._longest:
            self._longest = timeout
        req_id = next(self._ids)
        message["op"] = op
        message["req_id"] = req_id
        message["deadline"] = time.time_ns() // 1000 + int(timeout * 1_000_000)
        sock = self._socket
        if sock is None:
            sock = self._socket = _Socket(self, loop)
        future = loop.create_future()
        pending[req_id] = future
        if not sock.first_id:
            sock.first_id = req_id
        sock.last_id = req_id
        if op in MUTATING_OPS:
            timer = loop.call_later(timeout + self.grace, self._expire, future, timeout, False)
        else:
            timer = loop.call_later(timeout, self._expire, future, timeout, True)
        try:
            try:
                await sock.sock.send(codec.encode_request(message), zmq.NOBLOCK)
            except zmq.Again:
                raise MatcherTimeout(f"the queue to {self.endpoint} is full") from None
            return await future
        finally:
            timer.cancel()
            pending.pop(req_id, None)

    def _expire(self, future: Future, timeout: float, last_look: bool) -> None:
        if future.done():
            return
        if not last_look:
            assert self._loop is not None
            self._loop.call_later(LAST_LOOK, self._expire, future, timeout, True)
            return
        future.set_exception(MatcherTimeout(f"no reply from {self.endpoint} in {timeout:g}s"))

    def _reply(self, body: bytes) -> None:
        try:
            reply = codec.decode_reply(body)
        except Exception:  # not a reply of ours: nobody waits for it
            return
        future = self._pending.pop(reply.get("req_id"), None)  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_result(reply)

    def _lost(self, sock: _Socket) -> None:
        """`sock`'s connection dropped after its handshake: what was sent on it and is
        unanswered fails now (LinkLost); the socket goes, with whatever it still queues."""
        first, last = sock.first_id, sock.last_id
        if last:
            for req_id, future in list(self._pending.items()):
                if first <= req_id <= last and not future.done():
                    future.set_exception(LinkLost(
                        f"the connection to {self.endpoint} closed with the request in flight"
                    ))
        if self._socket is sock:
            self._socket = None
        self._retired.discard(sock)
        sock.close()

    def retire(self) -> None:
        """New requests go over a fresh socket; the old one takes the replies owed on it
        until every request sent on it has passed its deadline + grace."""
        sock, self._socket = self._socket, None
        if sock is None or self._loop is None:
            return
        self._retired.add(sock)
        self._loop.call_later(self._longest + 2 * self.grace, self._drop, sock)

    def _drop(self, sock: _Socket) -> None:
        self._retired.discard(sock)
        sock.close()

    def reconnect(self) -> None:
        """A fresh socket on the next request; requests awaiting replies fail at once."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()
        for retired in self._retired:
            retired.close()
        self._retired.clear()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(LinkLost(f"the link to {self.endpoint} was reset"))

    async def close(self) -> None:
        self.reconnect()
