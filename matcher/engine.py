"""Order types, stops, self-trade prevention and fees over the book: commands in, events out.

The engine is pure: no sockets, files, clocks, logging or randomness. Ids, sequence
numbers and timestamps arrive with each command (see matcher/protocol.py), so applying
the same commands to a fresh engine gives the same state, bit for bit (`state_hash()`).

A command either raises CommandError before changing anything, or is applied and
returns its events. Event order within a command is part of the contract (the
reference matcher in tests/ checks it):

1. New order: post-only and FOK checks; then for each fill a TRADE and the maker's ORDER
   (partially_filled/filled); a maker cancelled by STP gives its ORDER (cancelled);
   a LEVEL for every opposite level the taker changed, when it leaves that level; if the
   remainder rests, a LEVEL for its own level; last, the taker's ORDER with its status.
2. Stop: ORDER (pending). When trades of a command reach stop prices, the stops that
   triggered (in submission order) are entered one after another once the command is
   done: each gives ORDER (triggered) then the events of a new order; the trades of
   each are checked for further triggers, which join the back of the queue.
3. Cancel: LEVEL (for a resting order) then ORDER (cancelled).
4. Amend: in place (same price, smaller or equal quantity): LEVEL (when it changed) then
   ORDER; otherwise LEVEL of the old level, then the events of a new order.
5. Cancel all: for each of the account's open orders and pending stops (of the side, if
   given), in order id order, the events of a cancel. It cannot fail half-way: every
   order it takes is live and the account's, so it is all or nothing by construction.

A cancel or amend naming its order by client_order_id is turned into the command by
order id first (`resolve`): that is the command journaled, so replay needs no lookup.
"""

from __future__ import annotations

from matcher import _build

if __name__ == "matcher.engine":
    # The compiled build of this very file takes its place, if one is selected
    # (matcher/_build.py). The rest of this file still runs once, unused: the cost of
    # keeping one plain source.
    _build.take_place(__name__, "engine")

import hashlib
from bisect import insort
from collections import deque
from collections.abc import Callable
from typing import Any

from sortedcontainers import SortedList

from matcher import rules as symbol_rules
from matcher.book import (
    Book,
    Level,
    Order,
    kind_post_only,
    kind_stp,
    kind_tif,
    pack_kind,
    stop_rises,
)
from matcher.candles import Candles
from matcher.protocol import (
    ANONYMOUS,
    BUY,
    CANCELLED,
    CMD_AMEND,
    CMD_CANCEL,
    CMD_CANCEL_ALL,
    CMD_NEW_ORDER,
    CMD_NEW_STOP,
    CMD_RULES,
    EV_LEVEL,
    EV_ORDER,
    EV_TRADE,
    FILLED,
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
    STP_CANCEL_OLDEST,
    TIF_FOK,
    TIF_IOC,
    TRIGGERED,
    Code,
    CommandError,
)
from matcher.quoting import shown

FINISHED_WINDOW = 100_000  # finished orders kept for lookups and client_order_id reuse checks
RECENT_TRADES = 1_000  # trades kept for GET /trades
# 2: snapshots hold the candles. A version-1 snapshot (no candles) is refused unless the
# caller says the journal lacks the history to rebuild them (docs/journal.md, "Candles").
STATE_VERSION = 2
NO_CANDLES_VERSION = 1
# Every attribute of an Engine but its handlers (Engine._rules copies them from a rebuilt
# engine; tests/matcher/test_engine.py checks the list is complete).
STATE_ATTRIBUTES = (
    "maker_rate",
    "taker_rate",
    "book",
    "seq",
    "ts",
    "book_seq",
    "trade_id",
    "last_price",
    "stops",
    "rising_stops",
    "falling_stops",
    "finished",
    "finished_ids",
    "finished_window",
    "client_ids",
    "recent_trades",
    "_low",
    "_high",
    "rules",
    "grid_units",
    "candles",
)

Event = tuple
Trade = tuple  # (EV_TRADE, trade_id, price, quantity, aggressor_side, maker_id, taker_id,
#               maker_fee, taker_fee, timestamp)


class Engine:
    """The matching core of one symbol."""

    def __init__(
        self,
        maker_rate: int = 10_000,
        taker_rate: int = 20_000,
        finished_window: int = FINISHED_WINDOW,
        recent_trades: int = RECENT_TRADES,
    ) -> None:
        self.maker_rate = maker_rate
        self.taker_rate = taker_rate
        self.book = Book()
        self.seq = 0  # last applied command
        self.ts = 0  # its timestamp (µs)
        self.book_seq = 0  # one per command that changed a level
        self.trade_id = 0  # last trade id; ids are contiguous from 1
        self.last_price: int | None = None
        self.stops: dict[int, Order] = {}  # pending stops by order id
        # Stops that trigger when a trade prints at or above / at or below their price.
        self.rising_stops: SortedList = SortedList()  # (stop_price, order_id)
        self.falling_stops: SortedList = SortedList()
        self.finished: dict[int, Order] = {}
        self.finished_ids: deque[int] = deque()
        self.finished_window = finished_window
        self.client_ids: dict[tuple[str, str], int] = {}
        self.recent_trades: deque[Trade] = deque(maxlen=recent_trades)
        # OHLCV of every interval, fed from the trades in `apply` (replayed state).
        self.candles = Candles()
        # Lowest/highest trade price since the last trigger check (None: no trade).
        self._low: int | None = None
        self._high: int | None = None
        # The symbol's journaled rules and what one integer price/quantity is worth
        # (matcher/rules.py); None until the journal's rules record is applied.
        self.rules: symbol_rules.Rules | None = None
        self.grid_units: symbol_rules.GridUnits | None = None
        self._handlers: dict[int, Callable[[tuple], list[Event]]] = {
            CMD_NEW_ORDER: self._new_order,
            CMD_NEW_STOP: self._new_stop,
            CMD_CANCEL: self._cancel,
            CMD_AMEND: self._amend,
            CMD_RULES: self._rules,
            CMD_CANCEL_ALL: self._cancel_all,
        }

    # -- commands ------------------------------------------------------------------

    def apply(self, command: tuple) -> list[Event]:
        """Apply one command and return its events, or raise CommandError (no change)."""
        if command[1] <= self.seq:
            raise CommandError(
                Code.INVALID_REQUEST, f"sequence {command[1]} is not after {self.seq}"
            )
        handler = self._handlers.get(command[0])
        if handler is None:
            raise CommandError(Code.UNKNOWN_OP, f"unknown command type {command[0]!r}")
        trade_id = self.trade_id
        events = handler(command)
        self.ts = command[2]  # the last applied command's time: restarts stay monotonic
        if self.trade_id != trade_id:
            # Candles are fed here, not in the match loop: one int compare per command
            # that printed no trade.
            add_trade = self.candles.add_trade
            for event in events:
                if event[0] == EV_TRADE:
                    add_trade(event[9], event[2], event[3])
        return events

    def _count_book_change(self, events: list[Event]) -> list[Event]:
        """book_seq counts the commands that changed at least one level."""
        for event in events:
            if event[0] == EV_LEVEL:
                self.book_seq += 1
                break
        return events

    def _check_client_id(self, account: str, client_order_id: str | None) -> None:
        if client_order_id is not None and (account, client_order_id) in self.client_ids:
            raise CommandError(
                Code.DUPLICATE_CLIENT_ORDER_ID,
                f"client_order_id {client_order_id!r} is already used by a live or recent order",
            )

    def _new_order(self, command: tuple) -> list[Event]:
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
        if client_order_id is not None:
            self._check_client_id(account, client_order_id)
            self.client_ids[(account, client_order_id)] = seq
        if order_type == IOC:
            tif = TIF_IOC
        elif order_type == FOK:
            tif = TIF_FOK
        elif order_type == MARKET:
            price = None
        self.seq = seq
        order = Order(
            seq,
            account,
            side,
            price,
            quantity,
            NEW,
            pack_kind(order_type, tif, stp, post_only),
            ts,
            client_order_id,
        )
        if tif == GTC and price is not None:
            # Fast path (most orders): a limit order that does not cross just rests.
            # Book.add is inlined: that halves the cost of this path in the pure build.
            book = self.book
            if side == BUY:
                opposite = book.asks.prices
                rests = not opposite or price < opposite[0]
                own = book.bids
            else:
                opposite = book.bids.prices
                rests = not opposite or price > opposite[-1]
                own = book.asks
            if rests:
                level = own.levels.get(price)
                if level is None:
                    level = own.levels[price] = Level(price)
                    insort(own.prices, price)
                else:
                    order.price = level.price  # one shared int per level (memory)
                level.orders.append(order)
                total = level.total = level.total + quantity
                book.orders[seq] = order
                self.book_seq += 1
                return [(EV_LEVEL, side, price, total), (EV_ORDER, seq, NEW, 0, quantity, None)]
        events: list[Event] = []
        self._enter(order, events, ts)
        if self._high is not None:
            self._run_stops(events, ts)
        return self._count_book_change(events)

    def _new_stop(self, command: tuple) -> list[Event]:
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
        # The duplicate check comes first: a retried stop whose original already
        # triggered must answer 409, not would_trigger_immediately (docs/api.md).
        self._check_client_id(account, client_order_id)
        if order_type not in STOP_TYPES:
            raise CommandError(Code.INVALID_FIELD, "order_type must be a stop type")
        rising = stop_rises(side, order_type)
        last = self.last_price
        if last is not None and (last >= stop_price if rising else last <= stop_price):
            raise CommandError(
                Code.WOULD_TRIGGER_IMMEDIATELY,
                "the stop condition already holds for the last trade price",
            )
        if client_order_id is not None:
            self.client_ids[(account, client_order_id)] = seq
        self.seq = seq
        order = Order(
            seq,
            account,
            side,
            price,
            quantity,
            PENDING,
            pack_kind(order_type, GTC, stp, False),
            ts,
            client_order_id,
            stop_price,
        )
        self.stops[seq] = order
        (self.rising_stops if rising else self.falling_stops).add((stop_price, seq))
        return [(EV_ORDER, seq, PENDING, 0, quantity, None)]  # the book did not change

    def _owned(self, order_id: Any, account: str) -> Order:
        """The live (resting or pending) order of `account`, or CommandError."""
        order = self.book.orders.get(order_id)
        if order is None:
            order = self.stops.get(order_id)
        if order is not None and order.account == account:
            return order
        finished = self.finished.get(order_id)
        if finished is not None and finished.account == account:
            raise CommandError(Code.ORDER_NOT_OPEN, f"order {order_id} is already finished")
        raise CommandError(Code.UNKNOWN_ORDER, f"no open order {order_id} for this account")

    def _cancel(self, command: tuple) -> list[Event]:
        _, seq, ts, account, order_id = command
        order = self._owned(order_id, account)
        self.seq = seq
        events: list[Event] = []
        self._withdraw(order, events)
        return self._count_book_change(events)

    def _withdraw(self, order: Order, events: list[Event]) -> None:
        """Cancel one live order or pending stop at the user's request."""
        if order.status == PENDING:
            del self.stops[order.order_id]
            rising = stop_rises(order.side, order.order_type)
            (self.rising_stops if rising else self.falling_stops).remove(
                (order.stop_price, order.order_id)
            )
        else:
            order.status = CANCELLED  # before Book.cancel: it marks the order dead
            level = self.book.cancel(order)
            events.append((EV_LEVEL, order.side, level.price, level.total))
        order.status = CANCELLED
        order.reason = Code.USER_CANCELLED
        self._finish(order)
        events.append(
            (
                EV_ORDER,
                order.order_id,
                CANCELLED,
                order.quantity - order.leaves,
                0,
                Code.USER_CANCELLED,
            )
        )

    def _cancel_all(self, command: tuple) -> list[Event]:
        """Cancel every open order and pending stop of the account (on one side, unless
        side is None), in order id order. Cost: O(live orders of the whole symbol)."""
        _, seq, ts, account, side = command
        self.seq = seq
        events: list[Event] = []
        for order in self.cancellable(account, side):
            self._withdraw(order, events)
        return self._count_book_change(events)  # one book_seq for the whole command

    def _amend(self, command: tuple) -> list[Event]:
        _, seq, ts, account, order_id, quantity, price = command
        order = self._owned(order_id, account)
        if order.status == PENDING:
            raise CommandError(
                Code.STOP_NOT_AMENDABLE, "pending stops are cancelled and resubmitted, not amended"
            )
        filled = order.quantity - order.leaves
        new_quantity = order.quantity if quantity is None else quantity
        new_price = order.price if price is None else price
        if new_quantity <= filled:
            raise CommandError(
                Code.INVALID_QUANTITY, "quantity must exceed the order's filled quantity"
            )
        events: list[Event] = []
        if new_price == order.price and new_quantity <= order.quantity:
            # A decrease (or nothing) at the same price keeps time priority.
            self.seq = seq
            decrease = order.quantity - new_quantity
            if decrease:
                order.quantity = new_quantity
                order.leaves -= decrease
                level = self.book.side(order.side).levels[order.price]  # type: ignore[index]
                level.total -= decrease
                events.append((EV_LEVEL, order.side, level.price, level.total))
            events.append((EV_ORDER, order.order_id, order.status, filled, order.leaves, None))
            return self._count_book_change(events)
        if order.post_only and self._crosses(order.side, new_price):
            raise CommandError(
                Code.POST_ONLY_WOULD_TAKE, "the new price would take liquidity (post_only)"
            )
        self.seq = seq
        level = self.book.remove(order)
        events.append((EV_LEVEL, order.side, level.price, level.total))
        order.price = new_price
        order.quantity = new_quantity
        order.leaves = new_quantity - filled
        self._enter(order, events, ts)
        if self._high is not None:
            self._run_stops(events, ts)
        return self._count_book_change(events)

    def _rules(self, command: tuple) -> list[Event]:
        """Adopt the rules of a rules command: new fee rates apply to later trades; a new
        tick or lot is refused while a live order is off its grid, otherwise the state is
        rescaled exactly (matcher/rules.py). Rare (a start), so export/rebuild is fine."""
        change = symbol_rules.plan(self.rules, self.grid_units, command)
        if change.regrid:
            state = self.export_state()
            symbol_rules.check_grid(state, change)
            if change.price_factor != 1 or change.quantity_factor != 1:
                rebuilt = Engine.from_state(
                    symbol_rules.rescale_state(state, change), self.finished_window
                )
                # from_state builds every attribute; take them all but the handlers,
                # which are bound to `rebuilt`. Named, not vars(): the compiled build's
                # Engine has no __dict__ (engine.pxd).
                for name in STATE_ATTRIBUTES:
                    setattr(self, name, getattr(rebuilt, name))
        self.seq = command[1]
        self.rules, self.grid_units = change.rules, change.units
        self.maker_rate, self.taker_rate = change.maker_rate, change.taker_rate
        return []  # nothing visible changed: the book's decimals are the same

    # -- matching ------------------------------------------------------------------

    def _crosses(self, side: int, price: int | None) -> bool:
        """Would an order at `price` take liquidity right now?"""
        if side == BUY:
            best = self.book.asks.best()
            return best is not None and (price is None or price >= best)
        best = self.book.bids.best()
        return best is not None and (price is None or price <= best)

    def _enter(self, order: Order, events: list[Event], ts: int) -> None:
        """Match a new (or re-queued) order, then rest, cancel or reject its remainder."""
        kind = order.kind
        if kind_post_only(kind) and self._crosses(order.side, order.price):
            order.status = REJECTED
            order.reason = Code.POST_ONLY_WOULD_TAKE
            self._finish(order)
            events.append(
                (
                    EV_ORDER,
                    order.order_id,
                    REJECTED,
                    order.quantity - order.leaves,
                    0,
                    Code.POST_ONLY_WOULD_TAKE,
                )
            )
            return
        tif = kind_tif(kind)
        if tif == TIF_FOK and self._fillable(order) < order.leaves:
            order.status = CANCELLED
            order.reason = Code.FOK_NOT_FILLABLE
            self._finish(order)
            events.append(
                (
                    EV_ORDER,
                    order.order_id,
                    CANCELLED,
                    order.quantity - order.leaves,
                    0,
                    Code.FOK_NOT_FILLABLE,
                )
            )
            return
        self_trade = self._match(order, events, ts)
        leaves = order.leaves
        filled = order.quantity - leaves
        if not leaves:
            order.status = FILLED
            reason = None
        elif self_trade:
            reason = Code.SELF_TRADE_PREVENTED
        elif order.price is None:
            reason = Code.MARKET_REMAINDER
        elif tif != GTC:
            reason = Code.IOC_REMAINDER
        else:
            level = self.book.add(order)
            events.append((EV_LEVEL, order.side, level.price, level.total))
            status = order.status = PARTIALLY_FILLED if filled else NEW
            events.append((EV_ORDER, order.order_id, status, filled, leaves, None))
            return
        if leaves:
            order.status = CANCELLED
            order.reason = reason
        self._finish(order)
        events.append((EV_ORDER, order.order_id, order.status, filled, 0, reason))

    def _match(self, taker: Order, events: list[Event], ts: int) -> bool:
        """Fill `taker` against the opposite side, best level first, FIFO in a level.

        Returns True when self-trade prevention stopped the taker. Runtime: O(fills +
        levels crossed * log(levels)). Hot path: attributes are bound to locals on purpose.
        """
        side = taker.side
        is_buy = side == BUY
        book_side = self.book.asks if is_buy else self.book.bids
        prices = book_side.prices
        if not prices:
            return False
        levels = book_side.levels
        best_index = 0 if is_buy else -1
        opposite = SELL if is_buy else BUY
        limit = taker.price
        leaves = taker.leaves
        taker_id = taker.order_id
        account = taker.account
        stp_account = account if account != ANONYMOUS else None
        stp = kind_stp(taker.kind)
        maker_rate = self.maker_rate
        taker_rate = self.taker_rate
        trade_id = self.trade_id
        index = self.book.orders
        record_trade = self.recent_trades.append
        add_event = events.append
        finish = self._finish
        taker_trades = taker.trades
        low = self._low
        high = self._high
        self_trade = False
        while leaves and prices:
            best = prices[best_index]
            if limit is not None and (best > limit if is_buy else best < limit):
                break
            level = levels[best]
            orders = level.orders
            changed = traded = False
            while orders:
                maker = orders[0]
                if maker.status > PARTIALLY_FILLED:  # cancelled in place: drop it now
                    orders.popleft()
                    level.dead -= 1
                    continue
                if maker.account == stp_account:
                    if stp == STP_CANCEL_OLDEST or stp == STP_CANCEL_BOTH:
                        orders.popleft()
                        level.total -= maker.leaves
                        del index[maker.order_id]
                        maker.status = CANCELLED
                        maker.reason = Code.SELF_TRADE_PREVENTED
                        finish(maker)
                        add_event(
                            (
                                EV_ORDER,
                                maker.order_id,
                                CANCELLED,
                                maker.quantity - maker.leaves,
                                0,
                                Code.SELF_TRADE_PREVENTED,
                            )
                        )
                        changed = True
                    if stp != STP_CANCEL_OLDEST:
                        self_trade = True
                        break
                    continue
                maker_leaves = maker.leaves
                fill = leaves if leaves < maker_leaves else maker_leaves
                trade_id += 1
                notional = best * fill
                trade = (
                    EV_TRADE,
                    trade_id,
                    best,
                    fill,
                    side,
                    maker.order_id,
                    taker_id,
                    notional * maker_rate,
                    notional * taker_rate,
                    ts,
                )
                add_event(trade)
                record_trade(trade)
                if maker.trades is None:
                    maker.trades = [trade]
                else:
                    maker.trades.append(trade)
                if taker_trades is None:
                    taker_trades = taker.trades = [trade]
                else:
                    taker_trades.append(trade)
                leaves -= fill
                maker_leaves -= fill
                maker.leaves = maker_leaves
                level.total -= fill
                changed = traded = True
                if maker_leaves:
                    maker.status = PARTIALLY_FILLED
                    add_event(
                        (
                            EV_ORDER,
                            maker.order_id,
                            PARTIALLY_FILLED,
                            maker.quantity - maker_leaves,
                            maker_leaves,
                            None,
                        )
                    )
                    break  # the taker is done
                orders.popleft()
                del index[maker.order_id]
                maker.status = FILLED
                finish(maker)
                add_event((EV_ORDER, maker.order_id, FILLED, maker.quantity, 0, None))
                if not leaves:
                    break
            if traded:
                if low is None or best < low:
                    low = best
                if high is None or best > high:
                    high = best
                self.last_price = best
            if changed:
                add_event((EV_LEVEL, opposite, best, level.total))
                if not level.total:
                    del levels[best]
                    del prices[best_index]  # the best level is at one end: no bisect
            if self_trade:
                break
        taker.leaves = leaves
        self.trade_id = trade_id
        self._low = low
        self._high = high
        return self_trade

    def _fillable(self, taker: Order) -> int:
        """How much `taker` would really fill now, STP applied, up to its leaves (FOK)."""
        is_buy = taker.side == BUY
        book_side = self.book.asks if is_buy else self.book.bids
        limit = taker.price
        need = taker.leaves
        stp_account = taker.account if taker.account != ANONYMOUS else None
        stp = kind_stp(taker.kind)
        total = 0
        for price in book_side.prices if is_buy else reversed(book_side.prices):
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            level = book_side.levels[price]
            if stp_account is None:
                total += level.total
            else:
                for maker in level.live_orders():
                    if maker.account == stp_account:
                        if stp == STP_CANCEL_OLDEST:
                            continue
                        return total
                    total += maker.leaves
                    if total >= need:
                        return total
            if total >= need:
                return total
        return total

    def _finish(self, order: Order) -> None:
        """Remember a finished order for lookups; forget the oldest beyond the window."""
        finished_ids = self.finished_ids
        finished_ids.append(order.order_id)
        self.finished[order.order_id] = order
        if len(finished_ids) > self.finished_window:
            old = self.finished.pop(finished_ids.popleft())
            if old.client_order_id is not None:
                key = (old.account, old.client_order_id)
                if self.client_ids.get(key) == old.order_id:
                    del self.client_ids[key]

    # -- stops ---------------------------------------------------------------------

    def _triggered(self) -> list[Order]:
        """Pop the stops reached by trades since the last check, in submission order."""
        low, high = self._low, self._high
        self._low = self._high = None
        fired: list[int] = []
        rising = self.rising_stops
        while rising and high is not None and rising[0][0] <= high:
            fired.append(rising.pop(0)[1])
        falling = self.falling_stops
        while falling and low is not None and falling[-1][0] >= low:
            fired.append(falling.pop()[1])
        fired.sort()
        stops = self.stops
        return [stops.pop(order_id) for order_id in fired]

    def _run_stops(self, events: list[Event], ts: int) -> None:
        if not self.stops:
            self._low = self._high = None
            return
        queue = deque(self._triggered())
        while queue:
            order = queue.popleft()
            order.status = TRIGGERED
            events.append((EV_ORDER, order.order_id, TRIGGERED, 0, order.leaves, None))
            # stop_loss becomes a market order, stop_limit a limit order; take_profit a
            # limit order at its price, or market without one. It never rests as post-only.
            if order.order_type == STOP_LOSS:
                order.price = None
            order.status = NEW
            self._enter(order, events, ts)
            if self._high is not None:
                queue.extend(self._triggered())

    # -- queries -------------------------------------------------------------------

    def get_order(self, order_id: int) -> Order | None:
        """A resting, pending or recently finished order. Cost: O(1)."""
        return (
            self.book.orders.get(order_id)
            or self.stops.get(order_id)
            or self.finished.get(order_id)
        )

    def resolve(self, command: tuple) -> tuple:
        """A cancel or amend naming its order by client_order_id (a str in the order id's
        place) -> the same command by order id; any other command as it is. The account's
        own ids only: another account's, or an unknown one, is CommandError unknown_order.
        Cost: O(1)."""
        reference = command[4]
        if reference.__class__ is not str:
            return command
        order_id = self.client_ids.get((command[3], reference))
        if order_id is None:
            raise CommandError(
                Code.UNKNOWN_ORDER,
                f"no order with client_order_id {shown(reference)} for this account",
            )
        return (*command[:4], order_id, *command[5:])

    def client_order(self, account: str, client_order_id: str) -> Order | None:
        """The account's live or recently finished order with this client_order_id. O(1)."""
        order_id = self.client_ids.get((account, client_order_id))
        return None if order_id is None else self.get_order(order_id)

    def cancellable(self, account: str, side: int | None = None) -> list[Order]:
        """What a cancel_all of `account` (and `side`) would cancel, in order id order.
        Cost: O(live orders of the symbol): there is no index by account."""
        found = [
            o
            for o in self.book.orders.values()
            if o.account == account and (side is None or o.side == side)
        ]
        found.extend(
            o
            for o in self.stops.values()
            if o.account == account and (side is None or o.side == side)
        )
        found.sort(key=lambda o: o.order_id)
        return found

    def open_orders(self, account: str) -> list[Order]:
        """The account's resting and pending orders, oldest first. Cost: O(all live orders)."""
        live = [o for o in self.book.orders.values() if o.account == account]
        live.extend(o for o in self.stops.values() if o.account == account)
        live.sort(key=lambda o: o.order_id)
        return live

    def recent_orders(self, account: str, limit: int) -> list[Order]:
        """The account's open orders, then its most recently finished ones."""
        found = self.open_orders(account)
        for order_id in reversed(self.finished_ids):
            if len(found) >= limit:
                break
            order = self.finished[order_id]
            if order.account == account:
                found.append(order)
        return found[:limit]

    def bbo(self) -> tuple[int | None, int, int | None, int]:
        """(bid price, bid total, ask price, ask total); None/0 for an empty side. O(1).

        Called after every book-changing command: the price lists are read directly.
        """
        bids, asks = self.book.bids, self.book.asks
        bid_prices, ask_prices = bids.prices, asks.prices
        if bid_prices:
            bid = bid_prices[-1]
            bid_total = bids.levels[bid].total
        else:
            bid, bid_total = None, 0
        if ask_prices:
            ask = ask_prices[0]
            ask_total = asks.levels[ask].total
        else:
            ask, ask_total = None, 0
        return bid, bid_total, ask, ask_total

    # -- state ---------------------------------------------------------------------

    def check(self) -> None:
        """Assert every invariant of the engine's state. Cost: O(state)."""
        self.book.check()
        assert len(self.rising_stops) + len(self.falling_stops) == len(self.stops)
        for stop_price, order_id in list(self.rising_stops) + list(self.falling_stops):
            order = self.stops[order_id]
            assert order.status == PENDING and order.stop_price == stop_price
        assert len(self.finished_ids) == len(self.finished) <= self.finished_window
        for order_id in self.finished_ids:
            assert self.finished[order_id].status in (FILLED, CANCELLED, REJECTED)
        for (account, client_order_id), order_id in self.client_ids.items():
            owner = self.get_order(order_id)
            assert owner is not None and owner.account == account
            assert owner.client_order_id == client_order_id
        assert self._low is None and self._high is None, "trigger range left over"
        trade_ids = [trade[1] for trade in self.recent_trades]
        assert trade_ids == list(range(self.trade_id - len(trade_ids) + 1, self.trade_id + 1))

    def export_state(self) -> dict[str, Any]:
        """Everything needed to rebuild this engine exactly, as plain values (snapshots)."""
        resting: list[tuple] = []
        for book_side in (self.book.bids, self.book.asks):
            for price in book_side.prices:
                resting.extend(o.to_tuple() for o in book_side.levels[price].live_orders())
        trades: dict[int, Trade] = {trade[1]: trade for trade in self.recent_trades}
        orders = list(self.book.orders.values()) + list(self.stops.values())
        orders += list(self.finished.values())
        for order in orders:
            for trade in order.trades or ():
                trades[trade[1]] = trade
        return {
            "version": STATE_VERSION,
            "seq": self.seq,
            "ts": self.ts,
            "book_seq": self.book_seq,
            "trade_id": self.trade_id,
            "last_price": self.last_price,
            "maker_rate": self.maker_rate,
            "taker_rate": self.taker_rate,
            "rules": self.rules,
            "grid_units": self.grid_units,
            # Fees can exceed 64 bits for absurd sizes: kept as text in snapshots.
            "trades": [
                (*trade[:7], str(trade[7]), str(trade[8]), trade[9])
                for _, trade in sorted(trades.items())
            ],
            "recent_trade_ids": [trade[1] for trade in self.recent_trades],
            "resting": resting,
            "stops": [self.stops[order_id].to_tuple() for order_id in sorted(self.stops)],
            "finished": [self.finished[order_id].to_tuple() for order_id in self.finished_ids],
            "candles": self.candles.export_state(),
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        finished_window: int = FINISHED_WINDOW,
        without_candles: bool = False,
    ) -> Engine:
        """Rebuild an engine from `export_state()` output.

        A version-1 state (written before candles were state) raises ValueError, so that
        recovery rebuilds the candles from an older snapshot or the whole journal; with
        `without_candles` (the journal's early segments are gone) it is taken, its
        candles starting empty."""
        version = state["version"]
        if version != STATE_VERSION and not (without_candles and version == NO_CANDLES_VERSION):
            raise ValueError(
                f"snapshot state version {version} is not {STATE_VERSION}"
                + (" (it has no candles)" if version == NO_CANDLES_VERSION else "")
            )
        engine = cls(state["maker_rate"], state["taker_rate"], finished_window)
        engine.seq = state["seq"]
        engine.ts = state["ts"]
        engine.book_seq = state["book_seq"]
        engine.trade_id = state["trade_id"]
        engine.last_price = state["last_price"]
        # Absent from a snapshot of the old code: the rules record then comes with the
        # start that adopts the configured rules (docs/journal.md).
        rules, grid_units = state.get("rules"), state.get("grid_units")
        engine.rules = None if rules is None else tuple(rules)
        engine.grid_units = None if grid_units is None else (grid_units[0], grid_units[1])
        trades = {row[1]: (*row[:7], int(row[7]), int(row[8]), row[9]) for row in state["trades"]}
        engine.recent_trades.extend(trades[trade_id] for trade_id in state["recent_trade_ids"])
        if "candles" in state:
            engine.candles = Candles.from_state(state["candles"])

        def rebuild(row: list | tuple) -> Order:
            (
                order_id,
                account,
                side,
                price,
                quantity,
                leaves,
                status,
                kind,
                timestamp,
                client_order_id,
                stop_price,
                trade_ids,
                reason,
            ) = row
            order = Order(
                order_id,
                account,
                side,
                price,
                quantity,
                status,
                kind,
                timestamp,
                client_order_id,
                stop_price,
            )
            order.leaves = leaves
            order.reason = reason
            if trade_ids:
                order.trades = [trades[trade_id] for trade_id in trade_ids]
            if client_order_id is not None:
                engine.client_ids[(account, client_order_id)] = order_id
            return order

        for row in state["resting"]:
            engine.book.add(rebuild(row))
        for row in state["stops"]:
            order = rebuild(row)
            engine.stops[order.order_id] = order
            rising = stop_rises(order.side, order.order_type)
            (engine.rising_stops if rising else engine.falling_stops).add(
                (order.stop_price, order.order_id)
            )
        for row in state["finished"]:
            order = rebuild(row)
            engine.finished[order.order_id] = order
            engine.finished_ids.append(order.order_id)
        return engine

    def state_hash(self) -> str:
        """A stable digest of the whole state (hex). Equal states give equal hashes."""
        return hashlib.blake2b(repr(self.export_state()).encode(), digest_size=16).hexdigest()
