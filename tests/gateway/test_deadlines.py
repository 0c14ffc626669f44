"""A 503 from an order endpoint means "not executed": deadlines, with a stopped matcher.

The gateway sends each command with a deadline (its send time + --matcher-timeout) and
answers 503 only once that deadline (and a grace for a reply in flight) has passed; the
matcher refuses a command it reaches after its deadline. So orders answered 503 while the
matcher is frozen (SIGSTOP) are not executed when it resumes (SIGCONT), however many
reached its socket meanwhile. Its own system: one matcher, no feed hub, a short timeout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.zmq_client import MatcherClient
from gateway.errors import ApiError
from gateway.matchers import Matchers
from matcher.system import load_config
from tests.gateway.conftest import BTC, GatewaySystem
from tests.support import Child, wait_until

TIMEOUT = 0.3  # the gateway's --matcher-timeout here: short, so the test is quick
ORDERS = 12  # orders sent while the matcher is frozen


@pytest.fixture(scope="module")
def frozen_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySystem]:
    running = GatewaySystem(
        tmp_path_factory.mktemp("deadlines"), (BTC,), matcher_timeout=TIMEOUT
    ).start()
    yield running
    running.stop()


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat: T once a SIGSTOP has taken effect."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


@contextmanager
def frozen(child: Child) -> Iterator[None]:
    """The child stopped by SIGSTOP for the body, resumed by SIGCONT whatever happens."""
    assert child.process is not None
    pid = child.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: process_state(pid) == "T", timeout=10)
        yield
    finally:
        if child.alive:  # not killed meanwhile
            os.kill(pid, signal.SIGCONT)


def answers(http: httpx.Client) -> bool:
    return http.get("/bbo/BTC-USDT").status_code == 200


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json={"symbol": BTC, **body})


def test_orders_answered_503_while_the_matcher_is_stopped_are_never_executed(
    frozen_system: GatewaySystem,
) -> None:
    matcher = frozen_system.matchers[BTC]
    raw = MatcherClient(frozen_system.endpoints[BTC][0], timeout=10)
    with frozen_system.http() as http:
        wait_until(lambda: answers(http))
        resting = post(
            http,
            "/submit_order",
            {
                "order_type": "limit",
                "side": "sell",
                "price": "42000",
                "quantity": "1",
                "account": "maker",
                "client_order_id": "resting",
            },
        ).json()
        assert resting["status"] == "new"
        seq_before = raw.request("ping")["seq"]
        book_before = http.get("/orderbook/BTC-USDT").json()
        trades_before = http.get("/trades/BTC-USDT").json()["trades"]

        # Each of these would change the book if it were executed: buys that cross the
        # resting sell, a stop, a cancel and an amend of the resting order.
        requests: list[tuple[str, dict[str, Any]]] = [
            (
                "/submit_order",
                {
                    "order_type": "limit",
                    "side": "buy",
                    "price": "42000",
                    "quantity": "0.01",
                    "account": "taker",
                    "client_order_id": f"late-{i}",
                },
            )
            for i in range(ORDERS)
        ]
        requests += [
            (
                "/submit_stop_order",
                {
                    "order_type": "stop_loss",
                    "side": "sell",
                    "stop_price": "100",
                    "quantity": "0.01",
                    "account": "taker",
                    "client_order_id": "late-stop",
                },
            ),
            ("/cancel_order", {"order_id": resting["order_id"], "account": "maker"}),
            (
                "/amend_order",
                {"order_id": resting["order_id"], "account": "maker", "quantity": "0.5"},
            ),
        ]
        with frozen(matcher), ThreadPoolExecutor(len(requests)) as pool:
            responses = list(pool.map(lambda r: post(http, *r), requests))
            # Still frozen here: every answer came while the matcher could not run.
            assert process_state(matcher.process.pid) == "T"  # type: ignore[union-attr]
        assert [r.status_code for r in responses] == [503] * len(requests), [
            r.text for r in responses
        ]
        for response in responses:
            error = response.json()["error"]
            assert error["code"] == "matcher_timeout"
            assert error["message"].startswith("not executed: ")

        # The matcher runs again and reaches the frozen requests: it refuses them all.
        wait_until(lambda: answers(http), timeout=30)
        later = post(
            http,
            "/submit_order",
            {
                "order_type": "limit",
                "side": "buy",
                "price": "41000",
                "quantity": "0.02",
                "account": "taker",
                "client_order_id": "after",
            },
        )
        assert later.status_code == 200, later.text
        assert later.json()["status"] == "new"

        assert raw.request("ping")["seq"] == seq_before + 1  # only `later` was journaled
        taker = http.get("/orders/BTC-USDT?account=taker&status=all").json()["orders"]
        assert [o["client_order_id"] for o in taker] == ["after"]
        maker = http.get(f"/orders/BTC-USDT/{resting['order_id']}?account=maker").json()
        assert maker["status"] == "new" and maker["quantity"] == "1.0000"
        assert maker["filled_quantity"] == "0.0000"
        assert http.get("/trades/BTC-USDT").json()["trades"] == trades_before
        book = http.get("/orderbook/BTC-USDT").json()
        assert book["asks"] == book_before["asks"] == [["42000.00", "1.0000"]]
        assert book["bids"] == [["41000.00", "0.0200"]]

        # Later orders work as usual, including one that trades.
        taken = post(
            http,
            "/submit_order",
            {
                "order_type": "limit",
                "side": "buy",
                "price": "42000",
                "quantity": "0.01",
                "account": "taker",
            },
        ).json()
        assert taken["status"] == "filled" and len(taken["trades"]) == 1
        for order_id in (resting["order_id"], later.json()["order_id"]):
            account = "maker" if order_id == resting["order_id"] else "taker"
            cancelled = post(http, "/cancel_order", {"order_id": order_id, "account": account})
            assert cancelled.status_code == 200, cancelled.text
    raw.close()


def test_reads_answered_503_while_the_matcher_is_stopped_say_retry(
    frozen_system: GatewaySystem,
) -> None:
    matcher = frozen_system.matchers[BTC]
    with frozen_system.http() as http:
        wait_until(lambda: answers(http))
        with frozen(matcher):
            response = http.get("/bbo/BTC-USDT")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "matcher_timeout"
        assert "retry" in error["message"] and "not executed" not in error["message"]
        wait_until(lambda: answers(http), timeout=30)


def test_a_refusal_within_the_grace_is_passed_on_as_deadline_exceeded(
    frozen_system: GatewaySystem,
) -> None:
    """The matcher resumes after the request's deadline but within the gateway's grace:
    its refusal arrives in time and is the answer (503 deadline_exceeded, not executed)."""
    matcher = frozen_system.matchers[BTC]
    symbols = load_config(frozen_system.config_path).symbols
    raw = MatcherClient(frozen_system.endpoints[BTC][0], timeout=10)
    seq_before = raw.request("ping")["seq"]

    async def scenario() -> None:
        matchers = Matchers(symbols, timeout=0.2, grace=60.0)
        assert await matchers.ping(BTC) is not None  # connected
        with frozen(matcher):
            sent = time.monotonic()
            request = asyncio.ensure_future(
                matchers.request(
                    BTC,
                    "new_order",
                    {
                        "order_type": "limit",
                        "side": "buy",
                        "price": "100",
                        "quantity": "1",
                        "account": "grace",
                    },
                )
            )
            while time.monotonic() - sent < 1.0:  # well past its 0.2 s deadline
                await asyncio.sleep(0.05)
            assert not request.done()  # waiting within the grace
        with pytest.raises(ApiError) as refused:
            await asyncio.wait_for(request, 50)
        assert refused.value.code == "deadline_exceeded" and refused.value.status == 503
        assert refused.value.message.startswith("not executed: ")
        await matchers.close()

    asyncio.run(scenario())
    assert raw.request("ping")["seq"] == seq_before
    raw.close()


def bytes_waiting(port: int) -> int:
    """Bytes received and not yet read on the established loopback TCP connections whose
    local port is `port` (/proc/net/tcp): the requests a stopped matcher has not read."""
    waiting = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "01" and int(local.split(":")[1], 16) == port:
            waiting += int(queues.split(":")[1], 16)
    return waiting


def test_a_connection_lost_with_an_order_in_flight_answers_outcome_unknown(
    tmp_path: Path,
) -> None:
    """The matcher dies with an order written to it and unanswered: the gateway cannot
    know whether it was executed (it may have been committed just before), so it says
    so at once instead of waiting for the deadline and claiming "not executed"."""
    system = GatewaySystem(tmp_path, (BTC,), matcher_timeout=60.0).start()
    try:
        with system.http() as http:
            wait_until(lambda: answers(http))
            matcher = system.matchers[BTC]
            with frozen(matcher), ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(
                    post,
                    http,
                    "/submit_order",
                    {
                        "order_type": "limit",
                        "side": "buy",
                        "price": "100",
                        "quantity": "1",
                        "account": "unknown",
                        "client_order_id": "in-flight",
                    },
                )
                wait_until(lambda: bytes_waiting(system.router_port(BTC)) > 0, timeout=20)
                matcher.kill()  # SIGKILL: its connections close with the request unread
                response = in_flight.result(timeout=60)
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "matcher_unavailable"
            assert error["message"].startswith("outcome unknown: ")
            system.start_matcher(BTC)  # the journal decides: here it was never read
            wait_until(lambda: answers(http), timeout=30)
            orders = http.get("/orders/BTC-USDT?account=unknown&status=all").json()["orders"]
            assert orders == []
    finally:
        system.stop()
