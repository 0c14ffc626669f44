"""Helpers shared by the tests: free loopback ports, real child processes, the whole
system (run.py, or sharded on two loopback aliases), the replay command, and inputs
more than one suite uses. Scaffolding two test files need goes here, once."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port(host))
    return sorted(ports)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# Below Linux's ephemeral range (32768-60999): a run of consecutive ports picked here
# cannot be taken as the local port of another test's outgoing connection between the
# check and the bind. (A port next to one the kernel just handed out can: a matcher's
# PUB port once failed with "Address already in use" that way.)
RUN_PORTS = range(20_000, 32_000)


def free_port_run(count: int, taken: frozenset[int] | set[int] = frozenset()) -> int:
    """The first of `count` consecutive free ports: run.py's matcher i binds
    zmq-port + 2i (orders) and zmq-port + 2i + 1 (feed)."""
    for _ in range(200):
        first = random.randrange(RUN_PORTS.start, RUN_PORTS.stop - count)
        ports = range(first, first + count)
        if not taken.intersection(ports) and all(map(port_is_free, ports)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports in {RUN_PORTS}")


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class Child:
    """A real child process running a Python module, with its output in a log file."""

    def __init__(self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None):
        self.args = [sys.executable, *args]
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash the journal must survive."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met in {timeout}s")


def http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class System:
    """The whole system started by run.py on free loopback ports."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.tmp = tmp
        self.http_port, self.ws_port = free_port(), free_port()
        self.zmq_port = free_port_run(4)  # two symbols by default: orders and feed each
        self.data_dir = tmp / "data"
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.feed_url = f"ws://127.0.0.1:{self.ws_port}"
        self.child = Child(
            [
                "run.py",
                "--data-dir",
                str(self.data_dir),
                "--http-port",
                str(self.http_port),
                "--ws-port",
                str(self.ws_port),
                "--zmq-port",
                str(self.zmq_port),
                *extra,
            ],
            tmp / "run.log",
        )

    def endpoint(self, index: int) -> str:
        """The ROUTER endpoint of the index-th configured symbol."""
        return f"tcp://127.0.0.1:{self.zmq_port + 2 * index}"

    def start(self, timeout: float = 40.0) -> System:
        self.child.start()
        try:
            wait_until(lambda: http_ok(self.base + "/health"), timeout=timeout, interval=0.2)
        except TimeoutError:
            self.child.stop()
            raise RuntimeError(
                f"system did not become healthy:\n{self.child.log()[-4000:]}"
            ) from None
        return self

    def stop(self) -> None:
        self.child.stop(timeout=20)


def write_config(
    path: Path,
    server: dict[str, Any],
    rules: dict[str, dict[str, str]],
    api_keys: dict[str, dict[str, Any]] | None = None,
) -> dict[str, tuple[str, str]]:
    """Write a TOML config with every symbol on its own free loopback ROUTER/PUB ports.

    Returns symbol -> (order_endpoint, feed_endpoint).
    """

    def value(item: Any) -> str:
        return f'"{item}"' if isinstance(item, (str, Path)) else repr(item)

    lines = ["[server]", *(f"{key} = {value(item)}" for key, item in server.items())]
    endpoints: dict[str, tuple[str, str]] = {}
    for symbol, symbol_rules in rules.items():
        router, pub = free_ports(2)
        endpoints[symbol] = (f"tcp://127.0.0.1:{router}", f"tcp://127.0.0.1:{pub}")
        lines.append(f'[symbols."{symbol}"]')
        lines.extend(f"{key} = {value(item)}" for key, item in symbol_rules.items())
        lines.append(f'order_endpoint = "{endpoints[symbol][0]}"')
        lines.append(f'feed_endpoint = "{endpoints[symbol][1]}"')
    for key, entry in (api_keys or {}).items():
        lines.append(f'[api_keys."{key}"]')
        lines.extend(f"{name} = {value(item)}" for name, item in entry.items())
    path.write_text("\n".join(lines) + "\n")
    return endpoints


def hub_synced(ws_port: int, symbols: Sequence[str] | None = None) -> bool:
    """Whether the feed hub on `ws_port` is synced with a book for each symbol (all of
    its symbols unless named)."""
    import httpx

    try:
        health = httpx.get(f"http://127.0.0.1:{ws_port}/health", timeout=5).json()
    except httpx.HTTPError:
        return False
    states = health["symbols"]
    return all(
        states[symbol]["synced"] and states[symbol]["book_seq"] for symbol in symbols or states
    )


class Shards:
    """docs/operations.md's sharded layout on two loopback aliases: BTC-USDT's matcher on
    127.0.0.2, ETH-USDT's on 127.0.0.3, each started alone (`run.py matcher`), and the
    gateway (and the feed hub) on 127.0.0.1, all from one config file. `extra` is TOML
    appended to it (a [curve] section)."""

    def __init__(self, tmp: Path, *, feedhub: bool = False, extra: str = "") -> None:
        self.btc = ("127.0.0.2", free_port("127.0.0.2"), free_port("127.0.0.2"))
        self.eth = ("127.0.0.3", free_port("127.0.0.3"), free_port("127.0.0.3"))
        self.http_port, self.ws_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        btc, eth = self.btc, self.eth
        config = tmp / "shards.toml"
        config.write_text(
            f"[server]\nhttp_port = {self.http_port}\nws_port = {self.ws_port}\n"
            f'data_dir = "{tmp / "data"}"\n'
            f'[symbols.BTC-USDT]\norder_endpoint = "tcp://{btc[0]}:{btc[1]}"\n'
            f'feed_endpoint = "tcp://{btc[0]}:{btc[2]}"\n'
            f'[symbols.ETH-USDT]\nlot_size = "0.001"\norder_endpoint = "tcp://{eth[0]}:{eth[1]}"\n'
            f'feed_endpoint = "tcp://{eth[0]}:{eth[2]}"\n' + extra
        )
        run = ["run.py"]
        self.children = [
            Child(
                [*run, "matcher", "--config", str(config), "--symbol", "BTC-USDT"], tmp / "btc.log"
            ),
            Child(
                [*run, "matcher", "--config", str(config), "--symbol", "ETH-USDT"], tmp / "eth.log"
            ),
        ]
        if feedhub:
            self.children.append(
                Child([*run, "feedhub", "--config", str(config)], tmp / "feedhub.log")
            )
        self.children.append(Child([*run, "gateway", "--config", str(config)], tmp / "gateway.log"))

    def start(self) -> Shards:
        for child in self.children:
            child.start()
        wait_for_port(self.http_port, timeout=30)
        return self

    def stop(self) -> None:
        for child in self.children:
            child.stop()

    def order_each(self, request_timeout: float, timeout: float) -> None:
        """A resting buy of 1 on each symbol (BTC at 30000, ETH at 2000), retried until its
        matcher answers (they start in any order)."""
        import httpx

        for symbol, price in (("BTC-USDT", "30000"), ("ETH-USDT", "2000")):

            def answered(symbol: str = symbol, price: str = price) -> dict[str, Any] | None:
                response = httpx.post(
                    self.base + "/submit_order",
                    json={
                        "symbol": symbol,
                        "order_type": "limit",
                        "side": "buy",
                        "price": price,
                        "quantity": "1",
                    },
                    timeout=request_timeout,
                )
                return response.json() if response.status_code == 200 else None

            order = wait_until(answered, timeout=timeout, interval=0.3)
            assert order["symbol"] == symbol


def run_replay(symbol: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m matcher.replay --symbol SYMBOL ARGS...` run to its end, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "matcher.replay", "--symbol", symbol, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


# Texts that are no plain decimal (digits, one optional point with digits on both sides):
# the matcher refuses each as a price or quantity, and so, through it, does the gateway.
NOT_PLAIN_DECIMALS = [
    " 100",
    "100 ",
    "\t100",
    "100\n",
    "1e2",
    "1E2",
    "+100",
    ".5",
    "5.",
    "-1",
    "0x10",
    "1_000",
    "NaN",
    "Infinity",
    "-Infinity",
    "1,5",
    "",
    "\u0661\u0660\u0660",
    "\uff11\uff10\uff10",
    "1\u00a0",
]


def crossing_orders(fills: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Matcher requests that trade once per (price, quantity): a resting sell of
    account "maker", then a market buy of account "taker" that takes it."""
    requests: list[dict[str, Any]] = []
    for price, quantity in fills:
        requests.append(
            {
                "op": "new_order",
                "side": "sell",
                "order_type": "limit",
                "price": price,
                "quantity": quantity,
                "account": "maker",
            }
        )
        requests.append(
            {
                "op": "new_order",
                "side": "buy",
                "order_type": "market",
                "quantity": quantity,
                "account": "taker",
            }
        )
    return requests


def pipeline_all(client: Any, requests: list[dict[str, Any]], chunk: int = 200) -> None:
    """Send `requests` through a MatcherClient's pipeline, `chunk` at a time; each is ok."""
    for start in range(0, len(requests), chunk):
        assert all(reply["ok"] for reply in client.pipeline(requests[start : start + chunk]))
