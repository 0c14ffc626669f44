"""Rules bound to the journal (docs/journal.md, "Rules"): real matcher processes, real
journals, real `run.py replay`.

The journal stores integers; the rules give them their meaning. These tests change the
configuration between starts and check that the matcher refuses (exit 2, naming each rule
or order), or with --apply-rules journals the change, and that replay reads every record
with the rules it was written under.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clients.zmq_client import MatcherClient
from matcher import codec
from matcher.engine import Engine
from matcher.journal import Journal
from matcher.protocol import BUY, CMD_NEW_ORDER, CMD_RULES, GTC, LIMIT, SELL, STP_CANCEL_NEWEST
from matcher.rules import rules_command, rules_of
from matcher.service import journal_dir, snapshot_dir
from matcher.system import load_config
from tests.matcher.test_service import MatcherProcess, spawner
from tests.support import REPO, System, free_ports

Spawn = Callable[..., MatcherProcess]
BTC, ETH = "BTC-USDT", "ETH-USDT"


@pytest.fixture(name="spawn")
def spawn_fixture(tmp_path: Path) -> Iterator[Spawn]:
    yield from spawner(tmp_path)


def write_config(path: Path, symbol: str, **rules: str) -> Path:
    """A TOML file with one symbol table naming only `rules` (the rest is built in)."""
    lines = [f'[symbols."{symbol}"]', *(f'{key} = "{value}"' for key, value in rules.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def refused_start(data_dir: Path, symbol: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """A matcher start that is expected to refuse: its exit code and stderr."""
    router, pub = free_ports(2)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "matcher.service",
            "--symbol",
            symbol,
            "--data-dir",
            str(data_dir),
            "--fsync",
            "off",
            "--router",
            f"tcp://127.0.0.1:{router}",
            "--pub",
            f"tcp://127.0.0.1:{pub}",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def replay(data_dir: Path, symbol: str, *flags: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "run.py",
            "replay",
            "--data-dir",
            str(data_dir),
            "--symbol",
            symbol,
            *map(str, flags),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def figures(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def files_of(data_dir: Path, symbol: str) -> dict[str, bytes]:
    """Every journal segment and snapshot file of the symbol, by name."""
    found = {}
    for folder in (journal_dir(data_dir, symbol), snapshot_dir(data_dir, symbol)):
        if folder.is_dir():
            found.update({f"{folder.name}/{p.name}": p.read_bytes() for p in folder.iterdir()})
    return found


def journaled_commands(data_dir: Path, symbol: str) -> list[tuple]:
    return [
        codec.decode_command(payload)
        for payload in Journal(journal_dir(data_dir, symbol)).records()
    ]


def order(process: MatcherProcess, side: str, price: str, quantity: str) -> dict:
    return process.request(
        "new_order",
        order_type="limit",
        side=side,
        price=price,  # type: ignore[no-any-return]
        quantity=quantity,
    )


# -- the configuration side of the bug ----------------------------------------------------


def test_an_endpoints_only_table_keeps_the_built_in_rules(tmp_path: Path, spawn: Spawn) -> None:
    """The bug of issue 12: a [symbols.ETH-USDT] table with only endpoints gave ETH-USDT
    generic rules (lot 0.0001 instead of 0.001)."""
    config = tmp_path / "shard.toml"
    config.write_text(
        '[symbols.ETH-USDT]\norder_endpoint = "tcp://127.0.0.1:5557"\n'
        'feed_endpoint = "tcp://127.0.0.1:5558"\n'
    )
    eth = load_config(config).symbols[ETH]
    assert (str(eth.lot_size), str(eth.min_quantity), str(eth.max_price)) == (
        "0.001",
        "0.001",
        "1000000",
    )
    matcher = spawn(tmp_path / "data", symbol=ETH, extra=["--config", str(config)]).start()
    refused = matcher.raw(
        "new_order", order_type="limit", side="buy", price="2000", quantity="0.0005"
    )
    assert refused["error"]["code"] == "invalid_quantity"
    assert order(matcher, "buy", "2000", "0.005")["quantity"] == "0.005"
    matcher.stop()
    [first, *_] = journaled_commands(tmp_path / "data", ETH)
    assert first[0] == CMD_RULES and first[1] == 1 and first[4] == "0.001"


# -- a restart whose configuration differs ----------------------------------------------


def test_a_changed_lot_refuses_to_start_and_leaves_the_journal_untouched(
    tmp_path: Path, spawn: Spawn
) -> None:
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, symbol=ETH).start()
    order(matcher, "buy", "2000", "0.005")
    order(matcher, "sell", "2100", "1.25")
    assert matcher.stop() == 0
    before = files_of(data_dir, ETH)
    config = write_config(tmp_path / "lot.toml", ETH, lot_size="0.0001", maker_fee_rate="0.0003")
    result = refused_start(data_dir, ETH, "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "lot_size: journaled 0.001, configured 0.0001" in result.stderr
    assert "maker_fee_rate: journaled 0.0001, configured 0.0003" in result.stderr
    assert "--apply-rules" in result.stderr and "Traceback" not in result.stderr
    assert files_of(data_dir, ETH) == before
    # The journaled rules still serve, with the configuration they were written under.
    again = spawn(data_dir, "again.log", symbol=ETH).start()
    assert again.request("book")["bids"] == [["2000.00", "0.005"]]
    again.stop()


def test_apply_rules_journals_a_fee_change_for_later_trades_only(
    tmp_path: Path, spawn: Spawn
) -> None:
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir).start()
    order(matcher, "sell", "30000", "2")
    order(matcher, "buy", "30000", "1")  # trade 1 at the default rates: 3 and 6
    assert matcher.stop() == 0
    config = write_config(
        tmp_path / "fees.toml", BTC, maker_fee_rate="0.0005", taker_fee_rate="0.0007"
    )
    changed = spawn(data_dir, "changed.log", extra=["--config", str(config), "--apply-rules"])
    changed.start()
    assert "rules changed at seq" in changed.log()
    order(changed, "buy", "30000", "1")  # trade 2 at the new rates: 15 and 21
    trades = {
        t["trade_id"]: (t["maker_fee"], t["taker_fee"])
        for t in changed.request("trades", limit=10)["trades"]
    }
    assert trades == {1: ("3", "6"), 2: ("15", "21")}
    live = changed.request("ping", hash=True)
    changed.kill()  # no shutdown snapshot: the restart replays the rules record
    # The journal now holds the new rules: the new config starts without the flag...
    restarted = spawn(data_dir, "restarted.log", extra=["--config", str(config)]).start()
    assert restarted.request("ping", hash=True)["state_hash"] == live["state_hash"]
    assert restarted.stop() == 0
    # ...and the old one (the embedded default) is now the mismatch.
    result = refused_start(data_dir, BTC)
    assert result.returncode == 2
    assert "maker_fee_rate: journaled 0.0005, configured 0.0001" in result.stderr
    # Replay keeps each trade's own fees, whatever the configuration says.
    trades_csv = tmp_path / "trades.csv"
    result = replay(data_dir, BTC, "--verify", "--csv", trades_csv)
    assert result.returncode == 0, result.stderr
    assert figures(result.stdout)["state_hash"] == live["state_hash"]
    with open(trades_csv, newline="") as handle:
        rows = [(row["maker_fee"], row["taker_fee"]) for row in csv.DictReader(handle)]
    assert rows == [("3", "6"), ("15", "21")]


def test_run_py_passes_apply_rules_to_its_matchers(tmp_path: Path, spawn: Spawn) -> None:
    matcher = spawn(tmp_path / "data").start()  # System's data dir
    order(matcher, "sell", "30000", "2")
    assert matcher.stop() == 0
    config = write_config(
        tmp_path / "fees.toml", BTC, maker_fee_rate="0.0005", taker_fee_rate="0.0007"
    )
    system = System(tmp_path, "--config", str(config), "--apply-rules").start()
    client = MatcherClient(system.endpoint(0), timeout=10.0)
    try:
        taken = client.request("new_order", order_type="market", side="buy", quantity="1")
        assert (taken["trades"][0]["maker_fee"], taken["trades"][0]["taker_fee"]) == ("15", "21")
    finally:
        client.close()
        system.stop()
    assert "rules changed at seq" in system.child.log()


def test_a_tick_change_is_refused_while_a_resting_order_is_off_the_new_grid(
    tmp_path: Path, spawn: Spawn
) -> None:
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir).start()
    on_grid = order(matcher, "sell", "30000.10", "1")
    off_grid = order(matcher, "buy", "29999.95", "0.5")
    stop = matcher.request(
        "new_stop_order",
        order_type="stop_limit",
        side="sell",
        stop_price="29000.00",
        price="28999.90",
        quantity="0.0003",
    )
    assert matcher.stop() == 0
    coarse = write_config(
        tmp_path / "coarse.toml", BTC, tick_size="0.1", lot_size="0.001", min_quantity="0.001"
    )
    before = files_of(data_dir, BTC)
    result = refused_start(data_dir, BTC, "--config", str(coarse), "--apply-rules")
    assert result.returncode == 2, result.stderr
    assert f"resting order {off_grid['order_id']} is off the new tick_size 0.1" in result.stderr
    assert files_of(data_dir, BTC) == before

    matcher = spawn(data_dir, "cancel.log").start()
    matcher.request("cancel_order", order_id=off_grid["order_id"])
    assert matcher.stop() == 0
    result = refused_start(data_dir, BTC, "--config", str(coarse), "--apply-rules")
    assert result.returncode == 2
    assert f"pending stop {stop['order_id']} is off the new lot_size 0.001" in result.stderr

    matcher = spawn(data_dir, "cancel-stop.log").start()
    matcher.request("cancel_order", order_id=stop["order_id"])
    assert matcher.stop() == 0
    applied = spawn(data_dir, "coarse.log", extra=["--config", str(coarse), "--apply-rules"])
    applied.start()
    assert applied.request("book")["asks"] == [["30000.10", "1.0000"]]
    assert (
        applied.raw("new_order", order_type="limit", side="buy", price="29999.95", quantity="0.5")[
            "error"
        ]["code"]
        == "invalid_price"
    )
    assert (
        applied.raw(
            "new_order", order_type="limit", side="buy", price="29999.9", quantity="0.0005"
        )["error"]["code"]
        == "invalid_quantity"
    )
    fill = order(applied, "buy", "30000.1", "0.25")
    assert fill["status"] == "filled" and fill["trades"][0]["price"] == "30000.10"
    assert (
        applied.request("get_order", order_id=on_grid["order_id"])["remaining_quantity"] == "0.7500"
    )
    live = applied.request("ping", hash=True)
    applied.stop()
    result = replay(data_dir, BTC, "--verify", "--config", coarse)
    assert result.returncode == 0, result.stderr
    assert figures(result.stdout)["state_hash"] == live["state_hash"]


def test_a_finer_tick_and_lot_rescale_the_book_exactly(tmp_path: Path, spawn: Spawn) -> None:
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, symbol=ETH).start()
    order(matcher, "sell", "2000.01", "1.5")
    order(matcher, "buy", "2000.01", "0.25")  # a trade: 0.25 @ 2000.01
    order(matcher, "buy", "1999.99", "0.003")
    matcher.request(
        "new_stop_order",
        order_type="stop_limit",
        side="buy",
        stop_price="2100.00",
        price="2100.05",
        quantity="0.002",
    )
    before_book = matcher.request("book")
    before_trades = matcher.request("trades")["trades"]
    assert matcher.stop() == 0
    fine = write_config(tmp_path / "fine.toml", ETH, tick_size="0.001", lot_size="0.0001")
    applied = spawn(
        data_dir, "fine.log", symbol=ETH, extra=["--config", str(fine), "--apply-rules"]
    ).start()
    book = applied.request("book")
    before_book.pop("timestamp")
    book.pop("timestamp")
    assert book == {
        **before_book,
        "bids": [["1999.990", "0.0030"]],
        "asks": [["2000.010", "1.2500"]],
    }
    assert [
        (t["price"], t["quantity"], t["maker_fee"], t["taker_fee"])
        for t in applied.request("trades")["trades"]
    ] == [
        (t["price"] + "0", t["quantity"] + "0", t["maker_fee"], t["taker_fee"])
        for t in before_trades
    ]
    # The finer grid is open to new orders; the old integers now count tenths of a cent.
    assert order(applied, "buy", "1999.995", "0.0015")["price"] == "1999.995"
    fill = order(applied, "buy", "2000.01", "0.0011")
    assert (fill["trades"][0]["price"], fill["trades"][0]["quantity"]) == ("2000.010", "0.0011")
    live = applied.request("ping", hash=True)
    applied.kill()
    result = replay(data_dir, ETH, "--verify")
    assert result.returncode == 0, result.stderr
    assert figures(result.stdout)["state_hash"] == live["state_hash"]


def test_the_rules_survive_in_snapshots_when_their_record_is_pruned(
    tmp_path: Path, spawn: Spawn
) -> None:
    data_dir = tmp_path / "data"
    flags = ["--prune-segments", "--segment-bytes", "200"]
    matcher = spawn(data_dir, snapshot_every=5, extra=flags).start()
    for i in range(30):
        order(matcher, "buy", str(29_000 + i), "0.01")
    assert matcher.stop() == 0
    assert all(command[0] != CMD_RULES for command in journaled_commands(data_dir, BTC))
    config = write_config(tmp_path / "tick.toml", BTC, tick_size="0.02")
    result = refused_start(data_dir, BTC, "--config", str(config))
    assert result.returncode == 2
    assert "tick_size: journaled 0.01, configured 0.02" in result.stderr
    assert spawn(data_dir, "again.log", extra=flags).start().stop() == 0


# -- replay and old journals ---------------------------------------------------------------


def test_replay_uses_the_journaled_rules_even_when_the_config_says_otherwise(
    tmp_path: Path, spawn: Spawn
) -> None:
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir, symbol=ETH).start()
    order(matcher, "sell", "2000", "0.5")
    order(matcher, "buy", "2000", "0.125")
    live = matcher.request("ping", hash=True)
    matcher.kill()
    config = write_config(tmp_path / "wrong.toml", ETH, lot_size="0.0001", maker_fee_rate="0.0009")
    trades_csv = tmp_path / "trades.csv"
    result = replay(data_dir, ETH, "--config", config, "--verify", "--csv", trades_csv)
    assert result.returncode == 0, result.stderr
    assert figures(result.stdout)["state_hash"] == live["state_hash"]
    assert "lot_size=0.001" in figures(result.stdout)["rules"]
    assert "lot_size: journaled 0.001, configured 0.0001" in result.stderr
    with open(trades_csv, newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["price"], row["quantity"], row["maker_fee"]) == ("2000.00", "0.125", "0.025")


def test_an_old_journal_adopts_the_configured_rules_once(tmp_path: Path, spawn: Spawn) -> None:
    """A journal written before rules were journaled has no rules record: the first start
    adopts the configured rules with a warning and journals them; from then on they bind."""
    data_dir = tmp_path / "data"
    journal = Journal(journal_dir(data_dir, ETH), fsync="off")
    journal.open()
    for seq, side, price in ((1, SELL, 200_000), (2, BUY, 199_000)):
        journal.append(
            seq,
            codec.encode_command(
                (
                    CMD_NEW_ORDER,
                    seq,
                    1_700_000_000_000_000 + seq,
                    "anonymous",
                    side,
                    LIMIT,
                    GTC,
                    price,
                    5,
                    False,
                    STP_CANCEL_NEWEST,
                    None,
                )
            ),
        )
    journal.commit()
    journal.close()
    matcher = spawn(data_dir, symbol=ETH).start()
    assert "has no rules record" in matcher.log()
    assert matcher.request("book")["asks"] == [["2000.00", "0.005"]]  # lot 0.001: 5 lots
    assert matcher.request("ping")["seq"] == 3
    assert matcher.stop() == 0
    commands = journaled_commands(data_dir, ETH)
    assert [c[0] for c in commands] == [CMD_NEW_ORDER, CMD_NEW_ORDER, CMD_RULES]
    assert commands[2][3:] == rules_of(load_config().symbols[ETH])
    again = spawn(data_dir, "again.log", symbol=ETH).start()
    assert "has no rules record" not in again.log()
    again.stop()
    config = write_config(tmp_path / "lot.toml", ETH, lot_size="0.0001")
    assert refused_start(data_dir, ETH, "--config", str(config)).returncode == 2


# -- the engine's handler, alone -----------------------------------------------------------


def test_the_engine_rescales_exactly_and_round_trips_through_its_state() -> None:
    engine = Engine()
    btc = rules_of(load_config().symbols[BTC])  # tick 0.01, lot 0.0001
    engine.apply(rules_command(1, 1, btc))
    engine.apply((CMD_NEW_ORDER, 2, 2, "a", SELL, LIMIT, GTC, 3_000_000, 20_000, False, 0, "x"))
    engine.apply((CMD_NEW_ORDER, 3, 3, "b", BUY, LIMIT, GTC, 3_000_000, 5_000, False, 0, None))
    [trade] = engine.recent_trades
    finer = ("0.001", "0.00001", *btc[2:])
    engine.apply(rules_command(4, 4, finer))
    engine.check()
    assert engine.grid_units == ("0.001", "0.00001")
    [rescaled] = engine.recent_trades
    assert rescaled[2:4] == (30_000_000, 50_000)  # 30000 and 0.5, in the new units
    assert rescaled[7:9] == (trade[7] * 100, trade[8] * 100)  # fee units are 100x finer
    assert engine.book.orders[2].leaves == 150_000
    assert (
        Engine.from_state(
            codec.decode_state(codec.encode_state(engine.export_state()))
        ).state_hash()
        == engine.state_hash()
    )
