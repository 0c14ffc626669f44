"""gateway/zmtp.py: the ZMTP 3.1 bytes; both links (the ZMTP MatcherLink and the pyzmq
PyzmqLink, `link`) talking to a real libzmq ROUTER, under the same contract."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import pytest
import zmq

from clients.zmq_client import MatcherTimeout
from gateway import zmtp
from gateway.matchers import LinkLost, MatcherLink, parse_endpoint
from gateway.zmq_link import PyzmqLink
from matcher import codec
from tests.support import free_port

Link = type[MatcherLink] | type[PyzmqLink]


@pytest.fixture(params=["zmtp", "pyzmq"])
def transport(request: pytest.FixtureRequest) -> Link:
    """The class of each transport of the gateway's link."""
    return MatcherLink if request.param == "zmtp" else PyzmqLink


def test_frames_short_and_long() -> None:
    assert zmtp.frame(b"abc") == b"\x00\x03abc"
    assert zmtp.frame(b"x" * 255)[:2] == b"\x00\xff"
    long = zmtp.frame(b"x" * 256)
    assert long[:9] == b"\x02" + (256).to_bytes(8, "big") and len(long) == 9 + 256
    assert zmtp.command(b"PING", b"\x00\x01") == b"\x04\x07\x04PING\x00\x01"


def test_ready_metadata_round_trips() -> None:
    reader = zmtp.FrameReader()
    frames = reader.feed(zmtp.GREETING + zmtp.DEALER_READY)
    assert len(frames) == 1
    flags, body = frames[0]
    assert flags & zmtp.COMMAND
    name, data = zmtp.split_command(body)
    assert name == b"READY"
    assert zmtp.parse_metadata(data) == {b"socket-type": b"DEALER"}


def test_reader_reassembles_frames_split_anywhere() -> None:
    stream = zmtp.GREETING + zmtp.frame(b"a" * 300) + zmtp.frame(b"bc") + zmtp.frame(b"")
    for cut in range(1, len(stream)):
        reader = zmtp.FrameReader()
        frames = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert frames == [(zmtp.LONG, b"a" * 300), (0, b"bc"), (0, b"")], cut
    one_by_one = zmtp.FrameReader()
    assert [f for byte in stream for f in one_by_one.feed(bytes((byte,)))] == frames


@pytest.mark.parametrize(
    "greeting",
    [
        b"HTTP/1.1 200 OK\r\n",  # not ZMTP at all: refused at the first byte
        b"\xff" + b"\x00" * 8 + b"\x7f\x02\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32,
        b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"CURVE".ljust(20, b"\x00") + b"\x00" * 32,
    ],
)
def test_reader_refuses_what_is_not_zmtp3_null(greeting: bytes) -> None:
    with pytest.raises(zmtp.ProtocolError):
        zmtp.FrameReader().feed(greeting)


def test_reader_refuses_absurd_frame_sizes() -> None:
    reader = zmtp.FrameReader()
    reader.feed(zmtp.GREETING)
    with pytest.raises(zmtp.ProtocolError):
        reader.feed(b"\x02" + (2**40).to_bytes(8, "big"))


def test_endpoints() -> None:
    assert parse_endpoint("tcp://127.0.0.1:5555") == ("127.0.0.1", 5555)
    assert parse_endpoint("tcp://[::1]:5555") == ("::1", 5555)
    assert parse_endpoint("ipc:///tmp/matcher.sock") == "/tmp/matcher.sock"
    for bad in ("inproc://x", "ipc://", "tcp://127.0.0.1", "tcp://:5555"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


class Router:
    """A libzmq ROUTER in a thread that answers each request like a matcher would:
    {req_id, ok, result: the request}, `delay` seconds after it came (or never while
    `muted` is set: the connection stays open). Bound when `start()` is called."""

    def __init__(self, port: int, endpoint: str | None = None, delay: float = 0.0) -> None:
        self.endpoint = endpoint or f"tcp://127.0.0.1:{port}"
        self.delay = delay
        self.stopping = threading.Event()
        self.muted = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.bound = threading.Event()
        self.received = 0  # requests read, answered or not

    def start(self) -> Router:
        self.thread.start()
        assert self.bound.wait(5)
        return self

    def serve(self) -> None:
        context = zmq.Context()
        router = context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.bind(self.endpoint)
        self.bound.set()
        owed: list[tuple[float, list[bytes]]] = []  # (when, frames) of delayed replies
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                while owed and owed[0][0] <= now:
                    router.send_multipart(owed.pop(0)[1])
                if not router.poll(5 if owed else 20):
                    continue
                identity, frame = router.recv_multipart()
                self.received += 1
                if self.muted.is_set():
                    continue
                request = codec.decode_request(frame)
                reply = [identity, codec.encode_reply(request["req_id"], request)]
                if self.delay:
                    owed.append((time.monotonic() + self.delay, reply))
                else:
                    router.send_multipart(reply)
        finally:
            router.close(0)
            context.term()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


def test_link_talks_to_a_libzmq_router(transport: Link) -> None:
    router = Router(free_port()).start()

    async def exchange() -> None:
        link = transport(router.endpoint, timeout=5.0)
        alone = await link.request_raw("ping", symbol="BTC-USDT")
        assert alone["ok"] and alone["result"]["op"] == "ping"
        big = "x" * 5000  # long frames both ways
        replies = await asyncio.gather(
            *(link.request_raw("new_order", n=n, note=big) for n in range(200))
        )  # written together, one write per loop iteration
        assert [reply["result"]["n"] for reply in replies] == list(range(200))
        assert all(reply["result"]["note"] == big for reply in replies)
        await link.close()

    try:
        asyncio.run(exchange())
    finally:
        router.stop()


def test_link_over_ipc(tmp_path: Path, transport: Link) -> None:
    router = Router(0, endpoint=f"ipc://{tmp_path / 'matcher.sock'}").start()

    async def exchange() -> None:
        link = transport(router.endpoint, timeout=5.0)
        assert (await link.request_raw("ping"))["ok"]
        await link.close()

    try:
        asyncio.run(exchange())
    finally:
        router.stop()


def test_requests_wait_for_a_matcher_that_starts_late(transport: Link) -> None:
    """As with a libzmq DEALER, a request made before the matcher listens is sent once
    it does, if that is within the request's timeout."""
    router = Router(free_port())

    async def exchange() -> None:
        link = transport(router.endpoint, timeout=5.0)
        waiting = asyncio.ensure_future(link.request_raw("ping"))
        await asyncio.sleep(0.3)  # several refused connection attempts
        assert not waiting.done()
        router.start()
        assert (await waiting)["ok"]
        await link.close()

    try:
        asyncio.run(exchange())
    finally:
        router.stop()


def test_no_matcher_times_out_and_reset_fails_the_waiting(transport: Link) -> None:
    port = free_port()

    async def exchange() -> None:
        link = transport(f"tcp://127.0.0.1:{port}", timeout=0.3)
        with pytest.raises(MatcherTimeout, match="no reply"):
            await link.request_raw("ping")
        waiting = asyncio.ensure_future(link.request_raw("ping", timeout=10))
        await asyncio.sleep(0.05)
        link.reconnect()
        with pytest.raises(MatcherTimeout, match="reset"):
            await waiting
        await link.close()

    asyncio.run(exchange())


def test_a_peer_that_is_not_zmtp_is_not_trusted(transport: Link) -> None:
    port = free_port()

    async def exchange() -> None:
        async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()

        server = await asyncio.start_server(http, "127.0.0.1", port)
        link = transport(f"tcp://127.0.0.1:{port}", timeout=0.3)
        with pytest.raises(MatcherTimeout):
            await link.request_raw("ping")
        await link.close()
        server.close()
        await server.wait_closed()

    asyncio.run(exchange())


def test_timeouts_of_different_lengths_each_fire_on_time(transport: Link) -> None:
    """A short timeout made after a long one is not held back by it, and a request that
    got its reply is not failed by its old deadline."""
    router = Router(free_port()).start()

    async def exchange() -> None:
        link = transport(router.endpoint, timeout=30.0)
        assert (await link.request_raw("ping", timeout=0.2))["ok"]  # answered, then...
        await asyncio.sleep(0.3)  # ...its deadline passes: nothing to fail
        router.muted.set()  # from now on nothing answers (the connection stays open)
        loop = asyncio.get_running_loop()
        slow = asyncio.ensure_future(link.request_raw("ping"))  # 30 s
        started = loop.time()
        with pytest.raises(MatcherTimeout, match=r"in 0\.2s"):
            await link.request_raw("ping", timeout=0.2)
        assert loop.time() - started < 5  # not after the 30 s one
        assert not slow.done()
        await link.close()
        with pytest.raises(LinkLost, match="reset"):
            await slow

    try:
        asyncio.run(exchange())
    finally:
        router.stop()


def current(link: MatcherLink | PyzmqLink) -> object:
    """The link's connection (or socket) for new requests."""
    return link._current


async def received(router: Router, count: int) -> None:
    """Until `router` has read `count` requests."""
    for _ in range(1000):
        if router.received >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the request never reached the router")


def test_every_request_carries_its_deadline(transport: Link) -> None:
    router = Router(free_port()).start()

    async def exchange() -> None:
        link = transport(router.endpoint, timeout=2.0)
        before = time.time_ns() // 1000
        for op in ("new_order", "ping"):
            reply = await link.request_raw(op, n=1)
            after = time.time_ns() // 1000
            assert before + 2_000_000 <= reply["result"]["deadline"] <= after + 2_000_000
        await link.close()

    try:
        asyncio.run(exchange())
    finally:
        router.stop()


def test_a_reply_within_the_grace_answers_a_command_but_not_a_read(transport: Link) -> None:
    """The matcher may apply a command just before its deadline and reply just after:
    the link waits the grace for it. A read has no grace (a late one changes nothing)."""
    router = Router(free_port(), delay=1.0).start()  # every reply 1 s after its request

    async def exchange() -> None:
        link = transport(router.endpoint, timeout=0.2, grace=10.0)
        command = await link.request_raw("new_order", n=1)
        assert command["ok"] and command["result"]["n"] == 1
        with pytest.raises(MatcherTimeout, match=r"in 0\.2s"):
            await link.request_raw("ping")
        await link.close()

    try:
        asyncio.run(exchange())
    finally:
        router.stop()


def test_a_connection_lost_in_flight_fails_its_requests_at_once_as_unknown(transport: Link) -> None:
    router = Router(free_port()).start()
    router.muted.set()

    async def exchange() -> None:
        link = transport(router.endpoint, timeout=60.0)
        in_flight = asyncio.ensure_future(link.request_raw("new_order", n=1))
        await received(router, 1)
        router.stop()  # the connection closes with the request unanswered
        with pytest.raises(LinkLost, match="in flight"):
            await asyncio.wait_for(in_flight, 30)  # long before its 60 s deadline
        await link.close()

    asyncio.run(exchange())


def test_a_retired_connection_still_delivers_the_replies_owed_on_it(transport: Link) -> None:
    router = Router(free_port(), delay=0.5).start()

    async def exchange() -> None:
        link = transport(router.endpoint, timeout=30.0)
        owed = asyncio.ensure_future(link.request_raw("new_order", n=1))
        await received(router, 1)
        old = current(link)
        link.retire()  # as after another request's timeout
        fresh = await link.request_raw("new_order", n=2)  # over a new connection
        assert fresh["ok"] and current(link) is not old and current(link) is not None
        reply = await asyncio.wait_for(owed, 20)
        assert reply["ok"] and reply["result"]["n"] == 1
        await link.close()

    try:
        asyncio.run(exchange())
    finally:
        router.stop()


class FakeRouter:
    """A ZMTP peer written by hand: greets as a ROUTER, records the frames it gets, and
    answers each request with the frame lists `script` makes of it (none: silent)."""

    def __init__(self, script: object = None) -> None:
        self.script = script
        self.frames: list[zmtp.Frame] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = free_port()

    async def start(self) -> FakeRouter:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", self.port)
        return self

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(
            zmtp.GREETING + zmtp.command(b"READY", zmtp.metadata({b"Socket-Type": b"ROUTER"}))
        )
        frames = zmtp.FrameReader()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self.talk(reader, writer, frames)
        writer.close()

    async def talk(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        frames: zmtp.FrameReader,
    ) -> None:
        while data := await reader.read(65536):
            for flags, body in frames.feed(data):
                self.frames.append((flags, body))
                if flags & zmtp.COMMAND or self.script is None:
                    continue
                request = codec.decode_request(body)
                for message in self.script(request):  # type: ignore[operator]
                    writer.write(
                        b"".join(
                            zmtp.frame(part, zmtp.MORE if i < len(message) - 1 else 0)
                            for i, part in enumerate(message)
                        )
                    )

    def commands(self, name: bytes) -> int:
        return sum(
            1
            for flags, body in self.frames
            if flags & zmtp.COMMAND and zmtp.split_command(body)[0] == name
        )

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def until(condition: object, seconds: float = 20.0) -> None:
    for _ in range(int(seconds * 100)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never met")


def test_the_zmtp_link_pings_a_silent_peer_and_leaves_a_half_open_one() -> None:
    """A peer that answers nothing, not even PINGs (a host gone without closing its
    connections): new requests go over a fresh connection; the one in flight keeps its
    deadline (its outcome is known only then)."""

    async def exchange() -> None:
        peer = await FakeRouter().start()
        link = MatcherLink(f"tcp://127.0.0.1:{peer.port}", timeout=60.0)
        link.heartbeat_interval, link.heartbeat_timeout = 0.05, 0.2
        in_flight = asyncio.ensure_future(link.request_raw("new_order", n=1))
        await until(lambda: peer.commands(b"PING") >= 2)
        await until(lambda: link._current is None)  # retired after the timeout
        assert not in_flight.done()
        second = asyncio.ensure_future(link.request_raw("ping"))
        await until(lambda: peer.connections == 2)
        await link.close()
        for request in (in_flight, second):
            with pytest.raises(LinkLost):
                await request
        await peer.stop()

    asyncio.run(exchange())


def test_the_zmtp_link_keeps_a_peer_that_answers_its_pings() -> None:
    """libzmq answers PING with PONG (ZMTP 3.1): an idle connection stays."""
    router = Router(free_port()).start()
    router.muted.set()  # the matcher's loop answers nothing; its I/O thread still PONGs

    async def exchange() -> None:
        link = MatcherLink(router.endpoint, timeout=60.0)
        link.heartbeat_interval, link.heartbeat_timeout = 0.05, 0.2
        waiting = asyncio.ensure_future(link.request_raw("ping"))
        await until(lambda: link._current is not None)
        first = link._current
        assert first is not None
        await asyncio.sleep(1.0)  # 20 intervals, 5 timeouts: every PING answered
        assert link._current is first and not waiting.done()
        await link.close()

    try:
        asyncio.run(exchange())
    finally:
        router.stop()


def test_a_multi_frame_message_is_no_reply(transport: Link) -> None:
    """Only a one-frame message is a reply: the frames of a longer one (whose last frame
    even looks like the reply) are dropped, and the real reply answers."""

    def script(request: dict[str, object]) -> list[list[bytes]]:
        req_id = request["req_id"]
        return [
            [b"junk", codec.encode_reply(req_id, "not this one")],
            [codec.encode_reply(req_id, "the reply")],
        ]

    async def exchange() -> None:
        peer = await FakeRouter(script).start()
        link = transport(f"tcp://127.0.0.1:{peer.port}", timeout=10.0)
        reply = await link.request_raw("ping")
        assert reply["result"] == "the reply"
        await link.close()
        await peer.stop()

    asyncio.run(exchange())


def test_the_link_is_chosen_by_flag_environment_or_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.matchers import choose_link

    monkeypatch.delenv("MATCHWIRE_GATEWAY_LINK", raising=False)
    assert choose_link(None) == choose_link("auto") == "zmtp"
    assert choose_link("auto", curve=True) == "pyzmq"  # the accelerator speaks no CURVE
    assert choose_link("pyzmq") == "pyzmq"
    with pytest.raises(ValueError, match="CURVE"):
        choose_link("zmtp", curve=True)
    with pytest.raises(ValueError, match="one of auto, zmtp, pyzmq"):
        choose_link("libzmq")
    monkeypatch.setenv("MATCHWIRE_GATEWAY_LINK", "pyzmq")
    assert choose_link(None) == "pyzmq" and choose_link("zmtp") == "zmtp"
