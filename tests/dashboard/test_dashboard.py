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
import os
import shutil
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import REPO, Child, free_port, free_port_run, wait_for_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOT = REPO / "docs" / "dashboard.png"
CSV_HEADER = [
    "trade_id", "symbol", "price", "quantity", "aggressor_side",
    "maker_order_id", "taker_order_id", "maker_fee", "taker_fee", "timestamp",
]

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
        ["run.py", "--data-dir", str(tmp / "data"), "--http-port", str(http_port),
         "--ws-port", str(ws_port), "--zmq-port", str(zmq_port), *extra],
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
    page: Page, *, side: str, quantity: str, order_type: str = "limit", price: str | None = None,
    stop_price: str | None = None, time_in_force: str | None = None,
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
        page, side="sell", order_type="stop_limit", stop_price="1000.00", price="990.00",
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
    body = {"symbol": "ETH-USDT", "order_type": "limit", "side": "buy", "price": "2000.005",
            "quantity": "1.000", "time_in_force": "gtc"}
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
        rest_order(base_url, symbol="ETH-USDT", order_type="limit", side="sell", price="2100.00",
                   quantity="0.010", account="csv-maker")
        rest_order(base_url, symbol="ETH-USDT", order_type="market", side="buy",
                   quantity="0.010", account="csv-taker")
    open_dashboard(page, "ETH-USDT")
    # one more trade while the page is open, so the tape holds history and live trades
    rest_order(base_url, symbol="ETH-USDT", order_type="limit", side="sell", price="2100.00",
               quantity="0.010", account="csv-maker")
    rest_order(base_url, symbol="ETH-USDT", order_type="market", side="buy", quantity="0.010",
               account="csv-taker")
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
    rest_order(base_url, symbol="BTC-USDT", order_type="limit", side="buy", price="25000.00",
               quantity="0.0100", account="switcher")
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
        response = httpx.post(f"{base_url}/cancel_order", json={
            "symbol": symbol, "order_id": order["order_id"], "account": account})
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
    rest_order(base_url, symbol="BTC-USDT", order_type="limit", side="sell", price="35000.00",
               quantity="0.0200", account="while-down")
    page.wait_for_function("window.seenStates.includes('reconnecting')")
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=40_000)
    expect(page.locator('#asks .ladder-row[data-price="35000.00"]')).to_have_attribute(
        "data-quantity", "0.0200"
    )
    # and the new connection is live: a later change arrives as an update
    rest_order(base_url, symbol="BTC-USDT", order_type="limit", side="sell", price="35000.00",
               quantity="0.0300", account="while-down")
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
    rest_order(base_url, symbol="ETH-USDT", order_type="limit", side="sell", price="2400.00",
               quantity="1.000", account="resync")
    open_dashboard(page, "ETH-USDT")
    level = page.locator('#asks .ladder-row[data-price="2400.00"]')
    expect(level).to_have_attribute("data-quantity", "1.000")

    # A wrong quantity in the local copy: the next update's checksum disagrees.
    page.evaluate("window.matchwire.state.book.asks.set('2400.00', '9.000')")
    rest_order(base_url, symbol="ETH-USDT", order_type="limit", side="buy", price="1000.00",
               quantity="0.001", account="resync")
    wait_resynced(page, 1)
    expect(level).to_have_attribute("data-quantity", "1.000")

    # A missed update (book_seq jumps): the page takes a fresh snapshot.
    page.evaluate("window.matchwire.state.book.seq -= 1")
    rest_order(base_url, symbol="ETH-USDT", order_type="limit", side="sell", price="2400.00",
               quantity="0.500", account="resync")
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
        rest_order(base_url, symbol="BTC-USDT", order_type="limit", side="buy",
                   price=f"{29990 - i * 2.5:.2f}", quantity=f"{0.15 + (i % 5) * 0.21:.4f}",
                   account="market-maker")
        rest_order(base_url, symbol="BTC-USDT", order_type="limit", side="sell",
                   price=f"{30010 + i * 2.5:.2f}", quantity=f"{0.12 + (i % 4) * 0.26:.4f}",
                   account="market-maker")
    open_dashboard(page, "BTC-USDT")
    set_account(page, "trader")
    for i in range(12):
        side = "buy" if i % 3 else "sell"
        rest_order(base_url, symbol="BTC-USDT", order_type="market", side=side,
                   quantity=f"{0.05 + (i % 4) * 0.04:.4f}", account="taker")
        rest_order(base_url, symbol="BTC-USDT", order_type="limit", side=side == "buy" and "sell"
                   or "buy", price=f"{30010 if side == 'buy' else 29990:.2f}",
                   quantity="0.2500", account="market-maker")
        time.sleep(0.15)
    place_order(page, side="sell", order_type="stop_loss", stop_price="29000.00",
                quantity="0.2000")
    place_order(page, side="buy", order_type="market", quantity="0.1000")
    place_order(page, side="buy", price="29950.00", quantity="0.5000")
    expect(page.locator("#open-orders-body tr")).to_have_count(2)
    expect_ladder_matches_rest(page, base_url, "BTC-USDT")
    # every update the page applied matched the hub's checksum: no resync was needed
    assert page.evaluate("window.matchwire.state.resyncs") == 0
    assert page.evaluate("window.matchwire.state.book.checksumDisabled") is False

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
        refused = place_order(page, side="buy", price="20000.00", quantity="0.0100")
        assert refused["status"] == "error"
        expect(page.locator("#order-error")).to_be_visible()
        expected = httpx.post(f"{base_url}/submit_order", json={
            "symbol": "BTC-USDT", "order_type": "limit", "side": "buy", "price": "20000.00",
            "quantity": "0.0100"})
        assert expected.status_code == 401
        expect(page.locator("#order-error")).to_contain_text(expected.json()["error"]["code"])

        page.fill("#api-key", "key-of-carol")
        page.press("#api-key", "Tab")
        order = place_order(page, side="buy", price="20000.00", quantity="0.0100")
        assert order["status"] == "new"
        expect(page.locator("#order-error")).to_be_hidden()
        row = page.locator(f'#open-orders tr[data-order-id="{order["order_id"]}"]')
        expect(row).to_be_visible()  # GET /orders sent the key too
        mine = httpx.get(f"{base_url}/orders/BTC-USDT?status=open",
                         headers={"X-API-Key": "key-of-carol"}).json()["orders"]
        assert [str(o["order_id"]) for o in mine] == [order["order_id"]]

        page.reload()
        open_dashboard(page, "BTC-USDT")
        expect(page.locator("#api-key")).to_have_value("key-of-carol")
        page.click(f'[data-cancel="{order["order_id"]}"]')
        expect(row).to_have_count(0)
    finally:
        context.close()
        child.stop()
