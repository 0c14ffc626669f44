"""Python clients of a running system: raw ZeroMQ (zmq_client.py), REST (rest.py),
WebSocket with a verified local book and gap detection (ws_client.py), the client-side
L2 book and its checksum (book.py, checksum.py: the feed hub keeps its replicas in the
same class), a CurveZMQ client's keys (curve.py), the `matchwire` CLI (cli.py), the load
generator (load.py) and the standard order flow it shares with the benchmarks (flow.py).

Layer: above matcher/, below feedhub/ and gateway/ (docs/architecture.md). Clients know
only the wire: they import from matcher/ nothing but its wire codec and protocol
constants (matcher.codec, matcher.protocol), its CURVE key-file loader (matcher.curve)
and, for `matchwire replay`, matcher.replay; nothing from feedhub/ or gateway/.
tests/test_layers.py keeps it so.
"""
