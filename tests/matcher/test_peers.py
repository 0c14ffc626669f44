"""matcher/peers.py: every installed peer makes matchwire's fills; the table has a row per engine.

Peers are optional (the `[bench]` extra): a peer that is not installed is skipped here
(pytest.importorskip) and must show as "not installed" in the report. The harness itself
is checked without any peer, through adapters written here around matchwire's own engine.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

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
    CommandError,
)
from tests.bench.core import ACCOUNT, generate_flow
from tests.bench.peers import (
    PEERS,
    Adapter,
    Fill,
    Peer,
    build_rows,
    compare_fills,
    load_peer,
    main,
    matchwire_fills,
    report,
    time_rows,
)

RUNNABLE = [peer for peer in PEERS if peer.adapter is not None]


def imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def new(seq: int, side: int, price: int | None, quantity: int) -> tuple:
    order_type, tif = (MARKET, TIF_IOC) if price is None else (LIMIT, GTC)
    return (
        CMD_NEW_ORDER,
        seq,
        1_000 + seq,
        ACCOUNT,
        side,
        order_type,
        tif,
        price,
        quantity,
        False,
        0,
        None,
    )


def cancel(seq: int, order_id: int) -> tuple:
    return (CMD_CANCEL, seq, 1_000 + seq, ACCOUNT, order_id)


# What the seeded flow rarely or never does, and each adapter must still map right:
# market orders into an empty or thin book (whose remainders must not rest), cancels of
# filled, unknown and already cancelled orders, FIFO within a level.
EDGE_FLOW = [
    new(1, BUY, None, 5),
    new(2, SELL, None, 5),
    new(3, SELL, 100, 10),
    new(4, SELL, 100, 4),
    new(5, BUY, None, 20),  # takes 3 and 4; its remainder of 6 must not rest
    new(6, SELL, 101, 5),  # rests: no market bid left to trade with
    new(7, BUY, 99, 5),
    new(8, SELL, None, 8),  # takes 7; its remainder of 3 must not rest (a sell at 0 would)
    new(9, BUY, 101, 2),  # takes 2 of 6
    cancel(10, 3),  # filled
    cancel(11, -1),  # unknown
    cancel(12, 6),  # live, partly filled
    cancel(13, 6),  # already cancelled
    new(14, BUY, 102, 3),
    new(15, BUY, 102, 3),
    new(16, SELL, 102, 4),  # 14 first, then 15
    cancel(17, 14),
    new(18, SELL, 90, 10),  # the 2 left of 15; the rest of 18 rests
]
EDGE_FILLS = [
    (3, 5, 100, 10),
    (4, 5, 100, 4),
    (7, 8, 99, 5),
    (6, 9, 101, 2),
    (14, 16, 102, 3),
    (15, 16, 102, 1),
    (15, 18, 102, 2),
]


def renumbered(commands: list[tuple], offset: int) -> list[tuple]:
    """The same flow with order ids (= seqs) that are not positions in the list."""
    moved = []
    for command in commands:
        command = (command[0], command[1] + offset, *command[2:])
        if command[0] == CMD_CANCEL and command[4] > 0:
            command = (*command[:4], command[4] + offset)
        moved.append(command)
    return moved


@pytest.fixture(scope="module")
def flow() -> list[tuple]:
    return generate_flow(2_000, seed=7)


def test_edge_flow_is_what_it_says() -> None:
    assert matchwire_fills(EDGE_FLOW) == EDGE_FILLS
    assert matchwire_fills(renumbered(EDGE_FLOW, 500)) == [
        (maker + 500, taker + 500, price, quantity) for maker, taker, price, quantity in EDGE_FILLS
    ]


@pytest.mark.parametrize("peer", RUNNABLE, ids=[peer.name for peer in RUNNABLE])
def test_installed_peer_makes_matchwire_fills(peer: Peer, flow: list[tuple]) -> None:
    lib = pytest.importorskip(peer.module, reason=peer.install)
    assert peer.adapter is not None
    adapter = peer.adapter(lib)
    for commands in (flow, EDGE_FLOW, renumbered(EDGE_FLOW, 500)):
        ops = adapter.prepare(commands)
        assert len(ops) == len(commands)
        fills = adapter.fills(ops, adapter.replay(ops))
        assert compare_fills(matchwire_fills(commands), fills) is None
    ops = adapter.prepare(flow)
    assert adapter.fills(ops, adapter.replay(ops)) == matchwire_fills(flow)  # replays anew


def test_compare_fills_names_the_first_difference() -> None:
    expected: list[Fill] = [(1, 3, 100, 5), (2, 3, 100, 5), (4, 6, 99, 1)]
    assert compare_fills(expected, list(expected)) is None
    swapped = [expected[1], expected[0], expected[2]]
    assert compare_fills(expected, swapped) == (
        "fill #1: matchwire (1, 3, 100, 5), peer (2, 3, 100, 5); "
        "same trade count and quantity per taker"
    )
    assert compare_fills(expected, expected[:2]) == (
        "fill #3: matchwire (4, 6, 99, 1), peer none; 2 fills vs 3"
    )


class EngineAdapter(Adapter):
    """An adapter around matchwire's own engine: the harness checked without any peer."""

    name = "engine-echo"
    distribution = "sortedcontainers"  # installed with matchwire, so the peer "is installed"
    module = "matcher.engine"

    def prepare(self, commands: list[tuple]) -> list[tuple]:
        return list(commands)

    def replay(self, ops: list[tuple]) -> Any:
        engine = self.lib.Engine()
        trades: list[tuple] = []
        for op in ops:
            try:
                trades.extend(event for event in engine.apply(op) if event[0] == EV_TRADE)
            except CommandError:
                continue
        return trades

    def fills(self, ops: list[tuple], raw: Any) -> list[Fill]:
        return [(trade[5], trade[6], trade[2], trade[3]) for trade in raw]


class SwappedAdapter(EngineAdapter):
    """Reports the fills of one taker in the wrong order: same totals, different fills."""

    name = "swapped"

    def fills(self, ops: list[tuple], raw: Any) -> list[Fill]:
        fills = super().fills(ops, raw)
        first = next(i for i in range(len(fills) - 1) if fills[i][1] == fills[i + 1][1])
        fills[first], fills[first + 1] = fills[first + 1], fills[first]
        return fills


class PrefixAdapter(EngineAdapter):
    name = "prefix"
    max_ops = 500


def test_rows_say_what_ran_and_what_did_not(flow: list[tuple]) -> None:
    reference = matchwire_fills(flow)
    same = load_peer(
        Peer("echo", "sortedcontainers", "matcher.engine", EngineAdapter), flow, reference
    )
    assert (same.status, same.detail) == ("same fills", f"{len(reference):,} fills")
    assert same.replay is not None and same.replay() is not None
    differ = load_peer(
        Peer("swapped", "sortedcontainers", "matcher.engine", SwappedAdapter), flow, reference
    )
    assert differ.status == "fills differ"
    assert differ.detail.endswith("same trade count and quantity per taker")
    absent = load_peer(
        Peer("absent", "matchwire-no-such-peer", "no_such_peer", EngineAdapter), flow, reference
    )
    assert (absent.status, absent.detail, absent.replay) == (
        "not installed",
        "pip install 'matchwire-no-such-peer'",
        None,
    )
    broken = load_peer(
        Peer("broken", "sortedcontainers", "no_such_module_here", EngineAdapter), flow, reference
    )
    assert broken.status == "cannot run" and "ModuleNotFoundError" in broken.detail
    assert broken.replay is None


def test_a_capped_peer_is_timed_against_matchwire_on_the_same_prefix(
    flow: list[tuple], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = build_rows(flow, [Peer("prefix", "sortedcontainers", "matcher.engine", PrefixAdapter)])
    assert [(row.engine, row.ops) for row in rows] == [
        ("matchwire core", 2_000),
        ("matchwire core (500 ops)", 500),
        ("prefix", 500),
    ]
    assert rows[2].baseline is rows[1] and rows[2].detail.startswith("first 500 ops; ")
    time_rows(rows, 2)
    figures = report(rows, seed=7, runs=2)
    assert all(len(row.seconds) == 2 for row in rows)
    core, peer = rows[1].seconds, rows[2].seconds
    assert figures["prefix"]["vs_core"] == pytest.approx(
        (core[0] / peer[0] + core[1] / peer[1]) / 2
    )  # per round, then the median
    assert figures["prefix"]["ops_per_s"] == pytest.approx(500 / ((peer[0] + peer[1]) / 2))
    assert "matchwire core (500 ops)" in capsys.readouterr().out


def test_main_quick_reports_every_engine(capsys: pytest.CaptureFixture[str]) -> None:
    figures = main(["--quick"])
    out = capsys.readouterr().out
    core = figures["matchwire core"]
    assert core["status"] == "reference" and core["ops"] == 2_000
    assert core["ops_per_s"] > 0 and core["vs_core"] == 1.0
    for peer in PEERS:
        figure = figures[peer.name]
        assert peer.name in out
        if figure["status"] == "not installed":
            assert figure["ops_per_s"] is None
            assert figure["detail"] == peer.install
        elif peer.adapter is None or not imports(peer.module):  # e.g. a missing extra
            assert figure["status"] == "cannot run" and figure["ops_per_s"] is None
        else:
            assert figure["status"] == "same fills", figure["detail"]
            assert figure["ops_per_s"] > 0 and figure["vs_core"] > 0


def test_the_flow_uses_one_account_and_no_other_commands(flow: list[tuple]) -> None:
    # The adapters map only these: a new flow shape needs their review (docs/peers.md).
    for command in flow:
        assert command[0] in (CMD_NEW_ORDER, CMD_CANCEL) and command[3] == ACCOUNT
        if command[0] == CMD_NEW_ORDER:
            assert command[5:7] in ((LIMIT, GTC), (MARKET, TIF_IOC))
            assert command[9:] == (False, 0, None)
            assert command[4] in (BUY, SELL)
