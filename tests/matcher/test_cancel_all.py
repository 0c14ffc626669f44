"""The cancel_all op (docs/protocol.md), against a real matcher process over ZeroMQ.

It cancels every open order and pending stop of the caller's account on the symbol
(optionally one side), in order id order, as ONE journaled command with one book update
on PUB; it replays exactly; one that finds nothing answers an empty list and is neither
applied nor journaled; it goes through the deadline check like every mutating op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from matcher import codec
from matcher.journal import Journal
from matcher.protocol import BUY, CMD_CANCEL_ALL
from matcher.service import journal_dir
from tests.matcher.test_recovery import offline_hash
from tests.matcher.test_service import (
    SYMBOL,
    MatcherProcess,
    _collect,
    _drain,
    _subscriber,
    _wait_for_heartbeat,
    limit,
    spawner,
)


@pytest.fixture(name="spawn")
def spawn_fixture(tmp_path: Path) -> Iterator[Callable[..., MatcherProcess]]:
    yield from spawner(tmp_path)


@pytest.fixture
def matcher(spawn: Callable[..., MatcherProcess], tmp_path: Path) -> Iterator[MatcherProcess]:
    process = spawn(tmp_path / "data").start()
    yield process
    process.stop()


def journal_records(process: MatcherProcess) -> list[tuple]:
    return [
        codec.decode_command(payload)
        for payload in Journal(journal_dir(process.data_dir, SYMBOL)).records()
    ]


def place(process: MatcherProcess) -> dict[str, list[int]]:
    """alice: two bids at one price, a bid and an ask elsewhere, a pending stop of each
    side; bob: a bid and an ask; a trade so the stops have a last price. Returns ids."""
    ids: dict[str, list[int]] = {"alice": [], "bob": []}

    def order(account: str, **fields: Any) -> None:
        ids[account].append(process.request("new_order", account=account, **fields)["order_id"])

    def stop(account: str, **fields: Any) -> None:
        ids[account].append(
            process.request("new_stop_order", account=account, **fields)["order_id"]
        )

    order("bob", **limit("sell", "30000", "1"))
    process.request("new_order", order_type="market", side="buy", quantity="0.5")  # last 30000
    order("alice", **limit("buy", "29000", "1"))
    order("bob", **limit("buy", "29000", "2"))
    order("alice", **limit("sell", "31000", "1"))
    stop("alice", order_type="stop_loss", side="sell", stop_price="28000", quantity="0.1")
    order("alice", **limit("buy", "29000", "0.5"))
    order("alice", **limit("buy", "28900", "1"))
    stop("alice", order_type="stop_loss", side="buy", stop_price="32000", quantity="0.1")
    return ids


def test_cancel_all_is_one_command_one_book_update_and_replays_exactly(
    matcher: MatcherProcess,
) -> None:
    ids = place(matcher)
    sub = _subscriber(matcher.pub, b"book.")
    sub.setsockopt(zmq.SUBSCRIBE, b"hb.")
    try:
        _wait_for_heartbeat(sub)  # subscribed for sure from here on
        before = matcher.request("ping")
        result = matcher.request("cancel_all", account="alice")
        after = matcher.request("ping")
        # One seq and one book_seq for the whole command.
        assert after["seq"] == before["seq"] + 1
        assert after["book_seq"] == before["book_seq"] + 1
        received = _collect(sub, lambda m: any(t.startswith("book.") for t, _ in m))
        received += _drain(sub, quiet_ms=300)
    finally:
        sub.close(0)
    assert result["symbol"] == SYMBOL
    cancelled = result["cancelled"]
    assert [o["order_id"] for o in cancelled] == sorted(ids["alice"])  # in id order
    assert {o["status"] for o in cancelled} == {"cancelled"}
    assert {o["reject_reason"] for o in cancelled} == {"cancelled_by_user"}
    assert {o["account"] for o in cancelled} == {"alice"}
    assert {o["remaining_quantity"] for o in cancelled} == {"0.0000"}

    [book] = [body for topic, body in received if topic.startswith("book.")]
    assert book["book_seq"] == after["book_seq"]
    assert sorted(book["changes"]) == [
        ["buy", "28900.00", "0"],
        ["buy", "29000.00", "2.0000"],
        ["sell", "31000.00", "0"],
    ]
    assert book["bbo"]["bid_price"] == "29000.00" and book["bbo"]["ask_price"] == "30000.00"

    # Bob's orders stand; alice has nothing open any more.
    assert matcher.request("orders", account="alice", status="open")["orders"] == []
    bob_open = matcher.request("orders", account="bob", status="open")["orders"]
    assert [o["order_id"] for o in bob_open] == ids["bob"]
    assert matcher.request("book")["bids"] == [["29000.00", "2.0000"]]

    # Journaled once, as the command itself; a fresh engine fed the journal gets the
    # same state, and so does a matcher restarted from the journal alone (SIGKILL: no
    # shutdown snapshot).
    records = journal_records(matcher)
    assert records[-1][0] == CMD_CANCEL_ALL and records[-1][1] == after["seq"]
    assert records[-1][3:] == ("alice", None)
    assert sum(1 for r in records if r[0] == CMD_CANCEL_ALL) == 1
    state = matcher.state()
    assert offline_hash(matcher.data_dir) == (after["seq"], state[2])
    matcher.kill()
    matcher.start()
    assert matcher.state() == state


def test_cancel_all_of_one_side_leaves_the_other(matcher: MatcherProcess) -> None:
    ids = place(matcher)
    result = matcher.request("cancel_all", account="alice", side="buy")
    alice = {o["order_id"]: o for o in matcher.request("orders", account="alice")["orders"]}
    buys = sorted(i for i in ids["alice"] if alice[i]["side"] == "buy")
    assert [o["order_id"] for o in result["cancelled"]] == buys  # the buy stop too
    assert {o["side"] for o in result["cancelled"]} == {"buy"}
    still_open = matcher.request("orders", account="alice", status="open")["orders"]
    assert {o["side"] for o in still_open} == {"sell"} and len(still_open) == 2
    assert journal_records(matcher)[-1][3:] == ("alice", BUY)
    state = matcher.state()
    assert offline_hash(matcher.data_dir) == (state[0], state[2])


def test_cancel_all_of_nothing_answers_an_empty_list_and_is_not_journaled(
    matcher: MatcherProcess,
) -> None:
    place(matcher)
    matcher.request("cancel_all", account="bob", side="sell")  # bob's ask: only his bid left
    state, records = matcher.state(), journal_records(matcher)
    sub = _subscriber(matcher.pub, b"book.")
    sub.setsockopt(zmq.SUBSCRIBE, b"hb.")
    try:
        _wait_for_heartbeat(sub)  # subscribed for sure from here on
        for fields in (
            {"account": "carol"},
            {"account": "bob", "side": "sell"},
            {"account": "alice", "side": "buy"},
        ):
            if fields["account"] == "alice":
                matcher.request("cancel_all", **fields)  # from here on, nothing to cancel
                state, records = matcher.state(), journal_records(matcher)
                _collect(sub, lambda m: any(t.startswith("book.") for t, _ in m))
            for _ in range(2):
                assert matcher.request("cancel_all", **fields) == {
                    "symbol": SYMBOL,
                    "cancelled": [],
                }
            # Nothing applied (seq, timestamps, hash), journaled or published.
            assert matcher.state() == state
            assert journal_records(matcher) == records
            # The next heartbeat follows any message those requests would have sent.
            received = _collect(sub, lambda m: bool(m) and m[-1][0].startswith("hb."))
            assert [topic for topic, _ in received] == [f"hb.{SYMBOL}"], fields
    finally:
        sub.close(0)
    matcher.kill()
    matcher.start()
    assert matcher.state() == state


def test_cancel_all_goes_through_the_deadline_check(matcher: MatcherProcess) -> None:
    place(matcher)
    state = matcher.state()
    for deadline in (1, 0):
        reply = matcher.raw("cancel_all", account="alice", deadline=deadline)
        assert reply["ok"] is False and reply["error"]["code"] == "deadline_exceeded", reply
    assert matcher.state() == state
    assert len(matcher.request("orders", account="alice", status="open")["orders"]) == 6


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"side": "both"}, "side must be one of buy, sell"),
        ({"side": 0}, "side must be one of buy, sell"),
        ({"order_id": 3}, "unknown field 'order_id'; cancel_all takes symbol, account, side"),
        ({"account": ""}, "account must be"),
    ],
)
def test_bad_cancel_all_requests_are_refused_naming_the_field(
    matcher: MatcherProcess,
    fields: dict[str, Any],
    words: str,
) -> None:
    place(matcher)
    state = matcher.state()
    reply = matcher.raw("cancel_all", **{"account": "alice", **fields})
    assert reply["ok"] is False and words in reply["error"]["message"], reply
    assert matcher.state() == state
