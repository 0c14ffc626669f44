"""clients/rest.py against the real gateway: every method, typed results, RestError."""

from __future__ import annotations

import pytest

from clients.rest import RestClient, RestError
from tests.gateway.conftest import BTC, GatewaySystem


def test_service_methods(system: GatewaySystem) -> None:
    with RestClient(system.base) as rest:
        assert rest.info()["name"] == "matchwire"
        assert "matchwire_gateway_requests_total" in rest.metrics()
        assert "/submit_order" in rest.openapi()["paths"]
        assert rest.health()["matchers"][BTC]["status"] == "up"


def test_errors_carry_status_code_and_message(system: GatewaySystem, account: str) -> None:
    with RestClient(system.base, account=account) as rest:
        with pytest.raises(RestError) as error:
            rest.orderbook("NOPE-USDT")
        assert (error.value.status, error.value.code) == (404, "unknown_symbol")
        assert "NOPE-USDT" in error.value.message
        with pytest.raises(RestError) as error:
            rest.submit_order(BTC, "limit", "buy", "1", price="0.001")
        assert (error.value.status, error.value.code) == (400, "invalid_price")


def test_order_round_trip_with_decimal_and_int_arguments(
    system: GatewaySystem, account: str
) -> None:
    from decimal import Decimal

    with RestClient(system.base, account=account) as rest:
        order = rest.submit_order(
            BTC,
            "limit",
            "sell",
            Decimal("0.0100"),
            price=99000,
            client_order_id="rt-1",
            post_only=True,
            stp="cancel_both",
        )
        assert order["account"] == account and order["price"] == "99000.00"
        assert order["quantity"] == "0.0100" and order["post_only"] is True
        amended = rest.amend_order(BTC, order["order_id"], quantity="0.02", price="99001")
        assert amended["price"] == "99001.00" and amended["quantity"] == "0.0200"
        assert rest.orders(BTC, status="open", limit=10)["orders"] == [amended]
        assert rest.bbo(BTC)["ask_price"] == "99001.00"
        assert rest.cancel_order(BTC, order["order_id"])["status"] == "cancelled"
