"""The listening TCP socket of a front end (the gateway's HTTP port, the feed hub's
WebSocket port), bound by the process itself before its server starts.

Bound here rather than by uvicorn, which would log the failure and exit 1: a busy port
or an address that is not there is a refusal to start (exit 2, naming the port and its
flag), not a crash for run.py to retry. The two front ends sit side by side and import
nothing of each other, so what they share sits in the lowest layer; it is plain sockets
and knows no HTTP or WebSocket.
"""

from __future__ import annotations

import socket
import sys

LISTEN_BACKLOG = 2048  # uvicorn's default


def listening_socket(
    host: str, port: int, client_sndbuf: int = 0, user_timeout: float = 0
) -> socket.socket:
    """The server socket, bound and listening; OSError (port in use, no such address) is
    raised here, before anything is announced. Accepted sockets inherit its SO_SNDBUF
    (`client_sndbuf` bytes; 0: the kernel's autotuning) and TCP_USER_TIMEOUT
    (`user_timeout` seconds; 0: none)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if client_sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, client_sndbuf)
        if user_timeout:
            sock.setsockopt(
                socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(user_timeout * 1000))
            )
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def cannot_listen(process: str, host: str, port: int, flag: str, error: OSError) -> int:
    """Say on stderr that `process` cannot listen on host:port (set by `flag`); exit code 2."""
    print(
        f"{process}: cannot listen on {host}:{port} ({flag}): {error.strerror or error}",
        file=sys.stderr,
        flush=True,
    )
    return 2
