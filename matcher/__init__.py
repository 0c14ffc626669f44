"""The per-symbol matching engine process (docs/architecture.md, docs/protocol.md).

Owns: the pure matching core (protocol.py, book.py, engine.py, units.py), input
validation and output views, the wire codec, the journal and snapshots, the ZeroMQ
service loop, offline replay and the core and ZeroMQ benchmarks. The core (book.py,
engine.py) must never touch sockets, files, clocks or randomness: ids, sequence numbers
and timestamps come with each command, which is what makes replay exact.
"""
