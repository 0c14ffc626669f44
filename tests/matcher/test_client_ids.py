"""Cancel, amend and get by client_order_id over ZeroMQ (docs/protocol.md), against a
real matcher process.

The matcher resolves the id to the order id through the engine's index of live and
recently finished orders and journals the cancel or amend by order id, so replay is the
same as for any other; exactly one of order_id and client_order_id; another account's
client_order_id is unknown_order, as another account's order id is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from matcher.protocol import CMD_AMEND, CMD_CANCEL
from tests.matcher.test_cancel_all import journal_records
from tests.matcher.test_recovery import offline_hash
from tests.matcher.test_service import MatcherProcess, limit, spawner


@pytest.fixture(name="spawn")
def spawn_fixture(tmp_path: Path) -> Iterator[Callable[..., MatcherProcess]]:
    yield from spawner(tmp_path)


@pytest.fixture
def matcher(spawn: Callable[..., MatcherProcess], tmp_path: Path) -> Iterator[MatcherProcess]:
    process = spawn(tmp_path / "data").start()
    yield process
    process.stop()


def test_cancel_amend_and_get_by_client_order_id(matcher: MatcherProcess) -> None:
    bid = matcher.request(
        "new_order", account="alice", client_order_id="bid-1", **limit("buy", "29000", "1")
    )
    stop = matcher.request(
        "new_stop_order",
        account="alice",
        client_order_id="stop-1",
        order_type="stop_loss",
        side="sell",
        stop_price="28000",
        quantity="0.1",
    )

    got = matcher.request("get_order", account="alice", client_order_id="bid-1")
    assert got == matcher.request("get_order", account="alice", order_id=bid["order_id"])

    amended = matcher.request(
        "amend_order", account="alice", client_order_id="bid-1", quantity="0.5", price="29100"
    )
    assert amended["order_id"] == bid["order_id"] and amended["client_order_id"] == "bid-1"
    assert (amended["price"], amended["quantity"]) == ("29100.00", "0.5000")
    assert matcher.request("book")["bids"] == [["29100.00", "0.5000"]]

    cancelled = matcher.request("cancel_order", account="alice", client_order_id="bid-1")
    assert cancelled["order_id"] == bid["order_id"] and cancelled["status"] == "cancelled"
    stop_cancelled = matcher.request("cancel_order", account="alice", client_order_id="stop-1")
    assert stop_cancelled["order_id"] == stop["order_id"]
    assert stop_cancelled["status"] == "cancelled"

    # A finished order is still found by its client_order_id; cancelling it again is 409.
    finished = matcher.request("get_order", account="alice", client_order_id="bid-1")
    assert finished["status"] == "cancelled" and finished["order_id"] == bid["order_id"]
    again = matcher.raw("cancel_order", account="alice", client_order_id="bid-1")
    assert again["error"]["code"] == "order_not_open"
    again = matcher.raw("amend_order", account="alice", client_order_id="bid-1", quantity="2")
    assert again["error"]["code"] == "order_not_open"

    # Journaled as today's cancel and amend, by order id: replay needs no lookup.
    records = journal_records(matcher)
    assert records[-3] == (
        CMD_AMEND,
        records[-3][1],
        records[-3][2],
        "alice",
        bid["order_id"],
        5000,
        2910000,
    )
    assert records[-2][0] == CMD_CANCEL and records[-2][3:] == ("alice", bid["order_id"])
    assert records[-1][0] == CMD_CANCEL and records[-1][3:] == ("alice", stop["order_id"])
    state = matcher.state()
    assert offline_hash(matcher.data_dir) == (state[0], state[2])
    matcher.kill()
    matcher.start()
    assert matcher.state() == state


def test_another_accounts_client_order_id_is_unknown(matcher: MatcherProcess) -> None:
    matcher.request(
        "new_order", account="alice", client_order_id="mine", **limit("buy", "29000", "1")
    )
    state = matcher.state()
    for account in ("bob", "anonymous"):
        for op, extra in (
            ("cancel_order", {}),
            ("amend_order", {"quantity": "0.5"}),
            ("get_order", {}),
        ):
            reply = matcher.raw(op, account=account, client_order_id="mine", **extra)
            assert reply["ok"] is False and reply["error"]["code"] == "unknown_order", reply
            assert "'mine'" in reply["error"]["message"]
    never = matcher.raw("cancel_order", account="alice", client_order_id="never-used")
    assert never["error"]["code"] == "unknown_order"
    assert matcher.state() == state
    assert matcher.request("get_order", account="alice", client_order_id="mine")["status"] == "new"


@pytest.mark.parametrize("op", ["cancel_order", "amend_order", "get_order"])
def test_exactly_one_of_order_id_and_client_order_id(matcher: MatcherProcess, op: str) -> None:
    order = matcher.request(
        "new_order", account="alice", client_order_id="x", **limit("buy", "29000", "1")
    )
    state = matcher.state()
    extra = {"quantity": "0.5"} if op == "amend_order" else {}
    both = matcher.raw(
        op, account="alice", order_id=order["order_id"], client_order_id="x", **extra
    )
    neither = matcher.raw(op, account="alice", **extra)
    for reply in (both, neither):
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_field", reply
        message = reply["error"]["message"]
        assert "order_id" in message and "client_order_id" in message, message
    assert "not both" in both["error"]["message"]
    for bad in ("", 7, "x" * 65, ["x"]):
        reply = matcher.raw(op, account="alice", client_order_id=bad, **extra)
        assert reply["error"]["code"] == "invalid_field", (bad, reply)
    assert matcher.state() == state
