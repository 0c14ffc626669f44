"""The bytes of the gateway's link to a matcher: ZMTP 3.1, a DEALER with the NULL mechanism.

The matcher's ROUTER (libzmq) speaks ZMTP (rfc.zeromq.org/spec/23) on its TCP port; the
gateway speaks it too, from its event loop, instead of through libzmq (see
gateway/matchers.py for why). What goes on the wire, in order:

- greeting, each way, 64 bytes: signature `FF 00*8 7F`, version `03 01`, the mechanism
  `NULL` padded with zeros to 20 bytes, as-server `00`, 31 zero bytes of filler;
- one READY command each way: our metadata `Socket-Type: DEALER`, the matcher's
  `Socket-Type: ROUTER`;
- then frames. A frame is a flags byte (`01` more frames follow, `02` long size, `04`
  command), its size (one byte, or eight big-endian bytes when long) and its body. A
  request is one frame (a DEALER sends no empty delimiter, and the matcher answers
  without one), the matcher's msgpack map (matcher/codec.py); so is each reply. A
  message of several frames (`01` on all but the last) is no reply: the link drops it.
  Commands after the handshake: PING and PONG (ZMTP 3.1 heartbeats: the link PINGs a
  connection that has been silent for a while, and answers the peer's PINGs) and ERROR
  (the peer refuses us).

`FrameReader` turns the received bytes back into frames; nothing here does I/O.
"""

from __future__ import annotations

from matcher.protocol import MAX_MESSAGE_BYTES

SIGNATURE_START = 0xFF
SIGNATURE_END = 0x7F
GREETING_SIZE = 64
GREETING = (
    bytes((SIGNATURE_START,))
    + b"\x00" * 8
    + bytes((SIGNATURE_END,))  # signature
    + b"\x03\x01"  # version 3.1 (heartbeats)
    + b"NULL".ljust(20, b"\x00")  # mechanism
    + b"\x00"  # as-server: no
    + b"\x00" * 31  # filler
)

MORE = 0x01
LONG = 0x02
COMMAND = 0x04

# Frames larger than this are a broken peer, not a reply: the largest replies (1000
# orders or trades) are well under a megabyte.
MAX_FRAME_SIZE = MAX_MESSAGE_BYTES


class ProtocolError(Exception):
    """The peer does not speak ZMTP 3 with the NULL mechanism, or broke its framing."""


def frame(body: bytes, flags: int = 0) -> bytes:
    """One frame: flags, size, body."""
    size = len(body)
    if size < 256:
        return bytes((flags, size)) + body
    return bytes((flags | LONG,)) + size.to_bytes(8, "big") + body


def command(name: bytes, data: bytes = b"") -> bytes:
    """One command frame: the name with its length byte, then its data."""
    return frame(bytes((len(name),)) + name + data, COMMAND)


def metadata(properties: dict[bytes, bytes]) -> bytes:
    """READY's properties: name length (1 byte), name, value length (4 bytes), value."""
    return b"".join(
        bytes((len(name),)) + name + len(value).to_bytes(4, "big") + value
        for name, value in properties.items()
    )


def parse_metadata(data: bytes) -> dict[bytes, bytes]:
    properties: dict[bytes, bytes] = {}
    offset = 0
    while offset < len(data):
        size = data[offset]
        name = data[offset + 1 : offset + 1 + size]
        offset += 1 + size
        if offset + 4 > len(data):
            raise ProtocolError("truncated READY metadata")
        length = int.from_bytes(data[offset : offset + 4], "big")
        properties[name.lower()] = data[offset + 4 : offset + 4 + length]
        offset += 4 + length
    return properties


def split_command(body: bytes) -> tuple[bytes, bytes]:
    """(name, data) of a command frame's body."""
    if not body or len(body) < 1 + body[0]:
        raise ProtocolError("truncated command")
    return body[1 : 1 + body[0]], body[1 + body[0] :]


def ping(context: bytes = b"") -> bytes:
    """A PING command: TTL 0 (the peer keeps no timer of its own for us), then `context`,
    which the peer's PONG echoes."""
    return command(b"PING", b"\x00\x00" + context)


PING = ping()
DEALER_READY = command(b"READY", metadata({b"Socket-Type": b"DEALER"}))
HANDSHAKE = GREETING + DEALER_READY  # what the DEALER sends as soon as it is connected


def check_greeting(greeting: bytes) -> None:
    """ProtocolError unless `greeting` is a ZMTP 3 greeting with the NULL mechanism."""
    if greeting[0] != SIGNATURE_START or not greeting[9] & 1:
        raise ProtocolError("not a ZMTP peer (bad signature)")
    if greeting[10] < 3:
        raise ProtocolError(f"ZMTP {greeting[10]}.{greeting[11]} peer; 3.0 or later needed")
    if greeting[12:32].rstrip(b"\x00") != b"NULL":
        raise ProtocolError(f"mechanism {greeting[12:32].rstrip(bytes(1))!r}, not NULL")


Frame = tuple[int, bytes]  # (flags, body)


class FrameReader:
    """Received bytes -> the peer's greeting (checked), then its frames.

    Cost: the usual read holds exactly one whole frame (one reply) and is sliced once;
    anything else goes through a buffer.
    """

    __slots__ = ("_buffer", "greeted")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.greeted = False

    def feed(self, data: bytes) -> list[Frame]:
        """The whole frames completed by `data` (ProtocolError if the peer is not ZMTP)."""
        buffer = self._buffer
        if not buffer and self.greeted and len(data) >= 2:  # the fast path: one frame
            flags = data[0]
            if flags & LONG:
                start = 9
                size = int.from_bytes(data[1:9], "big")
            else:
                start = 2
                size = data[1]
            if start + size == len(data):
                return [(flags, data[start:])]
        buffer += data
        if not self.greeted:
            if len(buffer) < GREETING_SIZE:
                if buffer[:1] not in (b"", b"\xff"):
                    raise ProtocolError("not a ZMTP peer (bad signature)")
                return []
            check_greeting(bytes(buffer[:GREETING_SIZE]))
            del buffer[:GREETING_SIZE]
            self.greeted = True
        frames: list[Frame] = []
        offset = 0
        end = len(buffer)
        while end - offset >= 2:
            flags = buffer[offset]
            if flags & LONG:
                if end - offset < 9:
                    break
                size = int.from_bytes(buffer[offset + 1 : offset + 9], "big")
                start = offset + 9
            else:
                size = buffer[offset + 1]
                start = offset + 2
            if size > MAX_FRAME_SIZE:
                raise ProtocolError(f"a frame of {size} bytes")
            stop = start + size
            if stop > end:
                break
            frames.append((flags, bytes(buffer[start:stop])))
            offset = stop
        if offset:
            del buffer[:offset]
        return frames
