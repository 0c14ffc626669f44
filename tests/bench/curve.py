"""Benchmark: what CurveZMQ costs a raw client of the matcher, side by side with NULL.

    python -m tests.bench.curve [--samples 3000] [--orders 30000] [--rounds 3]

For each round, two real matchers (`python -m matcher.service`, fsync=off so that the
disk does not hide the wire) on free loopback ports: one with the NULL mechanism, one with
[curve] and real keys. Against each, alternately: one-in-flight p50/p99 of new_order
round trips (passive buys and sells that do not cross) from a blocking DEALER, and
pipelined orders/s (the load generator's flow, 1000 in flight). Under CURVE both as an
account key (the matcher checks the request's account: a second decode) and as the
gateway's trusted key. Medians of the rounds are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from clients.curve import CurveKeys, client_keys
from clients.load import RequestFlow, run_zmq
from clients.zmq_client import MatcherClient
from tests.matcher.test_curve import curve_section, make_keys
from tests.support import Child, free_port, wait_for_port, write_config

BTC = "BTC-USDT"


def start_matcher(folder: Path, curve: Path | None) -> tuple[str, Child]:
    path = folder / "matchwire.toml"
    endpoints = write_config(
        path,
        {"host": "127.0.0.1", "zmq_port": free_port(), "data_dir": folder / "data", "fsync": "off"},
        {BTC: {"tick_size": "0.01", "lot_size": "0.0001"}},
    )
    if curve is not None:
        with path.open("a") as handle:
            handle.write(curve_section(curve))
    child = Child(
        ["-m", "matcher.service", "--symbol", BTC, "--config", str(path)], folder / "matcher.log"
    ).start()
    wait_for_port(int(endpoints[BTC][0].rsplit(":", 1)[1]))
    return endpoints[BTC][0], child


def round_trips(endpoint: str, curve: CurveKeys | None, samples: int, account: str) -> list[float]:
    with MatcherClient(endpoint, timeout=30, curve=curve) as client:
        client.request("ping")
        times = []
        for i in range(samples):
            side, price = ("buy", "100") if i % 2 else ("sell", "200")
            started = time.perf_counter()
            client.request(
                "new_order",
                symbol=BTC,
                side=side,
                order_type="limit",
                price=price,
                quantity="0.001",
                account=account,
            )
            times.append((time.perf_counter() - started) * 1e6)
    return sorted(times)


def pipelined(endpoint: str, curve: CurveKeys | None, orders: int, account: str) -> float:
    flow = RequestFlow(BTC, Decimal("0.01"), Decimal("0.0001"), Decimal("30000"), 7, account)
    report = run_zmq(endpoint, flow, orders, 0.0, 120.0, 1000, curve)
    return report.summary()["throughput_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--orders", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        keys = make_keys(Path(tmp) / "keys")
        cases = {
            "NULL": None,
            "CURVE, account key": keys_of(keys, "alice"),
            "CURVE, gateway key": keys_of(keys, "gateway"),
        }
        for n in range(args.rounds):
            null_endpoint, null_child = start_matcher(make_dir(tmp, f"null{n}"), None)
            curve_endpoint, curve_child = start_matcher(make_dir(tmp, f"curve{n}"), keys)
            try:
                for name, curve in cases.items():
                    endpoint = null_endpoint if curve is None else curve_endpoint
                    account = "alice"
                    times = round_trips(endpoint, curve, args.samples, account)
                    rate = pipelined(endpoint, curve, args.orders, account)
                    rows.setdefault(name, []).append(
                        (statistics.median(times), times[int(len(times) * 0.99)], rate)
                    )
            finally:
                null_child.stop()
                curve_child.stop()
    print(
        f"new_order to the matcher (fsync=off), median of {args.rounds} rounds: "
        f"{args.samples} one in flight, {args.orders} pipelined (1000 in flight)"
    )
    print(f"{'':22}{'p50 µs':>10}{'p99 µs':>10}{'orders/s':>12}")
    for name, figures in rows.items():
        p50, p99, rate = (statistics.median(column) for column in zip(*figures, strict=True))
        print(f"{name:22}{p50:>10,.0f}{p99:>10,.0f}{rate:>12,.0f}")


def keys_of(keys: Path, name: str) -> CurveKeys:
    return client_keys(keys / "matcher.key", keys / f"{name}.key_secret")


def make_dir(tmp: str, name: str) -> Path:
    folder = Path(tmp) / name
    folder.mkdir()
    return folder


if __name__ == "__main__":
    main()
