"""Benchmark: POST /submit_order through the gateway against a trivial Starlette floor.

    python -m tests.bench.rest [--latency-requests 2000] [--throughput-requests 10000]
                            [--connections 50] [--repeat 3] [--data-dir DIR] [--quick]

One run starts, on free loopback ports, three real processes with the same uvicorn
settings as the gateway (uvloop, httptools, no access log):

- the floor: a trivial Starlette app whose one POST endpoint reads the body and answers
  a constant JSON object (`python -m tests.bench.rest --serve-floor PORT`);
- a matcher for BTC-USDT (fsync=batch, its journal in a temporary folder under
  `--data-dir`, default the system's temporary folder);
- the gateway routing to it.

Then, for each round (`--repeat`), it measures the floor and the gateway alike:
latency (p50/p99) with one keep-alive connection and one request in flight, after a
warm-up, in alternating blocks of 100 requests (floor, matcher direct, gateway), so
that all three see the same machine and disk; throughput (requests/s) with
`--connections` keep-alive connections, each with one request in flight. The HTTP client is hand-written over asyncio (uvloop) transports:
httpx costs more than the server it would measure. The orders alternate sell/buy at one
price, so they trade and the book stays small. Two more figures explain the gateway's:
the same orders sent straight to the matcher (blocking DEALER, one in flight: the matcher
leg's floor, journal commit included) and the fsync latency of the journal's folder
(with fsync=batch, one request in flight pays one fsync). "gateway - matcher direct" is
what the gateway adds to the matcher leg (per round, then the median): the HTTP work the
floor measures plus the gateway's own. The table shows the median of the rounds (min-max
in brackets) and the ratios to the floor; cross-process figures move 1.5-2x between runs
(docs/benchmarks.md), which is why the floors are measured in the same run.

`main(argv)` returns the medians and ratios as a flat dict (for `run.py bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from matcher.files import fsync_latency

REPO = Path(__file__).resolve().parents[2]  # the clone: tests/bench/ -> repo
SYMBOL = "BTC-USDT"


# -- the floor server ----------------------------------------------------------------


def serve_floor(port: int) -> None:
    """A trivial Starlette POST endpoint on the gateway's uvicorn settings."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def echo(request: Request) -> Response:
        await request.body()
        return Response(b'{"ok":true}', media_type="application/json")

    app = Starlette(routes=[Route("/submit_order", echo, methods=["POST"])])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


# -- the client ----------------------------------------------------------------------


def post_request(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        length = 0
        start = head.find(b"content-length:")
        if start >= 0:
            stop = head.find(b"\r\n", start)
            length = int(head[start + 15 : stop if stop >= 0 else len(head)])
        if len(buffer) < end + 4 + length:
            return
        status = int(buffer[9:12])
        del buffer[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def connect(port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(Connection, "127.0.0.1", port)
    return protocol


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p99 in microseconds of samples in seconds."""
    samples = sorted(samples)
    return {
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6,
    }


async def measure_latency(
    floor_port: int, http_port: int, zmq_port: int, count: int, warmup: int, block: int = 100
) -> dict[str, dict[str, float]]:
    """p50/p99 of the floor, the matcher direct and the gateway, one request in flight
    each, measured in alternating blocks of `block` requests: the three see the same
    machine and the same disk (whose fsync moves from 60 µs to 4 ms from one minute to
    the next), so their differences and ratios hold even when the absolute figures move.
    """
    from clients.zmq_client import MatcherClient

    floor_conn, gateway_conn = await connect(floor_port), await connect(http_port)
    floor_request = post_request("/submit_order", b'{"symbol":"BTC-USDT"}')
    gateway_requests = order_requests()
    clock = time.perf_counter
    samples: dict[str, list[float]] = {"floor": [], "matcher": [], "gateway": []}
    bad = 0
    with MatcherClient(f"tcp://127.0.0.1:{zmq_port}") as matcher:
        for done in range(0, warmup + count, block):
            kept = done >= warmup
            for _ in range(block):
                started = clock()
                bad += await floor_conn.request(floor_request) != 200
                if kept:
                    samples["floor"].append(clock() - started)
            for i in range(block):
                started = clock()
                matcher.request(
                    "new_order",
                    symbol=SYMBOL,
                    order_type="limit",
                    side="sell" if i % 2 else "buy",
                    price="30000.00",
                    quantity="0.0100",
                )
                if kept:
                    samples["matcher"].append(clock() - started)
            for i in range(block):
                started = clock()
                bad += await gateway_conn.request(gateway_requests[i % 2]) != 200
                if kept:
                    samples["gateway"].append(clock() - started)
    for conn in (floor_conn, gateway_conn):
        assert conn.transport is not None
        conn.transport.close()
    if bad:
        raise RuntimeError(f"{bad} requests did not answer 200")
    return {name: percentiles(values) for name, values in samples.items()}


async def measure_throughput(
    port: int, requests: list[bytes], count: int, connections: int
) -> float:
    """Requests per second with `connections` connections, each one request in flight."""
    conns = [await connect(port) for _ in range(connections)]
    per_connection = max(1, count // connections)
    failures = 0

    async def drive(conn: Connection, offset: int) -> None:
        nonlocal failures
        for i in range(per_connection):
            if await conn.request(requests[(offset + i) % len(requests)]) != 200:
                failures += 1

    for conn in conns:  # warm every connection once
        await conn.request(requests[0])
        await conn.request(requests[1 % len(requests)])
    started = time.perf_counter()
    await asyncio.gather(*(drive(conn, i) for i, conn in enumerate(conns)))
    elapsed = time.perf_counter() - started
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    if failures:
        raise RuntimeError(f"{failures} requests did not answer 200")
    return per_connection * connections / elapsed


# -- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port_pair() -> int:
    """A port that is free with the next one (the matcher binds its PUB on port + 1)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# -- the run -------------------------------------------------------------------------


def order_requests() -> list[bytes]:
    """A sell then a buy at one price: every pair trades, the book stays small."""
    return [
        post_request(
            "/submit_order",
            json.dumps(
                {
                    "symbol": SYMBOL,
                    "order_type": "limit",
                    "side": side,
                    "price": "30000.00",
                    "quantity": "0.0100",
                }
            ).encode(),
        )
        for side in ("sell", "buy")
    ]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import uvloop

    with tempfile.TemporaryDirectory(prefix="matchwire-bench-", dir=args.data_dir) as tmp:
        folder = Path(tmp)
        fsync = fsync_latency(folder)
        while True:  # distinct ports, the matcher's PUB (zmq_port + 1) included
            floor_port, http_port, ws_port = (free_port() for _ in range(3))
            zmq_port = free_port_pair()
            if len({floor_port, http_port, ws_port, zmq_port, zmq_port + 1}) == 5:
                break
        config = folder / "bench.toml"
        config.write_text(
            f'[server]\nhost = "127.0.0.1"\nhttp_port = {http_port}\nws_port = {ws_port}\n'
            f'zmq_port = {zmq_port}\ndata_dir = "{folder / "data"}"\nfsync = "batch"\n'
            f'[symbols.{SYMBOL}]\ntick_size = "0.01"\nlot_size = "0.0001"\n'
        )
        processes = [
            start(
                ["-m", "tests.bench.rest", "--serve-floor", str(floor_port)], folder / "floor.log"
            ),
            start(
                ["-m", "matcher.service", "--symbol", SYMBOL, "--config", str(config)],
                folder / "matcher.log",
            ),
            start(["-m", "gateway.server", "--config", str(config)], folder / "gateway.log"),
        ]
        try:
            for port in (floor_port, zmq_port, http_port):
                wait_for_port(port)
            floor_requests = [post_request("/submit_order", b'{"symbol":"BTC-USDT"}')]
            gateway_requests = order_requests()
            figures: dict[str, dict[str, list[float]]] = {
                name: {"p50_us": [], "p99_us": [], "req_s": []} for name in ("floor", "gateway")
            }
            figures["matcher"] = {"p50_us": [], "p99_us": []}

            async def measure() -> None:
                for _ in range(args.repeat):
                    latencies = await measure_latency(
                        floor_port, http_port, zmq_port, args.latency_requests, args.warmup
                    )
                    for name, latency in latencies.items():
                        figures[name]["p50_us"].append(latency["p50_us"])
                        figures[name]["p99_us"].append(latency["p99_us"])
                    for name, port, requests in (
                        ("floor", floor_port, floor_requests),
                        ("gateway", http_port, gateway_requests),
                    ):
                        figures[name]["req_s"].append(
                            await measure_throughput(
                                port, requests, args.throughput_requests, args.connections
                            )
                        )

            uvloop.run(measure())
        except BaseException:
            for name in ("floor", "matcher", "gateway"):
                log = folder / f"{name}.log"
                if log.exists() and log.stat().st_size:
                    print(
                        f"--- {name}.log\n{log.read_text(errors='replace')[-2000:]}",
                        file=sys.stderr,
                    )
            raise
        finally:
            for process in reversed(processes):
                stop(process)
    result: dict[str, Any] = {
        name: {metric: summary(values) for metric, values in metrics.items()}
        for name, metrics in figures.items()
    }
    # What the gateway adds to the matcher leg, round by round (both measured one request
    # in flight, minutes apart at most): the part of its latency the floor compares with.
    result["added"] = {
        "p50_us": summary(
            [
                gateway - matcher
                for gateway, matcher in zip(
                    figures["gateway"]["p50_us"], figures["matcher"]["p50_us"], strict=True
                )
            ]
        )
    }
    result["fsync"] = fsync
    result["ratio"] = {
        "p50": result["gateway"]["p50_us"]["median"] / result["floor"]["p50_us"]["median"],
        "p99": result["gateway"]["p99_us"]["median"] / result["floor"]["p99_us"]["median"],
        "req_s": result["gateway"]["req_s"]["median"] / result["floor"]["req_s"]["median"],
        "added_p50": result["added"]["p50_us"]["median"] / result["floor"]["p50_us"]["median"],
    }
    result["settings"] = {
        "latency_requests": args.latency_requests,
        "warmup": args.warmup,
        "throughput_requests": args.throughput_requests,
        "connections": args.connections,
        "repeat": args.repeat,
    }
    return result


def format_table(result: dict[str, Any]) -> str:
    def cell(figure: dict[str, float], digits: int = 0) -> str:
        return (
            f"{figure['median']:,.{digits}f} "
            f"[{figure['min']:,.{digits}f}-{figure['max']:,.{digits}f}]"
        )

    settings = result["settings"]
    rows = [
        f"POST /submit_order through the gateway vs a trivial Starlette POST "
        f"(uvloop+httptools); median of {settings['repeat']} rounds [min-max]",
        f"latency: 1 keep-alive connection, {settings['latency_requests']} requests after "
        f"{settings['warmup']} warm-up; throughput: {settings['connections']} connections, "
        f"{settings['throughput_requests']} requests",
        "",
        f"{'':<28}{'p50 µs':>24}{'p99 µs':>24}{'req/s':>28}",
    ]
    for name, label in (
        ("floor", "floor (trivial POST)"),
        ("matcher", "matcher direct (ZMQ)"),
        ("gateway", "gateway -> matcher"),
    ):
        figures = result[name]
        throughput = cell(figures["req_s"]) if "req_s" in figures else "-"
        rows.append(
            f"{label:<28}{cell(figures['p50_us']):>24}{cell(figures['p99_us']):>24}{throughput:>28}"
        )
    added = result["added"]
    rows.append(f"{'gateway - matcher direct':<28}{cell(added['p50_us']):>24}{'-':>24}{'-':>28}")
    ratio = result["ratio"]
    rows.append(
        f"{'ratio gateway/floor':<28}{ratio['p50']:>24.2f}{ratio['p99']:>24.2f}"
        f"{ratio['req_s']:>28.2f}"
    )
    rows.append(f"{'ratio (gateway-matcher)/floor':<28}{ratio['added_p50']:>23.2f}")
    fsync = result["fsync"]
    rows.append("")
    rows.append(
        f"fsync of a 100-byte append in the journal's folder: p50 {fsync['p50_us']:,.0f} µs, "
        f"p99 {fsync['p99_us']:,.0f} µs (fsync=batch pays about one per matcher batch)"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.rest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--latency-requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--throughput-requests", type=int, default=10000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--data-dir",
        help="parent folder of the matcher's journal (default: the system's "
        "temporary folder); its fsync latency is measured and shown",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts and one round: seconds, for a smoke run"
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return {}
    if args.quick:
        args.latency_requests, args.warmup = 1000, 200
        args.throughput_requests, args.repeat = 5000, 1
    result = run(args)
    print(format_table(result))
    figures = flat(result)
    if args.json:
        print(json.dumps(figures, indent=2))
    return figures


def flat(result: dict[str, Any]) -> dict[str, float]:
    """The medians and ratios as one level of names (what `run.py bench` tabulates)."""
    figures: dict[str, float] = {}
    for name in ("floor", "matcher", "gateway"):
        for metric, summary_ in result[name].items():
            figures[f"{name}_{metric}"] = summary_["median"]
    figures["gateway_added_p50_us"] = result["added"]["p50_us"]["median"]
    for metric, value in result["ratio"].items():
        figures[f"ratio_{metric}"] = value
    figures["fsync_p50_us"] = result["fsync"]["p50_us"]
    return figures


if __name__ == "__main__":
    main()
