"""The whole system under CurveZMQ, on loopback with real keys: the gateway (pyzmq link),
the feed hub, the CLI and the load generator each present their key; GET / shows the
matchers' public key and no secret (docs/operations.md, "CurveZMQ")."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import BTC, GatewaySystem
from tests.matcher.test_curve import curve_section, make_keys
from tests.support import REPO, Shards, hub_synced, wait_until


@pytest.fixture(scope="module")
def curved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewaySystem, Path]]:
    tmp = tmp_path_factory.mktemp("curve-system")
    keys = make_keys(tmp / "keys")
    system = GatewaySystem(tmp, (BTC,), feedhub=True, matcher_timeout=10.0)
    with system.config_path.open("a") as handle:
        handle.write(curve_section(keys))
    system.start()
    try:
        yield system, keys
    finally:
        system.stop()


def public_key(keys: Path, name: str) -> str:
    return (keys / f"{name}.key").read_text().split('"')[1]


def matchwire(system: GatewaySystem, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clients", "--url", system.base, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_gateway_and_the_hub_work_end_to_end(curved: tuple[GatewaySystem, Path]) -> None:
    system, keys = curved
    with system.http() as http:
        info = http.get("/")
        symbol = info.json()["symbols"][BTC]
        assert symbol["curve_public_key"] == public_key(keys, "matcher")
        assert "secret" not in info.text.lower()
        order = http.post(
            "/submit_order",
            json={
                "symbol": BTC,
                "side": "buy",
                "order_type": "limit",
                "price": "101",
                "quantity": "1",
                "account": "dave",
            },
            timeout=30,
        )
        assert order.status_code == 200, order.text + system.logs()
        assert order.json()["account"] == "dave"  # the gateway's key names any account
    assert system.gateway is not None and "pyzmq link" in system.gateway.log()

    wait_until(lambda: hub_synced(system.ws_port, [BTC]), timeout=60)


def test_the_cli_and_the_load_generator_trade_with_an_account_key(
    curved: tuple[GatewaySystem, Path],
) -> None:
    system, keys = curved
    alice = str(keys / "alice.key_secret")
    done = matchwire(
        system,
        "--transport",
        "zmq",
        "--key",
        alice,
        "--json",
        "order",
        BTC,
        "buy",
        "limit",
        "1",
        "--price",
        "99",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["account"] == "alice"  # the server key came from GET /
    as_bob = matchwire(
        system,
        "--transport",
        "zmq",
        "--key",
        alice,
        "--account",
        "bob",
        "--json",
        "order",
        BTC,
        "buy",
        "limit",
        "1",
        "--price",
        "99",
    )
    assert as_bob.returncode != 0 and "only as account 'alice'" in as_bob.stderr
    plain = matchwire(
        system,
        "--transport",
        "zmq",
        "--timeout",
        "2",
        "--json",
        "order",
        BTC,
        "buy",
        "limit",
        "1",
        "--price",
        "99",
    )
    assert plain.returncode != 0  # no key: no answer
    load = subprocess.run(
        [
            sys.executable,
            "-m",
            "clients.load",
            "--url",
            system.base,
            "--key",
            alice,
            "--account",
            "alice",
            "--count",
            "300",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert load.returncode == 0, load.stderr
    figures = json.loads(load.stdout)
    assert figures["requests"] == 300 and "unauthorized" not in figures["errors"]


def test_the_zmtp_accelerator_is_refused_under_curve(curved: tuple[GatewaySystem, Path]) -> None:
    system, _ = curved
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.server",
            "--config",
            str(system.config_path),
            "--http-port",
            "1",
            "--gateway-link",
            "zmtp",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "speaks no CURVE" in result.stderr


@pytest.mark.parametrize("module", ["gateway.server", "feedhub.server"])
def test_clients_of_matchers_beyond_loopback_without_curve_refuse_to_start(
    tmp_path: Path, module: str
) -> None:
    config = tmp_path / "far.toml"
    config.write_text(
        '[api_keys."k1"]\naccount = "a"\n[symbols."BTC-USDT"]\n'
        'order_endpoint = "tcp://10.1.2.3:5555"\n'
        'feed_endpoint = "tcp://10.1.2.3:5556"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", module, "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing tcp://10.1.2.3:5555" in result.stderr
    assert "beyond loopback without CurveZMQ" in result.stderr


def test_two_hosts_under_curve(tmp_path: Path) -> None:
    """docs/operations.md's two-host CURVE layout, on two loopback aliases: each matcher
    started alone on its address, the hub and the gateway reaching both with their keys."""
    keys = make_keys(tmp_path / "keys")
    shards = Shards(tmp_path, feedhub=True, extra=curve_section(keys))
    try:
        shards.start().order_each(request_timeout=15, timeout=60)
        wait_until(lambda: hub_synced(shards.ws_port), timeout=60)
    finally:
        shards.stop()
