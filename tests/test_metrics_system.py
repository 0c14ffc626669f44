"""Metrics of the whole system (docs/operations.md, "Metrics"): run.py with matcher
metrics on, every process scraped over real HTTP and parsed with prometheus_client's
text parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import System, free_port_run, wait_until

SYMBOLS = ("BTC-USDT", "ETH-USDT")
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, url
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}"
    return samples[key]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, int]]:
    tmp = tmp_path_factory.mktemp("metrics")
    metrics_port = free_port_run(len(SYMBOLS))
    config = tmp / "matchwire.toml"
    config.write_text(f"[server]\nmetrics_port = {metrics_port}\n")
    running = System(tmp, "--config", str(config)).start()
    yield running, metrics_port
    running.stop()


def test_root_lists_each_matchers_metrics_endpoint(system: tuple[System, int]) -> None:
    running, metrics_port = system
    info = httpx.get(running.base + "/", timeout=10).json()
    for index, symbol in enumerate(SYMBOLS):
        endpoint = info["symbols"][symbol]["metrics_endpoint"]
        assert endpoint == f"http://127.0.0.1:{metrics_port + index}/metrics"
        samples = wait_until(lambda endpoint=endpoint: _scraped(endpoint), timeout=30)
        assert PROCESS_METRICS <= names(samples)
        assert (
            value(samples, "matchwire_orders_total", symbol=symbol, outcome="resting", reason="")
            >= 0
        )
        build = [dict(labels) for name, labels in samples if name == "matchwire_matcher_build"]
        assert build and build[0]["symbol"] == symbol


def test_an_order_through_the_gateway_shows_in_its_matchers_metrics(
    system: tuple[System, int],
) -> None:
    running, metrics_port = system
    endpoint = f"http://127.0.0.1:{metrics_port + 1}/metrics"  # ETH-USDT, the second
    before = value(
        scrape(endpoint), "matchwire_orders_total", symbol="ETH-USDT", outcome="resting", reason=""
    )
    answer = httpx.post(
        running.base + "/submit_order",
        timeout=10,
        json={
            "symbol": "ETH-USDT",
            "order_type": "limit",
            "side": "buy",
            "quantity": "1",
            "price": "1000",
        },
    )
    assert answer.status_code == 200, answer.text
    after = scrape(endpoint)
    assert (
        value(after, "matchwire_orders_total", symbol="ETH-USDT", outcome="resting", reason="")
        == before + 1
    )
    assert value(after, "matchwire_resting_orders", symbol="ETH-USDT") >= 1


def test_cancel_all_counts_each_order_it_cancelled_and_each_command(
    system: tuple[System, int],
) -> None:
    """Before, cancel_all's cancels were in no outcome and the op in no command count."""
    running, metrics_port = system
    endpoint = f"http://127.0.0.1:{metrics_port}/metrics"  # BTC-USDT, the first
    labels = {"symbol": "BTC-USDT", "outcome": "cancelled", "reason": "cancelled_by_user"}
    command = {"symbol": "BTC-USDT", "op": "cancel_all", "result": "ok"}
    before = scrape(endpoint)
    orders = [
        {"order_type": "limit", "side": "buy", "quantity": "0.1", "price": "100"},
        {"order_type": "limit", "side": "sell", "quantity": "0.1", "price": "900000"},
        {"order_type": "limit", "side": "buy", "quantity": "0.2", "price": "101"},
    ]
    for order in orders:
        answer = httpx.post(
            running.base + "/submit_order",
            timeout=10,
            json={"symbol": "BTC-USDT", "account": "metrics-mass", **order},
        )
        assert answer.status_code == 200 and answer.json()["status"] == "new", answer.text
    answer = httpx.post(
        running.base + "/submit_stop_order",
        timeout=10,
        json={
            "symbol": "BTC-USDT",
            "account": "metrics-mass",
            "order_type": "stop_loss",
            "side": "sell",
            "quantity": "0.1",
            "stop_price": "1",
        },
    )
    assert answer.status_code == 200, answer.text
    for expected in (4, 0):  # the second finds nothing: a command, no order
        answer = httpx.post(
            running.base + "/cancel_all",
            timeout=10,
            json={"symbol": "BTC-USDT", "account": "metrics-mass"},
        )
        assert answer.status_code == 200 and len(answer.json()["cancelled"]) == expected
    after = scrape(endpoint)
    assert (
        value(after, "matchwire_orders_total", **labels)
        == value(before, "matchwire_orders_total", **labels) + 4
    )
    assert (
        value(after, "matchwire_commands_total", **command)
        == value(before, "matchwire_commands_total", **command) + 2
    )
    assert (
        value(after, "matchwire_orders_total", symbol="BTC-USDT", outcome="resting", reason="")
        == value(before, "matchwire_orders_total", symbol="BTC-USDT", outcome="resting", reason="")
        + 3
    )
    assert (
        value(
            after,
            "matchwire_commands_total",
            symbol="BTC-USDT",
            op="cancel_all",
            result="deadline_exceeded",
        )
        == 0
    )  # its refusals exist from the start


def test_gateway_and_feed_hub_export_process_metrics_and_zero_counters(
    system: tuple[System, int],
) -> None:
    running, _ = system
    gateway = scrape(running.base + "/metrics")
    assert PROCESS_METRICS <= names(gateway)
    for symbol in SYMBOLS:
        assert value(gateway, "matchwire_gateway_matcher_up", symbol=symbol) in (0, 1)
    hub = scrape(f"http://127.0.0.1:{running.ws_port}/metrics")
    assert PROCESS_METRICS <= names(hub)
    for symbol in SYMBOLS:
        for reason in ("gap", "heartbeat_timeout", "matcher_restarted", "behind_heartbeat"):
            assert value(hub, "feedhub_replica_resyncs_total", symbol=symbol, reason=reason) == 0
    for feed in ("market_data", "depth", "trades"):
        for action in ("resync", "close", "stalled"):
            assert value(hub, "feedhub_slow_client_drops_total", feed=feed, action=action) == 0
    assert value(hub, "feedhub_connections_refused_total", reason="max_connections") == 0


def _scraped(url: str) -> Samples | None:
    try:
        return scrape(url)
    except httpx.HTTPError:
        return None


def test_config_refuses_a_metrics_port_past_the_last_port(tmp_path: Path) -> None:
    from matcher.config import ConfigError
    from matcher.system import load_config

    config = tmp_path / "bad.toml"
    config.write_text("[server]\nmetrics_port = 65535\n")  # the second symbol: 65536
    with pytest.raises(ConfigError, match="metrics_port 65535 \\+ 1"):
        load_config(config)
    config.write_text("[server]\nmetrics_port = 0\n")
    assert all(rules.metrics_port == 0 for rules in load_config(config).symbols.values())
