"""The WebSocket feed hub: matcher PUB -> book replicas -> WebSocket clients (docs/feeds.md).

Owns: the replicas (replica.py), the fan-out and slow-client policies (hub.py), the
Starlette app and process (server.py), the L2 book and checksum shared with the Python
client (book.py, checksum.py), and its benchmark (bench.py). It only reads from the
matchers (SUB, and the `snapshot` / `trades` ops): it must never send them a command that
changes state, and a slow WebSocket client must never slow a matcher or another client.
"""
