"""Load generator: a realistic, seeded order flow against a running system.

    matchwire load --transport zmq --symbol ETH-USDT --count 100000
    matchwire load --transport rest --url http://127.0.0.1:8000 --rate 2000 --duration 10

The symbol's tick, lot and matcher endpoint are read from the gateway's GET / unless
--tick, --lot and --endpoint are given.

The flow is the core benchmark's (clients/flow.py): 55% passive limit orders 1-50 ticks
from mid, 25% cancels of the generator's own live orders, 15% limit orders crossing 1-5
ticks through mid, 5% market orders; quantities 1-100 lots; fixed seed.

Latency is free of coordinated omission: at a fixed `--rate`, each request has an
intended send time on a fixed schedule and its latency is measured from that time, so a
stall in the system shows up in the percentiles instead of slowing the generator down.
With `--rate 0` (as fast as possible) requests are pipelined in a window and latency is
measured from the actual send. Every run is bounded by `--count` and `--duration`: nothing
is sent after the duration, and what is still unanswered 5 s later is reported as such.
The rate is answers over the time from the first send to the last answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import zmq

from clients.curve import CurveKeys, client_keys
from clients.flow import CANCEL, MARKET, OrderFlow
from matcher import codec

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
ANSWER_GRACE_S = 5.0  # after --duration, how long answers to what was sent are awaited


class RequestFlow:
    """The standard flow (clients/flow.py) as requests for one symbol; learns its live
    order ids from the replies. It does not see the book: crossing orders go 1-5 ticks
    through mid.

    The default account is `anonymous`, which never self-trade-prevents, so crossing
    orders trade against the generator's own resting orders as in the core benchmark.
    """

    def __init__(
        self,
        symbol: str,
        tick: Decimal,
        lot: Decimal,
        mid: Decimal,
        seed: int = 42,
        account: str = "anonymous",
    ) -> None:
        self.symbol = symbol
        self.tick = tick
        self.lot = lot
        self.account = account
        self.flow = OrderFlow(int(mid / tick), seed)

    def next_request(self) -> dict[str, Any]:
        kind, side, price, quantity, order_id = self.flow.next_step()
        if kind == CANCEL:
            return {
                "op": "cancel_order",
                "symbol": self.symbol,
                "account": self.account,
                "order_id": order_id,
            }
        request = {
            "op": "new_order",
            "symbol": self.symbol,
            "side": side,
            "quantity": str(self.lot * quantity),
            "account": self.account,
        }
        if kind == MARKET:
            request["order_type"] = "market"
        else:
            request["order_type"] = "limit"
            request["price"] = str(self.tick * price)  # type: ignore[operator]
        return request

    def learn(self, result: Any) -> None:
        """Remember orders that rest, so later cancels hit live orders."""
        if isinstance(result, dict) and result.get("status") in ("new", "partially_filled"):
            self.flow.live.append(int(result["order_id"]))


@dataclass
class Report:
    """What one run measured. `elapsed` runs from the first send to the last answer, so
    the rate never counts the idle wait for answers that did not come."""

    latencies_us: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    unanswered: int = 0  # sent, but not answered before the run's hard end

    def add_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_us)
        figures: dict[str, Any] = {
            "requests": len(ordered),
            "throughput_per_s": len(ordered) / self.elapsed if self.elapsed else 0.0,
        }
        for p in PERCENTILES:
            figures[f"p{p:g}_us"] = percentile(ordered, p)
        figures["max_us"] = ordered[-1] if ordered else 0.0
        figures["errors"] = dict(self.errors)
        figures["unanswered"] = self.unanswered
        figures["elapsed_s"] = self.elapsed
        return figures


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def run_zmq(
    endpoint: str,
    flow: RequestFlow,
    count: int,
    rate: float,
    duration: float,
    window: int = 1000,
    curve: CurveKeys | None = None,
) -> Report:
    """One DEALER; fixed-rate schedule or a pipelined window (rate 0); `curve`: CurveZMQ."""
    context: zmq.Context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sock)
    sock.connect(endpoint)
    report = Report()
    pending: dict[int, float] = {}  # req_id -> time the latency counts from
    sent = 0
    started = last_answer = time.perf_counter()
    deadline = started + duration
    hard_end = deadline + ANSWER_GRACE_S
    interval = 1.0 / rate if rate > 0 else 0.0
    try:
        while (sent < count or pending) and time.perf_counter() < hard_end:
            now = time.perf_counter()
            while sent < count and len(pending) < window and now < deadline:
                intended = started + sent * interval if interval else now
                if intended > now:
                    break
                request = flow.next_request()
                request["req_id"] = sent
                sock.send(codec.encode_request(request))
                pending[sent] = intended
                sent += 1
            if sent >= count or now >= deadline:
                wait_ms = 100
            elif interval:
                wait_ms = max(0, int((started + sent * interval - time.perf_counter()) * 1000))
            else:
                wait_ms = 0 if len(pending) < window else 100
            if pending and sock.poll(wait_ms):
                while True:
                    try:
                        frame = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    received = last_answer = time.perf_counter()
                    reply = codec.decode_reply(frame)
                    origin = pending.pop(reply.get("req_id"), None)  # type: ignore[arg-type]
                    if origin is None:
                        continue
                    report.latencies_us.append((received - origin) * 1e6)
                    if reply.get("ok"):
                        flow.learn(reply.get("result"))
                    else:
                        report.add_error(str((reply.get("error") or {}).get("code")))
            elif not pending and interval and sent < count:
                time.sleep(max(0.0, started + sent * interval - time.perf_counter()))
            elif not pending and sent >= count:
                break
    finally:
        report.elapsed = last_answer - started
        report.unanswered = len(pending)
        sock.close(0)
    return report


REST_PATHS = {"new_order": "/submit_order", "cancel_order": "/cancel_order"}


async def run_rest(
    url: str,
    flow: RequestFlow,
    count: int,
    rate: float,
    duration: float,
    concurrency: int = 8,
    api_key: str | None = None,
) -> Report:
    """httpx over keep-alive connections; fixed-rate tasks or `concurrency` closed loops.

    Bounded: nothing is sent after `duration`, and whatever is still in flight
    ANSWER_GRACE_S later is cancelled and counted as unanswered."""
    import httpx

    report = Report()
    headers = {"X-API-Key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.perf_counter()
    deadline = started + duration
    answered_at = [started]
    sent_done = [0, 0]  # requests sent, requests answered (or failed)

    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=10.0
    ) as client:

        async def one(intended: float) -> None:
            request = flow.next_request()
            path = REST_PATHS[request.pop("op")]
            if api_key:
                request.pop("account", None)  # with auth on, the key names the account
            sent_done[0] += 1
            try:
                response = await client.post(path, content=json.dumps(request))
            except httpx.HTTPError as exc:
                sent_done[1] += 1
                report.add_error(type(exc).__name__)
                return
            sent_done[1] += 1
            answered_at[0] = time.perf_counter()
            report.latencies_us.append((answered_at[0] - intended) * 1e6)
            body = response.json()
            if response.status_code == 200:
                flow.learn(body)
            else:
                report.add_error(str(body.get("error", {}).get("code", response.status_code)))

        async def fixed_rate() -> None:
            tasks = []
            for i in range(count):
                intended = started + i / rate
                if intended > deadline:
                    break
                delay = intended - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(intended)))
            await asyncio.gather(*tasks)

        async def closed_loops() -> None:
            counter = iter(range(count))

            async def worker() -> None:
                for _ in counter:
                    if time.perf_counter() > deadline:
                        return
                    await one(time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        run = fixed_rate() if rate > 0 else closed_loops()
        try:
            await asyncio.wait_for(run, timeout=duration + ANSWER_GRACE_S)
        except TimeoutError:
            report.unanswered = sent_done[0] - sent_done[1]
    report.elapsed = answered_at[0] - started
    return report


def plot_histogram(latencies_us: list[float], path: str) -> None:
    """A log-scale latency histogram (PNG); needs the optional matplotlib extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: pip install 'matchwire[plot]'") from exc
    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.hist(latencies_us, bins=100, log=True, color="#3b82f6")
    axes.set_xlabel("latency (µs, from intended send time)")
    axes.set_ylabel("requests")
    axes.set_title(f"matchwire load: {len(latencies_us):,} requests")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=("zmq", "rest"), default="zmq")
    parser.add_argument(
        "--endpoint", help="matcher ROUTER (zmq; default: the symbol's, from GET /)"
    )
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="gateway: the REST target, and where the symbol's rules and endpoint are read (GET /)",
    )
    parser.add_argument("--api-key")
    parser.add_argument("--key", help="zmq with CurveZMQ: your .key_secret file")
    parser.add_argument(
        "--server-key", help="the matcher's CURVE public key, file or Z85 (default: from GET /)"
    )
    parser.add_argument("--account", default="anonymous", help="account to trade as (auth off)")
    parser.add_argument("--symbol", default="BTC-USDT")
    parser.add_argument("--tick", help="tick size (default: the symbol's, from GET /)")
    parser.add_argument("--lot", help="lot size (default: the symbol's, from GET /)")
    parser.add_argument("--mid", default="30000")
    parser.add_argument("--count", type=int, default=10_000, help="requests to send at most")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds at most")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="requests/s (0: as fast as possible)"
    )
    parser.add_argument("--window", type=int, default=1000, help="in flight at most (zmq)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="connections (rest); httpx itself collapses near 50",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--plot", help="write a latency histogram PNG here (needs matplotlib)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


class LoadError(Exception):
    """The run cannot start (bad flags, no gateway to read the symbol from)."""


def symbol_rules(url: str, symbol: str) -> dict[str, str]:
    """The symbol's tick, lot and endpoints as the gateway's GET / lists them."""
    import httpx

    try:
        symbols = httpx.get(url + "/", timeout=5.0).json()["symbols"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise LoadError(
            f"cannot read {symbol}'s rules from {url}/ ({exc}); "
            f"pass --tick and --lot (and --endpoint for zmq)"
        ) from None
    if symbol not in symbols:
        raise LoadError(f"unknown symbol {symbol}: {url} serves {', '.join(sorted(symbols))}")
    return dict(symbols[symbol])


def resolve(args: argparse.Namespace) -> tuple[str | None, Decimal, Decimal]:
    """(endpoint, tick, lot) for the run: flags win, the gateway fills in the rest, so
    `--symbol ETH-USDT` sends to ETH-USDT's matcher with ETH-USDT's grid."""
    needs_endpoint = args.transport == "zmq" and args.endpoint is None
    needs_server_key = args.transport == "zmq" and args.key and not args.server_key
    rules: dict[str, str] = {}
    if needs_endpoint or needs_server_key or args.tick is None or args.lot is None:
        rules = symbol_rules(args.url, args.symbol)
    if needs_server_key:
        args.server_key = rules.get("curve_public_key")
        if not args.server_key:
            raise LoadError(
                f"--key: {args.url}/ shows no CURVE key for {args.symbol}; pass --server-key"
            )
    endpoint = args.endpoint or rules.get("order_endpoint")
    try:
        tick = Decimal(args.tick or rules["tick_size"])
        lot = Decimal(args.lot or rules["lot_size"])
    except ArithmeticError as exc:
        raise LoadError(f"--tick/--lot must be decimals: {exc}") from None
    if not (tick.is_finite() and lot.is_finite() and tick > 0 and lot > 0):
        raise LoadError("--tick and --lot must be positive decimals")
    return endpoint, tick, lot


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.count < 1 or args.duration <= 0 or args.rate < 0:
        raise LoadError("--count must be >= 1, --duration > 0 and --rate >= 0")
    endpoint, tick, lot = resolve(args)
    flow = RequestFlow(args.symbol, tick, lot, Decimal(args.mid), args.seed, args.account)
    if args.transport == "zmq":
        assert endpoint is not None
        try:
            curve = client_keys(args.server_key, args.key) if args.key else None
        except ValueError as exc:
            raise LoadError(str(exc)) from None
        report = run_zmq(endpoint, flow, args.count, args.rate, args.duration, args.window, curve)
    else:
        report = asyncio.run(
            run_rest(
                args.url, flow, args.count, args.rate, args.duration, args.concurrency, args.api_key
            )
        )
    figures = report.summary()
    if args.plot:
        plot_histogram(report.latencies_us, args.plot)
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{args.transport} {args.symbol}: {figures['requests']:,} answers in "
            f"{report.elapsed:.2f}s (first send to last answer) = "
            f"{figures['throughput_per_s']:,.0f}/s"
        )
        print(
            "  latency µs: "
            + "  ".join(f"p{p:g} {figures[f'p{p:g}_us']:,.0f}" for p in PERCENTILES)
            + f"  max {figures['max_us']:,.0f}"
        )
        if figures["errors"]:
            print(f"  errors: {figures['errors']}")
        if figures["unanswered"]:
            print(
                f"  unanswered: {figures['unanswered']} (in flight at the hard end, "
                f"--duration + {ANSWER_GRACE_S:g}s)"
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="matchwire load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    try:
        figures = run(parser.parse_args(argv))
    except LoadError as exc:
        print(f"matchwire load: {exc}", file=sys.stderr)
        return 2
    return 0 if figures["requests"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
