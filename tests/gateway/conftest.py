"""Real matchers, a real gateway (and a real feed hub where asked) on free loopback ports."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.rest import RestClient
from tests.support import Child, free_port, free_ports, wait_for_port, write_config

BTC = "BTC-USDT"
ETH = "ETH-USDT"
RULES = {
    BTC: {
        "tick_size": "0.01",
        "lot_size": "0.0001",
        "min_quantity": "0.0001",
        "max_price": "10000000",
        "max_quantity": "100000",
    },
    ETH: {"tick_size": "0.01", "lot_size": "0.001", "min_quantity": "0.001"},
}
MATCHER_TIMEOUT = 1.0  # the gateway's --matcher-timeout in these tests


class GatewaySystem:
    """A TOML config, one matcher per symbol, a gateway, optionally the feed hub."""

    def __init__(
        self,
        tmp_path: Path,
        symbols: tuple[str, ...] = (BTC,),
        api_keys: dict[str, dict[str, Any]] | None = None,
        feedhub: bool = False,
        matcher_timeout: float = MATCHER_TIMEOUT,
    ) -> None:
        self.tmp_path = tmp_path
        self.symbols = symbols
        self.http_port, self.ws_port = free_ports(2)
        self.config_path = tmp_path / "matchwire.toml"
        self.endpoints = write_config(
            self.config_path,
            {
                "host": "127.0.0.1",
                "http_port": self.http_port,
                "ws_port": self.ws_port,
                "zmq_port": free_port(),
                "data_dir": tmp_path / "data",
                "fsync": "batch",
            },
            {symbol: RULES[symbol] for symbol in symbols},
            api_keys,
        )
        self.matchers: dict[str, Child] = {}
        self.gateway: Child | None = None
        self.hub: Child | None = None
        self.with_feedhub = feedhub
        self.matcher_timeout = matcher_timeout
        self._starts = itertools.count()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def router_port(self, symbol: str) -> int:
        return int(self.endpoints[symbol][0].rsplit(":", 1)[1])

    def start_matcher(self, symbol: str) -> Child:
        child = Child(
            ["-m", "matcher.service", "--symbol", symbol, "--config", str(self.config_path)],
            self.tmp_path / f"matcher-{symbol}-{next(self._starts)}.log",
        ).start()
        self.matchers[symbol] = child
        wait_for_port(self.router_port(symbol))
        return child

    def start(self) -> GatewaySystem:
        for symbol in self.symbols:
            self.start_matcher(symbol)
        if self.with_feedhub:
            self.hub = Child(
                ["-m", "feedhub.server", "--config", str(self.config_path)],
                self.tmp_path / "feedhub.log",
            ).start()
        self.gateway = Child(
            [
                "-m",
                "gateway.server",
                "--config",
                str(self.config_path),
                "--matcher-timeout",
                str(self.matcher_timeout),
            ],
            self.tmp_path / "gateway.log",
        ).start()
        try:
            wait_for_port(self.http_port)
            if self.hub is not None:
                wait_for_port(self.ws_port)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"the system did not start:\n{self.logs()}") from None
        return self

    def logs(self) -> str:
        children = [*self.matchers.values(), self.hub, self.gateway]
        return "\n".join(f"--- {c.log_path.name}\n{c.log()[-3000:]}" for c in children if c)

    def stop(self) -> None:
        for child in (self.gateway, self.hub, *self.matchers.values()):
            if child is not None:
                child.stop()

    def rest(self, **kwargs: Any) -> RestClient:
        return RestClient(self.base, **kwargs)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10)


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySystem]:
    """Auth off, BTC-USDT and ETH-USDT, with the feed hub: shared by most tests.

    Tests keep the books clean: each trades under its own account (`account` fixture),
    whose open orders are cancelled after the test.
    """
    running = GatewaySystem(tmp_path_factory.mktemp("gateway"), (BTC, ETH), feedhub=True).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def http(system: GatewaySystem) -> Iterator[httpx.Client]:
    with system.http() as client:
        yield client


_account_numbers = itertools.count(1)


@pytest.fixture
def accounts(system: GatewaySystem, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Makes fresh account names for one test; their open orders are cancelled afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(f"{request.node.name[:40]}-{next(_account_numbers)}")
        return made[-1]

    yield make
    for name in made:
        with system.rest(account=name) as rest:
            for symbol in system.symbols:
                for order in rest.orders(symbol, status="open")["orders"]:
                    rest.cancel_order(symbol, order["order_id"])


@pytest.fixture
def account(accounts: Any) -> str:
    """A fresh account name for one test (see `accounts`)."""
    return str(accounts())
