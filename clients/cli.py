"""`matchwire` (or `python -m clients`): the command-line tool for a running system.

    matchwire order BTC-USDT buy limit 0.5 --price 30000 --client-order-id my-1
    matchwire cancel BTC-USDT --client-order-id my-1
    matchwire cancel-all BTC-USDT --side buy
    matchwire --transport zmq book BTC-USDT --depth 5
    matchwire --json trades BTC-USDT --limit 3
    matchwire watch BTC-USDT
    matchwire load --count 10000
    matchwire replay --data-dir data --symbol BTC-USDT

Human-readable tables by default, `--json` for scripts. Exit codes: 0 ok, 1 the system
refused the request (a 4xx, or an order answered with status rejected), 2 bad usage,
3 the system is down or did not answer, 4 bad or missing API key. docs/cli.md has it all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from clients.curve import client_keys
from clients.zmq_client import MatcherClient, MatcherError, MatcherTimeout
from matcher.protocol import ORDER_FIELDS, TRADE_FIELDS

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_DOWN, EXIT_AUTH = 0, 1, 2, 3, 4


class CliError(Exception):
    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# op -> (HTTP method, path template): the REST face of each ZeroMQ op.
REST_ROUTES: dict[str, tuple[str, str]] = {
    "new_order": ("POST", "/submit_order"),
    "new_stop_order": ("POST", "/submit_stop_order"),
    "cancel_order": ("POST", "/cancel_order"),
    "amend_order": ("POST", "/amend_order"),
    "cancel_all": ("POST", "/cancel_all"),
    "get_order": ("GET", "/orders/{symbol}/{order_id}"),
    "orders": ("GET", "/orders/{symbol}"),
    "book": ("GET", "/orderbook/{symbol}"),
    "bbo": ("GET", "/bbo/{symbol}"),
    "trades": ("GET", "/trades/{symbol}"),
}
# The GET ops whose order may be named by client_order_id instead (then this path).
CLIENT_ID_ROUTES: dict[str, str] = {"get_order": "/orders/{symbol}/client/{client_order_id}"}


class RestTransport:
    def __init__(self, url: str, api_key: str | None, timeout: float = 10.0) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def request(self, op: str, **fields: Any) -> Any:
        method, template = REST_ROUTES[op]
        if method == "GET" and "client_order_id" in fields:
            template = CLIENT_ID_ROUTES[op]
        path = template.format(**{k: quote(str(v), safe="") for k, v in fields.items()})
        try:
            if method == "POST":
                response = self.client.post(path, json=fields)
            else:
                query = {
                    k: v
                    for k, v in fields.items()
                    if v is not None and "{" + k + "}" not in template
                }
                response = self.client.get(path, params=query)
        except httpx.HTTPError as exc:
            raise CliError(
                EXIT_DOWN, f"gateway {self.client.base_url} unreachable: {exc}"
            ) from None
        if response.status_code == 200:
            return response.json()
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}"
        if response.status_code == 401:
            raise CliError(EXIT_AUTH, message)
        if response.status_code >= 500:
            raise CliError(EXIT_DOWN, message)
        raise CliError(EXIT_REFUSED, message)


class ZmqTransport:
    """Talks to the symbol's matcher directly; endpoints come from --endpoint or GET /."""

    def __init__(
        self,
        endpoint: str | None,
        url: str,
        timeout: float = 5.0,
        key: str | None = None,
        server_key: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.url = url
        self.timeout = timeout
        self.key = key  # our CURVE .key_secret file (the matcher has CURVE on)
        self.server_key = server_key  # the matcher's public key (default: from GET /)
        self.clients: dict[str, MatcherClient] = {}

    def _client(self, symbol: str) -> MatcherClient:
        if symbol not in self.clients:
            endpoint = self.endpoint or self._discover(symbol)
            curve = None
            if self.key is not None:
                server_key = self.server_key or self._rules(symbol).get("curve_public_key")
                if not server_key:
                    raise CliError(
                        EXIT_USAGE,
                        f"--key: {self.url}/ shows no CURVE key for {symbol}; pass --server-key",
                    )
                try:
                    curve = client_keys(server_key, self.key)
                except ValueError as exc:
                    raise CliError(EXIT_USAGE, str(exc)) from None
            self.clients[symbol] = MatcherClient(endpoint, timeout=self.timeout, curve=curve)
        return self.clients[symbol]

    def _discover(self, symbol: str) -> str:
        return str(self._rules(symbol)["order_endpoint"])

    def _rules(self, symbol: str) -> dict[str, Any]:
        try:
            symbols = httpx.get(self.url + "/", timeout=self.timeout).json()["symbols"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise CliError(
                EXIT_DOWN,
                f"cannot discover matcher endpoints from {self.url}: {exc}; pass --endpoint",
            ) from None
        if symbol not in symbols:
            raise CliError(EXIT_REFUSED, f"unknown_symbol: {symbol}")
        return dict(symbols[symbol])

    def request(self, op: str, **fields: Any) -> Any:
        try:
            return self._client(fields["symbol"]).request(op, **fields)
        except MatcherTimeout as exc:
            raise CliError(EXIT_DOWN, str(exc)) from None
        except MatcherError as exc:
            raise CliError(EXIT_REFUSED, f"{exc.code}: {exc.message}") from None


# -- output -------------------------------------------------------------------------


def show_table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


# The order's fields as the API sends them, its trades shown as a table below it.
ORDER_LINES = tuple(name for name in ORDER_FIELDS if name != "trades")
TRADE_COLUMNS = [name for name in TRADE_FIELDS if name != "symbol"]


def show_order(order: dict[str, Any]) -> str:
    lines = [
        f"{name:>18}  {order.get(name)}" for name in ORDER_LINES if order.get(name) is not None
    ]
    if order.get("trades"):
        lines.append("")
        lines.append(show_trades(order["trades"]))
    return "\n".join(lines)


def show_trades(trades: list[dict[str, Any]]) -> str:
    return show_table([[t.get(f) for f in TRADE_COLUMNS] for t in trades], TRADE_COLUMNS)


def show_book(book: dict[str, Any]) -> str:
    asks = list(reversed(book.get("asks", [])))
    rows = [["", "", price, qty] for price, qty in asks]
    rows += [[qty, price, "", ""] for price, qty in book.get("bids", [])]
    header = f"{book.get('symbol')}  book_seq {book.get('book_seq')}"
    return header + "\n" + show_table(rows, ["bid qty", "bid", "ask", "ask qty"])


def show_bbo(bbo: dict[str, Any]) -> str:
    return (
        f"{bbo['symbol']}  bid {bbo['bid_quantity']} @ {bbo['bid_price']}   "
        f"ask {bbo['ask_quantity']} @ {bbo['ask_price']}   book_seq {bbo['book_seq']}"
    )


# -- commands -----------------------------------------------------------------------


def order_fields(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    fields = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.account:
        fields["account"] = args.account
    return fields


def cmd_order(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    fields = order_fields(
        args,
        (
            "symbol",
            "side",
            "order_type",
            "quantity",
            "price",
            "time_in_force",
            "client_order_id",
            "stp",
        ),
    )
    if args.post_only:
        fields["post_only"] = True
    return transport.request("new_order", **fields), show_order


def cmd_stop(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    fields = order_fields(
        args,
        (
            "symbol",
            "side",
            "order_type",
            "quantity",
            "stop_price",
            "price",
            "client_order_id",
            "stp",
        ),
    )
    return transport.request("new_stop_order", **fields), show_order


def order_named(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of a command on one order: ORDER_ID or --client-order-id, not both."""
    if (args.order_id is None) == (args.client_order_id is None):
        raise CliError(
            EXIT_USAGE,
            f"{args.command}: give ORDER_ID or --client-order-id (exactly one of the two)",
        )
    return order_fields(args, ("symbol", "order_id", "client_order_id", *names))


def cmd_cancel(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    return transport.request("cancel_order", **order_named(args, ())), show_order


def cmd_amend(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    fields = order_named(args, ("quantity", "price"))
    return transport.request("amend_order", **fields), show_order


def cmd_get(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    return transport.request("get_order", **order_named(args, ())), show_order


ORDER_COLUMNS = ["order_id", "side", "order_type", "price", "quantity", "filled_quantity", "status"]


def cmd_cancel_all(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    result = transport.request("cancel_all", **order_fields(args, ("symbol", "side")))

    def render(r: Any) -> str:
        rows = [[o.get(c) for c in ORDER_COLUMNS] for o in r["cancelled"]]
        return f"cancelled {len(rows)} order(s)\n" + show_table(rows, ORDER_COLUMNS)

    return result, render


def cmd_orders(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    fields = order_fields(args, ("symbol",))
    if args.open:
        fields["status"] = "open"
    result = transport.request("orders", **fields)
    return result, lambda r: show_table(
        [[o.get(c) for c in ORDER_COLUMNS] for o in r["orders"]], ORDER_COLUMNS
    )


def cmd_book(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    return transport.request("book", symbol=args.symbol, depth=args.depth), show_book


def cmd_bbo(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    return transport.request("bbo", symbol=args.symbol), show_bbo


def cmd_trades(args: argparse.Namespace, transport: Any) -> tuple[Any, Callable[[Any], str]]:
    result = transport.request("trades", symbol=args.symbol, limit=args.limit)
    return result, lambda r: show_trades(r["trades"])


async def watch(feed_url: str, symbol: str, depth: int, updates: int | None, as_json: bool) -> None:
    """Redraw the top of the book on every update of the depth feed, and print trades."""
    import websockets

    async with (
        websockets.connect(f"{feed_url}/ws/market_data/{symbol}?depth={depth}") as book_ws,
        websockets.connect(f"{feed_url}/ws/trades?symbol={symbol}") as trade_ws,
    ):
        seen = 0
        last_trades: list[dict[str, Any]] = []
        book_task = asyncio.ensure_future(book_ws.recv())
        trade_task = asyncio.ensure_future(trade_ws.recv())
        while updates is None or seen < updates:
            done, _ = await asyncio.wait(
                {book_task, trade_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if trade_task in done:
                trade = json.loads(trade_task.result())
                last_trades = ([trade] + last_trades)[:5]
                if as_json:
                    print(json.dumps(trade), flush=True)
                trade_task = asyncio.ensure_future(trade_ws.recv())
            if book_task in done:
                message = json.loads(book_task.result())
                seen += 1
                if as_json:
                    print(json.dumps(message), flush=True)
                else:
                    screen = show_book(message)
                    if last_trades:
                        screen += "\n\nlast trades\n" + show_table(
                            [[t["price"], t["quantity"], t["aggressor_side"]] for t in last_trades],
                            ["price", "quantity", "aggressor"],
                        )
                    # Clear the screen only on a terminal: a pipe or file gets plain text.
                    clear = "\x1b[2J\x1b[H" if sys.stdout.isatty() else "\n"
                    print(clear + screen, flush=True)
                book_task = asyncio.ensure_future(book_ws.recv())
        book_task.cancel()
        trade_task.cancel()


# Options that come before the command; `load` takes those it shares with them.
FORWARDED_TO_LOAD = ("transport", "url", "endpoint", "api_key", "account", "key", "server_key")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=("rest", "zmq"), default="rest")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="gateway base URL")
    parser.add_argument(
        "--endpoint", help="matcher ROUTER for --transport zmq (default: from GET /)"
    )
    parser.add_argument("--api-key", help="X-API-Key when auth is on")
    parser.add_argument("--account", help="account to act for (auth off)")
    parser.add_argument("--key", help="--transport zmq with CurveZMQ: your .key_secret file")
    parser.add_argument(
        "--server-key", help="the matcher's CURVE public key, file or Z85 (default: from GET /)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--timeout", type=float, default=10.0)


def split_command(argv: list[str]) -> tuple[argparse.Namespace, str | None, list[str]]:
    """The global options, the command word and what follows it.

    Parsed with the same option definitions as the full parser, so an option's value
    that happens to be a command name (`--account load`) is never taken for the command.
    """
    finder = argparse.ArgumentParser(add_help=False)
    add_global_options(finder)
    finder.add_argument("-h", "--help", action="store_true")
    finder.add_argument("command", nargs="?")
    finder.add_argument("rest", nargs=argparse.REMAINDER)
    found, _ = finder.parse_known_args(argv)
    return found, found.command, found.rest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matchwire", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    order = sub.add_parser("order", help="submit a market/limit/ioc/fok order")
    order.add_argument("symbol")
    order.add_argument("side", choices=("buy", "sell"))
    order.add_argument("order_type", choices=("market", "limit", "ioc", "fok"))
    order.add_argument("quantity")
    order.add_argument("--price")
    order.add_argument("--time-in-force", dest="time_in_force", choices=("gtc", "ioc", "fok"))
    order.add_argument("--post-only", action="store_true")
    order.add_argument("--client-order-id")
    order.add_argument("--stp", choices=("cancel_newest", "cancel_oldest", "cancel_both"))
    order.set_defaults(handler=cmd_order)

    stop = sub.add_parser("stop", help="submit a stop_loss/stop_limit/take_profit order")
    stop.add_argument("symbol")
    stop.add_argument("side", choices=("buy", "sell"))
    stop.add_argument("order_type", choices=("stop_loss", "stop_limit", "take_profit"))
    stop.add_argument("quantity")
    stop.add_argument("--stop-price", required=True)
    stop.add_argument("--price")
    stop.add_argument("--client-order-id")
    stop.add_argument("--stp", choices=("cancel_newest", "cancel_oldest", "cancel_both"))
    stop.set_defaults(handler=cmd_stop)

    for name, handler, text in (
        ("cancel", cmd_cancel, "cancel an open order"),
        ("get", cmd_get, "show one order"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("symbol")
        command.add_argument("order_id", type=int, nargs="?")
        command.add_argument("--client-order-id", help="name the order by its client_order_id")
        command.set_defaults(handler=handler)

    cancel_all = sub.add_parser("cancel-all", help="cancel all your open orders and stops")
    cancel_all.add_argument("symbol")
    cancel_all.add_argument("--side", choices=("buy", "sell"), help="only this side's")
    cancel_all.set_defaults(handler=cmd_cancel_all)

    amend = sub.add_parser("amend", help="change an open order's quantity and/or price")
    amend.add_argument("symbol")
    amend.add_argument("order_id", type=int, nargs="?")
    amend.add_argument("--client-order-id", help="name the order by its client_order_id")
    amend.add_argument("--quantity")
    amend.add_argument("--price")
    amend.set_defaults(handler=cmd_amend)

    orders = sub.add_parser("orders", help="your orders")
    orders.add_argument("symbol")
    orders.add_argument("--open", action="store_true", help="open orders only")
    orders.set_defaults(handler=cmd_orders)

    book = sub.add_parser("book", help="order book levels")
    book.add_argument("symbol")
    book.add_argument("--depth", type=int, default=10)
    book.set_defaults(handler=cmd_book)

    bbo = sub.add_parser("bbo", help="best bid and offer")
    bbo.add_argument("symbol")
    bbo.set_defaults(handler=cmd_bbo)

    trades = sub.add_parser("trades", help="recent trades, newest first")
    trades.add_argument("symbol")
    trades.add_argument("--limit", type=int, default=20)
    trades.set_defaults(handler=cmd_trades)

    watch_parser = sub.add_parser("watch", help="live ladder and trades from the WebSocket feed")
    watch_parser.add_argument("symbol")
    watch_parser.add_argument("--depth", type=int, default=10)
    watch_parser.add_argument("--feed-url", help="feed hub (default: feed_url from GET /)")
    watch_parser.add_argument("--updates", type=int, help="stop after this many book updates")

    sub.add_parser("replay", add_help=False, help="rebuild a book from its journal (run.py replay)")
    sub.add_parser("load", add_help=False, help="load generator (see matchwire load --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        found, command, rest = split_command(argv)
    except SystemExit as exc:  # a global option with a bad value
        return int(exc.code or 0) and EXIT_USAGE
    # replay and load own their flags: hand what follows the command over as it is.
    if command == "replay" and not found.help:
        from matcher import replay

        return int(replay.main(rest, prog="matchwire replay") or 0)
    if command == "load" and not found.help:
        from clients import load

        forwarded: list[str] = []
        for name in FORWARDED_TO_LOAD:
            value = getattr(found, name)
            if value is not None and argv_names_option(argv, name):
                forwarded += ["--" + name.replace("_", "-"), str(value)]
        return int(load.main(forwarded + rest) or 0)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    try:
        if args.command == "watch":
            feed_url = args.feed_url or discover_feed_url(args.url, args.timeout)
            asyncio.run(watch(feed_url, args.symbol, args.depth, args.updates, args.json))
            return EXIT_OK
        transport: Any = (
            RestTransport(args.url, args.api_key, args.timeout)
            if args.transport == "rest"
            else ZmqTransport(args.endpoint, args.url, args.timeout, args.key, args.server_key)
        )
        result, render = args.handler(args, transport)
    except CliError as exc:
        print(f"matchwire: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"matchwire: cannot connect: {exc}", file=sys.stderr)
        return EXIT_DOWN
    print(json.dumps(result, indent=2) if args.json else render(result))
    reason = refused(result)
    if reason is not None:
        print(f"matchwire: {reason}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def argv_names_option(argv: list[str], name: str) -> bool:
    """Whether the user gave --name (so a default is never forwarded as if chosen)."""
    flag = "--" + name.replace("_", "-")
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def refused(result: Any) -> str | None:
    """Why an order the system answered with 200 was nonetheless refused (status rejected)."""
    if isinstance(result, dict) and result.get("status") == "rejected":
        return f"rejected: {result.get('reject_reason')}"
    return None


def discover_feed_url(url: str, timeout: float) -> str:
    try:
        return str(httpx.get(url + "/", timeout=timeout).json()["feed_url"])
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise CliError(EXIT_DOWN, f"cannot read feed_url from {url}: {exc}") from None


if __name__ == "__main__":
    raise SystemExit(main())
