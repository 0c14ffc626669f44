"""Core benchmark: the matching engine alone on a seeded, realistic flow.

    python -m tests.bench.core [--ops 200000] [--runs 5] [--resting 1000000] [--quick]
                               [--replay RECORDS]

The flow (generated before timing, fixed seed): around a drifting mid, 55% passive limit
orders 1-50 ticks from mid, 25% cancels of live orders, 15% limit orders crossing 1-5
ticks through the opposite best (partial fills, sweeps), 5% market orders; quantities
1-100 lots. Every run replays the same commands on a fresh engine, with every event
produced. Prints ops/s and µs/op (CPU time, median of the runs after a warm-up), trades,
and the memory per resting order with `--resting` resting orders (tracemalloc).

With `--replay RECORDS`, also the replay rate of a journal of that many commands of the
same kind of flow, from the first record (the recovery figure of
tests/bench/matcher_loop.py alone). The first line says which build ran
(docs/architecture.md, "Two builds").

For scale, the same flow runs through `BareBook`, an 40-line SortedDict + deque book
that produces no events, no fees and no order states: the floor of this data layout.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from typing import Any

from sortedcontainers import SortedDict

from clients.flow import CANCEL, OrderFlow
from clients.flow import MARKET as MARKET_STEP
from matcher import _build
from matcher.engine import Engine
from matcher.protocol import (
    BUY,
    CMD_CANCEL,
    CMD_NEW_ORDER,
    EV_TRADE,
    GTC,
    LIMIT,
    MARKET,
    SELL,
    TIF_IOC,
)
from matcher.service import GC_THRESHOLD, MAX_BATCH

ACCOUNT = "anonymous"  # one account that never self-trade-prevents
# CPU time of this process: on a shared machine (load 6-10 on 2 cores seen here) wall time
# moved 5x between runs minutes apart; CPU time of a one-threaded loop moves far less.
clock = time.process_time
# The service freezes what each batch left alive out of the collector's reach
# (matcher/service.py); the bench does the same every FREEZE_EVERY commands, the most one
# batch holds. Without it the collector walks every resting and finished order again and
# again: a fifth of the pure and a third of the compiled build's time (docs/benchmarks.md).
FREEZE_EVERY = MAX_BATCH


def generate_flow(ops: int, seed: int = 42) -> list[tuple]:
    """The standard flow (clients/flow.py) as engine commands; a live engine decides which
    orders are cancellable and where the opposite best is."""
    flow = OrderFlow(1_000_000, seed)
    engine = Engine()
    book = engine.book
    resting = book.orders
    sides = {"buy": BUY, "sell": SELL}

    def best_opposite(side: str) -> int | None:
        return book.asks.best() if side == "buy" else book.bids.best()

    commands: list[tuple] = []
    ts = 1_700_000_000_000_000
    for seq in range(1, ops + 1):
        ts += 1
        kind, side, price, quantity, order_id = flow.next_step(best_opposite, resting.__contains__)
        command: tuple
        if kind == CANCEL:
            # Nothing live: an unknown-order refusal is a valid op too.
            command = (CMD_CANCEL, seq, ts, ACCOUNT, 1 if order_id is None else order_id)
        elif kind == MARKET_STEP:
            command = (
                CMD_NEW_ORDER,
                seq,
                ts,
                ACCOUNT,
                sides[side],
                MARKET,
                TIF_IOC,
                None,
                quantity,
                False,
                0,
                None,
            )
        else:
            command = (
                CMD_NEW_ORDER,
                seq,
                ts,
                ACCOUNT,
                sides[side],
                LIMIT,
                GTC,
                price,
                quantity,
                False,
                0,
                None,
            )
        try:
            engine.apply(command)
        except Exception:
            command = (CMD_CANCEL, seq, ts, ACCOUNT, -1)  # kept: a refused op still costs
            continue
        finally:
            commands.append(command)
        if command[0] == CMD_NEW_ORDER and command[1] in resting:
            flow.live.append(command[1])
    return commands


def run_engine(commands: list[tuple]) -> tuple[float, int]:
    """Seconds to apply every command to a fresh engine, and the trades it made."""
    engine = Engine()
    apply = engine.apply
    trades = 0
    freeze = gc.freeze if FREEZE_EVERY else None
    started = clock()
    for i, command in enumerate(commands):
        if freeze is not None and not i % FREEZE_EVERY:
            freeze()
        try:
            events = apply(command)
        except Exception:
            continue
        if events[0][0] == EV_TRADE or len(events) > 2:
            trades += 1
    elapsed = clock() - started
    return elapsed, engine.trade_id


class BareBook:
    """The floor: price levels in SortedDicts of deques, no events, ids, fees or states."""

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.index: dict[int, list[Any]] = {}

    def limit(self, order_id: int, side: int, price: int | None, quantity: int) -> None:
        book, other = (self.bids, self.asks) if side == BUY else (self.asks, self.bids)
        while quantity and other:
            best, level = other.peekitem(0 if side == BUY else -1)
            if price is not None and (best > price if side == BUY else best < price):
                break
            while quantity and level:
                maker = level[0]
                fill = min(quantity, maker[1])
                quantity -= fill
                maker[1] -= fill
                if not maker[1]:
                    level.popleft()
                    del self.index[maker[0]]
            if not level:
                del other[best]
        if quantity and price is not None:
            entry = [order_id, quantity, side, price]
            book.setdefault(price, deque()).append(entry)
            self.index[order_id] = entry

    def cancel(self, order_id: int) -> None:
        entry = self.index.pop(order_id, None)
        if entry is not None:
            book = self.bids if entry[2] == BUY else self.asks
            level = book[entry[3]]
            level.remove(entry)
            if not level:
                del book[entry[3]]


def run_bare(commands: list[tuple]) -> tuple[float, int]:
    book = BareBook()
    limit, cancel = book.limit, book.cancel
    freeze = gc.freeze if FREEZE_EVERY else None
    started = clock()
    for i, command in enumerate(commands):
        if freeze is not None and not i % FREEZE_EVERY:
            freeze()
        if command[0] == CMD_CANCEL:
            cancel(command[4])
        else:
            limit(command[1], command[4], command[7], command[8])
    return clock() - started, 0


def timed(
    runner: Callable[[list[tuple]], tuple[float, int]], commands: list[tuple], runs: int
) -> dict[str, float]:
    runner(commands[: len(commands) // 4])  # warm-up
    seconds = []
    trades = 0
    # The matcher service's GC settings (matcher/service.py), for the core and the floor.
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, 50, 100)
    try:
        for _ in range(runs):
            gc.unfreeze()
            gc.collect()
            elapsed, trades = runner(commands)
            seconds.append(elapsed)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    median = statistics.median(seconds)
    return {
        "ops_per_s": len(commands) / median,
        "us_per_op": median / len(commands) * 1e6,
        "min_us_per_op": min(seconds) / len(commands) * 1e6,
        "max_us_per_op": max(seconds) / len(commands) * 1e6,
        "trades": trades,
    }


def memory_per_resting_order(count: int) -> float:
    """Bytes per resting order with `count` of them (tracemalloc over the whole engine)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine = Engine()
    apply = engine.apply
    ts = 1_700_000_000_000_000
    mid = 1_000_000
    for seq in range(1, count + 1):
        side = BUY if seq & 1 else SELL
        offset = 1 + seq % 2000
        price = mid - offset if side == BUY else mid + offset
        apply(
            (
                CMD_NEW_ORDER,
                seq,
                ts + seq,
                ACCOUNT,
                side,
                LIMIT,
                GTC,
                price,
                1 + seq % 100,
                False,
                0,
                None,
            )
        )
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(engine.book.orders) == count
    return used / count


def replay_figure(records: int) -> tuple[int, float, float]:
    """(records, records/s, µs per record of reading + decoding alone) of a full replay
    of a fresh journal of `records` commands; best of 3 each."""
    import tempfile
    from pathlib import Path

    from matcher import codec
    from matcher.replay import _records, replay_full
    from matcher.service import journal_dir
    from tests.bench.matcher_loop import SYMBOL, write_history

    with tempfile.TemporaryDirectory(prefix="matchwire-bench-") as work:
        write_history(Path(work), records, snapshot_every=records)
        directory = journal_dir(Path(work), SYMBOL)
        decode = codec.decode_command
        elapsed = decoding = float("inf")
        replayed = 0
        gc.collect()
        gc.disable()  # as `run.py replay` runs it (matcher/replay.py)
        try:
            for _ in range(3):
                started = clock()
                for payload in _records(directory, 0, print):
                    decode(payload)
                decoding = min(decoding, clock() - started)
                engine = Engine()
                started = clock()
                replayed = replay_full(engine, directory, None, None, None, print)
                elapsed = min(elapsed, clock() - started)
        finally:
            gc.enable()
        return replayed, replayed / elapsed, decoding / replayed * 1e6


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.core",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--resting", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke tests")
    parser.add_argument(
        "--no-freeze", action="store_true", help="never gc.freeze() (the bench before issue 14)"
    )
    parser.add_argument(
        "--replay",
        type=int,
        default=0,
        metavar="RECORDS",
        help="also time a full journal replay of RECORDS commands",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.ops, args.runs, args.resting = 20_000, 2, 20_000
    global FREEZE_EVERY
    if args.no_freeze:
        FREEZE_EVERY = 0
    commands = generate_flow(args.ops, args.seed)
    core = timed(run_engine, commands, args.runs)
    bare = timed(run_bare, commands, args.runs)
    memory = memory_per_resting_order(args.resting)
    figures: dict[str, Any] = {
        "core_ops_per_s": core["ops_per_s"],
        "core_us_per_op": core["us_per_op"],
        "core_trades": core["trades"],
        "bare_ops_per_s": bare["ops_per_s"],
        "core_vs_bare": core["ops_per_s"] / bare["ops_per_s"],
        "bytes_per_resting_order": memory,
        "build": _build.build_name(),
    }
    print(f"build: {_build.selection().describe()}")
    print(
        f"core flow: {args.ops} ops, seed {args.seed}, median of {args.runs} runs, "
        f"gc.freeze() every {FREEZE_EVERY or 'never'}"
    )
    print(
        f"  matchwire core : {core['ops_per_s']:>12,.0f} ops/s  {core['us_per_op']:.3f} µs/op "
        f"(min {core['min_us_per_op']:.3f}, max {core['max_us_per_op']:.3f})  "
        f"trades {core['trades']:,}"
    )
    print(
        f"  bare book floor: {bare['ops_per_s']:>12,.0f} ops/s  {bare['us_per_op']:.3f} µs/op "
        f"(no events)  core/bare = {figures['core_vs_bare']:.2f}"
    )
    print(f"  memory: {memory:.0f} bytes per resting order ({args.resting:,} resting)")
    if args.replay:
        replayed, rate, decode_us = replay_figure(args.replay)
        figures["replay_records_per_s"] = rate
        figures["replay_decode_us_per_record"] = decode_us
        print(
            f"  replay: {rate:,.0f} records/s ({replayed:,} records from the first); "
            f"reading + decoding alone {decode_us:.2f} µs per record"
        )
    return figures


if __name__ == "__main__":
    main()
