"""Candles are replayed state of the real matcher process: they survive kill -9 and a
clean stop exactly, and a snapshot written before they were state (version 1) is passed
over for the whole journal, or taken with empty candles when the journal was pruned
(docs/journal.md, "Candles")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from matcher import codec
from matcher.candles import INTERVALS
from matcher.journal import list_segments
from matcher.service import journal_dir, snapshot_dir
from matcher.snapshot import HEADER, list_snapshots, write_snapshot
from tests.matcher.test_service import SYMBOL, MatcherProcess, spawner
from tests.support import crossing_orders, pipeline_all

Spawn = Callable[..., MatcherProcess]


@pytest.fixture(name="spawn")
def spawn_fixture(tmp_path: Path) -> Iterator[Spawn]:
    yield from spawner(tmp_path)


def trade(matcher: MatcherProcess, count: int, offset: int = 0) -> None:
    """`count` trades at varied prices and sizes, pipelined."""
    assert matcher.client is not None
    fills = [(str(100 + i % 9), f"0.{1 + i % 7:04d}") for i in range(offset, offset + count)]
    pipeline_all(matcher.client, crossing_orders(fills))


def market_data(matcher: MatcherProcess) -> dict[str, Any]:
    """The state hash, every interval's candles and the ticker (but its clock)."""
    ticker = matcher.request("ticker")
    ticker.pop("timestamp")
    return {
        "state_hash": matcher.request("ping", hash=True)["state_hash"],
        "candles": {
            name: matcher.request("candles", interval=name, limit=1000) for name in INTERVALS
        },
        "ticker": ticker,
    }


def test_candles_survive_kill_9_and_a_clean_stop_exactly(tmp_path: Path, spawn: Spawn) -> None:
    matcher = spawn(tmp_path / "data", fsync="batch", snapshot_every=150).start()
    trade(matcher, 200)  # a snapshot child runs meanwhile: recovery = snapshot + records
    before = market_data(matcher)
    assert before["candles"]["1d"]["candles"][0]["trade_count"] == 200
    matcher.kill()
    matcher.start()
    assert market_data(matcher) == before
    trade(matcher, 30, offset=200)
    after_more = market_data(matcher)
    assert matcher.stop() == 0
    matcher.start()
    assert market_data(matcher) == after_more


def rewrite_as_version_1(directory: Path) -> list[int]:
    """Every snapshot of `directory` as the old code wrote it: no candles, version 1."""
    seqs = []
    for seq, path in list_snapshots(directory):
        state = dict(codec.decode_state(path.read_bytes()[HEADER.size :]))
        del state["candles"]
        state["version"] = 1
        write_snapshot(directory, seq, codec.encode_state(state), keep=10)
        seqs.append(seq)
    return seqs


def test_a_snapshot_without_candles_is_passed_over_for_the_whole_journal(
    tmp_path: Path,
    spawn: Spawn,
) -> None:
    data_dir = tmp_path / "data"
    matcher = spawn(data_dir).start()
    trade(matcher, 50)
    before = market_data(matcher)
    assert matcher.stop() == 0
    assert rewrite_as_version_1(snapshot_dir(data_dir, SYMBOL))
    restarted = spawn(data_dir, "restarted.log").start()
    assert market_data(restarted) == before  # rebuilt exactly by the replay
    assert "has no candles" in restarted.log() and "or the whole journal" in restarted.log()


def test_a_snapshot_without_candles_on_a_pruned_journal_is_taken_with_empty_candles(
    tmp_path: Path,
    spawn: Spawn,
) -> None:
    data_dir = tmp_path / "data"
    flags = ["--segment-bytes", "4096", "--prune-segments"]
    matcher = spawn(data_dir, snapshot_every=100, extra=flags).start()
    trade(matcher, 300)
    book, trades = matcher.request("book", depth=1000), matcher.request("trades", limit=1000)
    assert matcher.stop() == 0
    assert list_segments(journal_dir(data_dir, SYMBOL))[0][0] > 1, "segments were pruned"
    rewrite_as_version_1(snapshot_dir(data_dir, SYMBOL))
    restarted = spawn(data_dir, "restarted.log", extra=flags).start()
    assert "has no candles" in restarted.log() and "candles start empty" in restarted.log()
    assert restarted.request("candles", interval="1m")["candles"] == []
    assert restarted.request("ticker")["trade_count_24h"] == 0
    restarted_book = restarted.request("book", depth=1000)
    assert (restarted_book["bids"], restarted_book["asks"]) == (book["bids"], book["asks"])
    assert restarted.request("trades", limit=1000) == trades
    trade(restarted, 1, offset=7)  # and from here on they are built again
    [candle] = restarted.request("candles", interval="1m")["candles"]
    assert (candle["trade_count"], candle["volume"], candle["close"]) == (1, "0.0001", "107.00")
