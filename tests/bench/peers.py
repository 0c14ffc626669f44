"""Matchwire's core next to other Python order-book engines from PyPI, on the same flow.

    python -m tests.bench.peers [--ops 200000] [--runs 5] [--seed 42] [--quick] [--only NAME ...]

Every engine replays the seeded core flow of `tests.bench.core` (`generate_flow`: passive
and crossing GTC limit orders, market orders, cancels of live orders, one account).
Each peer sits behind a small adapter: `prepare` translates the command tuples into the
peer's own arguments once, before any clock starts (sides, prices, its order ids);
`replay` runs them on a fresh book of the peer and keeps the fills it reports, in its
own terms; `fills` turns those into `(maker_order_id, taker_order_id, price, quantity)`
with matchwire's order ids, after the clock stopped. What is timed is what is checked.

Before a peer is timed, its fills are compared with matchwire's, in order. A peer whose
fills differ is reported as "fills differ" (with the first difference, and whether at
least the trade count and the quantity filled per taker order agree), never as an equal.

Timing: the replay of the fill check warms each engine up; then `--runs` rounds in
which every engine replays the flow once, interleaved so that load from elsewhere on the
machine falls on all of them alike; the median per engine, under the matcher service's
GC settings (as `tests.bench.core`). Matchwire replays with `tests.bench.core.run_engine`.
The clock is this process's CPU time: every engine runs in this one thread, without
I/O, so on an idle machine it equals wall time, and on a shared one it leaves out the
time other processes hold the CPU (`--wall` for wall time). "vs core" is the peer's
speed over matchwire's (above 1: the peer is faster), taken in each round and the median
of those; a peer too slow for the whole flow (`max_ops`) replays a prefix, next to
matchwire on that prefix.

Peers are optional (`pip install '.[bench]'`): one that is not installed, or does not
import, gets a row saying so. docs/peers.md says what each peer is and how its adapter
maps the flow.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import math
import statistics
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from matcher.engine import Engine
from matcher.protocol import BUY, CMD_NEW_ORDER, EV_TRADE, CommandError
from matcher.service import GC_THRESHOLD
from tests.bench.core import ACCOUNT, generate_flow, run_engine

Fill = tuple[int, int, int, int]  # (maker_order_id, taker_order_id, price, quantity)
SYMBOL = "X"  # for the peers that keep several books and want a symbol with each order


def matchwire_fills(commands: list[tuple]) -> list[Fill]:
    """Matchwire's fills for the flow: the reference every peer is checked against."""
    engine = Engine()
    fills: list[Fill] = []
    for command in commands:
        try:
            events = engine.apply(command)
        except CommandError:
            continue
        fills.extend(
            (event[5], event[6], event[2], event[3]) for event in events if event[0] == EV_TRADE
        )
    return fills


def compare_fills(expected: list[Fill], got: list[Fill]) -> str | None:
    """None when `got` is `expected`, fill for fill; else what differs, first place first."""
    if got == expected:
        return None
    at = next(
        (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    first = (
        f"fill #{at + 1}: matchwire {expected[at] if at < len(expected) else 'none'}, "
        f"peer {got[at] if at < len(got) else 'none'}"
    )
    per_taker_expected: Counter[int] = Counter()
    per_taker_got: Counter[int] = Counter()
    for _, taker, _, quantity in expected:
        per_taker_expected[taker] += quantity
    for _, taker, _, quantity in got:
        per_taker_got[taker] += quantity
    coarse = (
        "same trade count and quantity per taker"
        if len(got) == len(expected) and per_taker_got == per_taker_expected
        else f"{len(got):,} fills vs {len(expected):,}"
    )
    return f"{first}; {coarse}"


# -- adapters ----------------------------------------------------------------------


class Adapter(ABC):
    """One peer engine behind the flow. Subclasses set the names and the three steps."""

    name = ""  # as the table shows it
    distribution = ""  # the pip name
    requirement = ""  # what to pip install, when more than `distribution`
    module = ""  # the module `lib` is
    max_ops: int | None = None  # a peer too slow for the whole flow replays this prefix

    def __init__(self, lib: Any) -> None:
        self.lib = lib

    @abstractmethod
    def prepare(self, commands: list[tuple]) -> list[tuple]:
        """The flow in the peer's own arguments, one op per command (untimed)."""

    @abstractmethod
    def replay(self, ops: list[tuple]) -> Any:
        """Apply `ops` to a fresh book of the peer; return what it reported (timed)."""

    @abstractmethod
    def fills(self, ops: list[tuple], raw: Any) -> list[Fill]:
        """The fills in `raw`, with matchwire's order ids (untimed)."""


class LightMatchingEngineAdapter(Adapter):
    """lightmatchingengine: pure Python, a dict of price -> list per side.

    `add_order(instmt, price, qty, side)` returns the order and its trades: per level one
    trade for the aggressor with the level's total, then one per maker order hit (the
    fills compared here). Its ids count up from 1 per engine, so `prepare` knows them:
    an op is (new, the engine's order id, price, quantity, side, matchwire's order id).
    A market order is price 0, but its remainder would then rest at price 0 (and a sell
    at 0 would be the best ask): the adapter cancels that remainder, as IOC.
    """

    name = "lightmatchingengine"
    distribution = "lightmatchingengine"
    module = "lightmatchingengine.lightmatchingengine"

    def prepare(self, commands: list[tuple]) -> list[tuple]:
        side = self.lib.Side
        peer_ids: dict[int, int] = {}
        ops: list[tuple] = []
        for command in commands:
            if command[0] == CMD_NEW_ORDER:
                peer_id = peer_ids[command[1]] = len(peer_ids) + 1
                price = command[7]
                ops.append(
                    (
                        True,
                        peer_id,
                        0 if price is None else price,
                        command[8],
                        side.BUY if command[4] == BUY else side.SELL,
                        command[1],
                    )
                )
            else:
                ops.append((False, peer_ids.get(command[4], 0), 0, 0, None, command[4]))
        return ops

    def replay(self, ops: list[tuple]) -> Any:
        engine = self.lib.LightMatchingEngine()
        add, cancel = engine.add_order, engine.cancel_order
        reported: list[tuple[int, list[Any]]] = []
        for new, order_id, price, quantity, side, _ in ops:
            if not new:
                try:
                    cancel(order_id, SYMBOL)
                except AssertionError:
                    pass  # its refusal of an order that is gone (matchwire refuses it too)
                continue
            order, trades = add(SYMBOL, price, quantity, side)
            if trades:
                reported.append((order_id, trades))
            if not price and order.leaves_qty:
                cancel(order_id, SYMBOL)
        return reported

    def fills(self, ops: list[tuple], raw: Any) -> list[Fill]:
        seq_of = {op[1]: op[5] for op in ops if op[0]}
        fills: list[Fill] = []
        for taker, trades in raw:
            aggressor = trades[0].trade_side
            fills.extend(
                (seq_of[trade.order_id], seq_of[taker], trade.trade_price, trade.trade_qty)
                for trade in trades
                if trade.trade_side != aggressor
            )
        return fills


class PyOrderBookAdapter(Adapter):
    """pyorderbook: pure Python, a heap of price levels per side, Decimal prices, uuid4 ids.

    `Book.match(Order)` returns a TradeBlotter of (incoming id, standing id, quantity,
    price); `Book.cancel(Order)` takes the order object, and raises for one that is not
    live, so the adapter asks `get_order` first. No market orders: the adapter sends a
    limit at +/-infinity (Decimal('Infinity')) and cancels its remainder, as IOC.
    """

    name = "pyorderbook"
    distribution = "pyorderbook"
    module = "pyorderbook"

    def prepare(self, commands: list[tuple]) -> list[tuple]:
        bid, ask = self.lib.Side.BID, self.lib.Side.ASK
        ops: list[tuple] = []
        for command in commands:
            if command[0] == CMD_NEW_ORDER:
                side = command[4]
                price = command[7]
                market = price is None
                if market:
                    price = math.inf if side == BUY else -math.inf
                ops.append(
                    (True, command[1], bid if side == BUY else ask, price, command[8], market)
                )
            else:
                ops.append((False, command[4], None, 0, 0, False))
        return ops

    def replay(self, ops: list[tuple]) -> Any:
        order_of = self.lib.Order
        book = self.lib.Book()
        match, cancel, live = book.match, book.cancel, book.get_order
        orders: dict[int, Any] = {}
        blotters: list[Any] = []
        for new, seq, side, price, quantity, market in ops:
            if new:
                order = orders[seq] = order_of(side, SYMBOL, price, quantity)
                blotter = match(order)
                if blotter.trades:
                    blotters.append(blotter)
                if market and order.quantity:
                    cancel(order)
            else:
                order = orders.get(seq)
                if order is not None and live(order.id) is not None:
                    cancel(order)
        return blotters, orders

    def fills(self, ops: list[tuple], raw: Any) -> list[Fill]:
        blotters, orders = raw
        seq_of = {order.id: seq for seq, order in orders.items()}
        return [
            (
                seq_of[trade.standing_order_id],
                seq_of[trade.incoming_order_id],
                int(trade.fill_price),
                trade.fill_quantity,
            )
            for blotter in blotters
            for trade in blotter.trades
        ]


class CythonOrderBookAdapter(Adapter):
    """cython-orderbook: a Cython module, SortedDict of OrderedDict levels, any price type.

    `add_limit_order(Order)` and `add_market_order(Order)` (market remainders are
    dropped, as IOC); fills go to `book.trade_log` (price, quantity, aggressor id,
    filler id); order ids are strings from one counter global to the module, so the
    adapter keeps each order's id to cancel it with `cancel_order(id)`.
    """

    name = "cython-orderbook"
    distribution = "cython-orderbook"
    module = "cython_orderbook"

    def prepare(self, commands: list[tuple]) -> list[tuple]:
        bid, ask = self.lib.OrderSide.BID, self.lib.OrderSide.ASK
        ops: list[tuple] = []
        for command in commands:
            if command[0] == CMD_NEW_ORDER:
                ops.append(
                    (True, command[1], bid if command[4] == BUY else ask, command[7], command[8])
                )
            else:
                ops.append((False, command[4], None, None, 0))
        return ops

    def replay(self, ops: list[tuple]) -> Any:
        order_of = self.lib.Order
        book = self.lib.OrderBook()
        add_limit, add_market, cancel = (
            book.add_limit_order,
            book.add_market_order,
            book.cancel_order,
        )
        ids: dict[int, str] = {}
        for new, seq, side, price, quantity in ops:
            if new:
                order = order_of(side, quantity, price)
                ids[seq] = order.order_id
                if price is None:
                    add_market(order)
                else:
                    add_limit(order)
            else:
                cancel(ids.get(seq, ""))
        return book.trade_log, ids

    def fills(self, ops: list[tuple], raw: Any) -> list[Fill]:
        trade_log, ids = raw
        seq_of = {order_id: seq for seq, order_id in ids.items()}
        return [
            (
                seq_of[trade.filler_id],
                seq_of[trade.aggressor_id],
                trade.price,
                trade.quantity_filled,
            )
            for trade in trade_log
        ]


class LiquibookAdapter(Adapter):
    """liquibook: the C++ engine through its SWIG binding, fills by callback.

    `DepthOrderBook.add(SimpleOrder(is_buy, price, qty), conditions)` and
    `cancel(order)`; fills arrive at an `OrderListener.on_fill(inbound, matched, qty,
    price)` written in Python (a director: each callback crosses into Python, as do
    on_accept and on_cancel, which do nothing here). A market order is price 0 with the
    immediate-or-cancel condition: without it the remainder would rest on the book.
    A cancel takes the order object and SimpleOrder ids come from one C++ counter, so
    the adapter keeps each order object by matchwire's id.
    """

    name = "liquibook"
    distribution = "liquibook"
    module = "liquibook"

    def prepare(self, commands: list[tuple]) -> list[tuple]:
        ioc, plain = self.lib.oc_immediate_or_cancel, self.lib.oc_no_conditions
        ops: list[tuple] = []
        for command in commands:
            if command[0] == CMD_NEW_ORDER:
                price = command[7]
                ops.append(
                    (
                        True,
                        command[1],
                        command[4] == BUY,
                        price or 0,
                        command[8],
                        ioc if price is None else plain,
                    )
                )
            else:
                ops.append((False, command[4], False, 0, 0, plain))
        return ops

    def replay(self, ops: list[tuple]) -> Any:
        lib = self.lib
        order_of = lib.SimpleOrder
        book = lib.DepthOrderBook()
        listener = _liquibook_listener(lib)
        book.set_order_listener(listener)
        add, cancel = book.add, book.cancel
        orders: dict[int, Any] = {}
        for new, seq, is_buy, price, quantity, conditions in ops:
            if new:
                order = orders[seq] = order_of(is_buy, price, quantity)
                add(order, conditions)
            else:
                order = orders.get(seq)
                if order is not None:
                    cancel(order)
        book.set_order_listener(None)
        return listener.reported, listener.rejected, orders

    def fills(self, ops: list[tuple], raw: Any) -> list[Fill]:
        reported, rejected, orders = raw
        if rejected:
            raise RuntimeError(f"liquibook rejected {len(rejected)} orders: {rejected[:3]}")
        seq_of = {order.order_id_: seq for seq, order in orders.items()}
        return [
            (seq_of[matched], seq_of[inbound], price, quantity)
            for inbound, matched, quantity, price in reported
        ]


def _liquibook_listener(lib: Any) -> Any:
    """An OrderListener that keeps (inbound id, matched id, quantity, price) per fill."""

    class Listener(lib.OrderListener):
        def __init__(self) -> None:
            super().__init__()
            self.reported: list[tuple[int, int, int, int]] = []
            self.rejected: list[tuple[int, str]] = []

        def on_fill(self, order: Any, matched_order: Any, fill_qty: int, fill_price: int) -> None:
            self.reported.append((order.order_id_, matched_order.order_id_, fill_qty, fill_price))

        def on_accept(self, order: Any) -> None:
            pass

        def on_reject(self, order: Any, reason: str) -> None:
            # Kept for `fills` to raise: an exception cannot cross back through C++.
            self.rejected.append((order.order_id_, reason))

        def on_cancel(self, order: Any) -> None:
            pass

        def on_cancel_reject(self, order: Any, reason: str) -> None:
            pass  # an order that is gone: matchwire refuses that cancel too

        def on_replace(self, order: Any, size_delta: int, new_price: int) -> None:
            pass

        def on_replace_reject(self, order: Any, reason: str) -> None:
            pass

    return Listener()


class OrderMatchingAdapter(Adapter):
    """order-matching: pure Python, batch-oriented: `place(Orders)` then `match(timestamp)`.

    Each new order is placed and matched at once, with the command's timestamp (its time
    priority) and `str(seq)` as its id; `match` returns ExecutedTrades (book order id,
    incoming order id, price, size as float). `MarketOrder` exists, but its remainder
    rests (at +inf or 0): the adapter cancels it, as IOC. `cancel_order(id)` raises for
    an order that is not live. Its loguru logger (debug lines on stderr for every order)
    is disabled while it runs, as a library's user would.
    """

    name = "order-matching"
    distribution = "order-matching"
    requirement = "order-matching[polars]"  # its order book imports polars and pandera
    module = "order_matching.matching_engine"
    # Every order costs O(resting orders): `place` and `match` look its id up by scanning
    # the whole book, and a level re-sorts on each insert. About 1.3 ms an order at 10,000
    # ops (1,500 resting), 2.5 ms at 20,000: the whole flow would take most of an hour.
    max_ops = 10_000

    def prepare(self, commands: list[tuple]) -> list[tuple]:
        from order_matching.enums import Side

        epoch = datetime(1970, 1, 1)
        ops: list[tuple] = []
        for command in commands:
            when = epoch + timedelta(microseconds=command[2])
            if command[0] == CMD_NEW_ORDER:
                ops.append(
                    (
                        True,
                        str(command[1]),
                        Side.BUY if command[4] == BUY else Side.SELL,
                        command[7],
                        command[8],
                        when,
                    )
                )
            else:
                ops.append((False, str(command[4]), None, None, 0, when))
        return ops

    def replay(self, ops: list[tuple]) -> Any:
        from loguru import logger
        from order_matching.order import LimitOrder, MarketOrder
        from order_matching.orders import Orders

        engine = self.lib.MatchingEngine(seed=42)
        place, match, cancel = engine.place, engine.match, engine.cancel_order
        executed: list[Any] = []
        logger.disable("order_matching")
        try:
            for new, order_id, side, price, quantity, when in ops:
                if not new:
                    try:
                        cancel(order_id)
                    except ValueError:
                        pass  # not live: matchwire refuses that cancel too
                    continue
                if price is None:
                    order = MarketOrder(
                        side=side,
                        size=quantity,
                        timestamp=when,
                        order_id=order_id,
                        trader_id=ACCOUNT,
                    )
                else:
                    order = LimitOrder(
                        side=side,
                        price=price,
                        size=quantity,
                        timestamp=when,
                        order_id=order_id,
                        trader_id=ACCOUNT,
                    )
                place(Orders([order]))
                executed.append(match(timestamp=when))
                if price is None and order.size:
                    cancel(order_id)
        finally:
            logger.enable("order_matching")
        return executed

    def fills(self, ops: list[tuple], raw: Any) -> list[Fill]:
        return [
            (
                int(trade.book_order_id),
                int(trade.incoming_order_id),
                int(trade.price),
                int(trade.size),
            )
            for trades in raw
            for trade in trades.trades
        ]


@dataclass(frozen=True)
class Peer:
    """A peer engine from PyPI: where it comes from, and its adapter (None: cannot run)."""

    name: str
    distribution: str
    module: str
    adapter: type[Adapter] | None
    why_no_adapter: str = ""
    requirement: str = ""  # what to pip install, when more than `distribution`

    @property
    def install(self) -> str:
        return f"pip install '{self.requirement or self.distribution}'"


def _peer(adapter: type[Adapter]) -> Peer:
    return Peer(
        adapter.name, adapter.distribution, adapter.module, adapter, requirement=adapter.requirement
    )


PEERS = (
    _peer(LiquibookAdapter),
    _peer(CythonOrderBookAdapter),
    _peer(PyOrderBookAdapter),
    _peer(LightMatchingEngineAdapter),
    _peer(OrderMatchingAdapter),
    Peer(
        "OrderBook",
        "OrderBook",
        "orderbook.orderbook",
        None,
        "Python 2 source (print statement, cStringIO): does not import on Python 3",
    ),
)


# -- running -----------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. `replay` applies the flow once (what is timed)."""

    engine: str
    version: str
    status: str  # reference | same fills | fills differ | not installed | cannot run
    detail: str = ""
    ops: int = 0
    replay: Callable[[], object] | None = None
    baseline: Row | None = None  # matchwire's core on the same ops (None: this is it)
    seconds: list[float] = field(default_factory=list)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def core_row(commands: list[tuple], fills: list[Fill], label: str = "matchwire core") -> Row:
    """Matchwire's row on `commands`, whose `fills` it made (that replay warmed it up)."""
    return Row(
        label,
        _version("matchwire") or "tree",
        "reference",
        f"{len(fills):,} fills",
        len(commands),
        lambda: run_engine(commands),
    )


def load_peer(peer: Peer, commands: list[tuple], reference: list[Fill]) -> Row:
    """Import the peer, replay `commands` once and check its fills: a row ready to time.

    That replay is also the peer's warm-up. A peer that is not installed, does not
    import or fails on the flow gets a row that says so, and no replay.
    """
    version = _version(peer.distribution)
    if version is None:
        return Row(peer.name, "-", "not installed", peer.install)
    try:
        lib = importlib.import_module(peer.module)
    except Exception as error:  # a broken peer is a row of the table, not a crash
        return Row(
            peer.name,
            version,
            "cannot run",
            peer.why_no_adapter
            or f"import failed: {type(error).__name__}: {error} ({peer.install})",
        )
    if peer.adapter is None:
        return Row(peer.name, version, "cannot run", peer.why_no_adapter)
    adapter = peer.adapter(lib)
    try:
        ops = adapter.prepare(commands)
        fills = adapter.fills(ops, adapter.replay(ops))
    except Exception as error:  # same: the table says which peer failed, and how
        return Row(
            peer.name, version, "cannot run", f"replay failed: {type(error).__name__}: {error}"
        )
    difference = compare_fills(reference, fills)
    if difference is None:
        row = Row(peer.name, version, "same fills", f"{len(fills):,} fills", len(commands))
    else:
        row = Row(peer.name, version, "fills differ", difference, len(commands))

    row.replay = lambda: adapter.replay(ops)
    return row


def build_rows(commands: list[tuple], peers: Sequence[Peer]) -> list[Row]:
    """Matchwire's row, then one per peer; a peer with `max_ops` below the flow's length
    replays that prefix, next to a matchwire row on the same prefix."""
    reference = matchwire_fills(commands)
    core = core_row(commands, reference)
    references = {len(commands): reference}
    baselines = {len(commands): core}
    rows = [core]
    for peer in peers:
        limit = len(commands)
        if peer.adapter is not None and peer.adapter.max_ops is not None:
            limit = min(limit, peer.adapter.max_ops)
        prefix = commands[:limit]
        if limit not in references:
            references[limit] = matchwire_fills(prefix)
        row = load_peer(peer, prefix, references[limit])
        if row.replay is not None:
            if limit not in baselines:
                baselines[limit] = core_row(
                    prefix, references[limit], f"matchwire core ({limit:,} ops)"
                )
                rows.insert(1, baselines[limit])
            row.baseline = baselines[limit]
            if limit < len(commands):
                row.detail = f"first {limit:,} ops; {row.detail}"
        rows.append(row)
    return rows


def time_rows(rows: list[Row], runs: int, clock: Callable[[], float] = time.process_time) -> None:
    """`runs` rounds in which every row with a replay runs it once, in turn, by `clock`."""
    replays = [(row, row.replay) for row in rows if row.replay is not None]
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, 50, 100)  # the matcher service's, as in tests.bench.core
    try:
        for _ in range(runs):
            for row, replay in replays:
                gc.collect()
                started = clock()
                replay()
                row.seconds.append(clock() - started)
    finally:
        gc.set_threshold(*thresholds)


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def report(
    rows: list[Row], seed: int, runs: int, clock: str = "CPU time"
) -> dict[str, dict[str, Any]]:
    """Print the table; return its figures by engine (ops_per_s None: not timed)."""
    print(
        f"core flow of tests.bench.core: {rows[0].ops:,} ops, seed {seed}, "
        f"median of {runs} interleaved runs, {clock}"
    )
    print(
        f"  {'engine':<28} {'version':<10} {'ops/s':>10} {'µs/op':>9} {'best':>7} "
        f"{'vs core':>8}  fills"
    )
    figures: dict[str, dict[str, Any]] = {}
    for row in rows:
        figure: dict[str, Any] = {
            "version": row.version,
            "status": row.status,
            "detail": row.detail,
            "ops": row.ops,
            "ops_per_s": None,
            "us_per_op": None,
            "min_us_per_op": None,
            "vs_core": None,
        }
        speed = f"{'-':>10} {'-':>9} {'-':>7} {'-':>8}"
        if row.seconds:
            median = statistics.median(row.seconds)
            # Per round, then the median: a round's engines ran close together in time,
            # so a burst of load elsewhere moves both sides of its ratio.
            baseline = (row.baseline or row).seconds
            vs_core = statistics.median(
                core / peer for core, peer in zip(baseline, row.seconds, strict=True)
            )
            figure.update(
                ops_per_s=row.ops / median,
                us_per_op=median / row.ops * 1e6,
                min_us_per_op=min(row.seconds) / row.ops * 1e6,
                vs_core=vs_core,
            )
            speed = (
                f"{figure['ops_per_s']:>10,.0f} {figure['us_per_op']:>9.2f} "
                f"{figure['min_us_per_op']:>7.2f} {_ratio(figure['vs_core']):>8}"
            )
        figures[row.engine] = figure
        print(f"  {row.engine:<28} {row.version:<10} {speed}  {row.status}: {row.detail}")
    return figures


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ops", type=int, help="commands in the flow (default 200,000)")
    parser.add_argument("--runs", type=int, help="timed rounds (default 5)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--quick", action="store_true", help="defaults of 2,000 ops and 3 runs, for smoke tests"
    )
    parser.add_argument(
        "--wall", action="store_true", help="time by wall clock, not by this process's CPU time"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=[p.name for p in PEERS],
        help="the peers to run (matchwire always runs)",
    )
    args = parser.parse_args(argv)
    if args.ops is None:
        args.ops = 2_000 if args.quick else 200_000
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    peers = [peer for peer in PEERS if not args.only or peer.name in args.only]
    rows = build_rows(generate_flow(args.ops, args.seed), peers)
    clock, clock_name = (
        (time.perf_counter, "wall time") if args.wall else (time.process_time, "CPU time")
    )
    time_rows(rows, args.runs, clock)
    return report(rows, args.seed, args.runs, clock_name)


if __name__ == "__main__":
    main()
