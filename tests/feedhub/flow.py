"""A seeded random order flow sent to a real matcher, in pipelined chunks.

Prices sit in a narrow band around `mid` so orders cross often (trades, removed and
partly filled levels); cancels and amends pick orders this flow knows to be open.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from clients.zmq_client import MatcherClient

OPEN = ("new", "partially_filled")


class OrderFlow:
    def __init__(
        self,
        client: MatcherClient,
        seed: int,
        *,
        symbol: str = "BTC-USDT",
        mid: int = 30000,
        lot: str = "0.0001",
    ) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.symbol = symbol
        self.mid = Decimal(mid)
        self.lot = Decimal(lot)
        self.open_ids: list[int] = []
        self.sent = 0
        self.refused = 0

    def _price(self, side: str) -> str:
        # Half-dollar steps; buys mostly below mid and sells mostly above, overlapping.
        steps = self.rng.randint(-40, 6) if side == "buy" else self.rng.randint(-6, 40)
        return str(self.mid + Decimal(steps) / 2)

    def _quantity(self) -> str:
        return str(self.lot * self.rng.randint(1, 400))

    def request(self) -> dict[str, Any]:
        rng = self.rng
        side = rng.choice(("buy", "sell"))
        roll = rng.random()
        base = {
            "op": "new_order",
            "symbol": self.symbol,
            "side": side,
            "quantity": self._quantity(),
        }
        if roll < 0.08:
            return {**base, "order_type": "market"}
        if roll < 0.14:
            return {**base, "order_type": rng.choice(("ioc", "fok")), "price": self._price(side)}
        if self.open_ids and roll < 0.30:
            order_id = rng.choice(self.open_ids)
            return {"op": "cancel_order", "symbol": self.symbol, "order_id": order_id}
        if self.open_ids and roll < 0.40:
            order_id = rng.choice(self.open_ids)
            if rng.random() < 0.5:
                return {
                    "op": "amend_order",
                    "symbol": self.symbol,
                    "order_id": order_id,
                    "quantity": self._quantity(),
                }
            return {
                "op": "amend_order",
                "symbol": self.symbol,
                "order_id": order_id,
                "price": self._price(side),
            }
        return {
            **base,
            "order_type": "limit",
            "price": self._price(side),
            "post_only": rng.random() < 0.05,
        }

    def run(self, count: int, chunk: int = 100) -> None:
        """Send `count` requests, `chunk` at a time, and track which orders stay open."""
        left = count
        while left > 0:
            batch = [self.request() for _ in range(min(chunk, left))]
            left -= len(batch)
            for request, reply in zip(batch, self.client.pipeline(batch), strict=True):
                self.sent += 1
                if not reply.get("ok"):
                    self.refused += 1
                    order_id = request.get("order_id")
                    if order_id in self.open_ids:
                        self.open_ids.remove(order_id)
                    continue
                order = reply["result"]
                if order["order_id"] in self.open_ids:
                    self.open_ids.remove(order["order_id"])
                if order["status"] in OPEN:
                    self.open_ids.append(order["order_id"])
