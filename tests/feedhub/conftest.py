"""Real matchers and a real feed hub on free loopback ports, for the feed hub's tests."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.zmq_client import MatcherClient
from tests.support import Child, free_port, wait_for_port, write_config

SYMBOL = "BTC-USDT"
OTHER = "ETH-USDT"
RULES = {
    SYMBOL: {"tick_size": "0.01", "lot_size": "0.0001", "min_quantity": "0.0001"},
    OTHER: {"tick_size": "0.01", "lot_size": "0.001", "min_quantity": "0.001"},
}


class System:
    """A TOML config, one matcher per symbol and a feed hub, each a real process."""

    def __init__(self, tmp_path: Path, symbols: tuple[str, ...] = (SYMBOL,)) -> None:
        self.tmp_path = tmp_path
        self.symbols = symbols
        self.data_dir = tmp_path / "data"
        self.ws_port = free_port()
        self.config_path = tmp_path / "matchwire.toml"
        self.endpoints = write_config(
            self.config_path,
            {
                "host": "127.0.0.1",
                "ws_port": self.ws_port,
                "zmq_port": free_port(),
                "data_dir": self.data_dir,
            },
            {symbol: RULES[symbol] for symbol in symbols},
        )
        self.matchers: dict[str, Child] = {}
        self.hub: Child | None = None
        self._hub_starts = 0
        self._clients: list[MatcherClient] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ws_port}"

    def start_matcher(self, symbol: str = SYMBOL) -> Child:
        child = Child(
            ["-m", "matcher.service", "--symbol", symbol, "--config", str(self.config_path)],
            self.tmp_path / f"matcher-{symbol}.log",
        ).start()
        self.matchers[symbol] = child
        wait_for_port(int(self.endpoints[symbol][0].rsplit(":", 1)[1]))
        return child

    def start_hub(
        self, *extra: str, wait_synced: bool = True, env: dict[str, str] | None = None
    ) -> Child:
        self._hub_starts += 1
        self.hub = Child(
            ["-m", "feedhub.server", "--config", str(self.config_path), *extra],
            self.tmp_path / f"hub-{self._hub_starts}.log",
            env,
        ).start()
        wait_for_port(self.ws_port)
        if wait_synced:
            self.wait_hub_synced()
        return self.hub

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http}/health", timeout=5) as response:
            return json.loads(response.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.http}/metrics", timeout=5) as response:
            return response.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent); prometheus-client sorts the labels."""
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
        for line in self.metrics().splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    def wait_hub_synced(self, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = self.health()
                if all(entry["synced"] for entry in health["symbols"].values()):
                    return health
            except OSError:
                pass
            if time.monotonic() > deadline:
                hub_log = self.hub.log() if self.hub else ""
                raise TimeoutError(f"hub not synced after {timeout}s:\n{hub_log}")
            time.sleep(0.05)

    def client(self, symbol: str = SYMBOL) -> MatcherClient:
        client = MatcherClient(self.endpoints[symbol][0], timeout=10.0)
        self._clients.append(client)
        return client

    def book(self, symbol: str = SYMBOL) -> dict[str, Any]:
        return self.client(symbol).request("book", depth=1000)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        if self.hub is not None:
            self.hub.stop()
        for child in self.matchers.values():
            child.stop()


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    """One BTC-USDT matcher and a synced hub."""
    running = System(tmp_path)
    try:
        running.start_matcher()
        running.start_hub()
        yield running
    finally:
        running.stop()


@pytest.fixture
def two_symbols(tmp_path: Path) -> Iterator[System]:
    """BTC-USDT and ETH-USDT matchers and a synced hub."""
    running = System(tmp_path, (SYMBOL, OTHER))
    try:
        running.start_matcher(SYMBOL)
        running.start_matcher(OTHER)
        running.start_hub()
        yield running
    finally:
        running.stop()
