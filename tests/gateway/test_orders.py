"""Each order type's observable behaviour over REST, through a real gateway and matcher."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clients.rest import RestClient, RestError
from tests.gateway.conftest import BTC, ETH, GatewaySystem


@pytest.fixture
def rest(system: GatewaySystem, account: str) -> Iterator[RestClient]:
    with system.rest(account=account) as client:
        yield client


@pytest.fixture
def other(system: GatewaySystem, accounts: Any) -> Iterator[RestClient]:
    """A second account, for the other side of trades."""
    with system.rest(account=accounts()) as client:
        yield client


def test_seed_fee_example(rest: RestClient, other: RestClient) -> None:
    maker = other.submit_order(BTC, "limit", "sell", "1", price="30000")
    taker = rest.submit_order(BTC, "limit", "buy", "1", price="30000")
    assert taker["status"] == "filled"
    [trade] = taker["trades"]
    assert trade["maker_fee"] == "3" and trade["taker_fee"] == "6"
    assert trade["price"] == "30000.00" and trade["quantity"] == "1.0000"
    assert trade["maker_order_id"] == maker["order_id"]
    assert trade["taker_order_id"] == taker["order_id"]
    assert trade["aggressor_side"] == "buy"
    assert trade["timestamp"].endswith("Z") and len(trade["timestamp"]) == 27
    assert rest.get_order(BTC, taker["order_id"])["status"] == "filled"
    assert other.get_order(BTC, maker["order_id"])["status"] == "filled"


def test_limit_order_rests_and_shows_in_book_and_bbo(rest: RestClient) -> None:
    order = rest.submit_order(BTC, "limit", "buy", "0.5", price="29000.5")
    assert order["status"] == "new" and order["trades"] == []
    assert order["price"] == "29000.50" and order["remaining_quantity"] == "0.5000"
    assert order["time_in_force"] == "gtc"
    book = rest.orderbook(BTC)
    assert ["29000.50", "0.5000"] in book["bids"]
    bbo = rest.bbo(BTC)
    assert bbo["bid_price"] == "29000.50" and bbo["bid_quantity"] == "0.5000"
    assert bbo["ask_price"] is None and bbo["ask_quantity"] is None
    assert rest.orders(BTC, status="open")["orders"][0]["order_id"] == order["order_id"]


def test_market_order_sweeps_levels_best_first_and_cancels_the_rest(
    rest: RestClient, other: RestClient
) -> None:
    other.submit_order(BTC, "limit", "sell", "0.2", price="31001")
    other.submit_order(BTC, "limit", "sell", "0.1", price="31000")
    order = rest.submit_order(BTC, "market", "buy", "0.5")
    assert [t["price"] for t in order["trades"]] == ["31000.00", "31001.00"]  # no trade-through
    assert order["status"] == "cancelled" and order["filled_quantity"] == "0.3000"
    assert order["remaining_quantity"] == "0.0000"
    assert order["reject_reason"] == "market_remainder_cancelled"
    assert rest.bbo(BTC)["ask_price"] is None


def test_market_order_on_an_empty_side_is_cancelled_not_an_error(rest: RestClient) -> None:
    order = rest.submit_order(BTC, "market", "sell", "1")
    assert order["status"] == "cancelled" and order["filled_quantity"] == "0.0000"
    assert order["trades"] == []


def test_ioc_fills_what_it_can_at_its_limit(rest: RestClient, other: RestClient) -> None:
    other.submit_order(BTC, "limit", "sell", "0.3", price="32000")
    other.submit_order(BTC, "limit", "sell", "0.3", price="32100")
    order = rest.submit_order(BTC, "ioc", "buy", "1", price="32000")
    assert order["filled_quantity"] == "0.3000" and order["status"] == "cancelled"
    assert order["time_in_force"] == "ioc"
    assert rest.orderbook(BTC)["asks"] == [["32100.00", "0.3000"]]  # the IOC never rests
    limit_ioc = rest.submit_order(BTC, "limit", "buy", "1", price="32100", time_in_force="ioc")
    assert limit_ioc["filled_quantity"] == "0.3000" and limit_ioc["status"] == "cancelled"
    assert rest.orderbook(BTC)["asks"] == [] and rest.orderbook(BTC)["bids"] == []


def test_fok_fills_completely_or_not_at_all(rest: RestClient, other: RestClient) -> None:
    other.submit_order(BTC, "limit", "sell", "0.5", price="33000")
    too_big = rest.submit_order(BTC, "fok", "buy", "0.6", price="33000")
    assert too_big["status"] == "cancelled" and too_big["trades"] == []
    assert too_big["reject_reason"] == "fok_not_fillable"
    assert rest.orderbook(BTC)["asks"] == [["33000.00", "0.5000"]]
    exact = rest.submit_order(BTC, "limit", "buy", "0.5", price="33000", time_in_force="fok")
    assert exact["status"] == "filled" and len(exact["trades"]) == 1


def test_price_time_priority(rest: RestClient, accounts: Any, system: GatewaySystem) -> None:
    first, second, better = (system.rest(account=accounts()) for _ in range(3))
    with first, second, better:
        a = first.submit_order(BTC, "limit", "sell", "0.1", price="34000")
        b = second.submit_order(BTC, "limit", "sell", "0.1", price="34000")
        c = better.submit_order(BTC, "limit", "sell", "0.1", price="33999.99")
        order = rest.submit_order(BTC, "limit", "buy", "0.25", price="34000")
    makers = [t["maker_order_id"] for t in order["trades"]]
    assert makers == [c["order_id"], a["order_id"], b["order_id"]]
    assert [t["price"] for t in order["trades"]] == ["33999.99", "34000.00", "34000.00"]
    assert [t["quantity"] for t in order["trades"]] == ["0.1000", "0.1000", "0.0500"]
    ids = [t["trade_id"] for t in order["trades"]]
    assert ids == list(range(ids[0], ids[0] + 3))  # contiguous
    assert rest.orderbook(BTC)["asks"] == [["34000.00", "0.0500"]]


def test_post_only(rest: RestClient, other: RestClient) -> None:
    other.submit_order(BTC, "limit", "sell", "0.1", price="35000")
    taking = rest.submit_order(BTC, "limit", "buy", "0.1", price="35000", post_only=True)
    assert taking["status"] == "rejected"
    assert taking["reject_reason"] == "post_only_would_take" and taking["trades"] == []
    resting = rest.submit_order(BTC, "limit", "buy", "0.1", price="34999", post_only=True)
    assert resting["status"] == "new" and resting["post_only"] is True
    with pytest.raises(RestError) as error:  # amending it across the spread would take
        rest.amend_order(BTC, resting["order_id"], price="35000")
    assert (error.value.status, error.value.code) == (400, "post_only_would_take")


def test_self_trade_prevention(rest: RestClient) -> None:
    resting = rest.submit_order(BTC, "limit", "sell", "0.1", price="36000")
    newest = rest.submit_order(BTC, "limit", "buy", "0.1", price="36000")
    assert newest["status"] == "cancelled" and newest["trades"] == []
    assert newest["reject_reason"] == "self_trade_prevented"
    assert rest.get_order(BTC, resting["order_id"])["status"] == "new"
    oldest = rest.submit_order(BTC, "limit", "buy", "0.1", price="36000", stp="cancel_oldest")
    assert oldest["status"] == "new"  # the resting sell was cancelled, the buy rests
    assert rest.get_order(BTC, resting["order_id"])["status"] == "cancelled"


def test_cancel_then_cancel_again_is_409(rest: RestClient) -> None:
    order = rest.submit_order(BTC, "limit", "buy", "0.1", price="20000")
    cancelled = rest.cancel_order(BTC, order["order_id"])
    assert cancelled["status"] == "cancelled" and cancelled["remaining_quantity"] == "0.0000"
    assert cancelled["reject_reason"] == "cancelled_by_user"
    with pytest.raises(RestError) as error:
        rest.cancel_order(BTC, order["order_id"])
    assert (error.value.status, error.value.code) == (409, "order_not_open")
    with pytest.raises(RestError) as error:
        rest.cancel_order(BTC, 10**12)
    assert (error.value.status, error.value.code) == (404, "unknown_order")


def test_duplicate_client_order_id_is_409(rest: RestClient) -> None:
    first = rest.submit_order(BTC, "limit", "buy", "0.1", price="20000", client_order_id="c-1")
    assert first["client_order_id"] == "c-1"
    with pytest.raises(RestError) as error:
        rest.submit_order(BTC, "limit", "buy", "0.2", price="20001", client_order_id="c-1")
    assert (error.value.status, error.value.code) == (409, "duplicate_client_order_id")
    assert len(rest.orders(BTC, status="open")["orders"]) == 1


def test_amend_keeps_or_loses_priority(
    rest: RestClient, other: RestClient, system: GatewaySystem, accounts: Any
) -> None:
    a = rest.submit_order(BTC, "limit", "sell", "0.3", price="37000")
    b = other.submit_order(BTC, "limit", "sell", "0.3", price="37000")
    with system.rest(account=accounts()) as taker:
        smaller = rest.amend_order(BTC, a["order_id"], quantity="0.2")  # keeps its place
        assert smaller["quantity"] == "0.2000" and smaller["remaining_quantity"] == "0.2000"
        hit = taker.submit_order(BTC, "ioc", "buy", "0.1", price="37000")
        assert hit["trades"][0]["maker_order_id"] == a["order_id"]
        bigger = rest.amend_order(BTC, a["order_id"], quantity="0.5")  # re-queues
        assert bigger["filled_quantity"] == "0.1000" and bigger["remaining_quantity"] == "0.4000"
        hit = taker.submit_order(BTC, "ioc", "buy", "0.1", price="37000")
        assert hit["trades"][0]["maker_order_id"] == b["order_id"]
    with pytest.raises(RestError) as error:  # not above what has already filled
        rest.amend_order(BTC, a["order_id"], quantity="0.1")
    assert (error.value.status, error.value.code) == (400, "invalid_quantity")
    moved = other.amend_order(BTC, b["order_id"], price="37500")
    assert moved["price"] == "37500.00" and moved["status"] == "partially_filled"
    assert rest.orderbook(BTC)["asks"] == [["37000.00", "0.4000"], ["37500.00", "0.2000"]]


def test_amend_to_a_crossing_price_matches(rest: RestClient, other: RestClient) -> None:
    other.submit_order(BTC, "limit", "buy", "0.2", price="38000")
    sell = rest.submit_order(BTC, "limit", "sell", "0.2", price="38500")
    amended = rest.amend_order(BTC, sell["order_id"], price="38000")
    assert amended["status"] == "filled"
    assert [t["price"] for t in amended["trades"]] == ["38000.00"]


def test_stop_orders(rest: RestClient, other: RestClient) -> None:
    # Print a trade at 40000 so the stops have a last price.
    other.submit_order(BTC, "limit", "sell", "0.1", price="40000")
    rest.submit_order(BTC, "limit", "buy", "0.1", price="40000")
    with pytest.raises(RestError) as error:
        rest.submit_stop_order(BTC, "stop_loss", "sell", "0.1", stop_price="40000")
    assert (error.value.status, error.value.code) == (400, "would_trigger_immediately")

    stop_loss = rest.submit_stop_order(BTC, "stop_loss", "sell", "0.1", stop_price="39900")
    stop_limit = rest.submit_stop_order(
        BTC, "stop_limit", "sell", "0.1", stop_price="39900", price="39000"
    )
    take_profit = rest.submit_stop_order(
        BTC, "take_profit", "sell", "0.1", stop_price="41000", price="41000"
    )
    for order in (stop_loss, stop_limit, take_profit):
        assert order["status"] == "pending" and order["remaining_quantity"] in ("0.0000", "0.1000")
    assert stop_loss["stop_price"] == "39900.00" and stop_loss["price"] is None
    with pytest.raises(RestError) as error:
        rest.amend_order(BTC, stop_limit["order_id"], quantity="0.2")
    assert (error.value.status, error.value.code) == (400, "stop_not_amendable")
    assert rest.cancel_order(BTC, take_profit["order_id"])["status"] == "cancelled"

    # A trade at 39900 triggers both sell stops, in submission order: the stop_loss
    # becomes a market sell and takes the rest of the 39900 bid, then the stop_limit
    # (limit 39000) takes the 39800 bid.
    other.submit_order(BTC, "limit", "buy", "0.2", price="39900")
    other.submit_order(BTC, "limit", "buy", "0.1", price="39800")
    trigger = rest.submit_order(BTC, "limit", "sell", "0.1", price="39900")
    assert trigger["status"] == "filled"
    after_loss = rest.get_order(BTC, stop_loss["order_id"])
    assert after_loss["status"] == "filled" and after_loss["order_type"] == "stop_loss"
    assert [t["price"] for t in after_loss["trades"]] == ["39900.00"]
    after_limit = rest.get_order(BTC, stop_limit["order_id"])  # keeps its order_id
    assert after_limit["status"] == "filled"
    assert [t["price"] for t in after_limit["trades"]] == ["39800.00"]
    assert rest.orderbook(BTC)["bids"] == []


def test_get_order_list_orders_and_trades(rest: RestClient, other: RestClient) -> None:
    sell = other.submit_order(ETH, "limit", "sell", "2", price="2000")
    buy = rest.submit_order(ETH, "limit", "buy", "0.5", price="2000", client_order_id="e1")
    got = rest.get_order(ETH, buy["order_id"])
    assert got == buy
    assert [o["order_id"] for o in other.orders(ETH, status="open")["orders"]] == [sell["order_id"]]
    everything = rest.orders(ETH)["orders"]  # open then recent finished
    assert buy["order_id"] in [o["order_id"] for o in everything]
    trades = rest.trades(ETH, limit=1)
    assert trades["symbol"] == ETH and len(trades["trades"]) == 1
    assert trades["trades"][0] == buy["trades"][0]  # newest first
    csv_text = rest.trades_csv(ETH, limit=1)
    header, row = csv_text.strip().split("\n")
    assert header == (
        "trade_id,symbol,price,quantity,aggressor_side,maker_order_id,"
        "taker_order_id,maker_fee,taker_fee,timestamp"
    )
    assert row.split(",")[:4] == [str(buy["trades"][0]["trade_id"]), ETH, "2000.00", "0.500"]


def test_orderbook_depth(rest: RestClient) -> None:
    for i in range(5):
        rest.submit_order(BTC, "limit", "buy", "0.1", price=str(10000 + i))
    book = rest.orderbook(BTC, depth=3)
    assert book["bids"] == [["10004.00", "0.1000"], ["10003.00", "0.1000"], ["10002.00", "0.1000"]]
    assert book["symbol"] == BTC and isinstance(book["book_seq"], int)
    assert len(rest.orderbook(BTC, depth=1000)["bids"]) == 5


def test_json_numbers_keep_their_exact_text(system: GatewaySystem, account: str) -> None:
    with system.http() as http:
        # As a float, 0.10000000000000000001 would be 0.1 and land on the lot grid.
        body = (
            f'{{"symbol":"{BTC}","order_type":"limit","side":"buy","price":12000.5,'
            f'"quantity":0.10000000000000000001,"account":"{account}"}}'
        )
        refused = http.post("/submit_order", content=body)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "invalid_quantity"
        accepted = http.post("/submit_order", content=body.replace("0.10000000000000000001", "0.1"))
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["price"] == "12000.50"
        assert accepted.json()["quantity"] == "0.1000"
        by_string_id = http.post(
            "/cancel_order",
            json={"symbol": BTC, "order_id": str(accepted.json()["order_id"]), "account": account},
        )
        assert by_string_id.status_code == 200 and by_string_id.json()["status"] == "cancelled"
