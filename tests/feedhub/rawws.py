"""A deliberately minimal WebSocket client on a plain blocking socket.

It exists to be a *bad* client: one with a tiny receive buffer that stops reading for
as long as a test wants, so the hub's slow-client policies can be seen from outside.
RFC 6455 framing only as far as the hub needs: unmasked server frames in, masked text
frames out.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
TIME_WAIT = "06"  # the state column of /proc/net/tcp


class RawWebSocket:
    def __init__(self, port: int, path: str, receive_buffer: int = 4096) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Set before connect so the TCP window stays small: the hub feels a stuck reader.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.address = self.sock.getsockname()  # kept: a reset socket no longer says
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"handshake refused: {head[:200]!r}")
        self.close_code: int | None = None
        self.close_reason = ""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the hub")
        self.buffer += data

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def recv_frame(self) -> tuple[int, bytes]:
        first, second = self._take(2)
        opcode, length = first & 0x0F, second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        return opcode, self._take(length)

    def recv(self) -> dict[str, Any] | None:
        """The next JSON message; None once the hub sent a close frame (see close_code)."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == TEXT:
                return json.loads(payload)
            if opcode == CLOSE:
                if len(payload) >= 2:
                    (self.close_code,) = struct.unpack("!H", payload[:2])
                    self.close_reason = payload[2:].decode(errors="replace")
                self._answer_close(payload[:2])
                return None
            if opcode == PING:
                self.send_frame(PONG, payload)

    def _answer_close(self, code: bytes) -> None:
        """Echo the close as RFC 6455 §5.5.1 asks: a server that waits for the answer
        (uvicorn's own WebSocket implementations do, for up to 10 s) then ends the TCP
        connection at once. A hub that already reset it gets nothing."""
        try:
            self.send_frame(CLOSE, code)
        except OSError:
            pass

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        else:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, text: str) -> None:
        self.send_frame(TEXT, text.encode())

    def close(self) -> None:
        self.sock.close()

    def hub_side_open(self) -> bool:
        """Whether the hub's kernel still holds this TCP connection, seen without reading:
        open, or orphaned with unsent bytes (FIN-WAIT-1); TIME-WAIT (a finished close,
        no buffers) does not count."""
        host, port = self.address
        # /proc/net/tcp: local and remote address as little-endian hex IPv4:hex port, state.
        wanted = (
            f"0100007F:{self.port:04X}",
            f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}",
        )
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if (fields[1], fields[2]) == wanted and fields[3] != TIME_WAIT:
                    return True
        return False

    def read_to_end(self, max_messages: int = 1_000_000) -> str:
        """Read what the hub sent until its end of the connection: "eof" or "reset".
        A close frame on the way sets close_code; TimeoutError if the hub keeps it open."""
        try:
            for _ in range(max_messages):
                self.recv()
        except ConnectionResetError:
            return "reset"
        except ConnectionError:  # EOF (see _fill), or a pong written after the reset
            return "eof"
        raise AssertionError(f"more than {max_messages} messages and the connection is open")
