"""A matcher dies and comes back: the gateway answers 503 fast, then routes again.

Its own system (one matcher, no feed hub), since it kills the matcher.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from clients.zmq_client import DEADLINE_GRACE
from tests.gateway.conftest import BTC, MATCHER_TIMEOUT, GatewaySystem
from tests.support import wait_until


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySystem]:
    running = GatewaySystem(tmp_path_factory.mktemp("fragile"), (BTC,)).start()
    yield running
    running.stop()


def answers(http: httpx.Client) -> bool:
    return http.get("/bbo/BTC-USDT").status_code == 200


def test_killed_matcher_gives_503_fast_and_a_restart_recovers_the_book(
    fragile: GatewaySystem,
) -> None:
    with fragile.http() as http:
        wait_until(lambda: answers(http))
        resting = http.post(
            "/submit_order",
            json={
                "symbol": BTC,
                "order_type": "limit",
                "side": "sell",
                "price": "42000",
                "quantity": "0.25",
                "account": "survivor",
            },
        ).json()
        assert resting["status"] == "new"
        book_before = http.get("/orderbook/BTC-USDT").json()
        health = http.get("/health").json()
        assert health["matchers"][BTC]["status"] == "up"

        fragile.matchers[BTC].kill()  # SIGKILL: no clean shutdown, no snapshot

        order = {
            "symbol": BTC,
            "order_type": "limit",
            "side": "buy",
            "price": "100",
            "quantity": "1",
        }
        with ThreadPoolExecutor(4) as pool:  # several requests in flight at once
            started = time.monotonic()
            responses = list(pool.map(lambda _: http.post("/submit_order", json=order), range(4)))
            elapsed = time.monotonic() - started
        assert [r.status_code for r in responses] == [503] * 4
        assert {r.json()["error"]["code"] for r in responses} == {"matcher_timeout"}
        assert responses[0].json()["error"]["message"].startswith("not executed: ")
        assert elapsed < MATCHER_TIMEOUT + DEADLINE_GRACE + 1.0  # an order waits the grace
        started = time.monotonic()
        assert http.get("/bbo/BTC-USDT").status_code == 503
        assert time.monotonic() - started < MATCHER_TIMEOUT + 1.0

        down = http.get("/health")
        assert down.status_code == 503
        assert down.json()["status"] == "degraded"
        assert down.json()["matchers"][BTC] == {"status": "down", "seq": None, "book_seq": None}
        assert 'matchwire_gateway_matcher_up{symbol="BTC-USDT"} 0.0' in http.get("/metrics").text

        fragile.start_matcher(BTC)  # same data folder: recovers from its journal
        wait_until(lambda: answers(http), timeout=MATCHER_TIMEOUT * 10)
        book_after = http.get("/orderbook/BTC-USDT").json()
        assert book_after["asks"] == book_before["asks"] == [["42000.00", "0.2500"]]
        assert book_after["book_seq"] == book_before["book_seq"]
        recovered = http.get(f"/orders/BTC-USDT/{resting['order_id']}?account=survivor").json()
        assert recovered["status"] == "new" and recovered["order_id"] == resting["order_id"]
        assert http.get("/health").json()["matchers"][BTC]["status"] == "up"
        assert 'matchwire_gateway_matcher_up{symbol="BTC-USDT"} 1.0' in http.get("/metrics").text
        # None of the requests that got 503 reached the restarted matcher.
        assert http.get("/orderbook/BTC-USDT").json()["bids"] == []
        cancelled = http.post(
            "/cancel_order",
            json={"symbol": BTC, "order_id": resting["order_id"], "account": "survivor"},
        )
        assert cancelled.status_code == 200


def test_health_without_feed_hub_is_degraded(fragile: GatewaySystem) -> None:
    with fragile.http() as http:
        wait_until(lambda: answers(http))
        response = http.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded" and body["feedhub"] == {"status": "down"}
        assert body["matchers"][BTC]["status"] == "up"
