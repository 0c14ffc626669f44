"""What the hub writes to its WebSocket clients, and the two ways it writes it.

Every message is framed once (`text_frame`): a server's frames are not masked (RFC 6455
§5.1), so the same bytes serve every client. The hub writes them through a `Link`, one
per connection, which is one of:

- `AsgiLink`, the library path: the ASGI server's own `send`, through a Starlette
  WebSocket, so it works on any ASGI server and any of uvicorn's WebSocket
  implementations. Nothing is written outside a sender task: each frame waits for the
  server's `send`, which waits while the connection's buffer is full, and a send that
  has waited `drain_timeout` seconds counts the client as stuck (`Stalled`).
- `feedhub.direct.FeedProtocol`, the accelerator: uvicorn's legacy `websockets`
  implementation with the frames written straight to its transport. It applies only
  where `direct_path_refusal` finds the versions it was built on (docs/feeds.md, "Send
  paths"); that module imports websockets.legacy, so only the server imports it, and
  only then.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from importlib import metadata, util
from typing import Any, Protocol

from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

LINK = "matchwire.feed_link"  # the ASGI scope extension that holds the direct path's link
DRAIN_TIMEOUT = 10.0  # seconds a connection may go without draining; also the close's limit
CLOSE_TRY_AGAIN_LATER = 1013

# The versions the direct path was written against and is tested with: it reads
# websockets.legacy's private state and overrides uvicorn's protocol class.
DIRECT_PATH_VERSIONS = {"uvicorn": ((0, 54), (0, 55)), "websockets": ((17, 0), (18, 0))}


def text_frame(text: str) -> bytes:
    """`text` as one final, unmasked WebSocket text frame (opcode 1, no extension)."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 1 << 16:
        return b"\x81\x7e" + length.to_bytes(2, "big") + payload
    return b"\x81\x7f" + length.to_bytes(8, "big") + payload


def frame_text(frame: bytes) -> str:
    """The text of a frame made by `text_frame` (for the ASGI path, which sends text)."""
    length = frame[1]
    start = 2 if length < 126 else 4 if length == 126 else 10
    return str(memoryview(frame)[start:], "utf-8")


class Stalled(ConnectionError):
    """A send waited `drain_timeout` for room: the client is not reading."""


class Link(Protocol):
    """How the hub writes one connection's frames (`AsgiLink` or `direct.FeedProtocol`)."""

    send_path: str  # "asgi" or "direct"
    stalled: bool  # closed, or to be closed, because nothing drained for drain_timeout

    @property
    def writable(self) -> bool:
        """`write` may be called now (the direct path's hot path; never on the ASGI path)."""

    @property
    def gone(self) -> bool:
        """Closing or closed: nothing more is sent on it."""

    def write(self, frame: bytes) -> None: ...

    async def wait_writable(self) -> None:
        """Until a frame can be sent; ConnectionError once it never will be."""

    async def send_frame(self, frame: bytes) -> None:
        """Send one frame; ConnectionError (Stalled for a stuck client) when it cannot."""

    def set_drain_timeout(self, seconds: float) -> None: ...

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, when the hub is done with the connection."""


class _NotDrained(Exception):
    """A data send timed out. Not an OSError: Starlette would take the WebSocket for
    disconnected, and the close (1013) that tells the client why could not be sent."""


class AsgiLink:
    """The library path: frames sent as text through the ASGI server's `send`.

    `websocket` is the connection's Starlette WebSocket, built on a `send` that bounds
    every data and close message by `drain_timeout` (one timer per connection, re-armed
    only when a send is still waiting when it fires): the server's `send` waits while its
    buffer is above the high-water mark (all of uvicorn 0.54's implementations do), so a send
    that waited that long means nothing drained for that long. A data send that times out
    raises `Stalled` from `send_frame` (the hub then closes the client with 1013); a close
    that times out is given up (the app is done with the connection, and the server's
    transport and the kernel end it, docs/feeds.md)."""

    send_path = "asgi"
    writable = False  # no direct write: every frame goes through the client's sender task

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = send
        self.websocket = WebSocket(scope, receive, self._bounded_send)
        self.drain_timeout = DRAIN_TIMEOUT
        self.stalled = False
        self.gone = False
        self._lost: list[Callable[[], None]] = []
        self._loop = asyncio.get_running_loop()
        # The send in progress (when it started, the task awaiting it) and the one timer
        # that checks it: asyncio.timeout() per send costs ~7 µs, more than the send.
        self._sending: tuple[float, asyncio.Task[Any]] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._expired = False

    def set_drain_timeout(self, seconds: float) -> None:
        self.drain_timeout = seconds

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._lost.append(callback)

    def ended(self) -> None:
        """The ASGI call is over: the hub is done with the connection."""
        self.gone = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        callbacks, self._lost = self._lost, []
        for callback in callbacks:
            callback()

    def write(self, frame: bytes) -> None:
        raise RuntimeError("the ASGI path has no direct write (writable is always False)")

    async def wait_writable(self) -> None:
        if self.gone:
            raise ConnectionError("the WebSocket is closing or closed")

    async def send_frame(self, frame: bytes) -> None:
        try:
            await self.websocket.send_text(frame_text(frame))
        except _NotDrained:
            self.stalled = self.gone = True
            raise Stalled(f"not reading: nothing drained for {self.drain_timeout:g} s") from None
        except (WebSocketDisconnect, RuntimeError) as error:  # gone, or closed meanwhile
            self.gone = True
            raise ConnectionError("the WebSocket is closed") from error

    async def _bounded_send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.close":
            self.gone = True
        elif kind != "websocket.send":
            await self._send(message)  # the handshake: nothing is buffered before it
            return
        task = asyncio.current_task()
        assert task is not None
        self._sending = (self._loop.time(), task)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self.drain_timeout, self._watch)
        try:
            await self._send(message)
        except asyncio.CancelledError:
            if not self._expired:
                raise  # cancelled by the hub, not by the watchdog
            self._expired = False
            task.uncancel()
            if kind == "websocket.send":
                raise _NotDrained from None
            # An OSError: Starlette marks the WebSocket disconnected and raises
            # WebSocketDisconnect, which closing treats as a client already gone.
            raise ConnectionAbortedError(
                f"the close was not sent in {self.drain_timeout:g} s"
            ) from None
        finally:
            self._sending = None

    def _watch(self) -> None:
        """Cancel a send that has waited drain_timeout; otherwise look again when the
        one in progress would reach it (none in progress: the next send sets the timer)."""
        self._watchdog = None
        sending = self._sending
        if sending is None:
            return
        started, task = sending
        left = started + self.drain_timeout - self._loop.time()
        if left > 0:
            self._watchdog = self._loop.call_later(left, self._watch)
            return
        self._expired = True
        task.cancel()


def _version(text: str) -> tuple[int, int]:
    numbers = [int(part) for part in re.findall(r"\d+", text)[:2]]
    return (numbers + [0, 0])[0], (numbers + [0, 0])[1]


def direct_path_refusal() -> str | None:
    """Why the direct path does not apply here (None: it does): a version of uvicorn or
    websockets it does not know, or websockets.legacy / uvicorn's implementation on it
    missing."""
    for name, (lowest, above) in DIRECT_PATH_VERSIONS.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            return f"{name} is not installed"
        if not lowest <= _version(installed) < above:
            known = ".".join(map(str, lowest)) + " to before " + ".".join(map(str, above))
            return f"{name} {installed} is not a version it knows ({known})"
    for module in ("websockets.legacy", "uvicorn.protocols.websockets.websockets_impl"):
        if util.find_spec(module) is None:
            return f"{module} is missing"
    return None
