"""`matchwire cancel-all` and `--client-order-id` on cancel/amend/get, over REST and raw
ZeroMQ, as a subprocess against a running system (docs/cli.md)."""

from __future__ import annotations

import pytest

from tests.clients.test_cli import cli, cli_json, system
from tests.support import System

__all__ = ["system"]  # the module's running system, shared with these tests


@pytest.mark.parametrize("transport", ["rest", "zmq"])
def test_orders_by_client_order_id_and_cancel_all(system: System, transport: str) -> None:
    t = ["--transport", transport, "--account", f"cli-ids-{transport}"]
    cid = f"cli/{transport} 1"  # a "/" and a space: quoted in the REST path
    placed = cli_json(
        system,
        *t,
        "order",
        "ETH-USDT",
        "buy",
        "limit",
        "1",
        "--price",
        "1000",
        "--client-order-id",
        cid,
    )
    got = cli_json(system, *t, "get", "ETH-USDT", "--client-order-id", cid)
    assert got["order_id"] == placed["order_id"]
    amended = cli_json(
        system, *t, "amend", "ETH-USDT", "--client-order-id", cid, "--quantity", "0.5"
    )
    assert amended["order_id"] == placed["order_id"] and amended["quantity"] == "0.500"
    cancelled = cli_json(system, *t, "cancel", "ETH-USDT", "--client-order-id", cid)
    assert cancelled["status"] == "cancelled"

    bid = cli_json(system, *t, "order", "ETH-USDT", "buy", "limit", "1", "--price", "1000")
    ask = cli_json(system, *t, "order", "ETH-USDT", "sell", "limit", "1", "--price", "9000")
    sells = cli_json(system, *t, "cancel-all", "ETH-USDT", "--side", "sell")
    assert [o["order_id"] for o in sells["cancelled"]] == [ask["order_id"]]
    table = cli(system, *t, "cancel-all", "ETH-USDT")
    assert table.returncode == 0, table.stderr
    assert "cancelled 1 order(s)" in table.stdout and str(bid["order_id"]) in table.stdout
    assert cli_json(system, *t, "cancel-all", "ETH-USDT") == {"symbol": "ETH-USDT", "cancelled": []}


def test_an_order_is_named_exactly_once(system: System) -> None:
    for args in (
        ["cancel", "ETH-USDT"],
        ["get", "ETH-USDT", "5", "--client-order-id", "x"],
        ["amend", "ETH-USDT", "--quantity", "1"],
    ):
        result = cli(system, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "exactly one" in result.stderr
    unknown = cli(system, "cancel", "ETH-USDT", "--client-order-id", "never-used")
    assert unknown.returncode == 1 and "unknown_order" in unknown.stderr
    assert cli(system, "cancel-all", "ETH-USDT", "--side", "both").returncode == 2
