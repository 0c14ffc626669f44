"""Orders by client_order_id and POST /cancel_all over REST (docs/api.md), through a real
gateway and real matchers.

Cancel, amend and get take client_order_id instead of order_id (exactly one of the two,
else 400 naming both); another account's id is 404, as for order ids; /cancel_all cancels
the caller's open orders and pending stops of one symbol (optionally one side) and
answers them, an empty list when there are none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clients.rest import RestClient, RestError
from tests.gateway.conftest import BTC, ETH, GatewaySystem


@pytest.fixture
def rest(system: GatewaySystem, account: str) -> Iterator[RestClient]:
    with system.rest(account=account) as client:
        yield client


@pytest.fixture
def other(system: GatewaySystem, accounts: Any) -> Iterator[RestClient]:
    with system.rest(account=accounts()) as client:
        yield client


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def test_cancel_amend_and_get_by_client_order_id(rest: RestClient) -> None:
    placed = rest.submit_order(BTC, "limit", "buy", "1", price="20000", client_order_id="cid-1")
    stop = rest.submit_stop_order(
        BTC, "stop_loss", "sell", "0.1", stop_price="100", client_order_id="cid/stop 1"
    )  # "/" and " " in the path
    got = rest.get_order(BTC, client_order_id="cid-1")
    assert got == rest.get_order(BTC, placed["order_id"])
    assert rest.get_order(BTC, client_order_id="cid/stop 1")["order_id"] == stop["order_id"]

    amended = rest.amend_order(BTC, client_order_id="cid-1", quantity="0.5")
    assert amended["order_id"] == placed["order_id"] and amended["quantity"] == "0.5000"
    cancelled = rest.cancel_order(BTC, client_order_id="cid-1")
    assert cancelled["order_id"] == placed["order_id"] and cancelled["status"] == "cancelled"
    assert rest.cancel_order(BTC, client_order_id="cid/stop 1")["status"] == "cancelled"

    finished = rest.get_order(BTC, client_order_id="cid-1")  # still found once finished
    assert finished["status"] == "cancelled"
    with pytest.raises(RestError) as again:
        rest.cancel_order(BTC, client_order_id="cid-1")
    assert (again.value.status, again.value.code) == (409, "order_not_open")


def test_another_accounts_client_order_id_is_404(rest: RestClient, other: RestClient) -> None:
    rest.submit_order(BTC, "limit", "buy", "1", price="20000", client_order_id="private")
    for call in (
        lambda: other.get_order(BTC, client_order_id="private"),
        lambda: other.cancel_order(BTC, client_order_id="private"),
        lambda: other.amend_order(BTC, client_order_id="private", quantity="0.5"),
        lambda: rest.get_order(ETH, client_order_id="private"),  # another symbol's
        lambda: rest.get_order(BTC, client_order_id="never-used"),
    ):
        with pytest.raises(RestError) as refused:
            call()
        assert (refused.value.status, refused.value.code) == (404, "unknown_order")
    assert rest.get_order(BTC, client_order_id="private")["status"] == "new"


@pytest.mark.parametrize("path", ["/cancel_order", "/amend_order"])
def test_exactly_one_of_order_id_and_client_order_id(
    http: httpx.Client,
    rest: RestClient,
    account: str,
    path: str,
) -> None:
    placed = rest.submit_order(BTC, "limit", "buy", "1", price="20000", client_order_id="one")
    extra = {"quantity": "0.5"} if path == "/amend_order" else {}
    base = {"symbol": BTC, "account": account, **extra}
    both = http.post(path, json={**base, "order_id": placed["order_id"], "client_order_id": "one"})
    neither = http.post(path, json=base)
    for response in (both, neither):
        status, code, message = error_of(response)
        assert (status, code) == (400, "invalid_field"), message
        assert "order_id" in message and "client_order_id" in message, message
    bad = http.post(path, json={**base, "client_order_id": 5})
    assert error_of(bad)[:2] == (400, "invalid_field")
    assert rest.get_order(BTC, placed["order_id"])["quantity"] == "1.0000"  # untouched


def test_get_by_client_order_id_takes_only_account(
    http: httpx.Client,
    rest: RestClient,
    account: str,
) -> None:
    rest.submit_order(BTC, "limit", "buy", "1", price="20000", client_order_id="q")
    ok = http.get(f"/orders/{BTC}/client/q", params={"account": account})
    assert ok.status_code == 200 and ok.json()["client_order_id"] == "q"
    unknown = http.get(f"/orders/{BTC}/client/q", params={"account": account, "depth": "1"})
    status, code, message = error_of(unknown)
    assert (status, code) == (400, "invalid_field") and "'depth'" in message
    assert error_of(http.get(f"/orders/{BTC}/client/{'x' * 65}"))[:2] == (400, "invalid_field")
    assert error_of(http.get("/orders/NOPE-USDT/client/q"))[:2] == (404, "unknown_symbol")


def test_cancel_all_cancels_the_callers_orders_of_one_symbol(
    rest: RestClient,
    other: RestClient,
) -> None:
    mine = [
        rest.submit_order(BTC, "limit", "buy", "1", price="20000")["order_id"],
        rest.submit_order(BTC, "limit", "sell", "1", price="90000")["order_id"],
        rest.submit_stop_order(BTC, "stop_loss", "sell", "0.1", stop_price="100")["order_id"],
        rest.submit_order(BTC, "limit", "buy", "1", price="20001")["order_id"],
    ]
    elsewhere = rest.submit_order(ETH, "limit", "buy", "1", price="100")["order_id"]
    theirs = other.submit_order(BTC, "limit", "buy", "1", price="20000")["order_id"]

    buys = rest.cancel_all(BTC, side="buy")
    assert buys["symbol"] == BTC
    assert [o["order_id"] for o in buys["cancelled"]] == [mine[0], mine[3]]
    result = rest.cancel_all(BTC)
    assert [o["order_id"] for o in result["cancelled"]] == [mine[1], mine[2]]  # id order
    assert {o["status"] for o in buys["cancelled"] + result["cancelled"]} == {"cancelled"}
    assert rest.cancel_all(BTC) == {"symbol": BTC, "cancelled": []}  # nothing left: not an error

    assert rest.orders(BTC, status="open")["orders"] == []
    assert [o["order_id"] for o in rest.orders(ETH, status="open")["orders"]] == [elsewhere]
    assert [o["order_id"] for o in other.orders(BTC, status="open")["orders"]] == [theirs]


def test_bad_cancel_all_requests_are_400_or_404(http: httpx.Client, account: str) -> None:
    for body, status, words in (
        ({"symbol": BTC, "side": "both"}, 400, "side must be one of buy, sell"),
        ({"symbol": BTC, "order_id": 1}, 400, "unknown field 'order_id'"),
        ({"side": "buy"}, 400, "symbol is required"),
        ({"symbol": "NOPE-USDT"}, 404, "unknown symbol"),
    ):
        response = http.post("/cancel_all", json={"account": account, **body})
        assert response.status_code == status and words in error_of(response)[2], response.text
    assert error_of(http.post(f"/cancel_all?symbol={BTC}", json={"symbol": BTC}))[0] == 400


def test_the_openapi_document_lists_the_new_endpoints(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert "post" in paths["/cancel_all"]
    by_client = paths["/orders/{symbol}/client/{client_order_id}"]["get"]
    assert {p["name"] for p in by_client["parameters"]} == {"symbol", "client_order_id", "account"}
    cancel = paths["/cancel_order"]["post"]["requestBody"]["content"]["application/json"]
    assert "client_order_id" in cancel["schema"]["properties"]


def test_with_auth_on_the_key_decides_whose_client_order_id_it_is(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    keys = {"k-alice": {"account": "alice"}, "k-bob": {"account": "bob"}}
    secured = GatewaySystem(tmp_path_factory.mktemp("ids-auth"), (BTC,), api_keys=keys).start()
    try:
        with (
            secured.rest(api_key="k-alice") as alice,
            secured.rest(api_key="k-bob") as bob,
            secured.http() as http,
        ):
            placed = alice.submit_order(
                BTC, "limit", "buy", "1", price="20000", client_order_id="same"
            )
            bobs = bob.submit_order(
                BTC, "limit", "buy", "2", price="20000", client_order_id="same"
            )  # ids are per account
            assert bob.get_order(BTC, client_order_id="same")["order_id"] == bobs["order_id"]
            assert bob.cancel_all(BTC)["cancelled"][0]["order_id"] == bobs["order_id"]
            with pytest.raises(RestError) as refused:
                bob.cancel_order(BTC, client_order_id="same")  # bob's own is finished now
            assert refused.value.status == 409
            for path, body in (
                ("/cancel_all", {"symbol": BTC}),
                ("/cancel_order", {"symbol": BTC, "client_order_id": "same"}),
            ):
                assert http.post(path, json=body).status_code == 401  # no key
            assert http.get(f"/orders/{BTC}/client/same").status_code == 401
            assert alice.get_order(BTC, client_order_id="same")["order_id"] == placed["order_id"]
            assert alice.get_order(BTC, client_order_id="same")["status"] == "new"
    finally:
        secured.stop()
