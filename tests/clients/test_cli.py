"""The matchwire CLI against a running system, over REST and raw ZeroMQ, as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, System, free_port


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    running = System(tmp_path_factory.mktemp("cli")).start()
    yield running
    running.stop()


def cli(
    system: System | None, *args: str, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    base = url or (system.base if system else "http://127.0.0.1:1")
    return subprocess.run(
        [sys.executable, "-m", "clients", "--url", base, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_json(system: System, *args: str) -> Any:
    result = cli(system, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("transport", ["rest", "zmq"])
def test_every_order_subcommand_round_trips(system: System, transport: str) -> None:
    t = ["--transport", transport, "--account", f"cli-{transport}"]
    sell = cli_json(system, *t, "order", "ETH-USDT", "sell", "limit", "2", "--price", "2500")
    assert sell["status"] == "new" and sell["price"] == "2500.00"
    buy = cli_json(
        system,
        *t[:2],
        "--account",
        "someone-else",
        "order",
        "ETH-USDT",
        "buy",
        "ioc",
        "0.5",
        "--price",
        "2500",
    )
    assert buy["status"] == "filled" and buy["trades"][0]["maker_order_id"] == sell["order_id"]
    amended = cli_json(system, *t, "amend", "ETH-USDT", str(sell["order_id"]), "--quantity", "1.5")
    assert amended["quantity"] == "1.500"
    got = cli_json(system, *t, "get", "ETH-USDT", str(sell["order_id"]))
    assert got["order_id"] == sell["order_id"]
    opened = cli_json(system, *t, "orders", "ETH-USDT", "--open")
    assert sell["order_id"] in [o["order_id"] for o in opened["orders"]]
    stop = cli_json(system, *t, "stop", "ETH-USDT", "sell", "stop_loss", "1", "--stop-price", "100")
    assert stop["status"] == "pending"
    cancelled = cli_json(system, *t, "cancel", "ETH-USDT", str(stop["order_id"]))
    assert cancelled["status"] == "cancelled"
    cli_json(system, *t, "cancel", "ETH-USDT", str(sell["order_id"]))
    book = cli_json(system, *t, "book", "ETH-USDT", "--depth", "5")
    assert set(book) >= {"bids", "asks", "book_seq"}
    bbo = cli_json(system, *t, "bbo", "ETH-USDT")
    assert "bid_price" in bbo
    trades = cli_json(system, *t, "trades", "ETH-USDT", "--limit", "3")
    assert len(trades["trades"]) <= 3


def test_tables_by_default(system: System) -> None:
    cli_json(system, "order", "BTC-USDT", "sell", "limit", "1", "--price", "31000")
    result = cli(system, "book", "BTC-USDT")
    assert result.returncode == 0
    assert "bid qty" in result.stdout and "31000.00" in result.stdout
    order = cli(system, "order", "BTC-USDT", "buy", "limit", "0.1", "--price", "100")
    assert "status" in order.stdout and "new" in order.stdout


def test_refused_order_exits_1_with_the_code(system: System) -> None:
    result = cli(system, "order", "BTC-USDT", "buy", "limit", "1", "--price", "100.001")
    assert result.returncode == 1
    assert "invalid_price" in result.stderr


def test_unknown_order_exits_1(system: System) -> None:
    result = cli(system, "cancel", "BTC-USDT", "999999999")
    assert result.returncode == 1 and "unknown_order" in result.stderr


def test_system_down_exits_3() -> None:
    result = cli(None, "bbo", "BTC-USDT", url=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 3
    assert "unreachable" in result.stderr


def test_bad_usage_exits_2(system: System) -> None:
    assert cli(system, "order", "BTC-USDT", "sideways", "limit", "1").returncode == 2


def test_watch_prints_depth_updates(system: System) -> None:
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clients",
            "--url",
            system.base,
            "--json",
            "watch",
            "BTC-USDT",
            "--updates",
            "2",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(watcher.stdout.readline())  # type: ignore[union-attr]
        assert first["type"] == "depth"
        cli_json(system, "order", "BTC-USDT", "buy", "limit", "0.2", "--price", "101")
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    messages = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert any(m.get("type") == "depth" and ["101.00", "0.2000"] in m["bids"] for m in messages)


def test_load_generator_short_bounded_run_over_both_transports(
    system: System, tmp_path: Path
) -> None:
    zmq = cli(
        system,
        "load",
        "--transport",
        "zmq",
        "--endpoint",
        system.endpoint(0),
        "--count",
        "2000",
        "--duration",
        "20",
        "--json",
    )
    assert zmq.returncode == 0, zmq.stderr
    figures = json.loads(zmq.stdout.strip().splitlines()[-1])
    assert figures["requests"] == 2000
    assert 0 < figures["p50_us"] <= figures["p99_us"] <= figures["max_us"]
    assert set(figures["errors"]) <= {"order_not_open"}  # cancels of orders filled meanwhile
    rest = cli(
        system,
        "load",
        "--transport",
        "rest",
        "--url",
        system.base,
        "--rate",
        "200",
        "--count",
        "200",
        "--duration",
        "20",
        "--json",
    )
    assert rest.returncode == 0, rest.stderr
    figures = json.loads(rest.stdout.strip().splitlines()[-1])
    assert figures["requests"] == 200 and figures["throughput_per_s"] > 0


def test_replay_subcommand_is_run_py_replay(system: System) -> None:
    result = cli(system, "replay", "--help")
    assert result.returncode == 0 and "--verify" in result.stdout


def test_bad_api_key_exits_4(tmp_path: Path) -> None:
    config = tmp_path / "auth.toml"
    config.write_text('[api_keys."k-good"]\naccount = "alice"\n')
    running = System(tmp_path, "--config", str(config), "--symbols", "BTC-USDT").start()
    try:
        bad = cli(
            running,
            "--api-key",
            "k-wrong",
            "order",
            "BTC-USDT",
            "buy",
            "limit",
            "1",
            "--price",
            "100",
        )
        assert bad.returncode == 4 and "unauthorized" in bad.stderr
        good = cli(
            running,
            "--api-key",
            "k-good",
            "--json",
            "order",
            "BTC-USDT",
            "buy",
            "limit",
            "1",
            "--price",
            "100",
        )
        assert good.returncode == 0, good.stderr
        assert json.loads(good.stdout)["account"] == "alice"
    finally:
        running.stop()


def test_an_option_value_that_names_a_command_is_not_the_command(system: System) -> None:
    # `--account load` used to start the load generator, `get replay 5` to run replay.
    trades = cli(system, "--account", "load", "--json", "trades", "BTC-USDT", "--limit", "1")
    assert trades.returncode == 0, trades.stderr
    assert "trades" in json.loads(trades.stdout)
    lookup = cli(system, "get", "replay", "5")  # the symbol "replay", order 5
    assert lookup.returncode == 1 and "unknown_symbol" in lookup.stderr
    stop = cli(system, "--account", "replay", "--json", "orders", "BTC-USDT")
    assert stop.returncode == 0 and json.loads(stop.stdout)["orders"] == []


def test_a_rejected_order_exits_1(system: System) -> None:
    cli_json(system, "order", "BTC-USDT", "sell", "limit", "1", "--price", "45000")
    result = cli(
        system,
        "--json",
        "order",
        "BTC-USDT",
        "buy",
        "limit",
        "1",
        "--price",
        "45000",
        "--post-only",
    )
    assert result.returncode == 1, result.stdout
    assert json.loads(result.stdout)["status"] == "rejected"
    assert "rejected: post_only_would_take" in result.stderr


def test_replay_help_names_the_cli(system: System) -> None:
    result = cli(system, "replay", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: matchwire replay")


def test_watch_writes_no_terminal_codes_to_a_pipe(system: System) -> None:
    result = cli(system, "watch", "BTC-USDT", "--updates", "1")
    assert result.returncode == 0, result.stderr
    assert "bid qty" in result.stdout and "\x1b" not in result.stdout


def test_load_sends_to_the_symbols_own_matcher(system: System) -> None:
    result = cli(
        system, "load", "--symbol", "ETH-USDT", "--account", "load-eth", "--count", "300", "--json"
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["requests"] == 300 and figures["unanswered"] == 0
    assert set(figures["errors"]) <= {"order_not_open"}
    eth = cli_json(system, "--account", "load-eth", "orders", "ETH-USDT")["orders"]
    btc = cli_json(system, "--account", "load-eth", "orders", "BTC-USDT")["orders"]
    assert eth and not btc
    # ETH-USDT's lot (0.001), not BTC-USDT's (0.0001): every quantity is on its grid.
    assert all(len(o["quantity"].split(".")[1]) == 3 for o in eth)


def test_load_is_bounded_when_nothing_answers(tmp_path: Path) -> None:
    import zmq

    context = zmq.Context.instance()
    silent = context.socket(zmq.ROUTER)  # accepts requests, never answers
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        result = cli(
            None,
            "load",
            "--endpoint",
            f"tcp://127.0.0.1:{port}",
            "--tick",
            "0.01",
            "--lot",
            "0.0001",
            "--count",
            "50",
            "--duration",
            "0.5",
            "--json",
        )
    finally:
        silent.close(0)
    assert result.returncode == 1  # nothing was answered
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["requests"] == 0 and figures["unanswered"] == 50
    assert figures["elapsed_s"] == 0.0 and figures["throughput_per_s"] == 0.0


def test_load_without_a_gateway_or_rules_says_what_to_pass() -> None:
    result = cli(None, "load", "--count", "5")
    assert result.returncode == 2
    assert "pass --tick and --lot" in result.stderr
