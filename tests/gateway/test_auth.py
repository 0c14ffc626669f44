"""Auth on: keys name accounts, accounts are isolated, rate limits answer 429.

Plus unit tests of gateway/auth.py's token bucket and account resolution.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clients.rest import RestClient, RestError
from gateway.auth import Accounts, TokenBucket
from gateway.errors import ApiError
from matcher.system import ApiKey
from tests.gateway.conftest import BTC, GatewaySystem

KEYS: dict[str, dict[str, Any]] = {
    "k1": {"account": "alice", "rate_limit": 5, "burst": 5},
    "k2": {"account": "bob"},
    "k3": {"account": "carol"},
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySystem]:
    running = GatewaySystem(tmp_path_factory.mktemp("auth"), (BTC,), api_keys=KEYS).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(secured: GatewaySystem) -> Iterator[httpx.Client]:
    with secured.http() as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/submit_order",
            {"symbol": BTC, "order_type": "limit", "side": "buy", "price": "100", "quantity": "1"},
        ),
        ("POST", "/submit_stop_order", {"symbol": BTC}),
        ("POST", "/cancel_order", {"symbol": BTC, "order_id": 1}),
        ("POST", "/amend_order", {"symbol": BTC, "order_id": 1, "quantity": "1"}),
        ("GET", "/orders/BTC-USDT/1", None),
        ("GET", "/orders/BTC-USDT?status=open", None),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_order_endpoints_need_a_valid_key(
    http: httpx.Client, method: str, path: str, body: dict[str, object] | None, key: str | None
) -> None:
    headers = {"X-API-Key": key} if key else {}
    response = http.request(method, path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"


def test_market_data_is_public(http: httpx.Client) -> None:
    for path in ("/orderbook/BTC-USDT", "/bbo/BTC-USDT", "/trades/BTC-USDT", "/"):
        assert http.get(path).status_code == 200, path


def test_accounts_are_isolated(secured: GatewaySystem) -> None:
    with secured.rest(api_key="k2") as bob, secured.rest(api_key="k3") as carol:
        order = bob.submit_order(BTC, "limit", "buy", "0.1", price="1000", client_order_id="b1")
        assert order["account"] == "bob"
        for attempt in (
            lambda: carol.get_order(BTC, order["order_id"]),
            lambda: carol.cancel_order(BTC, order["order_id"]),
            lambda: carol.amend_order(BTC, order["order_id"], quantity="0.05"),
        ):
            with pytest.raises(RestError) as error:
                attempt()
            assert (error.value.status, error.value.code) == (404, "unknown_order")
        assert carol.orders(BTC, status="open")["orders"] == []
        assert [o["order_id"] for o in bob.orders(BTC, status="open")["orders"]] == [
            order["order_id"]
        ]
        # client_order_id is unique per account: carol may use bob's.
        mine = carol.submit_order(BTC, "limit", "buy", "0.1", price="1000", client_order_id="b1")
        assert mine["account"] == "carol"
        assert bob.get_order(BTC, order["order_id"])["status"] == "new"
        bob.cancel_order(BTC, order["order_id"])
        carol.cancel_order(BTC, mine["order_id"])


def test_the_key_decides_the_account(secured: GatewaySystem, http: httpx.Client) -> None:
    body = {"symbol": BTC, "order_type": "limit", "side": "buy", "price": "1000", "quantity": "0.1"}
    impostor = http.post(
        "/submit_order", json={**body, "account": "carol"}, headers={"X-API-Key": "k2"}
    )
    assert impostor.status_code == 401
    assert impostor.json()["error"]["code"] == "unauthorized"
    assert (
        http.get("/orders/BTC-USDT?account=carol", headers={"X-API-Key": "k2"}).status_code == 401
    )
    own = http.post("/submit_order", json={**body, "account": "bob"}, headers={"X-API-Key": "k2"})
    assert own.status_code == 200 and own.json()["account"] == "bob"
    with secured.rest(api_key="k2") as bob:
        bob.cancel_order(BTC, own.json()["order_id"])


def test_rate_limit_answers_429_with_retry_after(http: httpx.Client) -> None:
    headers = {"X-API-Key": "k1"}
    statuses = [
        http.get("/orders/BTC-USDT?status=open", headers=headers).status_code for _ in range(8)
    ]
    assert statuses[:5] == [200] * 5  # the burst
    assert 429 in statuses[5:]
    limited = http.get("/orders/BTC-USDT?status=open", headers=headers)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Other keys are not limited, and tokens come back at 5/s.
    assert http.get("/orders/BTC-USDT", headers={"X-API-Key": "k2"}).status_code == 200
    time.sleep(0.25)
    assert http.get("/orders/BTC-USDT?status=open", headers=headers).status_code == 200


def test_rest_client_with_a_key(secured: GatewaySystem) -> None:
    with RestClient(secured.base, api_key="k3") as carol:
        order = carol.submit_order(BTC, "limit", "sell", "0.2", price="90000")
        assert carol.get_order(BTC, order["order_id"])["account"] == "carol"
        assert carol.cancel_order(BTC, order["order_id"])["status"] == "cancelled"


# -- unit tests of gateway/auth.py ----------------------------------------------------


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, capacity=3.0)
    start = bucket.updated
    assert [bucket.take(start) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(start) == pytest.approx(0.5)  # one token every 0.5 s
    assert bucket.take(start + 0.5) == 0.0
    assert bucket.take(start + 0.5) > 0
    assert [bucket.take(start + 100) for _ in range(3)] == [0.0, 0.0, 0.0]  # capped at 3
    assert bucket.take(start + 100) > 0


def test_accounts_without_keys_trust_the_request() -> None:
    accounts = Accounts({})
    assert accounts.authenticate(None) is None
    assert accounts.resolve(None, None) == "anonymous"
    assert accounts.resolve(None, "dave") == "dave"


def test_accounts_with_keys() -> None:
    accounts = Accounts({"k": ApiKey("k", "erin", rate_limit=1.0)})  # burst defaults to 1
    with pytest.raises(ApiError) as error:
        accounts.authenticate(None)
    assert error.value.status == 401
    assert accounts.authenticate("k") == "erin"
    with pytest.raises(ApiError) as error:
        accounts.authenticate("k")
    assert error.value.status == 429 and error.value.headers == {"Retry-After": "1"}
    assert accounts.resolve("erin", "erin") == "erin"
    with pytest.raises(ApiError) as error:
        accounts.resolve("erin", "frank")
    assert error.value.status == 401
