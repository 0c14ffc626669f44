"""Micro-benchmark: what reading each request's User-Id costs the matcher's drain loop.

    python -m tests.bench.curve_drain

The matcher drains its ROUTER with plain recv() calls; under CURVE it receives each
request frame with copy=False to read the User-Id its key got from ZAP (matcher/service.py,
`_recv_keyed`). Here a DEALER queues 50,000 requests of 120 bytes on a loopback ROUTER
(NULL, then CURVE with pyzmq's authenticator thread), and the ROUTER drains them the
plain way and the keyed way: µs per request, 3 runs each.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import zmq
import zmq.auth

from clients.curve import client_keys
from matcher.curve import Peer, Peers, load_pair, make_server, start_authenticator

REQUESTS = 50_000


def drain(context: zmq.Context, keys: Path | None, peers: Peers, keyed: bool) -> float:
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.RCVHWM, 0)
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.SNDHWM, 0)
    if keys is not None:
        make_server(router, load_pair(keys / "matcher.key_secret")[1])
        client_keys(keys / "matcher.key", keys / "client.key_secret").apply(dealer)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    for _ in range(REQUESTS):
        dealer.send(b"x" * 120)
    router.poll(10_000)
    time.sleep(1.0)  # everything queued on the ROUTER's side
    got = 0
    started = time.perf_counter()
    for _ in range(REQUESTS * 100):  # bounded: Again while the last ones arrive
        if got == REQUESTS:
            break
        try:
            router.recv(zmq.NOBLOCK)
        except zmq.Again:
            router.poll(1000)
            continue
        if keyed:
            frame = router.recv(copy=False)
            peers.get(str(frame.get("User-Id")))
            frame.bytes  # noqa: B018  # the matcher copies it once, as here
        else:
            router.recv()
        got += 1
    elapsed = time.perf_counter() - started
    router.close(0)
    dealer.close(0)
    return elapsed / REQUESTS * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp)
        for name in ("matcher", "client"):
            zmq.auth.create_certificates(keys, name)
        public = (keys / "client.key").read_text().split('"')[1]
        peers = Peers({public: Peer("alice")})
        context = zmq.Context()
        authenticator = start_authenticator(context, peers)
        try:
            for name, curve, keyed in (
                ("NULL, recv()", None, False),
                ("CURVE, recv()", keys, False),
                ("CURVE, copy=False + User-Id", keys, True),
            ):
                runs = [drain(context, curve, peers, keyed) for _ in range(3)]
                print(f"{name:30} " + "  ".join(f"{run:5.2f}" for run in runs) + "  µs/request")
        finally:
            authenticator.stop()
            context.term()


if __name__ == "__main__":
    main()
