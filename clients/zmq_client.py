"""Raw ZeroMQ clients for one matcher (DEALER -> ROUTER), sync and asyncio.

Requests carry a `req_id`; replies are matched by it, so many requests can be in
flight at once (pipelining). The wire format is docs/protocol.md; the bytes are
matcher/codec.py's.

    with MatcherClient("tcp://127.0.0.1:5555") as client:
        order = client.request("new_order", symbol="BTC-USDT", side="buy",
                               order_type="limit", price="30000", quantity="0.5")

Deadlines (docs/protocol.md): a request may carry `deadline` (µs since the epoch), and the
matcher refuses a mutating request it reaches after it. Pass `deadline=` to one request,
or make the client with `deadlines=True` to give every request the deadline "now +
its timeout". A request with a deadline waits for its reply until that deadline plus
DEADLINE_GRACE (a reply may be in flight when the deadline passes); its MatcherTimeout
then means the matcher will not execute it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable
from typing import Any

import zmq
import zmq.asyncio

from clients.curve import CurveKeys
from matcher import codec


class MatcherError(Exception):
    """The matcher answered ok: false."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class MatcherTimeout(Exception):
    """No reply in time: the matcher is down or overloaded."""


def _result(reply: dict[str, Any]) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    error = reply.get("error") or {}
    raise MatcherError(str(error.get("code")), str(error.get("message")))


# How long past a request's deadline its reply is still awaited: the matcher may apply a
# command just before the deadline and its reply (sent after the batch's group commit)
# arrive just after. The gateway waits as long.
DEADLINE_GRACE = 0.5


def deadline_after(seconds: float) -> int:
    """The `deadline` field for `seconds` from now: integer µs since the Unix epoch."""
    return time.time_ns() // 1000 + int(seconds * 1_000_000)


def _wait_for(deadline: Any, timeout: float) -> float:
    """Seconds to wait for a reply: until `deadline` + grace, or `timeout` without one."""
    if deadline.__class__ is not int:
        return timeout
    return max(0.0, deadline / 1_000_000 - time.time()) + DEADLINE_GRACE


def _timed_out(endpoint: str, deadline: Any, waited: float) -> MatcherTimeout:
    if deadline.__class__ is not int:
        return MatcherTimeout(f"no reply from {endpoint} in {waited:g}s")
    return MatcherTimeout(
        f"no reply from {endpoint} by the request's deadline + {DEADLINE_GRACE:g}s: the "
        "matcher does not execute a mutating request it reaches after its deadline"
    )


class MatcherClient:
    """Blocking client. `request` waits for one reply; `pipeline` sends many, then reads.

    `deadlines=True`: every request carries the deadline "sent + timeout" (see above).
    `curve`: the keys to speak CurveZMQ with a matcher that has it on (docs/protocol.md).
    """

    def __init__(
        self,
        endpoint: str,
        timeout: float = 5.0,
        context: zmq.Context | None = None,
        deadlines: bool = False,
        curve: CurveKeys | None = None,
    ):
        self.endpoint = endpoint
        self.curve = curve
        self.timeout = timeout
        self.timeout_ms = int(timeout * 1000)
        self.deadlines = deadlines
        self._context = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._socket = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1_000_000)
        sock.setsockopt(zmq.RCVHWM, 1_000_000)
        if self.curve is not None:
            self.curve.apply(sock)
        sock.connect(self.endpoint)
        return sock

    def reconnect(self) -> None:
        """A fresh socket: replies owed to the old one are abandoned."""
        self._socket.close(0)
        self._socket = self._connect()

    def send_raw(self, *frames: bytes) -> None:
        """Send arbitrary frames (tests use it for malformed input)."""
        self._socket.send_multipart(list(frames))

    def recv_reply(self, timeout: float | None = None) -> dict[str, Any]:
        """The next reply, whoever it answers; MatcherTimeout after `timeout` seconds."""
        timeout_ms = self.timeout_ms if timeout is None else int(timeout * 1000)
        if not self._socket.poll(timeout_ms):
            raise MatcherTimeout(f"no reply from {self.endpoint} in {timeout_ms} ms")
        return codec.decode_reply(self._socket.recv())

    def request_raw(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and return the whole reply map (ok or not).

        `timeout` (seconds) replaces the client's for this request; `deadline` (µs since
        the epoch) is sent as the request's field and replaces the timeout (see above)."""
        req_id = next(self._ids)
        timeout = timeout or self.timeout
        if self.deadlines and fields.get("deadline") is None:
            fields["deadline"] = deadline_after(timeout)
        deadline = fields.get("deadline")
        wait = _wait_for(deadline, timeout)
        self._socket.send(codec.encode_request({"op": op, "req_id": req_id, **fields}))
        give_up = time.monotonic() + wait
        while True:  # skip replies owed to requests that timed out earlier
            left = give_up - time.monotonic()
            if left <= 0 or not self._socket.poll(int(left * 1000) + 1):
                raise _timed_out(self.endpoint, deadline, wait)
            reply = codec.decode_reply(self._socket.recv())
            if reply.get("req_id") == req_id:
                return reply

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> Any:
        """Send one request; return its result or raise MatcherError / MatcherTimeout."""
        return _result(self.request_raw(op, timeout, **fields))

    def pipeline(self, requests: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send every request without waiting, then collect the replies in order.

        With `deadlines=True`, a request without a deadline gets "now + timeout", and each
        reply is awaited for timeout + DEADLINE_GRACE."""
        sent = []
        send = self._socket.send
        deadlines = self.deadlines
        for request in requests:
            req_id = next(self._ids)
            sent.append(req_id)
            if deadlines and request.get("deadline") is None:
                request = {**request, "deadline": deadline_after(self.timeout)}
            send(codec.encode_request({**request, "req_id": req_id}))
        replies: dict[Any, dict[str, Any]] = {}
        wanted = set(sent)
        wait = self.timeout + DEADLINE_GRACE if deadlines else None
        while wanted:
            reply = self.recv_reply(wait)
            answered = reply.get("req_id")
            if answered in wanted:
                wanted.discard(answered)
                replies[answered] = reply
        return [replies[req_id] for req_id in sent]

    def close(self) -> None:
        self._socket.close(0)

    def __enter__(self) -> MatcherClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncMatcherClient:
    """asyncio client: many coroutines share one DEALER; a reader task routes replies."""

    def __init__(
        self,
        endpoint: str,
        timeout: float = 5.0,
        deadlines: bool = False,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.curve = curve  # as for MatcherClient
        self.timeout = timeout
        self.deadlines = deadlines  # every request carries "sent + timeout" (see above)
        self._context = zmq.asyncio.Context.instance()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._socket = self._connect()
        self._reader: asyncio.Task[None] | None = None

    def _connect(self) -> zmq.asyncio.Socket:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        if self.curve is not None:
            self.curve.apply(sock)
        sock.connect(self.endpoint)
        return sock

    async def _read_replies(self) -> None:
        sock = self._socket
        while True:
            frame = await sock.recv()
            try:
                reply = codec.decode_reply(frame)
            except ValueError:
                continue
            future = self._pending.pop(reply.get("req_id"), None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(reply)

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def request_raw(
        self, op: str, timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send one request and return the whole reply map; `timeout` and `deadline` as
        for MatcherClient.request_raw."""
        self._ensure_reader()
        req_id = next(self._ids)
        timeout = timeout or self.timeout
        if self.deadlines and fields.get("deadline") is None:
            fields["deadline"] = deadline_after(timeout)
        deadline = fields.get("deadline")
        wait = _wait_for(deadline, timeout)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        await self._socket.send(codec.encode_request({"op": op, "req_id": req_id, **fields}))
        try:
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            raise _timed_out(self.endpoint, deadline, wait) from None
        finally:
            self._pending.pop(req_id, None)

    async def request(self, op: str, timeout: float | None = None, **fields: Any) -> Any:
        return _result(await self.request_raw(op, timeout, **fields))

    def reconnect(self) -> None:
        """Drop the socket (and every reply owed to it) for a fresh one."""
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        self._socket.close(0)
        self._socket = self._connect()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        self._socket.close(0)
