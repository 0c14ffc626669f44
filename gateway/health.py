"""GET /health: is every matcher answering, and is the feed hub up?

Matchers are pinged concurrently with a short timeout (gateway/matchers.py); the feed
hub is asked `GET /health` over plain HTTP on its port. A feed hub that answers HTTP
with any status below 500 counts as up (it is listening and serving); a refused or
silent connection, or a 5xx, counts as down. The answer is 503 when anything is down.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.matchers import PING_TIMEOUT, Matchers

WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


def reachable_host(host: str) -> str:
    """A host to connect to for a server bound to `host` (a wildcard means loopback)."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


async def http_status(host: str, port: int, path: str, timeout: float) -> int | None:
    """The status code of one `GET path` over HTTP/1.1, or None when nothing answers."""

    async def fetch() -> int | None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
        parts = status_line.split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return None

    try:
        return await asyncio.wait_for(fetch(), timeout)
    except (OSError, TimeoutError):
        return None


async def check(
    matchers: Matchers, feed_host: str, feed_port: int, timeout: float = PING_TIMEOUT
) -> tuple[bool, dict[str, Any]]:
    """(all up?, the /health body). Takes at most about `timeout` seconds."""
    pings, feed_status = await asyncio.gather(
        matchers.ping_all(timeout),
        http_status(reachable_host(feed_host), feed_port, "/health", timeout),
    )
    states: dict[str, Any] = {}
    for symbol, ping in pings.items():
        if ping is None:
            states[symbol] = {"status": "down", "seq": None, "book_seq": None}
        else:
            states[symbol] = {
                "status": "up",
                "seq": ping.get("seq"),
                "book_seq": ping.get("book_seq"),
            }
    feed_up = feed_status is not None and feed_status < 500
    healthy = feed_up and all(ping is not None for ping in pings.values())
    return healthy, {
        "status": "ok" if healthy else "degraded",
        "matchers": states,
        "feedhub": {"status": "up" if feed_up else "down"},
    }
