"""CurveZMQ on a real matcher with real keys: listed keys only, accounts bound to keys,
and no start beyond loopback without CURVE (matcher/curve.py, docs/operations.md)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth

from clients.curve import CurveKeys, client_keys
from clients.zmq_client import MatcherClient, MatcherTimeout
from matcher.curve import beyond_loopback, exposure
from matcher.system import load_config
from tests.support import (
    REPO,
    Child,
    free_port,
    free_port_run,
    port_is_free,
    wait_for_port,
    write_config,
)

BTC = "BTC-USDT"
RULES = {BTC: {"tick_size": "0.01", "lot_size": "0.0001", "min_quantity": "0.0001"}}
NAMES = ("matcher", "gateway", "feedhub", "alice", "bob", "stranger")


def make_keys(folder: Path) -> Path:
    """A key pair per name (as `run.py keys NAME --dir folder` makes them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        zmq.auth.create_certificates(folder, name)
    return folder


def curve_section(keys: Path) -> str:
    """[curve] listing gateway, feedhub, alice and bob (not the stranger)."""
    return (
        "\n".join(
            [
                "[curve]",
                f'matcher_public = "{keys / "matcher.key"}"',
                f'matcher_secret = "{keys / "matcher.key_secret"}"',
                f'gateway_secret = "{keys / "gateway.key_secret"}"',
                f'feedhub_secret = "{keys / "feedhub.key_secret"}"',
                "clients = [",
                f'  {{public_key = "{keys / "gateway.key"}", role = "gateway"}},',
                f'  {{public_key = "{keys / "feedhub.key"}", role = "feedhub"}},',
                f'  {{public_key = "{keys / "alice.key"}", account = "alice"}},',
                f'  {{public_key = "{keys / "bob.key"}", account = "bob"}},',
                "]",
            ]
        )
        + "\n"
    )


def write_curve_config(
    tmp_path: Path, rules: dict[str, dict[str, str]] = RULES, **server: object
) -> tuple[Path, dict[str, tuple[str, str]], Path]:
    keys = make_keys(tmp_path / "keys")
    path = tmp_path / "matchwire.toml"
    endpoints = write_config(
        path,
        {
            "host": "127.0.0.1",
            "zmq_port": free_port(),
            "data_dir": tmp_path / "data",
            "fsync": "batch",
            **server,
        },
        rules,
    )
    with path.open("a") as handle:
        handle.write(curve_section(keys))
    return path, endpoints, keys


def keys_of(keys: Path, name: str) -> CurveKeys:
    return client_keys(keys / "matcher.key", keys / f"{name}.key_secret")


@pytest.fixture(scope="module")
def curved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Child]]:
    tmp = tmp_path_factory.mktemp("curve")
    path, endpoints, keys = write_curve_config(tmp)
    matcher = Child(
        ["-m", "matcher.service", "--symbol", BTC, "--config", str(path)], tmp / "matcher.log"
    ).start()
    try:
        wait_for_port(int(endpoints[BTC][0].rsplit(":", 1)[1]))
        yield endpoints[BTC][0], keys, matcher
    finally:
        matcher.stop()


ORDER: dict[str, Any] = {
    "symbol": BTC,
    "side": "buy",
    "order_type": "limit",
    "price": "100",
    "quantity": "1",
}


def test_an_account_key_trades_only_as_its_account(curved: tuple[str, Path, Child]) -> None:
    endpoint, keys, _ = curved
    with MatcherClient(endpoint, timeout=20, curve=keys_of(keys, "alice")) as alice:
        assert alice.request("new_order", **ORDER)["account"] == "alice"  # filled in
        assert alice.request("new_order", **ORDER, account="alice")["account"] == "alice"
        refused = alice.request_raw("new_order", **ORDER, account="bob")
        assert not refused["ok"] and refused["error"]["code"] == "unauthorized"
        assert "only as account 'alice'" in refused["error"]["message"]
        mine = alice.request("orders", symbol=BTC)["orders"]
        assert {order["account"] for order in mine} == {"alice"} and len(mine) == 2
        peek = alice.request_raw("orders", symbol=BTC, account="bob")
        assert peek["error"]["code"] == "unauthorized"
        bob_order = None
        with MatcherClient(endpoint, timeout=20, curve=keys_of(keys, "bob")) as bob:
            bob_order = bob.request("new_order", **ORDER)
        cancel = alice.request_raw("cancel_order", symbol=BTC, order_id=bob_order["order_id"])
        assert not cancel["ok"]  # as alice: bob's order is not hers


def test_a_trusted_role_names_any_account(curved: tuple[str, Path, Child]) -> None:
    endpoint, keys, _ = curved
    with MatcherClient(endpoint, timeout=20, curve=keys_of(keys, "gateway")) as gateway:
        assert gateway.request("new_order", **ORDER, account="carol")["account"] == "carol"


def test_unlisted_keys_and_plain_clients_get_no_answer(curved: tuple[str, Path, Child]) -> None:
    endpoint, keys, matcher = curved
    with MatcherClient(endpoint, timeout=1.5, curve=keys_of(keys, "stranger")) as stranger:
        with pytest.raises(MatcherTimeout):
            stranger.request("ping")
    with MatcherClient(endpoint, timeout=1.5) as plain:  # the NULL mechanism
        with pytest.raises(MatcherTimeout):
            plain.request("ping")
    stranger_key = (keys / "stranger.key").read_text().split('"')[1]
    assert f"refused a connection from the unlisted key {stranger_key}" in matcher.log()
    assert matcher.log().count(stranger_key) == 1  # libzmq retried: logged once
    with MatcherClient(endpoint, timeout=20, curve=keys_of(keys, "bob")) as bob:
        assert bob.request("ping")["symbol"] == BTC


def test_a_wrong_server_key_gets_no_answer(curved: tuple[str, Path, Child]) -> None:
    endpoint, keys, _ = curved
    wrong = client_keys(keys / "bob.key", keys / "alice.key_secret")  # not the matcher's
    with MatcherClient(endpoint, timeout=1.5, curve=wrong) as client:
        with pytest.raises(MatcherTimeout):
            client.request("ping")


def test_what_is_beyond_loopback() -> None:
    for endpoint in (
        "tcp://0.0.0.0:5555",
        "tcp://*:5555",
        "tcp://10.0.0.2:5555",
        "tcp://[::]:5555",
        "tcp://matcher.example:5555",
        "tcp://eth0:5555",
    ):
        assert beyond_loopback(endpoint), endpoint
    for endpoint in (
        "tcp://127.0.0.1:5555",
        "tcp://127.0.0.2:5555",
        "tcp://[::1]:5555",
        "tcp://localhost:5555",
        "ipc:///tmp/m.sock",
        "inproc://m",
    ):
        assert not beyond_loopback(endpoint), endpoint
    refusal = exposure("BTC-USDT matcher", ["tcp://0.0.0.0:5555", "tcp://127.0.0.1:5556"], False)
    assert refusal is not None and "tcp://0.0.0.0:5555" in refusal and "5556" not in refusal
    assert exposure("BTC-USDT matcher", ["tcp://0.0.0.0:5555"], True) is None


@pytest.mark.parametrize("how", [["-m", "matcher.service", "--symbol", BTC], ["run.py"]])
def test_a_matcher_beyond_loopback_without_curve_refuses_to_start(
    tmp_path: Path, how: list[str]
) -> None:
    """Exit 2 with the reason, before anything is bound or opened."""
    port = free_port_run(4)  # matcher i binds port + 2i and port + 2i + 1
    result = subprocess.run(
        [
            sys.executable,
            *how,
            "--host",
            "0.0.0.0",
            "--zmq-port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            *(["--config", str(write_api_keys(tmp_path))] if how == ["run.py"] else []),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "beyond loopback without CurveZMQ" in result.stderr + result.stdout
    assert port_is_free(port, "0.0.0.0") and port_is_free(port + 1, "0.0.0.0")
    assert not (tmp_path / "data").exists()


def write_api_keys(tmp_path: Path) -> Path:
    """A config with API keys, so run.py's own gateway check passes and the matchers' is
    the one that refuses."""
    path = tmp_path / "keys.toml"
    path.write_text('[api_keys."k1"]\naccount = "alice"\n')
    return path


def test_curve_configuration_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    for section, error in [
        ("[curve]\nclients = []\n", "matcher_public"),
        (
            '[curve]\nmatcher_public = "m.key"\nclients = [{public_key = "a.key"}]\n',
            "exactly one of account or role",
        ),
        (
            '[curve]\nmatcher_public = "m.key"\nclients = [{public_key = "a.key", role = "admin"}]\n',
            "gateway or feedhub",
        ),
        ('[curve]\nmatcher_public = "m.key"\nsecret = "x"\n', "unknown key 'secret'"),
    ]:
        path.write_text(section)
        with pytest.raises(ValueError, match=error):
            load_config(path)
    path.write_text('[curve]\nmatcher_public = "keys/m.key"\n')
    assert load_config(path).curve.matcher_public == tmp_path / "keys" / "m.key"  # type: ignore[union-attr]
