"""The per-symbol matching engine process (docs/architecture.md, docs/protocol.md).

Owns: the pure matching core (protocol.py, book.py, engine.py, units.py, rules.py),
input validation and output views, the wire codec, the journal and snapshots, the
ZeroMQ service loop, offline replay, and the system's configuration file (system.py),
which every process reads. The core (book.py, engine.py) must never touch sockets,
files, clocks or randomness: ids, sequence numbers and timestamps come with each
command, which is what makes replay exact.

Layer: the lowest (docs/architecture.md): it knows no HTTP, WebSocket or client and
imports nothing from clients/, feedhub/ or gateway/; its benchmarks are commands in the
clone's tests/bench/, not part of the package. tests/test_layers.py keeps it so.
"""
