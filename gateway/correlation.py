"""What both of the gateway's links to a matcher do the same way, whatever carries the
bytes (gateway/matchers.py: the ZMTP accelerator; gateway/zmq_link.py: pyzmq).

Requests are correlated by `req_id`; each is stamped with `deadline` = send time +
timeout (µs) and has one timer: a mutating request waits its grace past the deadline,
then one last look at the socket, before MatcherTimeout (the matcher will refuse it, so
it was not executed); a read fails at its deadline. A connection lost with requests
written to it fails exactly those with LinkLost (outcome unknown). docs/api.md, "503".

The connections (a ZMTP connection, a pyzmq socket: a Carrier) are kept here too: the
current one, which new requests go over, and the retired ones, open for the replies
still owed on them; `retire`, `reconnect` and a lost connection work the same on both.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Generic, Protocol, TypeVar

from clients.zmq_client import DEADLINE_GRACE, MatcherTimeout
from matcher import codec
from matcher.protocol import MUTATING_OPS

MAX_IN_FLIGHT = 100_000  # requests awaiting a reply per matcher (a libzmq socket's HWM)
# After the grace, one more pass of the event loop before a 503: a loop that was busy
# when both the timer and the reply came due runs the timer first (uvloop does), and the
# reply waiting in the socket must win.
LAST_LOOK = 0.001

Future = asyncio.Future[dict[str, Any]]


class Carrier(Protocol):
    """One connection of a link: the range of request ids written to it (0: none yet;
    a link writes its requests in id order), and how to close it at once."""

    first_id: int
    last_id: int

    def abort(self) -> None: ...


C = TypeVar("C", bound=Carrier)


class LinkLost(MatcherTimeout):
    """The connection closed with the request written to it and unanswered: the matcher
    may have executed it (and died before replying) or not."""


class Correlator(Generic[C]):
    """The requests in flight on one link, their timers and the link's connections; a
    link subclasses it and carries the bytes (`send`, and the hooks `_replace` and
    `_reset`)."""

    def __init__(self, endpoint: str, timeout: float, grace: float = DEADLINE_GRACE) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.grace = grace
        self._longest = timeout  # the longest timeout of any request sent: bounds a retiree
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: C | None = None  # the connection new requests go over, if any
        self._retired: set[C] = set()  # open for the replies owed on them

    async def request_raw(
        self, op: str, timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send one request and return the whole reply map; MatcherTimeout if none comes
        by its deadline + grace (LinkLost if its connection closed first)."""
        return await self.send(fields, op, timeout)

    async def send(
        self, message: dict[str, Any], op: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """Like request_raw, but `message` (fields only; `op`, `req_id` and `deadline` are
        added to it) is sent as it is, saving a dict copy on the hot path."""
        raise NotImplementedError

    # -- connections -------------------------------------------------------------------

    def _replace(self) -> None:
        """Hook: the current connection is gone (lost or retired)."""

    def _reset(self) -> None:
        """Hook: `reconnect` has closed every connection; drop what waits to be sent."""

    def _lost(self, carrier: C) -> None:
        """`carrier` is gone: requests written to it and unanswered fail at once
        (LinkLost: their replies can no longer come)."""
        self._fail_written(carrier.first_id, carrier.last_id)
        if self._current is carrier:
            self._current = None
            self._replace()

    def retire(self) -> None:
        """New requests go over a fresh connection (after a timeout: the peer may be
        gone for good, say a host that vanished without closing its connections). The
        old one stays open for the replies owed on it until every request written to
        it has passed its deadline + grace, then closes."""
        carrier, self._current = self._current, None
        if carrier is None or self._loop is None:
            return
        self._retired.add(carrier)
        # Twice the grace: the requests' own timers, late on a busy loop, go first.
        self._loop.call_later(self._longest + 2 * self.grace, self._drop, carrier)
        self._replace()

    def _drop(self, carrier: C) -> None:
        self._retired.discard(carrier)
        carrier.abort()

    def reconnect(self) -> None:
        """A fresh connection on the next request; every reply owed to the old ones is
        abandoned, and the requests waiting for them fail at once (LinkLost: a new event
        loop, or the gateway closing)."""
        carrier, self._current = self._current, None
        if carrier is not None:
            carrier.abort()
        for retired in self._retired:
            retired.abort()
        self._retired.clear()
        self._reset()
        self._fail_all()

    async def close(self) -> None:
        self.reconnect()

    # -- requests ----------------------------------------------------------------------

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
