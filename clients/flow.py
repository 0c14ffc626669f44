"""The standard order flow: one seeded generator for the benchmarks and the load generator.

Around a drifting mid (1% of steps move it 1-3 ticks): 25% cancels of live orders, 55%
passive limit orders 1-50 ticks from mid, 15% limit orders 1-5 ticks through the opposite
best (partial fills, sweeps; through mid when the best is unknown), 5% market orders;
quantities 1-100 lots. Prices are in ticks and quantities in lots: each user turns a step
into its own form (an engine command, a journal record, a REST or ZeroMQ request).

The random draws happen in one fixed order per step, so a seed gives the same flow
wherever it is used (the core benchmark's 200,000 steps at seed 42: 83,612 fills).
"""

from __future__ import annotations

import random
from collections.abc import Callable

CANCEL, PASSIVE, CROSSING, MARKET = "cancel", "passive", "crossing", "market"

# (kind, side "buy"/"sell", price in ticks or None, quantity in lots, order id to cancel)
Step = tuple[str, str, int | None, int, int | None]


class OrderFlow:
    """Seeded steps; the caller says which orders are live and where the best prices are.

    `live` collects the ids of resting orders (the caller appends them as it learns
    them); a cancel takes a random one, skipping ids `is_live` says have gone since.
    """

    def __init__(self, mid_ticks: int, seed: int = 42) -> None:
        self.mid = mid_ticks
        self.rng = random.Random(seed)
        self.live: list[int] = []

    def next_step(
        self,
        best_opposite: Callable[[str], int | None] = lambda side: None,
        is_live: Callable[[int], bool] = lambda order_id: True,
    ) -> Step:
        rng = self.rng
        if rng.random() < 0.01:
            self.mid += rng.choice((-1, 1)) * rng.randint(1, 3)
        roll = rng.random()
        side = "buy" if rng.random() < 0.5 else "sell"
        quantity = rng.randint(1, 100)
        if roll < 0.25 and self.live:
            live = self.live
            while live:
                i = rng.randrange(len(live))
                order_id = live[i]
                live[i] = live[-1]
                live.pop()
                if is_live(order_id):
                    return (CANCEL, side, None, quantity, order_id)
            return (CANCEL, side, None, quantity, None)  # nothing live any more
        if roll < 0.80:
            distance = rng.randint(1, 50)
            price = self.mid - distance if side == "buy" else self.mid + distance
            return (PASSIVE, side, price, quantity, None)
        if roll < 0.95:
            best = best_opposite(side)
            if best is None:
                best = self.mid
            through = rng.randint(1, 5)
            return (
                CROSSING,
                side,
                best + through if side == "buy" else best - through,
                quantity,
                None,
            )
        return (MARKET, side, None, quantity, None)
