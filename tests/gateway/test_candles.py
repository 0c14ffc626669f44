"""GET /candles and GET /ticker on real processes: volumes add up to the trades (over
REST and in the replay's candle CSV), candles survive kill -9 and a clean stop exactly,
bad parameters are 400s naming them (docs/api.md, "Candles" and "Ticker")."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from clients.zmq_client import MatcherClient
from matcher.candles import INTERVALS
from matcher.protocol import CANDLE_FIELDS, TICKER_FIELDS
from tests.gateway.conftest import BTC, GatewaySystem
from tests.support import REPO, crossing_orders, pipeline_all


@pytest.fixture
def market(tmp_path: Path) -> Iterator[GatewaySystem]:
    running = GatewaySystem(tmp_path, (BTC,)).start()
    try:
        yield running
    finally:
        running.stop()


def trade(system: GatewaySystem, count: int, offset: int = 0) -> None:
    """`count` trades at varied prices and sizes (straight to the matcher: quicker)."""
    client = MatcherClient(system.endpoints[BTC][0], timeout=10.0)
    try:
        fills = [
            (f"{100 + i % 11}.{i % 100:02d}", f"0.{1 + i % 13:04d}")
            for i in range(offset, offset + count)
        ]
        pipeline_all(client, crossing_orders(fills))
    finally:
        client.close()


def totals(rows: list[dict[str, Any]], volume: str, quote: str, count: str) -> tuple:
    return (
        sum(Decimal(r[volume]) for r in rows),
        sum(Decimal(r[quote]) for r in rows),
        sum(int(r[count]) for r in rows),
    )


def test_candle_volumes_add_up_to_the_trades_over_rest_and_in_the_replay_csv(
    market: GatewaySystem,
    tmp_path: Path,
) -> None:
    trade(market, 300)
    with market.rest() as rest:
        trades = rest.trades(BTC, limit=1000)["trades"]
        assert len(trades) == 300
        expected = (
            sum(Decimal(t["quantity"]) for t in trades),
            sum(Decimal(t["price"]) * Decimal(t["quantity"]) for t in trades),
            300,
        )
        series = {name: rest.candles(BTC, interval=name, limit=1000) for name in INTERVALS}
        ticker = rest.ticker(BTC)
    for name, answer in series.items():
        assert (answer["symbol"], answer["interval"]) == (BTC, name)
        assert totals(answer["candles"], "volume", "quote_volume", "trade_count") == expected
        for candle in answer["candles"]:
            assert tuple(candle) == CANDLE_FIELDS
            assert Decimal(candle["low"]) <= min(Decimal(candle["open"]), Decimal(candle["close"]))
    [day] = series["1d"]["candles"]
    assert (day["open"], day["close"]) == (trades[-1]["price"], trades[0]["price"])
    assert tuple(ticker) == TICKER_FIELDS
    assert (
        Decimal(ticker["volume_24h"]),
        Decimal(ticker["quote_volume_24h"]),
        ticker["trade_count_24h"],
    ) == expected
    assert (ticker["open_24h"], ticker["last_price"]) == (day["open"], day["close"])
    assert Decimal(ticker["change_24h"]) == Decimal(day["close"]) - Decimal(day["open"])
    assert ticker["bid_price"] is None and ticker["ask_price"] is None  # every order filled

    market.matchers[BTC].stop()  # replay reads a folder no matcher writes to
    out = tmp_path / "candles.csv"
    result = subprocess.run(
        [
            sys.executable,
            "run.py",
            "replay",
            "--data-dir",
            str(tmp_path / "data"),
            "--symbol",
            BTC,
            "--candles",
            "1s",
            "--csv",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as handle:
        reader = csv.reader(handle)
        assert tuple(next(reader)) == CANDLE_FIELDS
        rows = [dict(zip(CANDLE_FIELDS, row, strict=True)) for row in reader]
    assert totals(rows, "volume", "quote_volume", "trade_count") == expected
    rest_rows = [{k: str(v) for k, v in c.items()} for c in series["1s"]["candles"]]
    assert rows == rest_rows  # the same candles, written the same way


def state_hash(system: GatewaySystem) -> str:
    client = MatcherClient(system.endpoints[BTC][0], timeout=10.0)
    try:
        return str(client.request("ping", hash=True)["state_hash"])
    finally:
        client.close()


def test_candles_survive_kill_9_and_a_clean_stop_exactly(market: GatewaySystem) -> None:
    trade(market, 120)
    with market.rest() as rest:
        before = (
            state_hash(market),
            {name: rest.candles(BTC, interval=name) for name in INTERVALS},
        )
        market.matchers[BTC].kill()
        market.start_matcher(BTC)
        after_kill = (
            state_hash(market),
            {name: rest.candles(BTC, interval=name) for name in INTERVALS},
        )
        assert after_kill == before
        trade(market, 40, offset=120)
        more = (state_hash(market), {name: rest.candles(BTC, interval=name) for name in INTERVALS})
        assert market.matchers[BTC].stop() == 0
        market.start_matcher(BTC)
        assert (
            state_hash(market),
            {name: rest.candles(BTC, interval=name) for name in INTERVALS},
        ) == more
        assert sum(c["trade_count"] for c in more[1]["1d"]["candles"]) == 160


def test_start_end_and_limit_select_candles_by_open_time(market: GatewaySystem) -> None:
    trade(market, 30)
    with market.rest() as rest:
        seconds = rest.candles(BTC, interval="1s", limit=1000)["candles"]
        first, last = seconds[0]["open_time"], seconds[-1]["open_time"]
        assert rest.candles(BTC, interval="1s", start=first, end=first)["candles"] == seconds[:1]
        assert rest.candles(BTC, interval="1s", start=last)["candles"] == seconds[-1:]
        assert rest.candles(BTC, interval="1s", limit=1)["candles"] == seconds[-1:]
        assert rest.candles(BTC, interval="1s", end="2000-01-01T00:00:00Z")["candles"] == []
        minutes = rest.candles(BTC)
        assert minutes["interval"] == "1m" and minutes["candles"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("interval=2m", "interval"),
        ("interval=", "interval"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("start=yesterday", "start"),
        ("end=2026-13-01T00:00:00Z", "end"),
        ("since=2026-12-04T10:00:00Z", "since"),
    ],
)
def test_bad_candle_parameters_are_400_naming_them(
    market: GatewaySystem,
    query: str,
    named: str,
) -> None:
    with market.http() as http:
        response = http.get(f"/candles/{BTC}?{query}")
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]


def test_ticker_and_candles_of_an_unknown_symbol_are_404_and_the_ticker_takes_no_query(
    market: GatewaySystem,
) -> None:
    with market.http() as http:
        assert http.get("/candles/NOPE-USDT").status_code == 404
        assert http.get("/ticker/NOPE-USDT").status_code == 404
        refused = http.get(f"/ticker/{BTC}?interval=1m")
        assert refused.status_code == 400 and "interval" in refused.json()["error"]["message"]
        empty = http.get(f"/ticker/{BTC}").json()
    assert tuple(empty) == TICKER_FIELDS
    assert (
        empty["last_price"],
        empty["open_24h"],
        empty["volume_24h"],
        empty["trade_count_24h"],
        empty["change_percent_24h"],
    ) == (None, None, "0", 0, None)


def test_start_after_end_is_an_empty_window(market: GatewaySystem) -> None:
    with market.http() as http:
        answer = http.get(f"/candles/{BTC}?start=2026-12-04T10:00:00Z&end=2026-12-04T09:00:00Z")
    assert answer.status_code == 200 and answer.json()["candles"] == []
