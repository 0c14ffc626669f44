"""Python clients of a running system: raw ZeroMQ (zmq_client.py), REST (rest.py),
WebSocket with local book and gap detection (ws_client.py), the `matchwire` CLI
(cli.py), the load generator (load.py) and the standard order flow it shares with the
benchmarks (flow.py).

Clients only talk to the public interfaces (docs/protocol.md, docs/api.md,
docs/feeds.md); they never import a server's internals, except the shared wire codec
(matcher.codec) and the feed checksum (feedhub.checksum), so there is one implementation
of each.
"""
