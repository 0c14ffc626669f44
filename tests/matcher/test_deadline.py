"""The `deadline` field (docs/protocol.md), against a real matcher over ZeroMQ.

A mutating command reached after its deadline is refused with `deadline_exceeded` and
changes nothing (seq, book_seq, the journal, the state hash); a bad deadline is an
`invalid_field` naming it; reads ignore the field.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.zmq_client import AsyncMatcherClient, MatcherClient, MatcherTimeout, deadline_after
from matcher.protocol import MUTATING_OPS
from matcher.service import MatcherService, journal_dir
from matcher.system import load_config
from tests.matcher.test_service import MatcherProcess, limit, spawner
from tests.support import free_port


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatcherProcess]:
    folder = tmp_path_factory.mktemp("deadline")
    made = spawner(folder)
    spawn = next(made)
    process = spawn(folder / "data", fsync="batch").start()
    process.request("new_order", **limit("sell", "30000", "1"))
    process.request("new_order", **limit("buy", "29000", "1"))
    process.request("new_order", order_type="market", side="buy", quantity="0.1")
    yield process
    process.stop()
    made.close()


def now_us() -> int:
    return time.time_ns() // 1000


def journal_bytes(process: MatcherProcess) -> int:
    return sum(path.stat().st_size for path in journal_dir(process.data_dir, "BTC-USDT").iterdir())


def unchanged(process: MatcherProcess) -> Callable[[], None]:
    """A check that the state (and the journal's size) is what it is now."""
    before = process.state(), journal_bytes(process)

    def check() -> None:
        assert (process.state(), journal_bytes(process)) == before

    return check


def resting_order_id(process: MatcherProcess) -> int:
    orders = process.request("orders", status="open")["orders"]
    return int(next(o["order_id"] for o in orders if o["side"] == "sell"))


def mutating_requests(order_id: int) -> dict[str, dict[str, Any]]:
    """One request of each mutating op the matcher serves, each valid as it stands."""
    return {
        "new_order": limit("buy", "30000", "0.01"),
        "new_stop_order": {
            "order_type": "stop_loss",
            "side": "sell",
            "stop_price": "100",
            "quantity": "0.01",
        },
        "cancel_order": {"order_id": order_id},
        "amend_order": {"order_id": order_id, "quantity": "0.5"},
    }


def test_a_past_deadline_is_refused_and_changes_nothing(matcher: MatcherProcess) -> None:
    order_id = resting_order_id(matcher)
    check = unchanged(matcher)
    for op, fields in mutating_requests(order_id).items():
        for deadline in (now_us() - 1_000_000, 0):
            reply = matcher.raw(op, deadline=deadline, **fields)
            assert reply["ok"] is False, (op, reply)
            assert reply["error"]["code"] == "deadline_exceeded", (op, reply)
            assert reply["error"]["message"].startswith("not executed: "), reply
    check()


def test_every_mutating_op_the_matcher_serves_checks_the_deadline(
    matcher: MatcherProcess,
) -> None:
    """A mutating op added later (say cancel_all) must go through the same check."""
    check = unchanged(matcher)
    served = mutating_requests(resting_order_id(matcher))
    for op in sorted(MUTATING_OPS):
        reply = matcher.raw(op, deadline=1, **served.get(op, {}))
        if reply["error"]["code"] == "unknown_op":
            assert op not in served
            continue
        assert reply["error"]["code"] == "deadline_exceeded", (op, reply)
    check()


def test_the_ops_the_matcher_parses_as_commands_are_the_mutating_ones(tmp_path: Path) -> None:
    """The gateway gives MUTATING_OPS the grace and says "not executed" for them: every
    op the matcher applies as a command must be listed there."""
    config = load_config(None, symbols=["BTC-USDT"]).symbols["BTC-USDT"]
    service = MatcherService(config, tmp_path)
    assert set(service._parsers) <= MUTATING_OPS
    assert not set(service._queries) & MUTATING_OPS


def test_a_bad_deadline_is_an_invalid_field(matcher: MatcherProcess) -> None:
    check = unchanged(matcher)
    fields = limit("buy", "100", "0.01")
    for bad in (True, False, -1, 1.5, float(now_us() + 10**9), str(now_us() + 10**9), [1], {}):
        reply = matcher.raw("new_order", deadline=bad, **fields)
        assert reply["ok"] is False, (bad, reply)
        assert reply["error"]["code"] == "invalid_field", (bad, reply)
        assert reply["error"]["message"].startswith("deadline must"), reply
    check()


def test_a_future_deadline_executes_and_reads_ignore_it(matcher: MatcherProcess) -> None:
    placed = matcher.request(
        "new_order", deadline=now_us() + 60_000_000, **limit("buy", "100", "0.01")
    )
    assert placed["status"] == "new"
    cancelled = matcher.request(
        "cancel_order", deadline=now_us() + 60_000_000, order_id=placed["order_id"]
    )
    assert cancelled["status"] == "cancelled"
    for op in ("ping", "book", "bbo", "trades", "orders"):
        assert matcher.raw(op, deadline=1)["ok"] is True, op
        assert matcher.raw(op, deadline="whenever")["ok"] is True, op
    # nil is an absent deadline, as for every optional field
    assert matcher.raw("new_order", deadline=None, **limit("buy", "100", "0.01"))["ok"]


def test_the_clients_set_the_deadline(matcher: MatcherProcess) -> None:
    with MatcherClient(matcher.router, timeout=5.0, deadlines=True) as client:
        assert client.request("ping")["symbol"] == "BTC-USDT"
        order = client.request("new_order", **limit("buy", "100", "0.01"))
        assert order["status"] == "new"
        client.request("cancel_order", order_id=order["order_id"])
        late = client.request_raw("new_order", deadline=now_us() - 1, **limit("buy", "100", "0.01"))
        assert late["error"]["code"] == "deadline_exceeded"
    assert abs(deadline_after(2.0) - now_us() - 2_000_000) < 1_000_000

    async def run() -> None:
        client = AsyncMatcherClient(matcher.router, timeout=5.0, deadlines=True)
        try:
            order = await client.request("new_order", **limit("buy", "100", "0.01"))
            assert order["status"] == "new"
            await client.request("cancel_order", order_id=order["order_id"], timeout=3.0)
            late = await client.request_raw(
                "new_order", deadline=now_us() - 1, **limit("buy", "100", "0.01")
            )
            assert late["error"]["code"] == "deadline_exceeded"
        finally:
            await client.close()

    asyncio.run(run())


def test_a_client_deadline_that_passes_unanswered_is_a_timeout(tmp_path: Path) -> None:
    """Nobody listens: the client gives up at the deadline plus its grace."""
    with MatcherClient(f"tcp://127.0.0.1:{free_port()}", timeout=30.0) as client:
        started = time.monotonic()
        with pytest.raises(MatcherTimeout, match="deadline"):
            client.request("new_order", deadline=deadline_after(0.2), **limit("buy", "1", "1"))
        assert time.monotonic() - started < 30.0
