"""The dashboard at /test (gateway/static/), driven in a real Chromium against run.py.

One system (two matchers, the gateway, the feed hub) serves the whole module; each test
opens the page in a fresh browser context (fresh localStorage) and keeps to its own
account and price band, so the tests do not depend on each other's order.

Playwright's browser download does not work here: the tests drive Debian's Chromium
and are skipped where it is missing.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.zmq_client import MatcherClient
from matcher.protocol import TRADE_FIELDS
from tests.support import REPO, Child, free_port, free_port_run, wait_for_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = REPO / "docs" / "dashboard.png"
CSV_HEADER = list(TRADE_FIELDS)  # the server's CSV header (matcher/protocol.py)

if not CHROMIUM.exists():
    pytest.skip(
        "Chromium is not installed at /usr/bin/chromium: apt-get install chromium",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed: pip install playwright"
)
expect = sync_api.expect
expect.set_options(timeout=15_000)

Page = Any  # playwright.sync_api.Page; the import above is conditional


# ---- the system -----------------------------------------------------------------------


def wait_healthy(base: str, child: Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not child.alive:
            pytest.fail(f"run.py exited early:\n{child.log()}")
        try:
            response = httpx.get(f"{base}/health", timeout=2)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    pytest.fail(f"/health never answered 200 ({last}):\n{child.log()}")


def start_system(tmp: Path, *extra: str) -> tuple[str, Child]:
    """python run.py on free loopback ports; returns the gateway's URL and the process."""
    http_port = free_port()
    ws_port = free_port()
    while ws_port == http_port:
        ws_port = free_port()
    zmq_port = free_port_run(4, {http_port, ws_port})
    child = Child(
        [
            "run.py",
            "--data-dir",
            str(tmp / "data"),
            "--http-port",
            str(http_port),
            "--ws-port",
            str(ws_port),
            "--zmq-port",
            str(zmq_port),
            *extra,
        ],
        tmp / "run.log",
    ).start()
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_for_port(http_port, timeout=30)
        wait_for_port(ws_port, timeout=30)
        wait_healthy(base, child)
    except BaseException:
        child.stop()
        raise
    return base, child


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Child]]:
    base, child = start_system(tmp_path_factory.mktemp("dashboard"))
    try:
        yield base, child
    finally:
        child.stop()


@pytest.fixture(scope="module")
def base_url(system: tuple[str, Child]) -> str:
    return system[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Page]:
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# ---- helpers ----------------------------------------------------------------------------


def rest_order(base_url: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{base_url}/submit_order", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def open_dashboard(page: Page, symbol: str) -> None:
    page.goto(f"/test#{symbol}")
    expect(page.locator("#symbol-select")).to_have_value(symbol)
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    expect(page.locator("#status")).to_have_text("live")


def set_account(page: Page, name: str) -> None:
    page.fill("#account", name)
    page.press("#account", "Tab")  # the change event saves it and reloads open orders


def place_order(
    page: Page,
    *,
    side: str,
    quantity: str,
    order_type: str = "limit",
    price: str | None = None,
    stop_price: str | None = None,
    time_in_force: str | None = None,
) -> dict[str, str | None]:
    """Fill the form, submit, wait for the answer in the results list, return its summary."""
    results = page.locator("#order-results li")
    before = results.count()
    page.click(f"label[for=side-{side}]")
    page.select_option("#order-type", order_type)
    if stop_price is not None:
        page.fill("#stop-price", stop_price)
    if price is not None:
        page.fill("#price", price)
    if time_in_force is not None:
        page.select_option("#time-in-force", time_in_force)
    page.fill("#quantity", quantity)
    page.click("#submit-order")
    expect(results).to_have_count(min(before + 1, 40))
    newest = results.first
    return {
        "order_id": newest.get_attribute("data-order-id"),
        "status": newest.get_attribute("data-status"),
    }


def ladder(page: Page, side: str) -> list[list[str]]:
    """[[price, quantity], ...] best first, as the ladder shows them."""
    rows = page.locator(f"#{side} .ladder-row")
    levels = [
        [row.get_attribute("data-price"), row.get_attribute("data-quantity")] for row in rows.all()
    ]
    return levels[::-1] if side == "asks" else levels  # asks are drawn best-last


def expect_ladder_matches_rest(page: Page, base_url: str, symbol: str) -> None:
    """The ladder shows the top of the book exactly as GET /orderbook has it."""
    deadline = time.monotonic() + 10
    while True:
        book = httpx.get(f"{base_url}/orderbook/{symbol}?depth=100", timeout=5).json()
        shown = {"bids": ladder(page, "bids"), "asks": ladder(page, "asks")}
        expected = {side: book[side][: len(shown[side]) or 100] for side in ("bids", "asks")}
        if shown == expected:
            return
        if time.monotonic() > deadline:
            assert shown == expected
        time.sleep(0.2)


def tape_ids(page: Page) -> list[str]:
    return [row.get_attribute("data-trade-id") or "" for row in page.locator("#tape-body tr").all()]


# ---- tests ------------------------------------------------------------------------------


def test_resting_sell_then_crossing_buy_from_the_form(page: Page, base_url: str) -> None:
    open_dashboard(page, "ETH-USDT")
    set_account(page, "eth-maker")
    sell = place_order(page, side="sell", price="2100.00", quantity="0.500")
    assert sell["status"] == "new"
    level = page.locator('#asks .ladder-row[data-price="2100.00"]')
    expect(level).to_have_attribute("data-quantity", "0.500")

    set_account(page, "eth-taker")  # one account would meet self-trade prevention
    buy = place_order(page, side="buy", price="2100.00", quantity="0.200")
    assert buy["status"] == "filled"
    expect(level).to_have_attribute("data-quantity", "0.300")

    trade = page.locator("#tape-body tr").first
    expect(trade).to_have_attribute("data-side", "buy")
    cells = trade.locator("td")
    expect(cells.nth(2)).to_have_text("2100.00")
    expect(cells.nth(3)).to_have_text("0.200")
    # maker 0.01% and taker 0.02% of 2100 x 0.2
    assert Decimal(cells.nth(4).inner_text()) == Decimal("0.042")
    assert Decimal(cells.nth(5).inner_text()) == Decimal("0.084")
    expect(page.locator("#last-price")).to_have_text("2100.00")
    expect(page.locator("#order-notice")).to_contain_text("filled")
    expect_ladder_matches_rest(page, base_url, "ETH-USDT")


def test_resting_order_shows_in_open_orders_and_cancel_removes_it(
    page: Page, base_url: str
) -> None:
    open_dashboard(page, "ETH-USDT")
    set_account(page, "alice")

    order = place_order(page, side="buy", price="1500.00", quantity="1.000")
    assert order["status"] == "new"
    order_id = order["order_id"]
    row = page.locator(f'#open-orders tr[data-order-id="{order_id}"]')
    expect(row).to_be_visible()
    expect(page.locator('#bids .ladder-row[data-price="1500.00"]')).to_have_count(1)
    # The account field named the account: alice sees the order, bob does not.
    mine = httpx.get(f"{base_url}/orders/ETH-USDT?status=open&account=alice").json()["orders"]
    theirs = httpx.get(f"{base_url}/orders/ETH-USDT?status=open&account=bob").json()["orders"]
    assert str(order_id) in {str(o["order_id"]) for o in mine}
    assert str(order_id) not in {str(o["order_id"]) for o in theirs}

    page.click(f'[data-cancel="{order_id}"]')
    expect(row).to_have_count(0)
    expect(page.locator('#bids .ladder-row[data-price="1500.00"]')).to_have_count(0)
    newest = page.locator("#order-results li").first
    expect(newest).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#open-orders-empty")).to_be_visible()

    page.reload()
    open_dashboard(page, "ETH-USDT")
    expect(page.locator("#account")).to_have_value("alice")  # kept in localStorage
    expect(page.locator("#open-orders-body tr")).to_have_count(0)


def test_stop_order_waits_in_open_orders(page: Page, base_url: str) -> None:
    open_dashboard(page, "ETH-USDT")
    set_account(page, "stopper")

    order = place_order(
        page,
        side="sell",
        order_type="stop_limit",
        stop_price="1000.00",
        price="990.00",
        quantity="0.100",
    )
    assert order["status"] == "pending"
    row = page.locator(f'#open-orders tr[data-order-id="{order["order_id"]}"]')
    expect(row).to_have_attribute("data-status", "pending")
    expect(row).to_contain_text("stop 1000.00")
    page.click(f'[data-cancel="{order["order_id"]}"]')
    expect(row).to_have_count(0)


def test_invalid_order_shows_the_api_error_next_to_the_form(page: Page, base_url: str) -> None:
    open_dashboard(page, "ETH-USDT")
    body = {
        "symbol": "ETH-USDT",
        "order_type": "limit",
        "side": "buy",
        "price": "2000.005",
        "quantity": "1.000",
        "time_in_force": "gtc",
    }
    expected = httpx.post(f"{base_url}/submit_order", json=body)
    assert expected.status_code == 400
    error = expected.json()["error"]

    results = place_order(page, side="buy", price="2000.005", quantity="1.000")
    assert results["status"] == "error"
    message = page.locator("#order-error")
    expect(message).to_be_visible()
    expect(message).to_contain_text(error["code"])
    expect(message).to_contain_text(error["message"])
    expect(page.locator("#price")).to_have_attribute("aria-invalid", "true")

    # A missing quantity: the API's complaint points at the quantity field.
    page.fill("#price", "2000.00")
    expect(page.locator("#price")).not_to_have_attribute("aria-invalid", "true")
    page.fill("#quantity", "")
    page.click("#submit-order")
    expect(message).to_contain_text("quantity")
    expect(page.locator("#quantity")).to_have_attribute("aria-invalid", "true")
    assert not page.locator('#bids .ladder-row[data-price="2000.00"]').count()


def test_csv_export_and_the_server_csv(page: Page, base_url: str) -> None:
    for _ in range(3):
        rest_order(
            base_url,
            symbol="ETH-USDT",
            order_type="limit",
            side="sell",
            price="2100.00",
            quantity="0.010",
            account="csv-maker",
        )
        rest_order(
            base_url,
            symbol="ETH-USDT",
            order_type="market",
            side="buy",
            quantity="0.010",
            account="csv-taker",
        )
    open_dashboard(page, "ETH-USDT")
    # one more trade while the page is open, so the tape holds history and live trades
    rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="sell",
        price="2100.00",
        quantity="0.010",
        account="csv-maker",
    )
    rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="market",
        side="buy",
        quantity="0.010",
        account="csv-taker",
    )
    trades = httpx.get(f"{base_url}/trades/ETH-USDT?limit=1000").json()["trades"]
    expect(page.locator("#tape-body tr")).to_have_count(len(trades))
    shown = tape_ids(page)
    assert shown == [str(t["trade_id"]) for t in trades]  # newest first, none missing

    with page.expect_download() as download:
        page.click("#export-csv")
    path = download.value.path()
    assert download.value.suggested_filename.startswith("ETH-USDT-trades")
    rows = list(csv.reader(io.StringIO(Path(path).read_text())))
    assert rows[0] == CSV_HEADER
    assert [row[0] for row in rows[1:]] == shown
    for row, trade in zip(rows[1:], trades, strict=True):
        assert row == [str(trade[column]) for column in CSV_HEADER]

    href = page.locator("#server-csv").get_attribute("href")
    assert href == "/trades/ETH-USDT?format=csv&limit=1000"
    response = page.request.get(href)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/csv")
    server_rows = list(csv.reader(io.StringIO(response.text())))
    assert server_rows[0] == CSV_HEADER
    assert server_rows == rows  # the client's export of the tape is the server's CSV


def test_theme_toggle_is_remembered(page: Page) -> None:
    open_dashboard(page, "BTC-USDT")
    body = page.locator("body")
    expect(body).to_have_attribute("data-theme", "dark")  # the default
    dark_background = page.evaluate("getComputedStyle(document.body).backgroundColor")

    page.click("#theme-toggle")
    expect(body).to_have_attribute("data-theme", "light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != dark_background
    page.reload()
    expect(body).to_have_attribute("data-theme", "light")

    page.click("#theme-toggle")
    expect(body).to_have_attribute("data-theme", "dark")
    page.reload()
    expect(body).to_have_attribute("data-theme", "dark")


def test_symbol_switch(page: Page, base_url: str) -> None:
    rest_order(
        base_url,
        symbol="BTC-USDT",
        order_type="limit",
        side="buy",
        price="25000.00",
        quantity="0.0100",
        account="switcher",
    )
    open_dashboard(page, "ETH-USDT")
    symbols = list(httpx.get(f"{base_url}/").json()["symbols"])
    assert page.locator("#symbol-select option").all_inner_texts() == symbols

    page.select_option("#symbol-select", "BTC-USDT")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    expect(page.locator('#bids .ladder-row[data-price="25000.00"]')).to_have_count(1)
    assert page.url.endswith("#BTC-USDT")
    assert page.locator("#server-csv").get_attribute("href") == (
        "/trades/BTC-USDT?format=csv&limit=1000"
    )
    expect_ladder_matches_rest(page, base_url, "BTC-USDT")
    # a click on a level copies its price into the order form
    page.select_option("#order-type", "market")
    page.click('#bids .ladder-row[data-price="25000.00"]')
    expect(page.locator("#order-type")).to_have_value("limit")
    expect(page.locator("#price")).to_have_value("25000.00")
    cancel_all(base_url, "BTC-USDT", "switcher")


def cancel_all(base_url: str, symbol: str, account: str) -> None:
    """Leave the shared book as it was found (the screenshot shows it)."""
    orders = httpx.get(f"{base_url}/orders/{symbol}?status=open&account={account}").json()
    for order in orders["orders"]:
        response = httpx.post(
            f"{base_url}/cancel_order",
            json={"symbol": symbol, "order_id": order["order_id"], "account": account},
        )
        assert response.status_code == 200, response.text


def feedhub_pid(supervisor: Child) -> int:
    """The feed hub run.py started (a child of our own run.py process)."""
    assert supervisor.process is not None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == supervisor.process.pid and b"feedhub" in cmdline:
            return int(entry.name)
    raise AssertionError("run.py has no feed hub child")


def test_reconnects_and_resyncs_when_the_feed_hub_restarts(
    page: Page, system: tuple[str, Child]
) -> None:
    base_url, supervisor = system
    open_dashboard(page, "BTC-USDT")
    page.evaluate("""() => {
        window.seenStates = [];
        new MutationObserver(() => window.seenStates.push(
            document.getElementById("status").dataset.state))
          .observe(document.getElementById("status"), {attributes: true});
    }""")

    os.kill(feedhub_pid(supervisor), signal.SIGKILL)  # run.py starts a new one
    # Changed while the hub is down: the dashboard learns it from the new snapshot.
    rest_order(
        base_url,
        symbol="BTC-USDT",
        order_type="limit",
        side="sell",
        price="35000.00",
        quantity="0.0200",
        account="while-down",
    )
    page.wait_for_function("window.seenStates.includes('reconnecting')")
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=40_000)
    expect(page.locator('#asks .ladder-row[data-price="35000.00"]')).to_have_attribute(
        "data-quantity", "0.0200"
    )
    # and the new connection is live: a later change arrives as an update
    rest_order(
        base_url,
        symbol="BTC-USDT",
        order_type="limit",
        side="sell",
        price="35000.00",
        quantity="0.0300",
        account="while-down",
    )
    expect(page.locator('#asks .ladder-row[data-price="35000.00"]')).to_have_attribute(
        "data-quantity", "0.0500"
    )
    cancel_all(base_url, "BTC-USDT", "while-down")
    expect(page.locator('#asks .ladder-row[data-price="35000.00"]')).to_have_count(0)


def wait_resynced(page: Page, resyncs: int) -> None:
    """Until the page has resynchronised `resyncs` times and holds the fresh snapshot."""
    page.wait_for_function(
        "n => window.matchwire.state.resyncs === n && window.matchwire.state.book.synced",
        arg=resyncs,
    )
    assert page.evaluate("window.matchwire.state.resyncs") == resyncs


def test_a_wrong_local_book_is_detected_and_resynchronised(page: Page, base_url: str) -> None:
    rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="sell",
        price="2400.00",
        quantity="1.000",
        account="resync",
    )
    open_dashboard(page, "ETH-USDT")
    level = page.locator('#asks .ladder-row[data-price="2400.00"]')
    expect(level).to_have_attribute("data-quantity", "1.000")

    # A wrong quantity in the local copy: the next update's checksum disagrees.
    page.evaluate("window.matchwire.state.book.asks.set('2400.00', '9.000')")
    rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="buy",
        price="1000.00",
        quantity="0.001",
        account="resync",
    )
    wait_resynced(page, 1)
    expect(level).to_have_attribute("data-quantity", "1.000")

    # A missed update (book_seq jumps): the page takes a fresh snapshot.
    page.evaluate("window.matchwire.state.book.seq -= 1")
    rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="sell",
        price="2400.00",
        quantity="0.500",
        account="resync",
    )
    wait_resynced(page, 2)
    expect(level).to_have_attribute("data-quantity", "1.500")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    expect_ladder_matches_rest(page, base_url, "ETH-USDT")
    cancel_all(base_url, "ETH-USDT", "resync")


def test_screenshot_with_a_live_book(page: Page, base_url: str, tmp_path: Path) -> None:
    """A busy BTC-USDT book, a few trades and the page's own orders; saved for the docs.

    docs/dashboard.png is rewritten when it is missing or MATCHWIRE_SCREENSHOT=1, so an
    ordinary test run does not touch the working tree.
    """
    for i in range(14):
        rest_order(
            base_url,
            symbol="BTC-USDT",
            order_type="limit",
            side="buy",
            price=f"{29990 - i * 2.5:.2f}",
            quantity=f"{0.15 + (i % 5) * 0.21:.4f}",
            account="market-maker",
        )
        rest_order(
            base_url,
            symbol="BTC-USDT",
            order_type="limit",
            side="sell",
            price=f"{30010 + i * 2.5:.2f}",
            quantity=f"{0.12 + (i % 4) * 0.26:.4f}",
            account="market-maker",
        )
    open_dashboard(page, "BTC-USDT")
    set_account(page, "trader")
    for i in range(12):
        side = "buy" if i % 3 else "sell"
        rest_order(
            base_url,
            symbol="BTC-USDT",
            order_type="market",
            side=side,
            quantity=f"{0.05 + (i % 4) * 0.04:.4f}",
            account="taker",
        )
        rest_order(
            base_url,
            symbol="BTC-USDT",
            order_type="limit",
            side=side == "buy" and "sell" or "buy",
            price=f"{30010 if side == 'buy' else 29990:.2f}",
            quantity="0.2500",
            account="market-maker",
        )
        time.sleep(0.15)
    place_order(page, side="sell", order_type="stop_loss", stop_price="29000.00", quantity="0.2000")
    place_order(page, side="buy", order_type="market", quantity="0.1000")
    place_order(page, side="buy", price="29950.00", quantity="0.5000")
    expect(page.locator("#open-orders-body tr")).to_have_count(2)
    expect_ladder_matches_rest(page, base_url, "BTC-USDT")
    # every update the page applied matched the hub's checksum: no resync was needed
    assert page.evaluate("window.matchwire.state.resyncs") == 0
    assert page.evaluate("window.matchwire.state.book.checksumDisabled") is False

    # The price panel as candles (1s: the trades above span a few seconds).
    page.select_option("#chart-mode", "candles")
    page.select_option("#candle-interval", "1s")
    page.wait_for_function(
        "() => { const c = window.matchwire.state.charts.candles; "
        "return c && c.interval === '1s' && c.count > 1; }"
    )
    candles = candles_state(page)
    assert_labels_fit(candles["xLabels"], candles["width"])  # a few candles: no overlap
    page.mouse.move(0, 0)
    page.wait_for_timeout(700)  # let the flash animations settle
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("MATCHWIRE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_api_key_is_sent_and_remembered_when_auth_is_on(browser: Any, tmp_path: Path) -> None:
    config = tmp_path / "auth.toml"
    config.write_text('[api_keys."key-of-carol"]\naccount = "carol"\n')
    base_url, child = start_system(tmp_path, "--config", str(config))
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        open_dashboard(page, "BTC-USDT")
        # GET / says auth is on: the page asks for a key, and the key names the account.
        assert httpx.get(f"{base_url}/").json()["auth"] is True
        expect(page.locator("#api-key")).to_have_attribute("placeholder", "required")
        expect(page.locator("#account")).to_be_disabled()
        refused = place_order(page, side="buy", price="20000.00", quantity="0.0100")
        assert refused["status"] == "error"
        expect(page.locator("#order-error")).to_be_visible()
        expected = httpx.post(
            f"{base_url}/submit_order",
            json={
                "symbol": "BTC-USDT",
                "order_type": "limit",
                "side": "buy",
                "price": "20000.00",
                "quantity": "0.0100",
            },
        )
        assert expected.status_code == 401
        expect(page.locator("#order-error")).to_contain_text(expected.json()["error"]["code"])
        expect(page.locator("#api-key")).to_have_attribute("aria-invalid", "true")

        page.fill("#api-key", "key-of-carol")
        page.press("#api-key", "Tab")
        order = place_order(page, side="buy", price="20000.00", quantity="0.0100")
        assert order["status"] == "new"
        expect(page.locator("#order-error")).to_be_hidden()
        row = page.locator(f'#open-orders tr[data-order-id="{order["order_id"]}"]')
        expect(row).to_be_visible()  # GET /orders sent the key too
        mine = httpx.get(
            f"{base_url}/orders/BTC-USDT?status=open", headers={"X-API-Key": "key-of-carol"}
        ).json()["orders"]
        assert [str(o["order_id"]) for o in mine] == [order["order_id"]]

        page.reload()
        open_dashboard(page, "BTC-USDT")
        expect(page.locator("#api-key")).to_have_value("key-of-carol")
        page.click(f'[data-cancel="{order["order_id"]}"]')
        expect(row).to_have_count(0)
    finally:
        context.close()
        child.stop()


# ---- issue 16: defects seen in Chromium ---------------------------------------------------


def computed(page: Page, selector: str, prop: str) -> str:
    return str(page.eval_on_selector(selector, f"el => getComputedStyle(el).{prop}"))


def sell_colour(page: Page) -> str:
    """The palette's --sell, as the browser resolves it (the best ask is drawn in it)."""
    return computed(page, "#best-ask", "color")


def make_trade(base_url: str, symbol: str, price: str, quantity: str, tag: str) -> None:
    """One trade at `price` between two accounts of this test (sets the last price)."""
    rest_order(
        base_url,
        symbol=symbol,
        order_type="limit",
        side="sell",
        price=price,
        quantity=quantity,
        account=f"{tag}-maker",
    )
    taker = rest_order(
        base_url,
        symbol=symbol,
        order_type="limit",
        side="buy",
        price=price,
        quantity=quantity,
        account=f"{tag}-taker",
        time_in_force="ioc",
    )
    assert taker["status"] == "filled", taker


def test_an_invalid_field_is_outlined_in_red(page: Page) -> None:
    open_dashboard(page, "ETH-USDT")
    set_account(page, "outline")
    plain = computed(page, "#price", "borderTopColor")
    assert plain != sell_colour(page)

    place_order(page, side="buy", price="1900.005", quantity="1.000")  # off the tick grid
    expect(page.locator("#price")).to_have_attribute("aria-invalid", "true")
    # The rule for every text input must not outrank the invalid outline.
    assert computed(page, "#price", "borderTopColor") == sell_colour(page)
    assert sell_colour(page) in computed(page, "#price", "boxShadow")
    assert computed(page, "#quantity", "borderTopColor") == plain

    page.fill("#price", "1900.00")  # typing clears it
    assert computed(page, "#price", "borderTopColor") == plain


def test_would_trigger_immediately_marks_the_stop_price(page: Page, base_url: str) -> None:
    make_trade(base_url, "ETH-USDT", "1750.00", "0.001", "trigger")
    open_dashboard(page, "ETH-USDT")
    set_account(page, "trigger")
    expected = httpx.post(
        f"{base_url}/submit_stop_order",
        json={
            "symbol": "ETH-USDT",
            "order_type": "stop_loss",
            "side": "sell",
            "quantity": "0.100",
            "stop_price": "990000.00",
            "account": "trigger",
        },
    ).json()["error"]
    assert expected["code"] == "would_trigger_immediately"

    # A stop loss has no price field: the stop price is what the refusal is about.
    refused = place_order(
        page, side="sell", order_type="stop_loss", stop_price="990000.00", quantity="0.100"
    )
    assert refused["status"] == "error"
    expect(page.locator("#order-error")).to_contain_text("would_trigger_immediately")
    expect(page.locator("#stop-price")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#price")).to_be_hidden()
    expect(page.locator("#price")).not_to_have_attribute("aria-invalid", "true")
    assert computed(page, "#stop-price", "borderTopColor") == sell_colour(page)

    # A stop limit shows both: still the stop price, although the message says "price".
    page.fill("#stop-price", "")
    expect(page.locator("#stop-price")).not_to_have_attribute("aria-invalid", "true")
    place_order(
        page,
        side="sell",
        order_type="stop_limit",
        stop_price="990000.00",
        price="989000.00",
        quantity="0.100",
    )
    expect(page.locator("#stop-price")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#price")).to_be_visible()
    expect(page.locator("#price")).not_to_have_attribute("aria-invalid", "true")

    # An off-grid stop price names stop_price: that field, not the limit price.
    place_order(
        page,
        side="sell",
        order_type="stop_limit",
        stop_price="1000.005",
        price="990.00",
        quantity="0.100",
    )
    expect(page.locator("#order-error")).to_contain_text("stop_price")
    expect(page.locator("#stop-price")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#price")).not_to_have_attribute("aria-invalid", "true")
    assert not httpx.get(f"{base_url}/orders/ETH-USDT?status=open&account=trigger").json()["orders"]


def test_an_order_error_is_cleared_by_a_symbol_switch_or_a_ladder_click(
    page: Page, base_url: str
) -> None:
    rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="buy",
        price="1234.00",
        quantity="0.010",
        account="clearer-book",
    )
    open_dashboard(page, "ETH-USDT")
    set_account(page, "clearer")
    error = page.locator("#order-error")

    place_order(page, side="buy", price="1234.005", quantity="0.010")
    expect(error).to_be_visible()
    expect(page.locator("#price")).to_have_attribute("aria-invalid", "true")
    page.click('#bids .ladder-row[data-price="1234.00"]')
    expect(error).to_be_hidden()
    expect(page.locator("#price")).to_have_value("1234.00")
    expect(page.locator("#order-form [aria-invalid]")).to_have_count(0)

    place_order(page, side="buy", price="1234.005", quantity="0.010")
    expect(error).to_be_visible()
    page.select_option("#symbol-select", "BTC-USDT")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    expect(error).to_be_hidden()
    expect(page.locator("#order-notice")).to_be_hidden()
    expect(page.locator("#order-form [aria-invalid]")).to_have_count(0)
    cancel_all(base_url, "ETH-USDT", "clearer-book")


def depth_chart(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("window.matchwire.state.charts.depth"))


def test_the_depth_chart_keeps_to_a_band_around_the_mid(page: Page, base_url: str) -> None:
    for i in range(4):
        rest_order(
            base_url,
            symbol="ETH-USDT",
            order_type="limit",
            side="buy",
            price=f"{1649.00 - i * 0.5:.2f}",
            quantity="0.500",
            account="depth-band",
        )
        rest_order(
            base_url,
            symbol="ETH-USDT",
            order_type="limit",
            side="sell",
            price=f"{1651.00 + i * 0.5:.2f}",
            quantity="0.500",
            account="depth-band",
        )
    # Far away and large: it must not decide the chart's x-range.
    rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="buy",
        price="1.00",
        quantity="50.000",
        account="depth-band",
    )
    open_dashboard(page, "ETH-USDT")
    expect(page.locator('#bids .ladder-row[data-price="1.00"]')).to_have_count(1)
    page.wait_for_function(
        "() => { const d = window.matchwire.state.charts.depth; return d && d.mid === 1650; }"
    )
    chart = depth_chart(page)
    # The rule of gateway/static/README.md: within mid ± 2%, narrowed to the levels there.
    assert 1650 * 0.98 <= chart["xMin"] <= 1647.50
    assert 1652.50 <= chart["xMax"] <= 1650 * 1.02
    assert chart["xMax"] - 1650 == pytest.approx(1650 - chart["xMin"])
    assert chart["yTop"] < 50  # the 50 at 1.00 is off the chart, so not in its scale
    expect(page.locator("#depth-legend")).to_contain_text("mid ±")
    cancel_all(base_url, "ETH-USDT", "depth-band")


def wait_for_chart(page: Page, name: str) -> dict[str, Any]:
    """The chart's state once it is drawn at the canvas's current size."""
    page.wait_for_function(
        """name => {
            const chart = window.matchwire.state.charts[name];
            const canvas = document.getElementById(name + "-chart");
            return chart && chart.width === canvas.clientWidth
                && chart.height === canvas.clientHeight;
        }""",
        arg=name,
    )
    return dict(page.evaluate("name => window.matchwire.state.charts[name]", name))


def assert_labels_fit(labels: list[dict[str, Any]], width: float) -> None:
    """Every label inside the canvas, none overlapping the one before it."""
    assert labels
    for label in labels:
        assert 0 <= label["x0"] < label["x1"] <= width, label
    for before, after in itertools.pairwise(labels):
        assert before["x1"] <= after["x0"], (before, after)


def test_axis_labels_stay_inside_the_charts(browser: Any, tmp_path: Path) -> None:
    """A fresh system, so the book can be one-sided and the trades are known."""
    base_url, child = start_system(tmp_path)
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    try:
        # One bid, nothing else: the x-range is a round band, its last tick at the edge.
        rest_order(
            base_url,
            symbol="BTC-USDT",
            order_type="limit",
            side="buy",
            price="30000.00",
            quantity="0.5000",
            account="one-side",
        )
        page = context.new_page()
        open_dashboard(page, "BTC-USDT")
        expect(page.locator("#ladder-spread")).to_contain_text("one-sided")
        depth = wait_for_chart(page, "depth")
        assert depth["xMax"] > 30000 > depth["xMin"]
        assert_labels_fit(depth["xLabels"], depth["width"])
        # A spread wider than the 2% band: the band widens to show both best prices.
        rest_order(
            base_url,
            symbol="BTC-USDT",
            order_type="limit",
            side="sell",
            price="40000.00",
            quantity="0.5000",
            account="one-side",
        )
        page.wait_for_function("window.matchwire.state.charts.depth.mid === 35000")
        depth = wait_for_chart(page, "depth")
        assert depth["xMin"] < 30000 and depth["xMax"] > 40000, depth
        assert_labels_fit(depth["xLabels"], depth["width"])

        # The last-price tag and the price axis's labels never overlap, at any height.
        for i, price in enumerate(["3000.00", "3004.00", "3001.50", "3007.00", "3003.20"]):
            make_trade(base_url, "ETH-USDT", price, "0.010", f"tag{i}")
        page.select_option("#symbol-select", "ETH-USDT")
        expect(page.locator("#last-price")).to_have_text("3003.20")
        for height in range(620, 1000, 18):
            page.set_viewport_size({"width": 1280, "height": height})
            chart = wait_for_chart(page, "price")
            tag = chart["tag"]
            assert tag["text"] == "3003.20"
            assert 0 <= tag["y0"] and tag["y1"] <= chart["height"]
            assert tag["x1"] <= chart["width"]
            assert chart["yLabels"], chart
            for label in chart["yLabels"]:
                assert label["y1"] <= tag["y0"] or label["y0"] >= tag["y1"], (height, label, tag)
                assert 0 <= label["y0"] and label["y1"] <= chart["height"]
                assert label["x1"] <= chart["width"]
    finally:
        context.close()
        child.stop()


FLASH_SAMPLER = """() => {
    // Each frame: how many ladder rows and tape rows are highlighted at once.
    const seen = window.flashSeen = {buy: 0, sell: 0, tape: 0, frames: 0};
    const count = (selector) => document.querySelectorAll(selector).length;
    const sample = () => {
        seen.buy = Math.max(seen.buy, count("#bids .ladder-row.flash"));
        seen.sell = Math.max(seen.sell, count("#asks .ladder-row.flash"));
        seen.tape = Math.max(seen.tape, count("#tape-body tr.fresh"));
        seen.frames += 1;
        if (!window.flashStop) requestAnimationFrame(sample);
    };
    requestAnimationFrame(sample);
}"""


def matcher_burst(base_url: str, symbol: str, bodies: list[dict[str, Any]]) -> int:
    """Every body as a new_order straight to the symbol's matcher, pipelined 200 at a time
    (the REST gateway alone does not reach thousands a second on a loaded machine);
    returns how many were accepted."""
    endpoint = httpx.get(f"{base_url}/").json()["symbols"][symbol]["order_endpoint"]
    accepted = 0
    with MatcherClient(endpoint, timeout=30) as client:
        for first in range(0, len(bodies), 200):
            replies = client.pipeline(
                {"op": "new_order", **body} for body in bodies[first : first + 200]
            )
            accepted += sum(1 for reply in replies if reply.get("ok"))
    return accepted


def matcher_cancel_all(base_url: str, symbol: str, account: str) -> None:
    """cancel_all for thousands of orders: the cancels pipelined to the matcher."""
    endpoint = httpx.get(f"{base_url}/").json()["symbols"][symbol]["order_endpoint"]
    with MatcherClient(endpoint, timeout=30) as client:
        for _ in range(20):  # GET /orders answers 1000 at most
            orders = httpx.get(
                f"{base_url}/orders/{symbol}?status=open&account={account}", timeout=10
            ).json()["orders"]
            if not orders:
                return
            client.pipeline(
                {
                    "op": "cancel_order",
                    "symbol": symbol,
                    "account": account,
                    "order_id": order["order_id"],
                }
                for order in orders
            )
    raise AssertionError(f"{account} still has open orders on {symbol}")


def test_a_busy_book_does_not_light_up_the_whole_ladder(page: Page, base_url: str) -> None:
    open_dashboard(page, "ETH-USDT")
    page.evaluate(FLASH_SAMPLER)
    # Ten ask and ten bid levels around 1800 change with every order, and every third
    # order trades: a few thousand changes a second, as far as this machine can send them.
    bodies: list[dict[str, Any]] = []
    for i in range(1500):
        level = i % 10
        bodies.append(
            {
                "symbol": "ETH-USDT",
                "order_type": "limit",
                "side": "sell",
                "price": f"{1800.00 + level * 0.05:.2f}",
                "quantity": "0.001",
                "account": "flash-maker",
            }
        )
        bodies.append(
            {
                "symbol": "ETH-USDT",
                "order_type": "limit",
                "side": "buy",
                "price": f"{1799.95 - level * 0.05:.2f}",
                "quantity": "0.001",
                "account": "flash-maker",
            }
        )
        if i % 3 == 0:
            bodies.append(
                {
                    "symbol": "ETH-USDT",
                    "order_type": "limit",
                    "side": "buy",
                    "price": "1800.45",
                    "quantity": "0.002",
                    "time_in_force": "ioc",
                    "account": "flash-taker",
                }
            )
    started = time.monotonic()
    assert matcher_burst(base_url, "ETH-USDT", bodies) == len(bodies)
    rate = len(bodies) / (time.monotonic() - started)  # for the message only
    print(f"burst: {len(bodies)} orders at {rate:.0f}/s")
    expect_ladder_matches_rest(page, base_url, "ETH-USDT")
    page.wait_for_function("window.flashSeen.frames > 10")
    seen = page.evaluate("window.flashStop = true, window.flashSeen")
    assert 1 <= seen["buy"] <= 3 and 1 <= seen["sell"] <= 3, seen
    assert 1 <= seen["tape"] <= 3, seen
    # and once the book is quiet, nothing stays highlighted
    expect(page.locator("#ladder .ladder-row.flash")).to_have_count(0)
    expect(page.locator("#tape-body tr.fresh")).to_have_count(0)

    # A single change on a quiet book still flashes.
    page.evaluate("window.flashStop = false")
    page.evaluate(FLASH_SAMPLER)
    rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="buy",
        price="1799.45",
        quantity="0.001",
        account="flash-maker",
    )  # a new level, never flashed before
    page.wait_for_function("window.flashSeen.buy >= 1")
    page.evaluate("window.flashStop = true")
    matcher_cancel_all(base_url, "ETH-USDT", "flash-maker")


def test_api_key_placeholder_follows_the_gateways_auth(page: Page, base_url: str) -> None:
    assert httpx.get(f"{base_url}/").json()["auth"] is False
    open_dashboard(page, "BTC-USDT")
    key = page.locator("#api-key")
    expect(key).to_have_attribute("placeholder", "not needed")
    expect(page.locator("#account")).to_be_enabled()


WEB_ACCOUNT = r"^web-[a-z0-9]{6}$"


def test_each_browser_has_its_own_account_by_default(
    page: Page, browser: Any, base_url: str
) -> None:
    shared = rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="buy",
        price="1111.00",
        quantity="0.010",
    )  # no account: anonymous
    assert shared["account"] == "anonymous"
    open_dashboard(page, "ETH-USDT")
    name = page.locator("#account").input_value()
    assert re.match(WEB_ACCOUNT, name), name
    expect(page.locator("#open-account")).to_contain_text(name)

    mine = place_order(page, side="buy", price="1112.00", quantity="0.010")
    assert mine["status"] == "new"
    expect(page.locator(f'#open-orders tr[data-order-id="{mine["order_id"]}"]')).to_be_visible()
    expect(page.locator(f'#open-orders tr[data-order-id="{shared["order_id"]}"]')).to_have_count(0)
    expect(page.locator("#open-orders-body tr")).to_have_count(1)
    owned = httpx.get(f"{base_url}/orders/ETH-USDT?status=open&account={name}").json()["orders"]
    assert [str(o["order_id"]) for o in owned] == [mine["order_id"]]

    page.reload()
    open_dashboard(page, "ETH-USDT")
    expect(page.locator("#account")).to_have_value(name)  # kept in localStorage
    set_account(page, "")  # an emptied field is this browser's account again, not anonymous
    expect(page.locator("#account")).to_have_value(name)

    other = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    try:
        tab = other.new_page()
        open_dashboard(tab, "ETH-USDT")
        theirs = tab.locator("#account").input_value()
        assert re.match(WEB_ACCOUNT, theirs) and theirs != name
        expect(tab.locator("#open-orders-empty")).to_be_visible()
        expect(tab.locator(f'[data-cancel="{mine["order_id"]}"]')).to_have_count(0)
    finally:
        other.close()
    cancel_all(base_url, "ETH-USDT", name)
    cancel_all(base_url, "ETH-USDT", "anonymous")


def test_amend_an_open_order_from_the_list(page: Page, base_url: str) -> None:
    open_dashboard(page, "ETH-USDT")
    set_account(page, "amender")
    order = place_order(page, side="buy", price="1300.00", quantity="1.000")
    order_id = order["order_id"]
    stop = place_order(
        page, side="sell", order_type="stop_loss", stop_price="1000.00", quantity="0.100"
    )
    assert stop["status"] == "pending"
    row = page.locator(f'#open-orders tr[data-order-id="{order_id}"]')
    expect(row).to_be_visible()
    # Pending stops are not amendable: no button for them.
    expect(page.locator(f'[data-amend="{stop["order_id"]}"]')).to_have_count(0)

    page.click(f'[data-amend="{order_id}"]')
    editor = page.locator(f'tr.amend-row[data-amend-for="{order_id}"]')
    expect(editor).to_be_visible()
    expect(page.locator("#amend-price")).to_have_value("1300.00")
    expect(page.locator("#amend-quantity")).to_have_value("1.000")

    # An invalid quantity: the API's error, the field outlined, the editor still open.
    page.fill("#amend-quantity", "0.0005")
    loads = page.evaluate("window.matchwire.state.openOrdersLoads")
    page.click("#amend-save")
    expect(page.locator("#open-orders-error")).to_contain_text("invalid_quantity")
    expect(page.locator("#amend-quantity")).to_have_attribute("aria-invalid", "true")
    expect(editor).to_be_visible()
    # the list is polled again after every amend: that must not hide the amend's error
    page.wait_for_function("n => window.matchwire.state.openOrdersLoads > n", arg=loads)
    expect(page.locator("#open-orders-error")).to_be_visible()

    # What is typed survives the list being drawn again (a poll while the editor is open).
    page.fill("#amend-quantity", "0.400")
    page.fill("#amend-price", "1301.00")
    rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="buy",
        price="1299.00",
        quantity="0.010",
        account="amender",
    )
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator("#open-orders-body tr[data-order-id]")).to_have_count(3)
    expect(page.locator("#amend-quantity")).to_have_value("0.400")
    expect(page.locator("#amend-price")).to_have_value("1301.00")

    page.click("#amend-save")
    expect(editor).to_have_count(0)
    expect(row).to_contain_text("1301.00")
    expect(row).to_contain_text("0.400")
    expect(page.locator("#open-orders-error")).to_be_hidden()
    newest = page.locator("#order-results li").first
    expect(newest).to_contain_text("amend")
    expect(newest).to_have_attribute("data-order-id", order_id or "")
    amended = httpx.get(f"{base_url}/orders/ETH-USDT/{order_id}?account=amender").json()
    assert (amended["price"], amended["quantity"]) == ("1301.00", "0.400")
    expect(page.locator('#bids .ladder-row[data-price="1301.00"]')).to_have_attribute(
        "data-quantity", "0.400"
    )
    expect(page.locator('#bids .ladder-row[data-price="1300.00"]')).to_have_count(0)

    # Quantity only, by Enter; Escape closes the editor without sending.
    page.click(f'[data-amend="{order_id}"]')
    page.fill("#amend-quantity", "0.300")
    page.press("#amend-quantity", "Enter")
    expect(row).to_contain_text("0.300")
    expect(row).to_contain_text("1301.00")
    page.click(f'[data-amend="{order_id}"]')
    page.press("#amend-quantity", "Escape")
    expect(page.locator("tr.amend-row")).to_have_count(0)
    cancel_all(base_url, "ETH-USDT", "amender")


def open_ids(base_url: str, symbol: str, account: str) -> set[str]:
    orders = httpx.get(f"{base_url}/orders/{symbol}?status=open&account={account}").json()
    return {str(o["order_id"]) for o in orders["orders"]}


def test_cancel_all_asks_then_cancels_the_accounts_orders_and_only_those(
    page: Page, base_url: str
) -> None:
    mine = [
        rest_order(
            base_url,
            symbol="ETH-USDT",
            order_type="limit",
            side="buy",
            price=price,
            quantity="1.000",
            account="mass",
        )
        for price in ("1401.00", "1402.00")
    ]
    other = rest_order(
        base_url,
        symbol="ETH-USDT",
        order_type="limit",
        side="buy",
        price="1403.00",
        quantity="1.000",
        account="bystander",
    )
    open_dashboard(page, "ETH-USDT")
    set_account(page, "mass")
    for order in mine:
        expect(
            page.locator(f'#open-orders tr[data-order-id="{order["order_id"]}"]')
        ).to_be_visible()

    # The first click only asks; "No" sends nothing.
    page.click("#cancel-all")
    expect(page.locator("#cancel-all-confirm")).to_be_visible()
    expect(page.locator("#cancel-all-question")).to_contain_text("ETH-USDT")
    page.click("#cancel-all-no")
    expect(page.locator("#cancel-all-confirm")).to_be_hidden()
    assert {str(o["order_id"]) for o in mine} <= open_ids(base_url, "ETH-USDT", "mass")

    page.click("#cancel-all")
    page.click("#cancel-all-yes")
    notice = page.locator("#open-orders-notice")
    expect(notice).to_contain_text("Cancelled 2 orders on ETH-USDT")
    expect(page.locator("#open-orders-body tr")).to_have_count(0)
    assert open_ids(base_url, "ETH-USDT", "mass") == set()
    # Another account's order on the same symbol is untouched.
    assert str(other["order_id"]) in open_ids(base_url, "ETH-USDT", "bystander")

    # Nothing left: said so, not an error.
    page.click("#cancel-all")
    page.click("#cancel-all-yes")
    expect(notice).to_contain_text("Nothing to cancel on ETH-USDT")
    expect(page.locator("#open-orders-error")).to_be_hidden()
    cancel_all(base_url, "ETH-USDT", "bystander")


def test_cancel_all_shows_the_error_when_the_request_is_refused(page: Page) -> None:
    open_dashboard(page, "ETH-USDT")
    set_account(page, "mass")
    # An account name the gateway refuses: the error is shown, not swallowed.
    page.fill("#account", "x" * 300)
    page.press("#account", "Tab")
    page.click("#cancel-all")
    page.click("#cancel-all-yes")
    expect(page.locator("#open-orders-error")).to_be_visible()
    expect(page.locator("#open-orders-error code")).not_to_be_empty()


def candles_state(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("window.matchwire.state.charts.candles || {}"))


def coloured_pixels(page: Page) -> dict[str, int]:
    """How many pixels of the price canvas are the up and the down candle colour."""
    return dict(
        page.evaluate(
            """() => {
            const canvas = document.getElementById("price-chart");
            const colours = window.matchwire.state.charts.candles.colours;
            const probe = document.createElement("canvas").getContext("2d");
            const rgb = (c) => { probe.fillStyle = c; probe.fillRect(0, 0, 1, 1);
                                 return Array.from(probe.getImageData(0, 0, 1, 1).data.slice(0, 3)); };
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            const out = {};
            for (const [name, c] of Object.entries(colours)) {
                const [r, g, b] = rgb(c);
                let n = 0;
                for (let i = 0; i < data.length; i += 4) {
                    if (Math.abs(data[i] - r) < 3 && Math.abs(data[i + 1] - g) < 3
                        && Math.abs(data[i + 2] - b) < 3 && data[i + 3] > 250) n += 1;
                }
                out[name] = n;
            }
            return out;
        }"""
        )
    )


def test_candles_from_rest_updated_live_and_refetched_on_an_interval_switch(
    page: Page, base_url: str
) -> None:
    make_trade(base_url, "ETH-USDT", "1600.00", "0.500", "candle1")
    open_dashboard(page, "ETH-USDT")
    page.select_option("#chart-mode", "candles")
    rest = httpx.get(f"{base_url}/candles/ETH-USDT?interval=1m&limit=300").json()["candles"]
    page.wait_for_function(
        "n => { const c = window.matchwire.state.charts.candles; return c && c.count >= n; }",
        arg=len(rest),
    )
    drawn = candles_state(page)
    assert drawn["interval"] == "1m"
    assert drawn["last"]["close"] == float(rest[-1]["close"])
    assert drawn["first"]["open"] == float(rest[0]["open"])
    fetches = drawn["fetches"]

    # A trade from the feed changes the open candle (or opens the next), without a refetch.
    make_trade(base_url, "ETH-USDT", "1612.00", "0.250", "candle2")
    page.wait_for_function(
        "() => { const c = window.matchwire.state.charts.candles; "
        "return c && c.last.close === 1612 && c.updates >= 1; }"
    )
    live = candles_state(page)
    assert live["fetches"] == fetches
    assert live["last"]["high"] >= 1612
    after = httpx.get(f"{base_url}/candles/ETH-USDT?interval=1m&limit=300").json()["candles"]
    assert live["last"]["close"] == float(after[-1]["close"])
    assert abs(live["last"]["volume"] - float(after[-1]["volume"])) < 1e-9

    # Another interval: fetched again, and matches the server's.
    page.select_option("#candle-interval", "1h")
    page.wait_for_function(
        "f => { const c = window.matchwire.state.charts.candles; "
        "return c && c.interval === '1h' && c.fetches > f && c.count > 0; }",
        arg=fetches,
    )
    hourly = httpx.get(f"{base_url}/candles/ETH-USDT?interval=1h&limit=300").json()["candles"]
    drawn = candles_state(page)
    assert drawn["count"] == len(hourly)
    assert drawn["last"]["close"] == float(hourly[-1]["close"])
    assert abs(drawn["last"]["volume"] - float(hourly[-1]["volume"])) < 1e-9


def test_candles_draw_in_dark_and_light_mode(page: Page, base_url: str) -> None:
    make_trade(base_url, "ETH-USDT", "1605.00", "0.100", "candle3")
    open_dashboard(page, "ETH-USDT")
    expect(page.locator("body")).to_have_attribute("data-theme", "dark")
    page.select_option("#chart-mode", "candles")
    page.wait_for_function(
        "() => { const c = window.matchwire.state.charts.candles; return c && c.count > 0; }"
    )
    dark = coloured_pixels(page)
    assert dark["up"] + dark["down"] > 0, dark
    dark_background = candles_state(page)["background"]
    page.click("#theme-toggle")
    expect(page.locator("body")).to_have_attribute("data-theme", "light")
    page.wait_for_function(
        "bg => { const c = window.matchwire.state.charts.candles; return c && c.background !== bg; }",
        arg=dark_background,
    )
    light = coloured_pixels(page)
    assert light["up"] + light["down"] > 0, light
    page.click("#theme-toggle")


def test_csv_export_takes_its_columns_from_the_server(page: Page, base_url: str) -> None:
    """The export lists no columns of its own: it uses the server CSV's header (whose
    source is matcher/protocol.py). A server with other columns gets other columns."""
    make_trade(base_url, "ETH-USDT", "1601.00", "0.010", "csvcols")
    page.route(
        "**/trades/ETH-USDT?format=csv&limit=1",
        lambda route: route.fulfill(
            status=200, content_type="text/csv", body="price,trade_id\r\n1601.00,1\r\n"
        ),
    )
    open_dashboard(page, "ETH-USDT")
    expect(page.locator("#tape-body tr").first).to_be_visible()
    with page.expect_download() as download:
        page.click("#export-csv")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0] == ["price", "trade_id"]
    trades = httpx.get(f"{base_url}/trades/ETH-USDT?limit=1000").json()["trades"]
    assert rows[1] == [str(trades[0]["price"]), str(trades[0]["trade_id"])]
