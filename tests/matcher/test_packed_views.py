"""matcher/packed_views.py: the pre-packed bytes equal msgpack of the Views dicts, exactly.

A seeded random flow (every order type, stops, cancels, amends, STP, client ids) runs
through the engine; after every command the packed order, each trade, the book update and
the BBO (and cancel_all's answer) must be byte-for-byte `codec.pack` of what `Views` builds for the same values.
"""

from __future__ import annotations

import random

import msgpack
import pytest

from matcher import codec
from matcher.engine import Engine
from matcher.packed_views import PackedViews
from matcher.protocol import (
    BUY,
    CMD_CANCEL_ALL,
    CMD_NEW_ORDER,
    CMD_NEW_STOP,
    EV_LEVEL,
    EV_ORDER,
    EV_TRADE,
    CommandError,
)
from matcher.system import load_config
from matcher.units import CachedUnits
from matcher.views import Views
from tests.matcher.reference import ReferenceMatcher
from tests.matcher.test_differential import build_command, random_recipe

EPOCH = 1_764_000_000_123_456


def change_view(views: Views, side: int, price: int, total: int) -> list[str]:
    """One l2 change; a removed level's quantity is "0" (docs/feeds.md)."""
    return [
        "buy" if side == BUY else "sell",
        views.price(price),
        views.quantity(total) if total else "0",
    ]


def book_update_view(views: Views, engine: Engine, changes: dict, ts: int) -> dict:
    """The book.<SYMBOL> body as the service built it before it was pre-packed."""
    return {
        "symbol": views.symbol,
        "epoch": EPOCH,
        "book_seq": engine.book_seq,
        "changes": [
            change_view(views, side, price, total) for (side, price), total in changes.items()
        ],
        "bbo": views.bbo(engine.bbo(), engine.book_seq),
        "timestamp": views.timestamp(ts),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_packed_views_equal_packed_dicts(seed: int) -> None:
    rng = random.Random(seed)
    units = CachedUnits(load_config(None).symbols["BTC-USDT"])
    views = Views(units)
    packed = PackedViews(Views(units), EPOCH)  # its own Views: no shared cache state
    engine = Engine(units.maker_rate, units.taker_rate)
    ref = ReferenceMatcher(units.maker_rate, units.taker_rate)
    ts = 1_764_000_000_000_000
    checked = {"orders": 0, "trades": 0, "books": 0, "cancel_all": 0}
    for seq in range(1, 3001):
        ts += rng.choice((0, 0, 1, 999_999))  # batches share a timestamp; some do not
        command = build_command(random_recipe(rng), seq, ref)
        command = (command[0], command[1], ts, *command[3:])
        try:
            command = engine.resolve(command)  # a client_order_id -> the order id
            events = engine.apply(command)
        except CommandError:
            continue
        ref.apply(command)
        changes: dict[tuple[int, int], int] = {}
        for event in events:
            if event[0] == EV_TRADE:
                assert packed.trade(event) == codec.pack(views.trade(event))
                checked["trades"] += 1
            elif event[0] == EV_LEVEL:
                changes[(event[1], event[2])] = event[3]
        if changes:
            body = packed.book_update(engine.book_seq, changes, engine.bbo(), ts)
            assert body == codec.pack(book_update_view(views, engine, changes, ts))
            checked["books"] += 1
        if command[0] == CMD_CANCEL_ALL:  # cancel_all's answer
            gone = [engine.finished[e[1]] for e in events if e[0] == EV_ORDER]
            assert packed.cancelled(gone) == codec.pack(views.cancelled(gone))
            checked["cancel_all"] += 1
            continue
        order_id = seq if command[0] in (CMD_NEW_ORDER, CMD_NEW_STOP) else command[4]
        order = engine.get_order(order_id)
        assert order is not None
        result = packed.order(order)
        assert result == codec.pack(views.order(order))
        assert packed.reply(seq, result) == codec.encode_reply(seq, views.order(order))
        checked["orders"] += 1
    assert checked["cancel_all"] > 50, checked
    assert min(checked["orders"], checked["trades"], checked["books"]) > 200, checked


def test_headers_match_msgpack_for_every_size_class() -> None:
    for size in (0, 1, 15, 16, 65_535, 65_536):
        items = list(range(size))
        assert codec.array_header(size) + b"".join(map(codec.pack, items)) == msgpack.packb(items)
    for size in (0, 15, 16, 17, 40):
        entries = {f"k{i}": i for i in range(size)}
        packed_entries = b"".join(codec.pack(k) + codec.pack(v) for k, v in entries.items())
        assert codec.map_header(size) + packed_entries == msgpack.packb(entries)
