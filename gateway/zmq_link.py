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
import logging
from typing import Any

import zmq
import zmq.asyncio

from clients.curve import CurveKeys
from clients.zmq_client import DEADLINE_GRACE, MatcherTimeout
from gateway.correlation import MAX_IN_FLIGHT, Correlator
from matcher import codec

log = logging.getLogger("matchwire.gateway")

WATCHED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


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
                log.warning(
                    "matcher link %s: dropped a message of %d frames (a reply is one)",
                    self.link.endpoint,
                    len(frames),
                )

    async def _watch(self) -> None:
        while True:
            frames = await self.monitor.recv_multipart()
            event = int.from_bytes(frames[0][:2], "little")
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshakes += 1
            elif event == zmq.EVENT_DISCONNECTED and self.handshakes:
                self.link._lost(self)
                return

    def abort(self) -> None:
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


class PyzmqLink(Correlator[_Socket]):
    """One pyzmq DEALER to one matcher (see the module docstring)."""

    def __init__(
        self,
        endpoint: str,
        timeout: float = 2.0,
        grace: float = DEADLINE_GRACE,
        curve: CurveKeys | None = None,
    ) -> None:
        super().__init__(endpoint, timeout, grace)
        self.curve = curve

    async def send(
        self, message: dict[str, Any], op: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """The reply map to `message` (fields only; op, req_id and deadline are added)."""
        loop, req_id, timeout, future = self._stamp(message, op, timeout)
        pending = self._pending
        sock = self._current
        if sock is None:
            sock = self._current = _Socket(self, loop)
        if not sock.first_id:
            sock.first_id = req_id
        sock.last_id = req_id
        timer = self._arm(loop, future, op, timeout)
        try:
            try:
                await sock.sock.send(codec.encode_request(message), zmq.NOBLOCK)
            except zmq.Again:
                raise MatcherTimeout(f"the queue to {self.endpoint} is full") from None
            return await future
        finally:
            timer.cancel()
            pending.pop(req_id, None)

    def _lost(self, sock: _Socket) -> None:
        """`sock`'s connection dropped after its handshake: what was sent on it and is
        unanswered fails now (LinkLost); the socket goes, with whatever it still queues.
        (retire, reconnect and close: gateway/correlation.py.)"""
        super()._lost(sock)
        self._drop(sock)
