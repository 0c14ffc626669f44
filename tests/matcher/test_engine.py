"""Unit tests of matcher/engine.py: one test per order type and market rule (docs/api.md).

Prices are integer ticks and quantities integer lots, as inside the core. Event tuples
are those of matcher/protocol.py.
"""

from __future__ import annotations

import random

import msgpack
import pytest

from matcher.engine import Engine
from matcher.protocol import (
    BUY,
    CANCELLED,
    EV_LEVEL,
    EV_ORDER,
    EV_TRADE,
    FILLED,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    PENDING,
    REJECTED,
    SELL,
    STOP_LIMIT,
    STOP_LOSS,
    STP_CANCEL_BOTH,
    STP_CANCEL_NEWEST,
    STP_CANCEL_OLDEST,
    TAKE_PROFIT,
    TIF_FOK,
    TIF_IOC,
    TRIGGERED,
    Code,
    CommandError,
)
from matcher.system import load_config
from matcher.units import Units
from tests.matcher.reference import amend, cancel, new_order, new_stop

ANON = "anonymous"


class Market:
    """An engine plus a sequence counter, with one short method per command."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or Engine()
        self.seq = self.engine.seq
        self.trades: list[tuple] = []

    def apply(self, command: tuple) -> list[tuple]:
        events = self.engine.apply(command)
        self.trades.extend(event for event in events if event[0] == EV_TRADE)
        self.engine.check()
        return events

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def limit(
        self,
        side: int,
        price: int,
        quantity: int,
        account: str = ANON,
        tif: int = GTC,
        post_only: bool = False,
        stp: int = STP_CANCEL_NEWEST,
        client_order_id: str | None = None,
    ) -> list[tuple]:
        return self.apply(
            new_order(
                self._next(),
                account,
                side,
                LIMIT,
                price,
                quantity,
                tif,
                post_only,
                stp,
                client_order_id,
            )
        )

    def order(
        self,
        side: int,
        order_type: int,
        price: int | None,
        quantity: int,
        account: str = ANON,
        stp: int = STP_CANCEL_NEWEST,
    ) -> list[tuple]:
        tif = TIF_IOC if order_type == MARKET else GTC
        return self.apply(
            new_order(self._next(), account, side, order_type, price, quantity, tif, False, stp)
        )

    def market(
        self, side: int, quantity: int, account: str = ANON, stp: int = STP_CANCEL_NEWEST
    ) -> list[tuple]:
        return self.order(side, MARKET, None, quantity, account, stp)

    def stop(
        self,
        side: int,
        order_type: int,
        stop_price: int,
        price: int | None,
        quantity: int,
        account: str = ANON,
        client_order_id: str | None = None,
    ) -> list[tuple]:
        return self.apply(
            new_stop(
                self._next(),
                account,
                side,
                order_type,
                stop_price,
                price,
                quantity,
                STP_CANCEL_NEWEST,
                client_order_id,
            )
        )

    def cancel(self, order_id: int, account: str = ANON) -> list[tuple]:
        return self.apply(cancel(self._next(), account, order_id))

    def amend(
        self,
        order_id: int,
        quantity: int | None = None,
        price: int | None = None,
        account: str = ANON,
    ) -> list[tuple]:
        return self.apply(amend(self._next(), account, order_id, quantity, price))

    def refused(self, method: str, *args: object, **kwargs: object) -> str:
        """Run a command that must be refused; return its code after proving nothing changed."""
        before = self.engine.state_hash()
        with pytest.raises(CommandError) as refusal:
            getattr(self, method)(*args, **kwargs)
        assert self.engine.state_hash() == before
        self.seq -= 1  # the refused command used no sequence number
        return refusal.value.code

    # -- views -----------------------------------------------------------------------

    def depth(self, side: int) -> list[tuple[int, int]]:
        return self.engine.book.depth(side, 1000)

    def fifo(self, side: int, price: int) -> list[int]:
        level = self.engine.book.side(side).levels[price]
        return [order.order_id for order in level.live_orders()]

    def state(self, order_id: int) -> tuple:
        order = self.engine.get_order(order_id)
        assert order is not None
        return (order.status, order.filled, order.remaining)


def trades_of(events: list[tuple]) -> list[tuple]:
    """(price, quantity, maker_order_id, taker_order_id) of each trade event."""
    return [(e[2], e[3], e[5], e[6]) for e in events if e[0] == EV_TRADE]


def order_events(events: list[tuple], order_id: int) -> list[tuple]:
    return [e for e in events if e[0] == EV_ORDER and e[1] == order_id]


# -- price-time priority, no trade-throughs --------------------------------------------


def test_price_time_priority_fifo_within_level() -> None:
    m = Market()
    m.limit(SELL, 100, 3)  # 1
    m.limit(SELL, 100, 3)  # 2
    m.limit(SELL, 99, 1)  # 3: better price, later
    m.limit(SELL, 100, 3)  # 4
    assert m.fifo(SELL, 100) == [1, 2, 4]
    events = m.limit(BUY, 100, 5)
    # Best price first, then the oldest order of the level.
    assert trades_of(events) == [(99, 1, 3, 5), (100, 3, 1, 5), (100, 1, 2, 5)]
    assert m.fifo(SELL, 100) == [2, 4]
    assert m.state(2) == (PARTIALLY_FILLED, 1, 2)


def test_new_order_event_order_matches_contract() -> None:
    m = Market()
    m.limit(SELL, 100, 2)  # 1
    m.limit(SELL, 101, 2)  # 2
    events = m.limit(BUY, 101, 5)  # 3: takes both levels, rests 1 at 101
    assert events == [
        (EV_TRADE, 1, 100, 2, BUY, 1, 3, 100 * 2 * 10_000, 100 * 2 * 20_000, 3000),
        (EV_ORDER, 1, FILLED, 2, 0, None),
        (EV_LEVEL, SELL, 100, 0),
        (EV_TRADE, 2, 101, 2, BUY, 2, 3, 101 * 2 * 10_000, 101 * 2 * 20_000, 3000),
        (EV_ORDER, 2, FILLED, 2, 0, None),
        (EV_LEVEL, SELL, 101, 0),
        (EV_LEVEL, BUY, 101, 1),
        (EV_ORDER, 3, PARTIALLY_FILLED, 4, 1, None),
    ]


def test_market_sweeps_levels_best_first_no_trade_through() -> None:
    m = Market()
    m.limit(SELL, 103, 1)
    m.limit(SELL, 101, 1)
    m.limit(SELL, 102, 1)
    m.limit(SELL, 101, 1)
    events = m.market(BUY, 3)
    assert [price for price, *_ in trades_of(events)] == [101, 101, 102]
    assert m.depth(SELL) == [(103, 1)]
    assert m.state(5) == (FILLED, 3, 0)


def test_limit_never_trades_worse_than_its_limit_and_at_maker_price() -> None:
    m = Market()
    m.limit(BUY, 98, 2)
    m.limit(BUY, 97, 2)
    events = m.limit(SELL, 95, 3)  # a low limit still gets the makers' better prices
    assert [(p, q) for p, q, *_ in trades_of(events)] == [(98, 2), (97, 1)]
    events = m.limit(SELL, 98, 5)  # nothing at 98 or better remains: it rests
    assert trades_of(events) == []
    assert m.depth(BUY) == [(97, 1)]
    assert m.depth(SELL) == [(98, 5)]


def test_market_on_empty_book_is_cancelled_not_error() -> None:
    m = Market()
    events = m.market(BUY, 5)
    assert events == [(EV_ORDER, 1, CANCELLED, 0, 0, Code.MARKET_REMAINDER)]
    assert m.state(1) == (CANCELLED, 0, 0)


def test_market_remainder_is_cancelled_never_rests() -> None:
    m = Market()
    m.limit(SELL, 100, 2)
    events = m.market(BUY, 5)
    assert order_events(events, 2) == [(EV_ORDER, 2, CANCELLED, 2, 0, Code.MARKET_REMAINDER)]
    assert m.depth(BUY) == [] and m.depth(SELL) == []


# -- time in force ---------------------------------------------------------------------


@pytest.mark.parametrize("order_type,tif", [(IOC, GTC), (LIMIT, TIF_IOC)])
def test_ioc_cancels_remainder(order_type: int, tif: int) -> None:
    m = Market()
    m.limit(SELL, 100, 2)
    m.limit(SELL, 102, 2)
    events = m.apply(new_order(3, ANON, BUY, order_type, 101, 5, tif))
    m.seq = 3
    assert trades_of(events) == [(100, 2, 1, 3)]
    assert events[-1] == (EV_ORDER, 3, CANCELLED, 2, 0, Code.IOC_REMAINDER)
    assert m.depth(BUY) == [] and m.depth(SELL) == [(102, 2)]


@pytest.mark.parametrize("order_type,tif", [(FOK, GTC), (LIMIT, TIF_FOK)])
def test_fok_all_or_nothing(order_type: int, tif: int) -> None:
    m = Market()
    m.limit(SELL, 100, 2)
    m.limit(SELL, 101, 2)
    m.limit(SELL, 103, 5)
    before = m.engine.book.depth(SELL, 10)
    events = m.apply(new_order(4, ANON, BUY, order_type, 101, 5, tif))  # only 4 at <= 101
    assert events == [(EV_ORDER, 4, CANCELLED, 0, 0, Code.FOK_NOT_FILLABLE)]
    assert m.engine.book.depth(SELL, 10) == before and m.engine.trade_id == 0
    events = m.apply(new_order(5, ANON, BUY, order_type, 101, 4, tif))  # exactly fillable
    assert [q for _, q, *_ in trades_of(events)] == [2, 2]
    assert events[-1] == (EV_ORDER, 5, FILLED, 4, 0, None)


def test_fok_counts_only_stp_fillable() -> None:
    def book() -> Market:
        m = Market()
        m.limit(SELL, 100, 2, account="bob")  # 1
        m.limit(SELL, 100, 5, account="alice")  # 2: alice's own
        m.limit(SELL, 101, 5, account="bob")  # 3
        return m

    # cancel_newest would stop at alice's own order after 2: not fillable, nothing happens.
    m = book()
    events = m.apply(new_order(4, "alice", BUY, FOK, 101, 7, GTC, False, STP_CANCEL_NEWEST))
    assert events == [(EV_ORDER, 4, CANCELLED, 0, 0, Code.FOK_NOT_FILLABLE)]
    assert m.state(2) == (NEW, 0, 5)
    # Without STP (another account) the same 7 is there.
    m = book()
    events = m.apply(new_order(4, "carol", BUY, FOK, 101, 7))
    assert events[-1] == (EV_ORDER, 4, FILLED, 7, 0, None)
    # cancel_oldest skips (cancels) the own order: 2 + 5 from bob are fillable.
    m = book()
    events = m.apply(new_order(4, "alice", BUY, FOK, 101, 7, GTC, False, STP_CANCEL_OLDEST))
    assert trades_of(events) == [(100, 2, 1, 4), (101, 5, 3, 4)]
    assert m.state(2) == (CANCELLED, 0, 0)
    assert events[-1] == (EV_ORDER, 4, FILLED, 7, 0, None)
    # ...but not 8.
    m = book()
    events = m.apply(new_order(4, "alice", BUY, FOK, 101, 8, GTC, False, STP_CANCEL_OLDEST))
    assert events == [(EV_ORDER, 4, CANCELLED, 0, 0, Code.FOK_NOT_FILLABLE)]
    assert m.state(2) == (NEW, 0, 5)


# -- post-only -------------------------------------------------------------------------


def test_post_only_rejected_when_crossing() -> None:
    m = Market()
    m.limit(SELL, 100, 2)
    events = m.limit(BUY, 100, 1, post_only=True)
    assert events == [(EV_ORDER, 2, REJECTED, 0, 0, Code.POST_ONLY_WOULD_TAKE)]
    assert m.engine.trade_id == 0 and m.depth(BUY) == []
    events = m.limit(BUY, 99, 1, post_only=True)  # does not cross: rests
    assert events == [(EV_LEVEL, BUY, 99, 1), (EV_ORDER, 3, NEW, 0, 1, None)]


def test_post_only_amend_to_crossing_price_is_refused() -> None:
    m = Market()
    m.limit(SELL, 100, 2)
    m.limit(BUY, 98, 1, post_only=True)  # 2
    assert m.refused("amend", 2, price=100) == Code.POST_ONLY_WOULD_TAKE
    m.amend(2, price=99)
    assert m.depth(BUY) == [(99, 1)]


# -- cancel and amend ------------------------------------------------------------------


def test_cancel_resting_order_events_and_state() -> None:
    m = Market()
    m.limit(BUY, 99, 3)
    m.limit(BUY, 99, 4)
    events = m.cancel(1)
    assert events == [(EV_LEVEL, BUY, 99, 4), (EV_ORDER, 1, CANCELLED, 0, 0, Code.USER_CANCELLED)]
    assert m.state(1) == (CANCELLED, 0, 0)
    assert m.refused("cancel", 1) == Code.ORDER_NOT_OPEN
    assert m.refused("cancel", 2, account="bob") == Code.UNKNOWN_ORDER  # not bob's
    assert m.refused("cancel", 99) == Code.UNKNOWN_ORDER


def test_amend_decrease_keeps_priority() -> None:
    m = Market()
    m.limit(SELL, 100, 5)  # 1
    m.limit(SELL, 100, 5)  # 2
    m.limit(BUY, 100, 1)  # 3: fills 1 of order 1
    events = m.amend(1, quantity=3)  # filled 1, so 2 stay open
    assert events == [(EV_LEVEL, SELL, 100, 7), (EV_ORDER, 1, PARTIALLY_FILLED, 1, 2, None)]
    assert m.fifo(SELL, 100) == [1, 2]
    events = m.limit(BUY, 100, 2)
    assert trades_of(events) == [(100, 2, 1, 5)]


def test_amend_to_same_quantity_is_a_no_op_keeping_priority() -> None:
    m = Market()
    m.limit(SELL, 100, 5)
    m.limit(SELL, 100, 5)
    book_seq = m.engine.book_seq
    assert m.amend(1, quantity=5, price=100) == [(EV_ORDER, 1, NEW, 0, 5, None)]
    assert m.fifo(SELL, 100) == [1, 2] and m.engine.book_seq == book_seq


def test_amend_increase_requeues() -> None:
    m = Market()
    m.limit(SELL, 100, 5)  # 1
    m.limit(SELL, 100, 5)  # 2
    events = m.amend(1, quantity=6)
    assert events == [
        (EV_LEVEL, SELL, 100, 5),
        (EV_LEVEL, SELL, 100, 11),
        (EV_ORDER, 1, NEW, 0, 6, None),
    ]
    assert m.fifo(SELL, 100) == [2, 1]


def test_amend_price_change_requeues_at_new_level() -> None:
    m = Market()
    m.limit(BUY, 99, 5)  # 1
    m.limit(BUY, 98, 5)  # 2
    m.amend(1, price=98)
    assert m.fifo(BUY, 98) == [2, 1] and m.depth(BUY) == [(98, 10)]


def test_amend_price_cross_matches() -> None:
    m = Market()
    m.limit(SELL, 101, 2)  # 1
    m.limit(BUY, 99, 5)  # 2
    events = m.amend(2, price=101)
    assert events == [
        (EV_LEVEL, BUY, 99, 0),
        (EV_TRADE, 1, 101, 2, BUY, 1, 2, 101 * 2 * 10_000, 101 * 2 * 20_000, 3000),
        (EV_ORDER, 1, FILLED, 2, 0, None),
        (EV_LEVEL, SELL, 101, 0),
        (EV_LEVEL, BUY, 101, 3),
        (EV_ORDER, 2, PARTIALLY_FILLED, 2, 3, None),
    ]
    assert m.depth(BUY) == [(101, 3)] and m.depth(SELL) == []


def test_amend_refusals() -> None:
    m = Market()
    m.limit(SELL, 100, 5)  # 1
    m.limit(BUY, 100, 2)  # 2: order 1 has filled 2
    m.stop(BUY, STOP_LOSS, 105, None, 1)  # 3
    assert m.refused("amend", 1, quantity=2) == Code.INVALID_QUANTITY  # not above filled
    assert m.refused("amend", 1, quantity=1) == Code.INVALID_QUANTITY
    assert m.refused("amend", 3, quantity=2) == Code.STOP_NOT_AMENDABLE
    assert m.refused("amend", 2, quantity=9) == Code.ORDER_NOT_OPEN
    assert m.refused("amend", 1, quantity=9, account="bob") == Code.UNKNOWN_ORDER
    assert m.refused("amend", 77, quantity=9) == Code.UNKNOWN_ORDER
    m.amend(1, quantity=3)
    assert m.state(1) == (PARTIALLY_FILLED, 2, 1)


# -- stops -----------------------------------------------------------------------------


def test_stop_accepted_before_any_trade_and_cancellable() -> None:
    m = Market()
    assert m.stop(BUY, STOP_LOSS, 100, None, 1) == [(EV_ORDER, 1, PENDING, 0, 1, None)]
    assert m.stop(SELL, STOP_LOSS, 100, None, 1) == [(EV_ORDER, 2, PENDING, 0, 1, None)]
    assert m.state(1) == (PENDING, 0, 1)
    assert m.cancel(1) == [(EV_ORDER, 1, CANCELLED, 0, 0, Code.USER_CANCELLED)]
    assert sorted(m.engine.stops) == [2]


def test_stop_would_trigger_immediately_rejected() -> None:
    m = Market()
    m.limit(SELL, 100, 1)
    m.limit(BUY, 100, 1)  # last price 100
    for side, order_type, stop_price in [
        (BUY, STOP_LOSS, 100),
        (BUY, STOP_LIMIT, 99),
        (SELL, STOP_LOSS, 100),
        (SELL, STOP_LIMIT, 101),
        (SELL, TAKE_PROFIT, 100),
        (BUY, TAKE_PROFIT, 101),
    ]:
        code = m.refused("stop", side, order_type, stop_price, 100, 1)
        assert code == Code.WOULD_TRIGGER_IMMEDIATELY
    for side, order_type, stop_price in [
        (BUY, STOP_LOSS, 101),
        (SELL, STOP_LOSS, 99),
        (SELL, TAKE_PROFIT, 101),
        (BUY, TAKE_PROFIT, 99),
    ]:
        assert m.stop(side, order_type, stop_price, None, 1)[0][2] == PENDING


def test_stop_loss_triggers_on_any_trade_of_command() -> None:
    m = Market()
    m.limit(SELL, 102, 1)
    m.limit(BUY, 102, 1)  # last price 102
    m.stop(SELL, STOP_LOSS, 100, None, 1)  # 3: fires on a trade at or below 100
    m.limit(BUY, 95, 1)  # 4: liquidity for the stop's market sell
    m.limit(SELL, 100, 1)  # 5
    m.limit(SELL, 101, 1)  # 6
    events = m.market(BUY, 2)  # 7: prints 100 then 101; the last price, 101, is above 100
    assert m.engine.last_price == 95
    assert (EV_ORDER, 3, TRIGGERED, 0, 1, None) in events
    assert trades_of(events) == [(100, 1, 5, 7), (101, 1, 6, 7), (95, 1, 4, 3)]
    assert m.state(3) == (FILLED, 1, 0)


def test_stop_cascade_in_submission_order() -> None:
    m = Market()
    for price in (101, 102, 103, 104, 105):
        m.limit(SELL, price, 1)  # orders 1..5
    m.stop(BUY, STOP_LOSS, 102, None, 1)  # 6: fires only on the first stop's trade at 102
    m.stop(BUY, STOP_LOSS, 101, None, 1)  # 7
    m.stop(BUY, STOP_LIMIT, 101, 105, 1)  # 8
    events = m.market(BUY, 1)  # 9: prints 101 -> 7 and 8 fire
    triggered = [e[1] for e in events if e[0] == EV_ORDER and e[2] == TRIGGERED]
    # 7 then 8 (submission order); 6 joins the back of the queue when 7 prints 102.
    assert triggered == [7, 8, 6]
    assert trades_of(events) == [(101, 1, 1, 9), (102, 1, 2, 7), (103, 1, 3, 8), (104, 1, 4, 6)]
    # Each stop is processed completely before the next one starts.
    first = events.index((EV_ORDER, 7, TRIGGERED, 0, 1, None))
    second = events.index((EV_ORDER, 8, TRIGGERED, 0, 1, None))
    assert (EV_ORDER, 7, FILLED, 1, 0, None) in events[first:second]
    assert m.engine.stops == {} and m.engine.last_price == 104


def test_stop_limit_becomes_limit_and_rests() -> None:
    m = Market()
    m.limit(SELL, 100, 1)  # 1
    m.stop(BUY, STOP_LIMIT, 100, 99, 3)  # 2: a buy limit at 99 once 100 trades
    events = m.market(BUY, 1)  # 3
    assert events[-2:] == [(EV_LEVEL, BUY, 99, 3), (EV_ORDER, 2, NEW, 0, 3, None)]
    assert events[-3] == (EV_ORDER, 2, TRIGGERED, 0, 3, None)
    assert m.depth(BUY) == [(99, 3)]


def test_take_profit_with_price_is_limit() -> None:
    m = Market()
    m.limit(SELL, 100, 1)
    m.limit(BUY, 100, 1)  # last 100
    m.stop(SELL, TAKE_PROFIT, 102, 103, 2)  # 3: sell limit 103 once 102 trades
    m.limit(SELL, 102, 1)  # 4
    m.limit(BUY, 102, 1)  # 5: trade at 102
    assert m.state(3) == (NEW, 0, 2) and m.depth(SELL) == [(103, 2)]


def test_take_profit_without_price_is_market() -> None:
    m = Market()
    m.limit(SELL, 100, 1)
    m.limit(BUY, 100, 1)  # last 100
    m.stop(BUY, TAKE_PROFIT, 98, None, 3)  # 3: a market buy once 98 or lower trades
    m.limit(SELL, 110, 1)  # 4: far away, a market takes it anyway
    m.limit(BUY, 98, 1)  # 5
    events = m.limit(SELL, 98, 1)  # 6: trade at 98 fires the stop
    assert trades_of(events) == [(98, 1, 5, 6), (110, 1, 4, 3)]
    assert events[-1] == (EV_ORDER, 3, CANCELLED, 1, 0, Code.MARKET_REMAINDER)


def test_triggered_stop_keeps_its_order_id_and_client_id() -> None:
    m = Market()
    m.limit(SELL, 100, 1)
    m.stop(BUY, STOP_LIMIT, 100, 101, 1, client_order_id="tp")  # 2
    m.limit(SELL, 101, 1)  # 3
    m.market(BUY, 1)  # 4
    assert m.state(2) == (FILLED, 1, 0)
    assert m.refused("limit", BUY, 90, 1, client_order_id="tp") == Code.DUPLICATE_CLIENT_ORDER_ID


def test_retried_stop_whose_original_triggered_answers_duplicate() -> None:
    # The retry arrives after the original triggered: the stop condition now holds for
    # the last price too, but the duplicate must win (a 409 tells the client its first
    # attempt went through; would_trigger_immediately would hide it).
    m = Market()
    m.limit(SELL, 100, 1)
    m.stop(BUY, STOP_LOSS, 100, None, 1, client_order_id="s1")  # 2
    m.market(BUY, 1)  # 3: trades at 100, triggers 2
    assert m.refused("stop", BUY, STOP_LOSS, 100, None, 1, client_order_id="s1") == (
        Code.DUPLICATE_CLIENT_ORDER_ID
    )


# -- self-trade prevention -------------------------------------------------------------


def _stp_book() -> Market:
    m = Market()
    m.limit(SELL, 100, 2, account="bob")  # 1
    m.limit(SELL, 100, 5, account="alice")  # 2
    m.limit(SELL, 101, 5, account="bob")  # 3
    return m


def test_stp_cancel_newest() -> None:
    m = _stp_book()
    events = m.limit(BUY, 101, 10, account="alice", stp=STP_CANCEL_NEWEST)  # 4
    assert trades_of(events) == [(100, 2, 1, 4)]
    assert events[-2:] == [
        (EV_LEVEL, SELL, 100, 5),
        (EV_ORDER, 4, CANCELLED, 2, 0, Code.SELF_TRADE_PREVENTED),
    ]
    assert m.state(2) == (NEW, 0, 5) and m.depth(SELL) == [(100, 5), (101, 5)]
    assert m.depth(BUY) == []


def test_stp_cancel_oldest() -> None:
    m = _stp_book()
    events = m.limit(BUY, 101, 10, account="alice", stp=STP_CANCEL_OLDEST)  # 4
    assert trades_of(events) == [(100, 2, 1, 4), (101, 5, 3, 4)]
    assert (EV_ORDER, 2, CANCELLED, 0, 0, Code.SELF_TRADE_PREVENTED) in events
    assert m.state(2) == (CANCELLED, 0, 0)
    assert m.state(4) == (PARTIALLY_FILLED, 7, 3) and m.depth(BUY) == [(101, 3)]
    assert m.depth(SELL) == []


def test_stp_cancel_both() -> None:
    m = _stp_book()
    events = m.limit(BUY, 101, 10, account="alice", stp=STP_CANCEL_BOTH)  # 4
    assert trades_of(events) == [(100, 2, 1, 4)]
    assert events[-3:] == [
        (EV_ORDER, 2, CANCELLED, 0, 0, Code.SELF_TRADE_PREVENTED),
        (EV_LEVEL, SELL, 100, 0),
        (EV_ORDER, 4, CANCELLED, 2, 0, Code.SELF_TRADE_PREVENTED),
    ]
    assert m.depth(SELL) == [(101, 5)] and m.depth(BUY) == []


def test_anonymous_never_stp() -> None:
    m = Market()
    m.limit(SELL, 100, 2)  # anonymous
    events = m.limit(BUY, 100, 2, stp=STP_CANCEL_BOTH)  # anonymous too
    assert trades_of(events) == [(100, 2, 1, 2)]


# -- fees, ids, client ids -------------------------------------------------------------


def test_seed_fee_example() -> None:
    units = Units(load_config().symbols["BTC-USDT"])  # tick 0.01, lot 0.0001
    m = Market(Engine(units.maker_rate, units.taker_rate))
    price, quantity = units.price_ticks("30000"), units.quantity_lots("1")
    m.limit(SELL, price, quantity)
    (trade,) = [e for e in m.limit(BUY, price, quantity) if e[0] == EV_TRADE]
    assert units.format_price(trade[2]) == "30000.00"
    assert units.format_quantity(trade[3]) == "1.0000"
    assert units.format_fee(trade[7]) == "3"
    assert units.format_fee(trade[8]) == "6"


def test_client_order_id_unique_among_live_and_recent() -> None:
    m = Market(Engine(finished_window=3))
    m.limit(BUY, 90, 1, account="alice", client_order_id="x")  # 1: live
    assert m.refused("limit", BUY, 91, 1, account="alice", client_order_id="x") == (
        Code.DUPLICATE_CLIENT_ORDER_ID
    )
    assert (
        m.refused("stop", BUY, STOP_LOSS, 120, None, 1, account="alice", client_order_id="x")
        == Code.DUPLICATE_CLIENT_ORDER_ID
    )
    m.limit(BUY, 91, 1, account="bob", client_order_id="x")  # 2: per account
    m.cancel(1, account="alice")  # finished, still recent
    assert m.refused("limit", BUY, 91, 1, account="alice", client_order_id="x") == (
        Code.DUPLICATE_CLIENT_ORDER_ID
    )
    for _ in range(3):  # three more finished orders push order 1 out of the window
        m.market(SELL, 1, account="carol")
    assert m.engine.get_order(1) is None
    m.limit(BUY, 91, 1, account="alice", client_order_id="x")
    assert m.engine.get_order(m.seq).client_order_id == "x"  # type: ignore[union-attr]


def test_trade_ids_contiguous() -> None:
    m = Market()
    run_random(m, random.Random(3), 2000)
    ids = [trade[1] for trade in m.trades]
    assert len(ids) > 100
    assert ids == list(range(1, len(ids) + 1)) and m.engine.trade_id == len(ids)


def test_book_never_crossed() -> None:
    m = Market()
    rng = random.Random(5)
    for _ in range(2000):
        run_random(m, rng, 1)
        bid, _, ask, _ = m.engine.bbo()
        assert bid is None or ask is None or bid < ask


def test_refused_command_changes_nothing() -> None:
    m = Market()
    m.limit(SELL, 100, 2, account="alice", client_order_id="a")
    m.limit(BUY, 100, 1)  # last 100
    m.stop(BUY, STOP_LOSS, 101, None, 1, account="alice")  # 3
    before = m.engine.state_hash()
    refusals = [
        ("limit", (BUY, 99, 1), {"account": "alice", "client_order_id": "a"}),
        ("stop", (BUY, STOP_LOSS, 100, None, 1), {}),
        ("cancel", (42,), {}),
        ("cancel", (1,), {"account": "bob"}),
        ("cancel", (2,), {}),
        ("amend", (1,), {"quantity": 1, "account": "alice"}),
        ("amend", (3,), {"quantity": 5, "account": "alice"}),
    ]
    for method, args, kwargs in refusals:
        m.refused(method, *args, **kwargs)
    with pytest.raises(CommandError) as refusal:  # a sequence number not after the last
        m.engine.apply(new_order(m.seq, ANON, BUY, LIMIT, 99, 1))
    assert refusal.value.code == Code.INVALID_REQUEST
    assert m.engine.state_hash() == before


def test_book_seq_counts_commands_that_changed_levels() -> None:
    m = Market()
    m.limit(SELL, 100, 2)  # level change
    m.market(SELL, 1)  # empty bid side: no level change
    m.stop(BUY, STOP_LOSS, 105, None, 1)
    m.limit(BUY, 100, 3)  # two levels change: still one command
    assert m.engine.book_seq == 2


# -- state: export, import, determinism -------------------------------------------------


def run_random(m: Market, rng: random.Random, count: int) -> None:
    """Random valid commands of every kind (refusals are expected and skipped)."""
    accounts = ("alice", "bob", ANON)
    for _ in range(count):
        side = rng.randrange(2)
        price = rng.randint(95, 105)
        quantity = rng.randint(1, 10)
        account = rng.choice(accounts)
        roll = rng.random()
        try:
            if roll < 0.45:
                m.limit(
                    side,
                    price,
                    quantity,
                    account,
                    rng.choice((GTC, GTC, TIF_IOC, TIF_FOK)),
                    rng.random() < 0.1,
                    rng.randrange(3),
                    rng.choice((None, None, None, "k1", "k2")),
                )
            elif roll < 0.55:
                m.market(side, quantity, account, rng.randrange(3))
            elif roll < 0.7:
                order_type = rng.choice((STOP_LOSS, STOP_LIMIT, TAKE_PROFIT))
                m.stop(
                    side,
                    order_type,
                    price,
                    None if order_type == STOP_LOSS else price,
                    quantity,
                    account,
                )
            elif roll < 0.85:
                live = sorted([*m.engine.book.orders, *m.engine.stops])
                if live:
                    order_id = rng.choice(live)
                    m.cancel(order_id, m.engine.get_order(order_id).account)  # type: ignore[union-attr]
            else:
                live = sorted(m.engine.book.orders)
                if live:
                    order_id = rng.choice(live)
                    order = m.engine.book.orders[order_id]
                    m.amend(
                        order_id,
                        rng.choice((None, quantity)),
                        rng.choice((None, price)) if rng.random() < 0.8 else None,
                        order.account,
                    )
        except CommandError:
            m.seq -= 1


def test_export_import_roundtrip() -> None:
    m = Market()
    run_random(m, random.Random(11), 1500)
    m.limit(BUY, 90, 3, account="alice", client_order_id="rest")  # surely something rests
    m.limit(SELL, 110, 2, account="bob")
    assert m.engine.stops and m.engine.book.orders and m.engine.finished
    state = m.engine.export_state()
    copy = Engine.from_state(state)
    copy.check()
    assert copy.state_hash() == m.engine.state_hash()
    raw = msgpack.packb(state, use_bin_type=True)
    restored = Engine.from_state(msgpack.unpackb(raw, raw=False, use_list=True))
    restored.check()
    assert restored.state_hash() == m.engine.state_hash()
    # The restored engine goes on exactly like the original.
    twin = Market(restored)
    twin.seq = m.seq
    rng_a, rng_b = random.Random(12), random.Random(12)
    run_random(m, rng_a, 500)
    run_random(twin, rng_b, 500)
    assert twin.trades[-20:] == m.trades[-20:]
    assert restored.state_hash() == m.engine.state_hash()


def test_restored_engine_keeps_client_ids_and_stops() -> None:
    m = Market()
    m.limit(SELL, 100, 1, account="alice", client_order_id="a1")
    m.limit(BUY, 100, 1)  # last 100
    m.stop(BUY, STOP_LOSS, 101, None, 1, account="alice", client_order_id="s1")  # 3
    restored = Market(Engine.from_state(m.engine.export_state()))
    assert restored.refused("limit", BUY, 90, 1, account="alice", client_order_id="a1") == (
        Code.DUPLICATE_CLIENT_ORDER_ID
    )
    assert restored.refused("cancel", 1, account="alice") == Code.ORDER_NOT_OPEN
    restored.limit(SELL, 101, 1)  # 4
    events = restored.market(BUY, 1)  # 5: trades at 101, fires stop 3
    assert (EV_ORDER, 3, TRIGGERED, 0, 1, None) in events


def _commands() -> list[tuple]:
    rng = random.Random(21)
    commands = []
    for seq in range(1, 401):
        order_type = rng.choice((LIMIT, LIMIT, MARKET, IOC))
        price = None if order_type == MARKET else rng.randint(97, 103)
        commands.append(
            new_order(
                seq,
                rng.choice(("alice", "bob")),
                rng.randrange(2),
                order_type,
                price,
                rng.randint(1, 10),
            )
        )
    return commands


def _replay(commands: list[tuple]) -> str:
    engine = Engine()
    for command in commands:
        engine.apply(command)
    engine.check()
    return engine.state_hash()


def test_same_commands_give_same_state_hash_and_order_matters() -> None:
    commands = _commands()
    assert _replay(commands) == _replay(list(commands))
    # Swap the contents (not the sequence numbers) of two orders at the same price.
    first = new_order(1, "alice", SELL, LIMIT, 200, 1)
    second = new_order(2, "bob", SELL, LIMIT, 200, 1)
    swapped = [second[:1] + first[1:3] + second[3:], first[:1] + second[1:3] + first[3:]]
    assert _replay([first, second] + commands[2:]) != _replay(swapped + commands[2:])


def test_state_attributes_name_every_attribute_but_the_handlers() -> None:
    """Engine._rules copies STATE_ATTRIBUTES from a rebuilt engine (no vars(): the compiled
    build has no __dict__), so the list must name them all."""
    from matcher import engine as engine_module

    if not hasattr(Engine(), "__dict__"):
        pytest.skip("the compiled build: attributes are fixed by engine.pxd")
    assert set(vars(Engine())) - {"_handlers"} == set(engine_module.STATE_ATTRIBUTES)
