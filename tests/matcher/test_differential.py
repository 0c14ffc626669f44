"""The fast core against the reference matcher: same random commands, same everything.

Hypothesis draws command "recipes" (small tuples of ints) and `build_command` turns each
into a real command tuple against the current state, so cancels and amends mostly hit
orders that exist (and sometimes other accounts', finished or unknown ones), by order id
or by client_order_id (resolved by each side's own lookup), and cancel_all runs with and
without a side. Prices come
from a narrow band so orders cross often; accounts are few so self-trade prevention and
duplicate client_order_ids happen all the time. After every command the events (or the
refusal code) must be equal, the engine's invariants must hold, and the whole state must
match the reference.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matcher.engine import Engine
from matcher.protocol import (
    BUY,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    STOP_LIMIT,
    STOP_LOSS,
    TAKE_PROFIT,
    TIF_FOK,
    TIF_IOC,
    CommandError,
)
from tests.matcher.reference import (
    ReferenceMatcher,
    amend,
    cancel,
    cancel_all,
    new_order,
    new_stop,
)

ACCOUNTS = ("alice", "bob", "carol", "anonymous")
LOW_PRICE, HIGH_PRICE = 95, 105
MAX_QUANTITY = 20
CLIENT_IDS = ("c0", "c1", "c2", "c3")  # the pool build_command draws from

# recipe = (op, side, account, price, quantity, stp, client_id, target, aux)
recipes = st.tuples(
    st.integers(0, 99),
    st.integers(0, 1),
    st.integers(0, len(ACCOUNTS) - 1),
    st.integers(LOW_PRICE, HIGH_PRICE),
    st.integers(1, MAX_QUANTITY),
    st.integers(0, 2),
    st.integers(0, 29),
    st.integers(0, 63),
    st.integers(0, 15),
)


def random_recipe(rng: random.Random) -> tuple:
    return (
        rng.randrange(100),
        rng.randrange(2),
        rng.randrange(len(ACCOUNTS)),
        rng.randint(LOW_PRICE, HIGH_PRICE),
        rng.randint(1, MAX_QUANTITY),
        rng.randrange(3),
        rng.randrange(30),
        rng.randrange(64),
        rng.randrange(16),
    )


def build_command(recipe: tuple, seq: int, ref: ReferenceMatcher) -> tuple:
    """A valid command (as matcher/validation.py would build it) from a recipe."""
    op, side, account_index, price, quantity, stp, client_id, target, aux = recipe
    account = ACCOUNTS[account_index]
    # Client ids come from a tiny pool so duplicates are frequent; most orders have none.
    client_order_id = None if client_id < 26 else f"c{client_id - 26}"
    if op < 30:  # limit, mostly gtc
        tif = (GTC, GTC, GTC, GTC, TIF_IOC, TIF_FOK)[aux % 6]
        return new_order(
            seq, account, side, LIMIT, price, quantity, tif, False, stp, client_order_id
        )
    if op < 37:
        return new_order(
            seq, account, side, MARKET, None, quantity, TIF_IOC, False, stp, client_order_id
        )
    if op < 42:
        return new_order(seq, account, side, IOC, price, quantity, GTC, False, stp, client_order_id)
    if op < 47:
        return new_order(seq, account, side, FOK, price, quantity, GTC, False, stp, client_order_id)
    if op < 53:
        return new_order(
            seq, account, side, LIMIT, price, quantity, GTC, True, stp, client_order_id
        )
    if op < 66:
        order_type = (STOP_LOSS, STOP_LIMIT, TAKE_PROFIT)[aux % 3]
        limit_price = min(HIGH_PRICE, max(LOW_PRICE, price + target % 5 - 2))
        if order_type == STOP_LOSS or (order_type == TAKE_PROFIT and aux & 8):
            limit_price = None
        return new_stop(
            seq, account, side, order_type, price, limit_price, quantity, stp, client_order_id
        )
    if op >= 94:  # cancel_all, of one side or both
        return cancel_all(seq, account, None if aux & 1 else side)
    # Cancels and amends: mostly a live order by its owner, sometimes a finished, foreign
    # or never-issued one.
    live = sorted(o.order_id for o in ref.resting + ref.pending)
    if aux & 2:  # by client_order_id (below): mostly a live order that has one
        named = [order_id for order_id in live if ref.orders[order_id].client_order_id]
        live = named or live
    finished = ref.recent_finished()
    pick = target % 8
    if pick < 5 and live:
        order_id = live[target // 8 % len(live)]
    elif pick < 6 and finished:
        order_id = finished[-1 - target // 8 % len(finished)]
    elif pick < 7:
        order_id = 1 + (target * 7919 + aux) % seq
    else:
        order_id = seq + 1000 + target  # never issued
    order = ref.orders.get(order_id)
    if order is not None and aux < 13:
        account = order.account
    reference: int | str = order_id
    if aux & 2:  # by client_order_id: the order's own, or one from the pool
        known = order.client_order_id if order is not None else None
        reference = known or client_order_id or f"c{target % 4}"
    if op < 78:
        return cancel(seq, account, reference)
    new_quantity = quantity if aux % 3 else None
    new_price = price if aux % 3 != 1 else None
    if new_quantity is not None and aux & 4:
        existing = ref.orders.get(order_id)
        if existing is not None:  # around the filled quantity and the current size
            new_quantity = max(1, existing.filled + (quantity % 5) - 1)
    return amend(seq, account, reference, new_quantity, new_price)


def compare_state(engine: Engine, ref: ReferenceMatcher) -> None:
    engine.check()
    book = engine.book
    for side in (BUY, SELL):
        assert book.depth(side, 10**9) == ref.depth(side)
        engine_ids = [
            [o.order_id for o in level.live_orders()]
            for level in book.side(side).levels_best_first()
        ]
        assert engine_ids == ref.level_ids(side)
    bids, asks = ref.depth(BUY), ref.depth(SELL)
    assert engine.bbo() == (*(bids[0] if bids else (None, 0)), *(asks[0] if asks else (None, 0)))
    assert sorted(engine.stops) == ref.pending_ids()
    for account in ACCOUNTS:
        assert [o.order_id for o in engine.open_orders(account)] == sorted(
            o.order_id for o in ref.resting + ref.pending if o.account == account
        )
    assert engine.trade_id == ref.trade_id
    assert engine.last_price == ref.last_price
    assert engine.seq == ref.seq
    assert engine.book_seq == ref.book_seq
    engine_visible = sorted([*book.orders, *engine.stops, *engine.finished])
    assert engine_visible == ref.visible_ids()
    for order_id in engine_visible:
        mine, theirs = engine.get_order(order_id), ref.orders[order_id]
        assert mine is not None
        assert (
            mine.status,
            mine.filled,
            mine.remaining,
            mine.price,
            mine.quantity,
            mine.reason,
            mine.stop_price,
            mine.client_order_id,
            mine.account,
        ) == (
            theirs.status,
            theirs.filled,
            theirs.remaining,
            theirs.price,
            theirs.quantity,
            theirs.reason,
            theirs.stop_price,
            theirs.client_order_id,
            theirs.account,
        ), order_id
        assert [trade[1] for trade in mine.trades or ()] == theirs.trade_ids
    recent = list(engine.recent_trades)
    assert recent == ref.trades[len(ref.trades) - len(recent) :]
    for account in ACCOUNTS:  # get by client_order_id
        for client_order_id in CLIENT_IDS:
            mine_by_client = engine.client_order(account, client_order_id)
            theirs_by_client = ref.client_order(account, client_order_id)
            assert (None if mine_by_client is None else mine_by_client.order_id) == (
                None if theirs_by_client is None else theirs_by_client.order_id
            ), (account, client_order_id)


def step(engine: Engine, ref: ReferenceMatcher, command: tuple) -> None:
    """Resolve (a client_order_id to the order id) and apply one command on both; the
    outcomes must be identical."""
    try:
        expected = ref.apply(ref.resolve(command))
    except CommandError as error:
        expected = error.code
    try:
        got = engine.apply(engine.resolve(command))
    except CommandError as error:
        got = error.code
    assert got == expected, f"command {command}"


def run(recipe_list: list[tuple], finished_window: int, check_every: int = 1) -> Engine:
    engine = Engine(finished_window=finished_window)
    ref = ReferenceMatcher(finished_window=finished_window)
    for seq, recipe in enumerate(recipe_list, start=1):
        command = build_command(recipe, seq, ref)
        step(engine, ref, command)
        if seq % check_every == 0:
            compare_state(engine, ref)
        else:
            engine.check()
    compare_state(engine, ref)
    return engine


# A passing run takes ~15 s; a failing one shrinks for up to 5 minutes (Hypothesis stops
# there by itself), so the pytest timeout must not cut the shrunk example off.
@pytest.mark.timeout(900)
@settings(
    max_examples=500,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(recipes, min_size=20, max_size=60), st.sampled_from([3, 10, 100_000]))
def test_engine_matches_reference(recipe_list: list[tuple], finished_window: int) -> None:
    run(recipe_list, finished_window)


def test_engine_matches_reference_long_seeded_run() -> None:
    rng = random.Random(7)
    recipe_list = [random_recipe(rng) for _ in range(20_000)]
    engine = run(recipe_list, finished_window=200, check_every=25)
    assert engine.trade_id > 3_000  # the run really matched a lot
