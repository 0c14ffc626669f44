"""A deliberately simple, obviously-correct matcher: the oracle for matcher/engine.py.

It implements docs/api.md with one plain list of resting orders and linear scans:
no sorted containers, no indexes, no caching, no cleverness. It takes the command tuples
of matcher/protocol.py and returns the same event tuples, in the order the engine's
module docstring gives, or raises CommandError with the same code. Speed does not
matter here; being easy to check by reading does.

Rules, as read from docs/api.md and the engine's contract:
- the best resting order for a taker is the opposite-side order with the best price
  (lowest ask, highest bid), oldest first (`arrival` grows each time an order rests);
- a taker never trades at a price worse than its limit; trades print at the maker's price;
- self-trade prevention applies when maker and taker share a non-anonymous account;
- stops are kept in submission order; every trade printed by a command is checked
  against every pending stop; triggered stops are processed one after another, each
  one's trades checked in turn, newly triggered ones joining the back of the queue.
"""

from __future__ import annotations

from collections import deque

from matcher.protocol import (
    ANONYMOUS,
    BUY,
    CANCELLED,
    CMD_AMEND,
    CMD_CANCEL,
    CMD_CANCEL_ALL,
    CMD_NEW_ORDER,
    CMD_NEW_STOP,
    EV_LEVEL,
    EV_ORDER,
    EV_TRADE,
    FILLED,
    FINISHED_STATUSES,
    FOK,
    GTC,
    IOC,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    PENDING,
    REJECTED,
    SELL,
    STOP_LOSS,
    STOP_TYPES,
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

# -- command builders (the tuples of matcher/protocol.py) ------------------------------


def new_order(
    seq: int,
    account: str,
    side: int,
    order_type: int,
    price: int | None,
    quantity: int,
    tif: int = GTC,
    post_only: bool = False,
    stp: int = STP_CANCEL_NEWEST,
    client_order_id: str | None = None,
    ts: int | None = None,
) -> tuple:
    return (
        CMD_NEW_ORDER,
        seq,
        seq * 1000 if ts is None else ts,
        account,
        side,
        order_type,
        tif,
        price,
        quantity,
        post_only,
        stp,
        client_order_id,
    )


def new_stop(
    seq: int,
    account: str,
    side: int,
    order_type: int,
    stop_price: int,
    price: int | None,
    quantity: int,
    stp: int = STP_CANCEL_NEWEST,
    client_order_id: str | None = None,
    ts: int | None = None,
) -> tuple:
    return (
        CMD_NEW_STOP,
        seq,
        seq * 1000 if ts is None else ts,
        account,
        side,
        order_type,
        stop_price,
        price,
        quantity,
        stp,
        client_order_id,
    )


def cancel(seq: int, account: str, order_id: int | str, ts: int | None = None) -> tuple:
    """order_id may be a client_order_id (a str): resolve it first (`resolve`)."""
    return (CMD_CANCEL, seq, seq * 1000 if ts is None else ts, account, order_id)


def amend(
    seq: int,
    account: str,
    order_id: int | str,
    quantity: int | None,
    price: int | None,
    ts: int | None = None,
) -> tuple:
    """order_id may be a client_order_id (a str): resolve it first (`resolve`)."""
    return (CMD_AMEND, seq, seq * 1000 if ts is None else ts, account, order_id, quantity, price)


def cancel_all(seq: int, account: str, side: int | None, ts: int | None = None) -> tuple:
    return (CMD_CANCEL_ALL, seq, seq * 1000 if ts is None else ts, account, side)


# -- the reference matcher -------------------------------------------------------------


class RefOrder:
    def __init__(
        self,
        order_id: int,
        account: str,
        side: int,
        order_type: int,
        tif: int,
        price: int | None,
        quantity: int,
        post_only: bool,
        stp: int,
        client_order_id: str | None,
        stop_price: int | None,
        status: int,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.side = side
        self.order_type = order_type
        self.tif = tif
        self.price = price
        self.quantity = quantity
        self.filled = 0
        self.post_only = post_only
        self.stp = stp
        self.client_order_id = client_order_id
        self.stop_price = stop_price
        self.status = status
        self.reason: str | None = None
        self.arrival = 0  # time priority: set each time the order (re)joins the book
        self.trade_ids: list[int] = []

    @property
    def leaves(self) -> int:
        return self.quantity - self.filled

    @property
    def remaining(self) -> int:
        return 0 if self.status in FINISHED_STATUSES else self.leaves

    @property
    def rising(self) -> bool:
        """A rising stop fires on a trade at or above its stop price."""
        if self.order_type == TAKE_PROFIT:
            return self.side == SELL
        return self.side == BUY


def _stp_applies(taker: RefOrder, maker: RefOrder) -> bool:
    return taker.account != ANONYMOUS and maker.account == taker.account


def _acceptable(taker: RefOrder, price: int) -> bool:
    """May `taker` trade at `price` (its limit or better)?"""
    if taker.price is None:
        return True
    return price <= taker.price if taker.side == BUY else price >= taker.price


class ReferenceMatcher:
    def __init__(
        self,
        maker_rate: int = 10_000,
        taker_rate: int = 20_000,
        finished_window: int = 100_000,
    ) -> None:
        self.maker_rate = maker_rate
        self.taker_rate = taker_rate
        self.finished_window = finished_window
        self.seq = 0
        self.book_seq = 0
        self.trade_id = 0
        self.last_price: int | None = None
        self.orders: dict[int, RefOrder] = {}  # every order ever accepted
        self.resting: list[RefOrder] = []
        self.pending: list[RefOrder] = []  # untriggered stops, in submission order
        self.finished: list[int] = []  # ids in the order they finished (all of them)
        self.arrivals = 0
        self.trades: list[tuple] = []

    # -- lookups by linear scan ------------------------------------------------------

    def recent_finished(self) -> list[int]:
        return (
            self.finished[len(self.finished) - self.finished_window :]
            if (len(self.finished) > self.finished_window)
            else list(self.finished)
        )

    def visible(self, order_id: int) -> RefOrder | None:
        """A live order, or one of the last `finished_window` finished orders."""
        for order in self.resting + self.pending:
            if order.order_id == order_id:
                return order
        if order_id in self.recent_finished():
            return self.orders[order_id]
        return None

    def visible_ids(self) -> list[int]:
        ids = [order.order_id for order in self.resting + self.pending]
        return sorted(ids + self.recent_finished())

    def level_total(self, side: int, price: int) -> int:
        return sum(o.leaves for o in self.resting if o.side == side and o.price == price)

    def depth(self, side: int) -> list[tuple[int, int]]:
        prices = sorted({o.price for o in self.resting if o.side == side}, reverse=(side == BUY))
        return [(price, self.level_total(side, price)) for price in prices]  # type: ignore[arg-type]

    def level_ids(self, side: int) -> list[list[int]]:
        """Order ids per level, best level first, FIFO within each level."""
        result = []
        for price, _ in self.depth(side):
            at_price = [o for o in self.resting if o.side == side and o.price == price]
            at_price.sort(key=lambda o: o.arrival)
            result.append([o.order_id for o in at_price])
        return result

    def pending_ids(self) -> list[int]:
        return [o.order_id for o in self.pending]

    def best_maker(self, taker: RefOrder) -> RefOrder | None:
        """The resting order a taker meets next: best price, then oldest."""
        best = None
        for order in self.resting:
            if order.side == taker.side or not _acceptable(taker, order.price):  # type: ignore[arg-type]
                continue
            if best is None:
                best = order
                continue
            better_price = (
                order.price < best.price
                if taker.side == BUY
                # type: ignore[operator]
                else (
                    order.price > best.price  # type: ignore[operator]
                )
            )
            if better_price or (order.price == best.price and order.arrival < best.arrival):
                best = order
        return best

    def makers_in_priority(self, taker: RefOrder) -> list[RefOrder]:
        makers = [o for o in self.resting if o.side != taker.side and _acceptable(taker, o.price)]  # type: ignore[arg-type]
        sign = 1 if taker.side == BUY else -1
        makers.sort(key=lambda o: (sign * o.price, o.arrival))  # type: ignore[operator]
        return makers

    def client_id_taken(self, account: str, client_order_id: str | None) -> bool:
        if client_order_id is None:
            return False
        candidates = self.resting + self.pending
        candidates += [self.orders[order_id] for order_id in self.recent_finished()]
        return any(
            o.account == account and o.client_order_id == client_order_id for o in candidates
        )

    def client_order(self, account: str, client_order_id: str) -> RefOrder | None:
        """The account's live or recently finished order with this client_order_id."""
        candidates = self.resting + self.pending
        candidates += [self.orders[order_id] for order_id in self.recent_finished()]
        for order in candidates:
            if order.account == account and order.client_order_id == client_order_id:
                return order
        return None

    def resolve(self, command: tuple) -> tuple:
        """A cancel or amend naming its order by client_order_id -> the same by order id."""
        if not isinstance(command[4], str):
            return command
        order = self.client_order(command[3], command[4])
        if order is None:
            raise CommandError(Code.UNKNOWN_ORDER, "unknown client_order_id")
        return (*command[:4], order.order_id, *command[5:])

    def owned(self, order_id: int, account: str) -> RefOrder:
        for order in self.resting + self.pending:
            if order.order_id == order_id and order.account == account:
                return order
        if order_id in self.recent_finished() and self.orders[order_id].account == account:
            raise CommandError(Code.ORDER_NOT_OPEN, "finished")
        raise CommandError(Code.UNKNOWN_ORDER, "unknown")

    # -- commands --------------------------------------------------------------------

    def apply(self, command: tuple) -> list[tuple]:
        if command[1] <= self.seq:
            raise CommandError(Code.INVALID_REQUEST, "sequence not increasing")
        kind = command[0]
        if kind == CMD_NEW_ORDER:
            events = self.cmd_new_order(command)
        elif kind == CMD_NEW_STOP:
            events = self.cmd_new_stop(command)
        elif kind == CMD_CANCEL:
            events = self.cmd_cancel(command)
        elif kind == CMD_AMEND:
            events = self.cmd_amend(command)
        elif kind == CMD_CANCEL_ALL:
            events = self.cmd_cancel_all(command)
        else:
            raise CommandError(Code.UNKNOWN_OP, "unknown command")
        if any(event[0] == EV_LEVEL for event in events):
            self.book_seq += 1
        return events

    def cmd_new_order(self, command: tuple) -> list[tuple]:
        (
            _,
            seq,
            ts,
            account,
            side,
            order_type,
            tif,
            price,
            quantity,
            post_only,
            stp,
            client_order_id,
        ) = command
        if self.client_id_taken(account, client_order_id):
            raise CommandError(Code.DUPLICATE_CLIENT_ORDER_ID, "duplicate")
        if order_type == IOC:
            tif = TIF_IOC
        elif order_type == FOK:
            tif = TIF_FOK
        elif order_type == MARKET:
            price = None
        self.seq = seq
        order = RefOrder(
            seq,
            account,
            side,
            order_type,
            tif,
            price,
            quantity,
            post_only,
            stp,
            client_order_id,
            None,
            NEW,
        )
        self.orders[seq] = order
        events: list[tuple] = []
        traded_prices = self.enter(order, events, ts)
        self.run_stops(traded_prices, events, ts)
        return events

    def cmd_new_stop(self, command: tuple) -> list[tuple]:
        (
            _,
            seq,
            ts,
            account,
            side,
            order_type,
            stop_price,
            price,
            quantity,
            stp,
            client_order_id,
        ) = command
        if self.client_id_taken(account, client_order_id):  # first, before any other check
            raise CommandError(Code.DUPLICATE_CLIENT_ORDER_ID, "duplicate")
        if order_type not in STOP_TYPES:
            raise CommandError(Code.INVALID_FIELD, "not a stop type")
        order = RefOrder(
            seq,
            account,
            side,
            order_type,
            GTC,
            price,
            quantity,
            False,
            stp,
            client_order_id,
            stop_price,
            PENDING,
        )
        if self.last_price is not None and self.fires(order, self.last_price):
            raise CommandError(Code.WOULD_TRIGGER_IMMEDIATELY, "would trigger")
        self.seq = seq
        self.orders[seq] = order
        self.pending.append(order)
        return [(EV_ORDER, seq, PENDING, 0, quantity, None)]

    def cmd_cancel(self, command: tuple) -> list[tuple]:
        _, seq, ts, account, order_id = command
        order = self.owned(order_id, account)
        self.seq = seq
        events: list[tuple] = []
        self.withdraw(order, events)
        return events

    def withdraw(self, order: RefOrder, events: list[tuple]) -> None:
        if order.status == PENDING:
            self.pending.remove(order)
        else:
            self.resting.remove(order)
            events.append(
                (EV_LEVEL, order.side, order.price, self.level_total(order.side, order.price))
            )  # type: ignore[arg-type]
        self.finish(order, CANCELLED, Code.USER_CANCELLED)
        events.append((EV_ORDER, order.order_id, CANCELLED, order.filled, 0, Code.USER_CANCELLED))

    def cmd_cancel_all(self, command: tuple) -> list[tuple]:
        """Every live order and pending stop of the account (and side), lowest id first."""
        _, seq, ts, account, side = command
        self.seq = seq
        targets = [
            o
            for o in self.resting + self.pending
            if o.account == account and side in (None, o.side)
        ]
        events: list[tuple] = []
        for order in sorted(targets, key=lambda o: o.order_id):
            self.withdraw(order, events)
        return events

    def cmd_amend(self, command: tuple) -> list[tuple]:
        _, seq, ts, account, order_id, quantity, price = command
        order = self.owned(order_id, account)
        if order.status == PENDING:
            raise CommandError(Code.STOP_NOT_AMENDABLE, "stop")
        new_quantity = order.quantity if quantity is None else quantity
        new_price = order.price if price is None else price
        if new_quantity <= order.filled:
            raise CommandError(Code.INVALID_QUANTITY, "not above filled")
        events: list[tuple] = []
        if new_price == order.price and new_quantity <= order.quantity:
            self.seq = seq
            if new_quantity < order.quantity:
                order.quantity = new_quantity
                events.append(
                    (EV_LEVEL, order.side, order.price, self.level_total(order.side, order.price))
                )  # type: ignore[arg-type]
            events.append((EV_ORDER, order_id, order.status, order.filled, order.leaves, None))
            return events
        if order.post_only and self.crosses(order.side, new_price):
            raise CommandError(Code.POST_ONLY_WOULD_TAKE, "post only")
        self.seq = seq
        self.resting.remove(order)
        events.append(
            (EV_LEVEL, order.side, order.price, self.level_total(order.side, order.price))
        )  # type: ignore[arg-type]
        order.price = new_price
        order.quantity = new_quantity
        traded_prices = self.enter(order, events, ts)
        self.run_stops(traded_prices, events, ts)
        return events

    # -- matching --------------------------------------------------------------------

    def crosses(self, side: int, price: int | None) -> bool:
        probe = RefOrder(0, "", side, MARKET, GTC, price, 1, False, 0, None, None, NEW)
        return any(o.side != side and _acceptable(probe, o.price) for o in self.resting)  # type: ignore[arg-type]

    def fillable(self, taker: RefOrder) -> int:
        """What the taker would really get, walking makers as matching would."""
        total = 0
        for maker in self.makers_in_priority(taker):
            if _stp_applies(taker, maker):
                if taker.stp == STP_CANCEL_OLDEST:
                    continue  # would be cancelled, matching goes on
                break  # the taker would stop here
            total += maker.leaves
        return total

    def finish(self, order: RefOrder, status: int, reason: str | None) -> None:
        order.status = status
        order.reason = reason
        self.finished.append(order.order_id)

    def enter(self, order: RefOrder, events: list[tuple], ts: int) -> list[int]:
        """Match, then rest or end the order. Returns the prices it traded at."""
        if order.post_only and self.crosses(order.side, order.price):
            self.finish(order, REJECTED, Code.POST_ONLY_WOULD_TAKE)
            events.append(
                (EV_ORDER, order.order_id, REJECTED, order.filled, 0, Code.POST_ONLY_WOULD_TAKE)
            )
            return []
        if order.tif == TIF_FOK and self.fillable(order) < order.leaves:
            self.finish(order, CANCELLED, Code.FOK_NOT_FILLABLE)
            events.append(
                (EV_ORDER, order.order_id, CANCELLED, order.filled, 0, Code.FOK_NOT_FILLABLE)
            )
            return []
        traded_prices, self_trade = self.match(order, events, ts)
        if order.leaves == 0:
            self.finish(order, FILLED, None)
        elif self_trade:
            self.finish(order, CANCELLED, Code.SELF_TRADE_PREVENTED)
        elif order.price is None:
            self.finish(order, CANCELLED, Code.MARKET_REMAINDER)
        elif order.tif != GTC:
            self.finish(order, CANCELLED, Code.IOC_REMAINDER)
        else:
            self.arrivals += 1
            order.arrival = self.arrivals
            self.resting.append(order)
            order.status = PARTIALLY_FILLED if order.filled else NEW
            events.append(
                (EV_LEVEL, order.side, order.price, self.level_total(order.side, order.price))
            )  # type: ignore[arg-type]
            events.append(
                (EV_ORDER, order.order_id, order.status, order.filled, order.leaves, None)
            )
            return traded_prices
        events.append((EV_ORDER, order.order_id, order.status, order.filled, 0, order.reason))
        return traded_prices

    def match(self, taker: RefOrder, events: list[tuple], ts: int) -> tuple[list[int], bool]:
        opposite = SELL if taker.side == BUY else BUY
        traded_prices: list[int] = []
        touched: int | None = None  # price of the opposite level changed, not yet reported

        def report_level() -> None:
            if touched is not None:
                events.append((EV_LEVEL, opposite, touched, self.level_total(opposite, touched)))

        self_trade = False
        while taker.leaves > 0:
            maker = self.best_maker(taker)
            if maker is None:
                break
            if maker.price != touched:
                report_level()
                touched = None
            if _stp_applies(taker, maker):
                if taker.stp in (STP_CANCEL_OLDEST, STP_CANCEL_BOTH):
                    self.resting.remove(maker)
                    self.finish(maker, CANCELLED, Code.SELF_TRADE_PREVENTED)
                    events.append(
                        (
                            EV_ORDER,
                            maker.order_id,
                            CANCELLED,
                            maker.filled,
                            0,
                            Code.SELF_TRADE_PREVENTED,
                        )
                    )
                    touched = maker.price
                if taker.stp != STP_CANCEL_OLDEST:
                    self_trade = True
                    break
                continue
            price: int = maker.price  # type: ignore[assignment]
            quantity = min(taker.leaves, maker.leaves)
            self.trade_id += 1
            trade = (
                EV_TRADE,
                self.trade_id,
                price,
                quantity,
                taker.side,
                maker.order_id,
                taker.order_id,
                price * quantity * self.maker_rate,
                price * quantity * self.taker_rate,
                ts,
            )
            events.append(trade)
            self.trades.append(trade)
            taker.filled += quantity
            maker.filled += quantity
            taker.trade_ids.append(self.trade_id)
            maker.trade_ids.append(self.trade_id)
            self.last_price = price
            traded_prices.append(price)
            touched = price
            if maker.leaves:
                maker.status = PARTIALLY_FILLED
                events.append(
                    (EV_ORDER, maker.order_id, PARTIALLY_FILLED, maker.filled, maker.leaves, None)
                )
            else:
                self.resting.remove(maker)
                self.finish(maker, FILLED, None)
                events.append((EV_ORDER, maker.order_id, FILLED, maker.filled, 0, None))
        report_level()
        return traded_prices, self_trade

    # -- stops -----------------------------------------------------------------------

    @staticmethod
    def fires(stop: RefOrder, trade_price: int) -> bool:
        assert stop.stop_price is not None
        if stop.rising:
            return trade_price >= stop.stop_price
        return trade_price <= stop.stop_price

    def take_triggered(self, traded_prices: list[int]) -> list[RefOrder]:
        fired = [s for s in self.pending if any(self.fires(s, p) for p in traded_prices)]
        for stop in fired:
            self.pending.remove(stop)
        return fired

    def run_stops(self, traded_prices: list[int], events: list[tuple], ts: int) -> None:
        queue = deque(self.take_triggered(traded_prices))
        while queue:
            stop = queue.popleft()
            events.append((EV_ORDER, stop.order_id, TRIGGERED, 0, stop.leaves, None))
            if stop.order_type == STOP_LOSS:
                stop.price = None  # becomes a market order
            # stop_limit: a limit at its price; take_profit: at its price, market without.
            stop.status = NEW
            queue.extend(self.take_triggered(self.enter(stop, events, ts)))
