"""What both of the gateway's links to a matcher do the same way, whatever carries the
bytes (gateway/matchers.py: the ZMTP accelerator; gateway/zmq_link.py: pyzmq).

Requests are correlated by `req_id`; each is stamped with `deadline` = send time +
timeout (µs) and has one timer: a mutating request waits its grace past the deadline,
then one last look at the socket, before MatcherTimeout (the matcher will refuse it, so
it was not executed); a read fails at its deadline. A connection lost with requests
written to it fails exactly those with LinkLost (outcome unknown). docs/api.md, "503".
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from clients.zmq_client import DEADLINE_GRACE, MatcherTimeout
from matcher import codec
from matcher.protocol import MUTATING_OPS

MAX_IN_FLIGHT = 100_000  # requests awaiting a reply per matcher (a libzmq socket's HWM)
# After the grace, one more pass of the event loop before a 503: a loop that was busy
# when both the timer and the reply came due runs the timer first (uvloop does), and the
# reply waiting in the socket must win.
LAST_LOOK = 0.001

Future = asyncio.Future[dict[str, Any]]


class LinkLost(MatcherTimeout):
    """The connection closed with the request written to it and unanswered: the matcher
    may have executed it (and died before replying) or not."""


class Correlator:
    """The requests in flight on one link and their timers; a link subclasses it and
    carries the bytes (and defines `reconnect`)."""

    def __init__(self, endpoint: str, timeout: float, grace: float = DEADLINE_GRACE) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.grace = grace
        self._longest = timeout  # the longest timeout of any request sent: bounds a retiree
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def reconnect(self) -> None:
        raise NotImplementedError

    def _stamp(
        self, message: dict[str, Any], op: str, timeout: float | None
    ) -> tuple[asyncio.AbstractEventLoop, int, float, Future]:
        """Ready `message` to send: (loop, req_id, timeout, the future of its reply)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests, a restarted server)
            self.reconnect()
            self._loop = loop
        if len(self._pending) >= MAX_IN_FLIGHT:
            raise MatcherTimeout(f"the queue to {self.endpoint} is full")
        timeout = timeout or self.timeout
        if timeout > self._longest:
            self._longest = timeout
        req_id = next(self._ids)
        message["op"] = op
        message["req_id"] = req_id
        message["deadline"] = time.time_ns() // 1000 + int(timeout * 1_000_000)
        future = loop.create_future()
        self._pending[req_id] = future
        return loop, req_id, timeout, future

    def _arm(
        self, loop: asyncio.AbstractEventLoop, future: Future, op: str, timeout: float
    ) -> asyncio.TimerHandle:
        # Only a mutating request needs the grace and the last look: a late reply to a
        # read changes nothing.
        if op in MUTATING_OPS:
            return loop.call_later(timeout + self.grace, self._expire, future, timeout, False)
        return loop.call_later(timeout, self._expire, future, timeout, True)

    def _expire(self, future: Future, timeout: float, last_look: bool) -> None:
        """A mutating request's deadline + grace has passed: after one last look at the
        socket (LAST_LOOK), it fails with MatcherTimeout. A read fails at its deadline."""
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

    def _fail_written(self, first: int, last: int) -> None:
        """The requests with ids first..last were written to a connection now lost: those
        still unanswered fail with LinkLost (ids are written in order)."""
        if not last:
            return
        for req_id, future in list(self._pending.items()):
            if first <= req_id <= last and not future.done():
                future.set_exception(
                    LinkLost(f"the connection to {self.endpoint} closed with the request in flight")
                )

    def _fail_all(self) -> None:
        """The link is reset: every request still waiting fails with LinkLost."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(LinkLost(f"the link to {self.endpoint} was reset"))
