"""Feed hub latency benchmark: submit -> trade on /ws/trades and -> change on /ws/market_data.

    python -m tests.bench.ws [--orders 400] [--clients 200] [--sample 10] [--fsync batch]

It starts a matcher and the hub on free loopback ports (a temporary data dir), rests a
background book of 20 levels a side, then, one order at a time over a raw ZeroMQ
MatcherClient: rest a maker at 30000 (not measured), wait until every measured client has
its update and `--settle` more (the hub's fan-out to the others), then send the crossing
taker and time until each measured client has the trade and the l2update of that taker.
Three rounds: 1 client (one market-data and one trade connection) in a flow, the taker
`--gap` after the maker's update arrived (1 ms: a market with orders every few ms); the
same client after `--settle` of quiet (20 ms: an idle market); then `--clients`
connections per feed after `--settle` (there it also lets the hub's fan-out of the maker
to the others finish) — all of them reading, the ones not measured in a separate process
(a load generator must cost less than what it loads) — of which `--sample` per feed are
measured here. A pipelined burst then gives deliveries/s. The floor, measured in the same
run: the same taker's trade seen on a SUB socket straight on the matcher's PUB.

Every arrival is timed the same way, when the event loop is told of it: the floor SUB in
its `add_reader` callback, the WebSocket clients (raw protocol clients, not a library)
first thing in `data_received`. Timing when a task resumes instead would add the bench's
own future/task switches and the parsing of the other measured clients' messages.

The floor is the matcher's submit -> publish: its group-commit fsync and the wake-ups
of the threads in three processes. After 20 ms of quiet those wake-ups cost about 0.6 ms
more on a 2-core virtual machine (idle vCPUs are descheduled), which is why the 1-client
figure is given both in a flow and after idle. The floor is the bound for the hub's
figures, not a harness artefact: a sync client and a sync SUB with no event loop read
the same.

Counts are bounded by the flags; the result is printed as a table and returned by
`main` as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
import zmq

from clients.zmq_client import MatcherClient
from matcher import codec

REPO = Path(__file__).resolve().parents[2]  # the clone: its children import from it

SYMBOL = "BTC-USDT"
MAKER_PRICE = "30000.00"
QUANTITY = "0.0100"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p99/max in microseconds (nearest-rank)."""
    if not samples:
        return {"p50_us": float("nan"), "p99_us": float("nan"), "max_us": float("nan"), "n": 0}
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] * 1e6

    return {
        "p50_us": rank(0.50),
        "p99_us": rank(0.99),
        "max_us": ordered[-1] * 1e6,
        "n": len(ordered),
    }


class Processes:
    """A matcher and the hub, as child processes, with their logs in a temporary dir."""

    def __init__(self, root: Path, fsync: str) -> None:
        self.root = root
        self.router, self.pub, self.ws_port = free_port(), free_port(), free_port()
        self.config = root / "bench.toml"
        self.config.write_text(
            f'[server]\nhost = "127.0.0.1"\nws_port = {self.ws_port}\n'
            f'zmq_port = {free_port()}\ndata_dir = "{root / "data"}"\nfsync = "{fsync}"\n'
            f'[symbols."{SYMBOL}"]\ntick_size = "0.01"\nlot_size = "0.0001"\n'
            f'order_endpoint = "tcp://127.0.0.1:{self.router}"\n'
            f'feed_endpoint = "tcp://127.0.0.1:{self.pub}"\n'
        )
        self.children: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "ab") as log:
            child = subprocess.Popen(
                [sys.executable, *args],
                stdout=log,
                cwd=REPO,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(child)
        return child

    def start(self) -> None:
        self.spawn(
            "matcher", "-m", "matcher.service", "--symbol", SYMBOL, "--config", str(self.config)
        )
        wait_until(lambda: port_open(self.router), 15, "matcher")
        self.spawn("feedhub", "-m", "feedhub.server", "--config", str(self.config))
        wait_until(lambda: port_open(self.ws_port), 15, "feed hub")
        wait_until(
            lambda: json.loads(http_get(f"{self.http}/health"))["symbols"][SYMBOL]["synced"],
            15,
            "feed hub replica",
        )

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ws_port}"

    def hub_cpu_seconds(self) -> float:
        """CPU time (user + system) the hub process has used: immune to a busy machine's
        scheduling delays, unlike wall-clock latencies."""
        fields = Path(f"/proc/{self.children[1].pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metric_total(self, name: str) -> float:
        """The sum of every sample of one metric, whatever its labels."""
        return sum(
            float(line.split()[-1])
            for line in http_get(f"{self.http}/metrics").splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        prefix = f"{name}{{{wanted}}} "
        for line in http_get(f"{self.http}/metrics").splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(10)


class RawWebSocket(asyncio.Protocol):
    """A minimal WebSocket client on the event loop: handshake, then whole frames.

    Server frames are unmasked, so reading one costs a header parse; pings are answered.
    Both the measured clients and the load generator's are these: a client library would
    add its own parsing and a task switch per message to what is measured, and the load
    generator must cost less than what it loads.
    """

    def __init__(self, request: bytes, ready: asyncio.Future[None]) -> None:
        self.request = request
        self.ready = ready
        self.buffer = bytearray()
        self.handshaken = False
        self.transport: Any = None  # uvloop's transports do not subclass asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()  # first: what is timed is the arrival, not the parsing
        buffer = self.buffer
        buffer += data
        if not self.handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in bytes(buffer[:end]).split(b"\r\n", 1)[0]:
                self.ready.set_exception(ConnectionError(bytes(buffer[:end]).decode()))
                return
            del buffer[: end + 4]
            self.handshaken = True
            self.ready.set_result(None)
        position, size = 0, len(buffer)
        while size - position >= 2:
            length, header = buffer[position + 1] & 0x7F, 2
            if length == 126:
                length, header = int.from_bytes(buffer[position + 2 : position + 4], "big"), 4
            elif length == 127:
                length, header = int.from_bytes(buffer[position + 2 : position + 10], "big"), 10
            if size - position < header + length:
                break
            opcode = buffer[position] & 0x0F
            start = position + header
            if opcode == 0x9 and self.transport is not None:  # ping: pong, masked (RFC 6455)
                payload = bytes(buffer[start : start + length])
                self.transport.write(bytes((0x8A, 0x80 | length)) + b"\0\0\0\0" + payload)
            elif opcode in (0x0, 0x1, 0x2):
                self.on_message(buffer, start, start + length, now)
            position = start + length
        del buffer[:position]

    def on_message(self, buffer: bytearray, start: int, end: int, now: float) -> None:
        """One data frame's payload, buffer[start:end], received at `now`."""

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class DrainingReader(RawWebSocket):
    """A load-generator client: reads everything, counts frames."""

    frames = 0

    def on_message(self, buffer: bytearray, start: int, end: int, now: float) -> None:
        self.frames += 1


BOOK_SEQ = re.compile(rb'"book_seq":(\d+)')
TRADE_PREFIX = b'{"type":"trade"'
UPDATE_PREFIX = b'{"type":"l2update"'


class Sample(RawWebSocket):
    """A measured client: the arrival time of the message it is told to expect.

    Recognised from the compact JSON's prefix and book_seq, without decoding it all, so
    that one sample's parsing delays the next one's timestamp as little as possible.
    """

    book_seq = 0
    wanted_seq: int | None = None  # an l2update with this book_seq
    wants_trade = False
    at = 0.0

    def on_message(self, buffer: bytearray, start: int, end: int, now: float) -> None:
        head = bytes(buffer[start : min(end, start + 120)])
        if head.startswith(TRADE_PREFIX):
            if self.wants_trade:
                self.wants_trade = False
                self._arrived(now)
            return
        match = BOOK_SEQ.search(head)
        if match is None:
            return
        self.book_seq = int(match.group(1))
        if self.wanted_seq == self.book_seq and head.startswith(UPDATE_PREFIX):
            self.wanted_seq = None
            self._arrived(now)

    def expect_update(self, book_seq: int) -> None:
        self.arrived = asyncio.Event()
        self.wanted_seq = book_seq

    def expect_trade(self) -> None:
        self.arrived = asyncio.Event()
        self.wants_trade = True

    def _arrived(self, now: float) -> None:
        self.at = now
        self.arrived.set()


async def open_raw(
    factory: Callable[[bytes, asyncio.Future[None]], RawWebSocket], url: str, path: str
) -> Any:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    _, client = await loop.create_connection(lambda: factory(request, ready), host, int(port))
    await asyncio.wait_for(ready, 10)
    return client


async def open_samples(url: str, count: int) -> tuple[list[Sample], list[Sample]]:
    books, trades = [], []
    for _ in range(count):
        books.append(await open_raw(Sample, url, f"/ws/market_data/{SYMBOL}"))
        trades.append(await open_raw(Sample, url, f"/ws/trades?symbol={SYMBOL}"))
    return books, trades


class Direct:
    """The floor: a SUB socket straight on the matcher's PUB, timed like the samples.

    A plain socket read by a `loop.add_reader` callback, which takes the time as it reads
    the frame (the FD is edge-triggered: read until zmq.Again). A `zmq.asyncio` recv would
    add a future and a task switch to the floor, which the hub's path does not have.
    """

    def __init__(self, endpoint: str) -> None:
        self.socket: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, 1_000_000)
        self.socket.setsockopt(zmq.SUBSCRIBE, f"trade.{SYMBOL}".encode())
        self.socket.connect(endpoint)
        self.loop = asyncio.get_running_loop()
        self.arrivals: list[float] = []
        self.arrived = asyncio.Event()
        self.loop.add_reader(self.socket.fileno(), self._read)

    def _read(self) -> None:
        recv = self.socket.recv
        while True:
            try:
                recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.arrivals.append(time.perf_counter())
            self.arrived.set()

    async def next_trade(self) -> float:
        self._read()  # the FD's edge may have been spent by another call on the socket
        while not self.arrivals:
            self.arrived.clear()
            await self.arrived.wait()
        return self.arrivals.pop(0)

    def close(self) -> None:
        self.loop.remove_reader(self.socket.fileno())
        self.socket.close(0)


async def measure(
    client: MatcherClient,
    books: list[Sample],
    trades: list[Sample],
    direct: Direct,
    orders: int,
    warmup: int,
    settle: float,
) -> dict[str, list[float]]:
    """Maker (not timed), then the crossing taker, timed to every sample's messages."""
    result: dict[str, list[float]] = {"trade": [], "book": [], "direct": []}
    book_seq = max(sample.book_seq for sample in books)
    for i in range(warmup + orders):
        client.request(
            "new_order", side="sell", order_type="limit", price=MAKER_PRICE, quantity=QUANTITY
        )
        book_seq += 1
        target = book_seq
        async with asyncio.timeout(10):
            while any(sample.book_seq < target for sample in books):
                await asyncio.sleep(0.0005)
        # The samples have the maker's update, but the hub may still be sending it to the
        # other clients: let that finish, or the taker would be timed through its tail.
        await asyncio.sleep(settle)
        book_seq += 1
        for sample in books:
            sample.expect_update(book_seq)
        for sample in trades:
            sample.expect_trade()
        direct.arrivals.clear()  # only the taker makes a trade: nothing else is due
        taker = codec.encode_request(
            {
                "op": "new_order",
                "req_id": f"t{i}",
                "side": "buy",
                "order_type": "limit",
                "price": MAKER_PRICE,
                "quantity": QUANTITY,
            }
        )
        started = time.perf_counter()
        client.send_raw(taker)
        async with asyncio.timeout(10):
            direct_at = await direct.next_trade()
            for sample in (*books, *trades):
                await sample.arrived.wait()
        client.recv_reply()
        if i < warmup:
            continue
        result["direct"].append(direct_at - started)
        result["trade"].extend(sample.at - started for sample in trades)
        result["book"].extend(sample.at - started for sample in books)
    return result


async def burst(
    processes: Processes, client: MatcherClient, books: list[Sample], pairs: int
) -> dict[str, float]:
    """Pipelined maker/taker pairs; deliveries/s from the hub's own message counter."""
    sent_before = sum(
        processes.metric("feedhub_messages_sent_total", feed=feed)
        for feed in ("market_data", "trades")
    )
    cpu_before = processes.hub_cpu_seconds()
    target = max(sample.book_seq for sample in books) + 2 * pairs
    started = time.perf_counter()
    requests: list[dict[str, Any]] = []
    for _ in range(pairs):
        requests.append(
            {
                "op": "new_order",
                "side": "sell",
                "order_type": "limit",
                "price": MAKER_PRICE,
                "quantity": QUANTITY,
            }
        )
        requests.append(
            {
                "op": "new_order",
                "side": "buy",
                "order_type": "limit",
                "price": MAKER_PRICE,
                "quantity": QUANTITY,
            }
        )
    await asyncio.to_thread(client.pipeline, requests)
    async with asyncio.timeout(60):
        while any(sample.book_seq < target for sample in books):
            await asyncio.sleep(0.001)
    await asyncio.sleep(0.5)  # let the background readers' last messages go out
    elapsed = time.perf_counter() - started
    cpu = processes.hub_cpu_seconds() - cpu_before
    sent = (
        sum(
            processes.metric("feedhub_messages_sent_total", feed=feed)
            for feed in ("market_data", "trades")
        )
        - sent_before
    )
    return {
        "messages": sent,
        "seconds": elapsed,
        "deliveries_per_s": sent / elapsed,
        "orders_per_s": 2 * pairs / elapsed,
        "hub_cpu_us_per_delivery": cpu / sent * 1e6,
    }


def start_background(url: str, clients: int) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.bench.ws",
            "background",
            "--url",
            url,
            "--clients",
            str(clients),
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        start_new_session=True,
        cwd=REPO,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith(b"ready"):
        raise RuntimeError(f"background readers failed: {line!r}")
    return child


async def background(url: str, clients: int) -> None:
    """`clients` market-data and `clients` trade connections that read everything."""
    readers: list[DrainingReader] = []
    for _ in range(clients):
        readers.append(await open_raw(DrainingReader, url, f"/ws/market_data/{SYMBOL}"))
        readers.append(await open_raw(DrainingReader, url, f"/ws/trades?symbol={SYMBOL}"))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    # Until the parent closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    sys.stdout.write(json.dumps({"frames": sum(r.frames for r in readers)}) + "\n")


async def run(args: argparse.Namespace, processes: Processes) -> dict[str, Any]:
    client = MatcherClient(f"tcp://127.0.0.1:{processes.router}")
    for i in range(20):  # a background book, so snapshots and checksums are not trivial
        client.request(
            "new_order", side="buy", order_type="limit", price=str(29000 - i * 5), quantity="0.5"
        )
        client.request(
            "new_order", side="sell", order_type="limit", price=str(31000 + i * 5), quantity="0.5"
        )
    direct = Direct(f"tcp://127.0.0.1:{processes.pub}")
    results: dict[str, Any] = {}
    try:
        books, trades = await open_samples(processes.url, 1)
        await asyncio.sleep(0.5)
        for label, quiet in (("1 client", args.gap), ("1 client, idle", args.settle)):
            one = await measure(client, books, trades, direct, args.orders, args.warmup, quiet)
            results[label] = {name: percentiles(values) for name, values in one.items()}
        for sample in (*books, *trades):
            sample.close()

        helper = start_background(processes.url, args.clients - args.sample)
        try:
            books, trades = await open_samples(processes.url, args.sample)
            await asyncio.sleep(0.5)
            many = await measure(
                client, books, trades, direct, args.orders, args.warmup, args.settle
            )
            label = f"{args.clients} clients"
            results[label] = {name: percentiles(values) for name, values in many.items()}
            results["burst"] = await burst(processes, client, books, args.burst)
            for sample in (*books, *trades):
                sample.close()
        finally:
            assert helper.stdin is not None
            helper.stdin.close()
            helper.wait(10)
        results["slow_client_drops"] = processes.metric_total("feedhub_slow_client_drops_total")
        results["replica_resyncs"] = processes.metric_total("feedhub_replica_resyncs_total")
    finally:
        direct.close()
        client.close()
    return results


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nfeed hub latency, submit -> message received (µs); {args.orders} orders, "
        f"fsync={args.fsync}, {os.cpu_count()} CPUs"
    )
    print(
        f"(1 client: the taker {args.gap * 1000:g} ms after the maker's update; idle and "
        f"{args.clients} clients: after {args.settle * 1000:g} ms of quiet)"
    )
    print(f"{'clients':<16}{'feed':<26}{'p50':>9}{'p99':>9}{'max':>9}{'n':>7}")
    names = {
        "direct": "floor: SUB on matcher PUB",
        "trade": "/ws/trades",
        "book": "/ws/market_data l2update",
    }
    for label in ("1 client", "1 client, idle", f"{args.clients} clients"):
        for key in ("direct", "trade", "book"):
            row = results[label][key]
            print(
                f"{label:<16}{names[key]:<26}{row['p50_us']:>9.0f}{row['p99_us']:>9.0f}"
                f"{row['max_us']:>9.0f}{row['n']:>7}"
            )
    burst = results["burst"]
    print(
        f"\nburst of {args.burst} pipelined pairs with {args.clients} clients per feed: "
        f"{burst['deliveries_per_s']:,.0f} deliveries/s ({burst['messages']:.0f} messages "
        f"in {burst['seconds']:.2f}s, {burst['orders_per_s']:,.0f} orders/s); hub CPU "
        f"{burst['hub_cpu_us_per_delivery']:.1f} µs per delivery"
    )
    print(
        f"slow-client drops: {results['slow_client_drops']:.0f}; replica resyncs: "
        f"{results['replica_resyncs']:.0f}"
    )
    many, one, idle = (
        results[label] for label in (f"{args.clients} clients", "1 client", "1 client, idle")
    )
    print(
        f"targets: 1 client p50 <= 1000 µs: trade {one['trade']['p50_us']:.0f}, book "
        f"{one['book']['p50_us']:.0f} (after idle: {idle['trade']['p50_us']:.0f}, "
        f"{idle['book']['p50_us']:.0f}, floor {idle['direct']['p50_us']:.0f}); "
        f"{args.clients} clients p99 <= 10000 µs: trade {many['trade']['p99_us']:.0f}, "
        f"book {many['book']['p99_us']:.0f}"
    )


def figures(results: dict[str, Any], clients: int) -> dict[str, float]:
    """The flat figures `python run.py bench` tabulates, with ratios to the floor."""
    flat: dict[str, float] = {}
    for label, suffix in (
        ("1 client", "1c"),
        ("1 client, idle", "1c_idle"),
        (f"{clients} clients", f"{clients}c"),
    ):
        rows = results[label]
        floor = rows["direct"]["p50_us"]
        flat[f"floor_sub_p50_us_{suffix}"] = floor
        for feed in ("trade", "book"):
            for stat in ("p50_us", "p99_us"):
                flat[f"{feed}_{stat}_{suffix}"] = rows[feed][stat]
            flat[f"{feed}_p50_over_floor_{suffix}"] = rows[feed]["p50_us"] / floor
    flat["deliveries_per_s"] = results["burst"]["deliveries_per_s"]
    flat["hub_cpu_us_per_delivery"] = results["burst"]["hub_cpu_us_per_delivery"]
    flat["slow_client_drops"] = results["slow_client_drops"]
    flat["replica_resyncs"] = results["replica_resyncs"]
    return flat


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.ws",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "background"))
    parser.add_argument("--orders", type=int, default=400, help="timed takers per round")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--clients", type=int, default=200, help="connections per feed")
    parser.add_argument("--sample", type=int, default=10, help="measured connections per feed")
    parser.add_argument("--burst", type=int, default=2000, help="pipelined pairs for deliveries/s")
    parser.add_argument(
        "--gap",
        type=float,
        default=0.001,
        help="seconds between the maker's update and the taker, 1-client flow",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.02,
        help="seconds of quiet before each timed taker, idle and many-client rounds",
    )
    parser.add_argument("--fsync", choices=("always", "batch", "off"), default="batch")
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode == "background":
        uvloop.run(background(args.url, args.clients))
        return {}
    if args.quick:
        args.orders, args.warmup, args.clients, args.burst = 100, 10, 50, 300
    args.orders = max(1, min(args.orders, 100_000))
    args.clients = max(1, min(args.clients, 5_000))
    args.sample = max(1, min(args.sample, args.clients))
    with tempfile.TemporaryDirectory(prefix="feedhub-bench-") as tmp:
        processes = Processes(Path(tmp), args.fsync)
        try:
            processes.start()
            results = uvloop.run(run(args, processes))
        finally:
            processes.stop()
    print_table(results, args)
    return figures(results, args.clients)


if __name__ == "__main__":
    main()
