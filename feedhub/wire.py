"""The bytes the hub writes to its WebSocket clients, and the connection it writes them on.

A server's WebSocket frames are not masked (RFC 6455 §5.1), so one text frame, built once
per message by `text_frame`, serves every client, and sending it to one client is one
`transport.write`. Going through ASGI instead costs ~10 µs of CPU per client and message
(uvicorn's send checks, then websockets' `send`: state checks, framing, a drain, several
awaits), which is most of the fan-out's cost with hundreds of clients (docs/feeds.md).

`FeedProtocol` is uvicorn's `websockets` implementation (`uvicorn.Config(ws=FeedProtocol)`)
plus what the hub needs to write frames itself: `writable` (open, and the transport below
its high-water mark), `write(frame)`, and `wait_writable()`. It puts itself in the ASGI
scope as `scope["extensions"][LINK]`, where the app finds it. Everything else — the
handshake, receiving, pings, the closing handshake — stays uvicorn's and websockets'. The
frames written here are whole frames, as websockets' own are, so they never interleave
with a ping or a close frame, and none is written once the connection is not OPEN.
"""

from __future__ import annotations

import asyncio
import warnings

from websockets.protocol import State

# The implementation uvicorn would point `ws="websockets"` to next applies no backpressure
# (DESIGN.md §10): this one (on websockets.legacy) is chosen on purpose, so the deprecation
# notices of both are noise.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*websockets.* implementation is deprecated")
    warnings.filterwarnings("ignore", message="websockets.legacy is deprecated")
    from uvicorn.protocols.websockets.websockets_impl import WebSocketProtocol

LINK = "matchwire.feed_link"  # the ASGI scope extension that holds the FeedProtocol

_OPEN = State.OPEN
_CONNECTING = State.CONNECTING


def text_frame(text: str) -> bytes:
    """`text` as one final, unmasked WebSocket text frame (opcode 1, no extension)."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 1 << 16:
        return b"\x81\x7e" + length.to_bytes(2, "big") + payload
    return b"\x81\x7f" + length.to_bytes(8, "big") + payload


class FeedProtocol(WebSocketProtocol):
    """uvicorn's websockets protocol, with a direct path for the hub's frames."""

    _writable_waiter: asyncio.Future[None] | None = None

    async def run_asgi(self) -> None:
        self.scope["extensions"][LINK] = self  # type: ignore[index,assignment]
        await super().run_asgi()

    @property
    def writable(self) -> bool:
        """Open, and the transport's buffer under its high-water mark: write now."""
        return self.state is _OPEN and not self._paused

    @property
    def gone(self) -> bool:
        """Closing or closed: nothing more will be written to it."""
        state = self.state
        return state is not _OPEN and state is not _CONNECTING

    def write(self, frame: bytes) -> None:
        """Write one whole frame; only when `writable` (or after `wait_writable`)."""
        self.transport.write(frame)

    async def wait_writable(self) -> None:
        """Until the handshake is done and the buffer has room; ConnectionError if it
        never will be (the connection is closing or closed)."""
        if self.state is _CONNECTING:
            await self.handshake_completed_event.wait()
        while self.state is _OPEN and self._paused:
            waiter = self._writable_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._writable_waiter = None
        if self.state is not _OPEN:
            raise ConnectionError(f"the WebSocket is {self.state.name}")

    def resume_writing(self) -> None:
        super().resume_writing()
        self._wake_writer()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiter = self._writable_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
