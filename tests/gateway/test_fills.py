"""average_price and cumulative_quote over REST: on the taker, the maker and a lookup."""

from __future__ import annotations

from typing import Any

from tests.gateway.conftest import ETH, GatewaySystem


def test_an_order_carries_its_average_price_and_quote(system: GatewaySystem, accounts: Any) -> None:
    with system.rest(account=accounts()) as maker, system.rest(account=accounts()) as taker:
        first = maker.submit_order(ETH, "limit", "sell", "0.5", price="4321.00")
        second = maker.submit_order(ETH, "limit", "sell", "0.5", price="4321.01")
        assert first["average_price"] is None and first["cumulative_quote"] == "0"
        bought = taker.submit_order(ETH, "ioc", "buy", "1", price="4321.01")
        assert bought["filled_quantity"] == "1.000"
        assert bought["cumulative_quote"] == "4321.005"  # 2160.5 + 2160.505
        assert bought["average_price"] == "4321.005"
        filled = maker.get_order(ETH, first["order_id"])
        assert (filled["average_price"], filled["cumulative_quote"]) == ("4321.00", "2160.5")
        assert maker.get_order(ETH, second["order_id"])["cumulative_quote"] == "2160.505"
