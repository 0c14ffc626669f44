"""The WebSocket feed hub: matcher PUB -> book replicas -> WebSocket clients (docs/feeds.md).

Owns: the replicas (replica.py), the fan-out and slow-client policies (hub.py), the
frames and the two ways of sending them (wire.py, direct.py), and the Starlette app and
process (server.py). It only reads from the matchers (SUB, and the `snapshot` / `trades`
ops): it must never send them a command that changes state, and a slow WebSocket client
must never slow a matcher or another client.

Layer: above matcher/ and clients/, beside gateway/ (docs/architecture.md). Its replicas
are the clients' L2 book with the clients' checksum (clients.book, clients.checksum), so
the hub and a client can never disagree; it imports nothing from gateway/.
tests/test_layers.py keeps it so.
"""
