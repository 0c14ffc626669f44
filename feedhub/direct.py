"""The direct path: the hub's frames written straight to uvicorn's transport.

Only an accelerator (docs/feeds.md, "Send paths"): the server picks it when uvicorn runs
its `websockets` (legacy) implementation in versions `wire.direct_path_refusal` knows;
everywhere else the hub sends through ASGI (`wire.AsgiLink`), which works alone. This
module imports websockets.legacy, so it is only imported once that check has passed.

A server's WebSocket frames are not masked (RFC 6455 §5.1), so one text frame, built once
per message by `wire.text_frame`, serves every client, and sending it to one client is one
`transport.write`. Going through ASGI instead costs ~10 µs of CPU per client and message
(uvicorn's send checks, then websockets' `send`: state checks, framing, a drain, several
awaits), which is most of the fan-out's cost with hundreds of clients (docs/feeds.md).

`FeedProtocol` is uvicorn's `websockets` implementation (`uvicorn.Config(ws=FeedProtocol)`)
plus what the hub needs to write frames itself (`wire.Link`): `writable` (open, and the
transport below its high-water mark), `write(frame)`, `wait_writable()` and
`send_frame(frame)`. It puts itself in the ASGI scope as `scope["extensions"][LINK]`,
where the app finds it. Everything else — the handshake, receiving, pings, the closing
handshake — stays uvicorn's and websockets'. The frames written here are whole frames, as
websockets' own are, so they never interleave with a ping or a close frame, and none is
written once the connection is not OPEN.

It also bounds how long a connection may hold the hub's memory and a file descriptor
(docs/feeds.md, "Stuck clients"): a connection whose buffer has not drained below its
low-water mark for `drain_timeout` seconds is closed with 1013, and every close, whoever
starts it, gets `drain_timeout` for its handshake, after which the TCP connection is reset
(SO_LINGER 0: no orphaned socket keeps the unsent bytes). Both hold for the frames written
here and for websockets' own sends (pings, close frames), which share the transport.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import warnings
from collections.abc import Callable

from websockets.frames import Close
from websockets.protocol import State
from websockets.typing import BytesLike

from feedhub.wire import CLOSE_TRY_AGAIN_LATER, DRAIN_TIMEOUT, LINK

# This one (on websockets.legacy) is the implementation the direct path extends, chosen
# on purpose, so the deprecation notices of both are noise.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*websockets.* implementation is deprecated")
    warnings.filterwarnings("ignore", message="websockets.legacy is deprecated")
    from uvicorn.protocols.websockets.websockets_impl import WebSocketProtocol

_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, keeps nothing

_OPEN = State.OPEN
_CONNECTING = State.CONNECTING


class FeedProtocol(WebSocketProtocol):
    """uvicorn's websockets protocol, with a direct path for the hub's frames."""

    send_path = "direct"
    _writable_waiter: asyncio.Future[None] | None = None
    drain_timeout = DRAIN_TIMEOUT
    stalled = False  # closed because its buffer did not drain for drain_timeout
    _stall_timer: asyncio.TimerHandle | None = None
    _reset_timer: asyncio.TimerHandle | None = None

    def set_drain_timeout(self, seconds: float) -> None:
        """How long the buffer may stay above its low-water mark, and a close may take."""
        self.drain_timeout = seconds
        self.close_timeout = seconds  # websockets' own waits in a closing handshake

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the TCP connection is gone (soon, if it is already)."""
        self.connection_lost_waiter.add_done_callback(lambda _: callback())

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

    async def send_frame(self, frame: bytes) -> None:
        """Write one frame once the buffer has room (the sender task's way)."""
        if not self.writable:
            await self.wait_writable()
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

    # -- stuck connections ------------------------------------------------------------
    # pause_writing and resume_writing are the transport crossing its high-water mark and
    # then its low-water mark: called rarely, so a timer per pause costs nothing per frame.

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None and self.state is _OPEN:
            self._stall_timer = self.loop.call_later(self.drain_timeout, self._not_draining)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._wake_writer()

    def _not_draining(self) -> None:
        self._stall_timer = None
        if self.state is _OPEN:
            self.stalled = True
            # The close frame goes after the buffered bytes, without awaiting a drain that
            # is not coming; it ends the receive side, so the app sees the client go now.
            self.fail_connection(
                CLOSE_TRY_AGAIN_LATER, f"not reading: nothing drained for {self.drain_timeout:g} s"
            )

    def fail_connection(self, code: int = 1006, reason: str = "") -> None:
        super().fail_connection(code, reason)
        self._end_the_close_in_time()

    async def write_close_frame(self, close: Close, data: BytesLike | None = None) -> None:
        self._end_the_close_in_time()  # first: writing the frame may wait for a drain
        await super().write_close_frame(close, data)

    def _end_the_close_in_time(self) -> None:
        """A closing handshake has started: the TCP connection goes within drain_timeout.

        websockets alone would take up to 4 close_timeouts and end with a plain close,
        which leaves the kernel holding an orphaned socket, its unsent bytes and its FIN
        for as long as the peer keeps answering zero-window probes without reading."""
        if self._reset_timer is not None or self.connection_lost_waiter.done():
            return
        self._reset_timer = self.loop.call_later(self.drain_timeout, self._reset)
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Should the descriptor be closed first with bytes still in the kernel (the
            # buffer flushed to a peer that then stopped reading), the kernel drops the
            # orphan once its window has stayed shut this long.
            try:
                sock.setsockopt(
                    socket.IPPROTO_TCP,
                    socket.TCP_USER_TIMEOUT,
                    max(1, int(self.drain_timeout * 1000)),
                )
            except OSError:
                pass

    def _reset(self) -> None:
        self._reset_timer = None
        if self.connection_lost_waiter.done():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            except OSError:
                pass
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._stall_timer, self._reset_timer):
            if timer is not None:
                timer.cancel()
        self._stall_timer = self._reset_timer = None
        super().connection_lost(exc)
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiter = self._writable_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
