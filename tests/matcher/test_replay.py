"""`python -m matcher.replay` on a journal written by a real matcher process.

It prints the live matcher's state hash, writes every trade to CSV, stops at --until-seq
(below and above the newest snapshot), passes --verify, fails it on damage, and never
modifies the journal.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from matcher.journal import HEADER, list_segments
from matcher.protocol import TRADE_FIELDS
from matcher.service import journal_dir, snapshot_dir
from matcher.snapshot import list_snapshots
from tests.matcher.test_service import SYMBOL, MatcherProcess
from tests.support import run_replay


def replay(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_replay(SYMBOL, *args)


def figures(stdout: str) -> dict[str, str]:
    """The `key: value` lines of the replay's output."""
    found = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            found[key] = value
    return found


def journal_bytes(data_dir: Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes() for _, path in list_segments(journal_dir(data_dir, SYMBOL))
    }


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A journal from a real matcher: orders, cancels, amends, stops and trades; a snapshot
    in the middle; left by SIGKILL so the replay after the snapshot is not empty."""
    folder = tmp_path_factory.mktemp("history")
    data_dir = folder / "data"
    matcher = MatcherProcess(data_dir, folder / "matcher.log", snapshot_every=300)
    try:
        return _write_history(matcher.start(), data_dir)
    finally:
        matcher.kill()


def _write_history(matcher: MatcherProcess, data_dir: Path) -> dict[str, Any]:
    hashes: dict[int, str] = {}
    resting: list[int] = []
    for i in range(420):
        side = "buy" if i % 2 else "sell"
        account = ("anonymous", "x", "y")[i % 3]
        if i % 9 == 8:
            order = matcher.request(
                "new_order", order_type="market", side=side, quantity="0.03", account=account
            )
        elif i % 13 == 12 and resting:
            order = matcher.raw("cancel_order", order_id=resting.pop(0))
        elif i % 17 == 16 and resting:
            order = matcher.raw("amend_order", order_id=resting[-1], price="29990")
        elif i % 29 == 28:
            order = matcher.raw(
                "new_stop_order",
                order_type="stop_limit",
                side="buy",
                stop_price="30015",
                price="30020",
                quantity="0.02",
            )
        else:
            offset = 1 + i % 11
            price = 30_000 - offset if side == "buy" else 30_000 + offset
            order = matcher.request(
                "new_order",
                order_type="limit",
                side=side,
                price=str(price),
                quantity="0.02",
                account=account,
            )
            if account == "anonymous" and order["status"] == "new":
                resting.append(order["order_id"])
        ping = matcher.request("ping", hash=True)
        hashes[ping["seq"]] = ping["state_hash"]
    live_ping = matcher.request("ping", hash=True)
    trades = matcher.request("trades", limit=1000)["trades"]
    matcher.kill()
    snapshots = [seq for seq, _ in list_snapshots(snapshot_dir(data_dir, SYMBOL))]
    assert snapshots and snapshots[-1] < live_ping["seq"]
    assert 0 < len(trades) < 1000, "all trades must fit one `trades` answer"
    return {
        "data_dir": data_dir,
        "ping": live_ping,
        "hashes": hashes,
        "trades": trades,
        "snapshot_seq": snapshots[-1],
    }


def test_replay_prints_the_live_state_hash(history: dict[str, Any]) -> None:
    before = journal_bytes(history["data_dir"])
    result = replay("--data-dir", history["data_dir"])
    assert result.returncode == 0, result.stderr
    found = figures(result.stdout)
    assert found["state_hash"] == history["ping"]["state_hash"]
    assert int(found["seq"]) == int(found["records"]) == history["ping"]["seq"]
    assert int(found["trades"]) == len(history["trades"])
    assert f"snapshot at seq {history['snapshot_seq']:,}" in result.stdout
    assert "records/s" in found["elapsed"]
    assert journal_bytes(history["data_dir"]) == before, "replay modified the journal"


def test_csv_has_every_trade(history: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "trades.csv"
    result = replay("--data-dir", history["data_dir"], "--csv", out)
    assert result.returncode == 0, result.stderr
    assert figures(result.stdout)["state_hash"] == history["ping"]["state_hash"]
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    header = list(TRADE_FIELDS)  # the header of GET /trades?format=csv
    assert rows[0] == header
    live = [[str(trade[name]) for name in header] for trade in reversed(history["trades"])]
    assert rows[1:] == live


@pytest.mark.parametrize("where", ["below the snapshot", "above the snapshot"])
def test_until_seq(history: dict[str, Any], where: str) -> None:
    snapshot_seq = history["snapshot_seq"]
    candidates = sorted(
        seq
        for seq in history["hashes"]
        if (seq < snapshot_seq if where.startswith("below") else seq > snapshot_seq)
        and seq < history["ping"]["seq"]
    )
    until = candidates[len(candidates) // 2]
    result = replay("--data-dir", history["data_dir"], "--until-seq", str(until))
    assert result.returncode == 0, result.stderr
    found = figures(result.stdout)
    assert (int(found["seq"]), found["state_hash"]) == (until, history["hashes"][until])
    used_snapshot = f"snapshot at seq {snapshot_seq:,}" in result.stdout
    assert used_snapshot == where.startswith("above")


def test_verify_passes_on_a_sound_journal(history: dict[str, Any]) -> None:
    result = replay("--data-dir", history["data_dir"], "--verify")
    assert result.returncode == 0, result.stderr
    assert "verify: OK" in result.stdout
    assert f"crc: {history['ping']['seq']:,} records OK" in result.stdout
    assert figures(result.stdout)["state_hash"] == history["ping"]["state_hash"]


def test_verify_fails_on_a_corrupted_copy(history: dict[str, Any], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(history["data_dir"], data_dir)
    [(_, segment)] = list_segments(journal_dir(data_dir, SYMBOL))
    data = bytearray(segment.read_bytes())
    offset = 0
    for _ in range(100):  # the start of record 101
        length, _crc = HEADER.unpack_from(data, offset)
        offset += HEADER.size + length
    data[offset + HEADER.size + 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    result = replay("--data-dir", data_dir, "--verify")
    assert result.returncode == 1
    assert f"journal corrupt: {segment} at offset {offset}" in result.stderr
    assert "replay FAILED" in result.stderr
    plain = replay("--data-dir", data_dir)  # before the snapshot, but every CRC is read
    assert plain.returncode == 1
    assert f"journal corrupt: {segment} at offset {offset}" in plain.stderr


def test_a_torn_tail_is_reported_and_left_alone(history: dict[str, Any], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(history["data_dir"], data_dir)
    [(_, segment)] = list_segments(journal_dir(data_dir, SYMBOL))
    with open(segment, "ab") as handle:
        handle.write(b"\x40\x00\x00\x00\x01\x02")  # a header cut short by a crash
    before = segment.read_bytes()
    result = replay("--data-dir", data_dir, "--verify")
    assert result.returncode == 0, result.stderr
    assert "torn tail" in result.stderr
    assert figures(result.stdout)["state_hash"] == history["ping"]["state_hash"]
    assert segment.read_bytes() == before, "replay must not cut the tail itself"


def test_verify_uses_the_journaled_fee_rates_not_the_configured_ones(
    history: dict[str, Any], tmp_path: Path
) -> None:
    """The rules are journaled state (docs/journal.md): a configuration with other fee
    rates changes nothing in the replay, and a note on stderr names the difference."""
    config = tmp_path / "cfg.toml"
    config.write_text(
        f'[symbols.{SYMBOL}]\ntick_size = "0.01"\nlot_size = "0.0001"\n'
        'maker_fee_rate = "0.0005"\ntaker_fee_rate = "0.0007"\n'
    )
    result = replay("--data-dir", history["data_dir"], "--verify", "--config", config)
    assert result.returncode == 0, result.stderr
    assert figures(result.stdout)["state_hash"] == history["ping"]["state_hash"]
    assert "maker_fee_rate: journaled 0.0001, configured 0.0005" in result.stderr


def test_missing_journal_is_an_error(tmp_path: Path) -> None:
    result = replay("--data-dir", tmp_path / "nothing")
    assert result.returncode == 1
    assert "no journal segments" in result.stderr
