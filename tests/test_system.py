"""End to end through run.py: the whole system as a user starts it, over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import (
    REPO,
    Child,
    Shards,
    System,
    free_port,
    free_port_run,
    http_ok,
    wait_until,
)


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found.extend(int(child) for child in children)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def healthy(base: str) -> bool:
    return http_ok(base + "/health")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    running = System(tmp_path_factory.mktemp("system")).start()
    yield {
        "child": running.child,
        "base": running.base,
        "zmq_port": running.zmq_port,
        "ws_port": running.ws_port,
    }
    running.stop()


def test_run_py_serves_the_default_symbols(system) -> None:  # type: ignore[no-untyped-def]
    info = httpx.get(system["base"] + "/").json()
    assert set(info["symbols"]) == {"BTC-USDT", "ETH-USDT"}
    assert info["feed_url"] == f"ws://127.0.0.1:{system['ws_port']}"
    assert info["symbols"]["BTC-USDT"]["order_endpoint"] == f"tcp://127.0.0.1:{system['zmq_port']}"


def test_seed_fee_example_end_to_end(system) -> None:  # type: ignore[no-untyped-def]
    base = system["base"]
    sell = httpx.post(
        base + "/submit_order",
        json={
            "symbol": "BTC-USDT",
            "order_type": "limit",
            "side": "sell",
            "price": "30000",
            "quantity": "1",
        },
    ).json()
    assert sell["status"] == "new"
    buy = httpx.post(
        base + "/submit_order",
        json={"symbol": "BTC-USDT", "order_type": "market", "side": "buy", "quantity": 1},
    ).json()
    assert buy["status"] == "filled"
    (trade,) = buy["trades"]
    assert (trade["price"], trade["quantity"]) == ("30000.00", "1.0000")
    assert (trade["maker_fee"], trade["taker_fee"]) == ("3", "6")
    assert httpx.get(base + "/trades/BTC-USDT").json()["trades"][0]["trade_id"] == trade["trade_id"]


def test_supervisor_restarts_a_killed_matcher_which_recovers(system) -> None:  # type: ignore[no-untyped-def]
    base = system["base"]
    resting = httpx.post(
        base + "/submit_order",
        json={
            "symbol": "ETH-USDT",
            "order_type": "limit",
            "side": "buy",
            "price": "2000",
            "quantity": "3",
        },
    ).json()
    supervisor = system["child"].process.pid

    def eth_matchers() -> list[int]:
        return [
            pid
            for pid in child_pids(supervisor)
            if "matcher.service" in cmdline(pid) and "ETH-USDT" in cmdline(pid)
        ]

    (matcher,) = eth_matchers()
    os.kill(matcher, signal.SIGKILL)
    # The restart is immediate: a /health in between may well reach the new matcher
    # already, so the sign of the restart is a new process, not a 503.
    wait_until(lambda: eth_matchers() not in ([], [matcher]), timeout=30)
    wait_until(lambda: healthy(base), timeout=30)
    order = httpx.get(f"{base}/orders/ETH-USDT/{resting['order_id']}").json()
    assert order["status"] == "new" and order["remaining_quantity"] == "3.000"
    assert "restarting matcher ETH-USDT" in system["child"].log()


def test_refuses_a_public_host_without_api_keys(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "run.py", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "auth off" in result.stderr


def test_ctrl_c_stops_everything_and_matchers_write_snapshots(tmp_path: Path) -> None:
    http_port = free_port()
    zmq_port = free_port_run(2)
    child = Child(
        [
            "run.py",
            "--data-dir",
            str(tmp_path / "data"),
            "--http-port",
            str(http_port),
            "--ws-port",
            str(free_port()),
            "--zmq-port",
            str(zmq_port),
            "--symbols",
            "BTC-USDT",
        ],
        tmp_path / "run.log",
    ).start()
    base = f"http://127.0.0.1:{http_port}"
    wait_until(lambda: healthy(base), timeout=30)
    httpx.post(
        base + "/submit_order",
        json={
            "symbol": "BTC-USDT",
            "order_type": "limit",
            "side": "buy",
            "price": "100",
            "quantity": "1",
        },
    )
    assert child.process is not None
    child.process.send_signal(signal.SIGINT)
    assert child.process.wait(timeout=30) == 0
    assert list((tmp_path / "data" / "BTC-USDT" / "snapshots").glob("snapshot-*.snap"))
    assert "[run] stopped" in child.log()


def test_two_matchers_on_two_addresses_behind_one_gateway(tmp_path: Path) -> None:
    """The sharded layout of docs/operations.md: each matcher started alone, own address."""
    shards = Shards(tmp_path)
    btc, eth = shards.btc, shards.eth
    try:
        shards.start().order_each(request_timeout=5, timeout=30)
        book = httpx.get(shards.base + "/orderbook/ETH-USDT").json()
        assert book["bids"] == [["2000.00", "1.000"]]
        logs = {child.log_path.name: child.log() for child in shards.children}
        assert f"tcp://{btc[0]}:{btc[1]}" in logs["btc.log"], json.dumps(logs)[:2000]
        assert f"tcp://{eth[0]}:{eth[1]}" in logs["eth.log"]
    finally:
        shards.stop()
