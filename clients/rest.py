"""A blocking client of the REST gateway (docs/api.md), on httpx.

    with RestClient("http://127.0.0.1:8000", api_key="k1") as rest:
        order = rest.submit_order("BTC-USDT", "limit", "buy", "0.5", price="30000")
        rest.cancel_order("BTC-USDT", order["order_id"])

Every endpoint has a method returning the JSON body as a TypedDict (decimals stay
strings: convert with `decimal.Decimal`, never float). A 4xx/5xx answer raises
`RestError(status, code, message)`, except GET /health, whose 503 body is the answer.
With auth off, `account` names the account of every request (default `anonymous`);
with auth on, `api_key` decides it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, TypedDict, cast
from urllib.parse import quote

import httpx

Number = str | int | Decimal


class Trade(TypedDict):
    trade_id: int
    symbol: str
    price: str
    quantity: str
    aggressor_side: str
    maker_order_id: int
    taker_order_id: int
    maker_fee: str
    taker_fee: str
    timestamp: str


class Order(TypedDict):
    order_id: int
    client_order_id: str | None
    account: str
    symbol: str
    side: str
    order_type: str
    time_in_force: str
    post_only: bool
    price: str | None
    stop_price: str | None
    quantity: str
    filled_quantity: str
    remaining_quantity: str
    average_price: str | None
    cumulative_quote: str
    status: str
    reject_reason: str | None
    timestamp: str
    trades: list[Trade]


class OrderList(TypedDict):
    symbol: str
    orders: list[Order]


class CancelledOrders(TypedDict):
    symbol: str
    cancelled: list[Order]


class OrderBook(TypedDict):
    symbol: str
    book_seq: int
    timestamp: str
    bids: list[list[str]]
    asks: list[list[str]]


class Bbo(TypedDict):
    symbol: str
    book_seq: int
    bid_price: str | None
    bid_quantity: str | None
    ask_price: str | None
    ask_quantity: str | None


class TradeList(TypedDict):
    symbol: str
    trades: list[Trade]


class Candle(TypedDict):
    open_time: str
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trade_count: int


class CandleList(TypedDict):
    symbol: str
    interval: str
    candles: list[Candle]


class Ticker(TypedDict):
    symbol: str
    last_price: str | None
    bid_price: str | None
    ask_price: str | None
    open_24h: str | None
    high_24h: str | None
    low_24h: str | None
    volume_24h: str
    quote_volume_24h: str
    change_24h: str | None
    change_percent_24h: str | None
    trade_count_24h: int
    timestamp: str


class MatcherState(TypedDict):
    status: Literal["up", "down"]
    seq: int | None
    book_seq: int | None


class FeedHubState(TypedDict):
    status: Literal["up", "down"]


class Health(TypedDict):
    status: Literal["ok", "degraded"]
    matchers: dict[str, MatcherState]
    feedhub: FeedHubState


class SymbolRules(TypedDict):
    tick_size: str
    lot_size: str
    min_quantity: str
    max_price: str
    max_quantity: str
    maker_fee_rate: str
    taker_fee_rate: str
    order_endpoint: str
    feed_endpoint: str
    metrics_endpoint: str | None


class ExchangeInfo(TypedDict):
    name: str
    version: str
    feed_url: str
    symbols: dict[str, SymbolRules]


class RestError(Exception):
    """The gateway refused a request: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _text(value: Number | None) -> str | None:
    return None if value is None else str(value)


class RestClient:
    """Blocking REST client; one keep-alive connection pool per instance."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        account: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.account = account
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    # -- plumbing ----------------------------------------------------------------------

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            code, message = "http_error", response.text[:200]
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                pass
            raise RestError(response.status_code, code, message)
        return response

    def _post(self, path: str, fields: dict[str, Any]) -> Any:
        body = {name: value for name, value in fields.items() if value is not None}
        if self.account is not None:
            body.setdefault("account", self.account)
        return self._check(self._http.post(path, json=body)).json()

    def _get(self, path: str, **query: Any) -> httpx.Response:
        """GET with the query parameters given (None: left out)."""
        params = {name: str(value) for name, value in query.items() if value is not None}
        return self._check(self._http.get(path, params=params))

    def _get_own(self, path: str, **query: Any) -> httpx.Response:
        """GET of the caller's orders: names the account too (auth off). Market data takes
        no `account`: the gateway refuses a query parameter an endpoint does not take."""
        return self._get(path, account=self.account, **query)

    # -- orders ------------------------------------------------------------------------

    def submit_order(
        self,
        symbol: str,
        order_type: str,
        side: str,
        quantity: Number,
        price: Number | None = None,
        *,
        time_in_force: str | None = None,
        post_only: bool | None = None,
        client_order_id: str | None = None,
        stp: str | None = None,
    ) -> Order:
        return cast(
            Order,
            self._post(
                "/submit_order",
                {
                    "symbol": symbol,
                    "order_type": order_type,
                    "side": side,
                    "quantity": _text(quantity),
                    "price": _text(price),
                    "time_in_force": time_in_force,
                    "post_only": post_only,
                    "client_order_id": client_order_id,
                    "stp": stp,
                },
            ),
        )

    def submit_stop_order(
        self,
        symbol: str,
        order_type: str,
        side: str,
        quantity: Number,
        stop_price: Number,
        price: Number | None = None,
        *,
        client_order_id: str | None = None,
        stp: str | None = None,
    ) -> Order:
        return cast(
            Order,
            self._post(
                "/submit_stop_order",
                {
                    "symbol": symbol,
                    "order_type": order_type,
                    "side": side,
                    "quantity": _text(quantity),
                    "stop_price": _text(stop_price),
                    "price": _text(price),
                    "client_order_id": client_order_id,
                    "stp": stp,
                },
            ),
        )

    # An order is named by order_id or by client_order_id (exactly one of the two).

    def cancel_order(
        self,
        symbol: str,
        order_id: int | None = None,
        *,
        client_order_id: str | None = None,
    ) -> Order:
        return cast(
            Order,
            self._post(
                "/cancel_order",
                {
                    "symbol": symbol,
                    "order_id": order_id,
                    "client_order_id": client_order_id,
                },
            ),
        )

    def cancel_all(self, symbol: str, side: str | None = None) -> CancelledOrders:
        """Every open order and pending stop of the account on `symbol` (of one side)."""
        return cast(CancelledOrders, self._post("/cancel_all", {"symbol": symbol, "side": side}))

    def amend_order(
        self,
        symbol: str,
        order_id: int | None = None,
        quantity: Number | None = None,
        price: Number | None = None,
        *,
        client_order_id: str | None = None,
    ) -> Order:
        return cast(
            Order,
            self._post(
                "/amend_order",
                {
                    "symbol": symbol,
                    "order_id": order_id,
                    "client_order_id": client_order_id,
                    "quantity": _text(quantity),
                    "price": _text(price),
                },
            ),
        )

    def get_order(
        self,
        symbol: str,
        order_id: int | None = None,
        *,
        client_order_id: str | None = None,
    ) -> Order:
        if client_order_id is not None:
            path = f"/orders/{symbol}/client/{quote(client_order_id, safe='')}"
        else:
            path = f"/orders/{symbol}/{order_id}"
        return cast(Order, self._get_own(path).json())

    def orders(self, symbol: str, status: str | None = None, limit: int | None = None) -> OrderList:
        return cast(
            OrderList, self._get_own(f"/orders/{symbol}", status=status, limit=limit).json()
        )

    # -- market data -------------------------------------------------------------------

    def orderbook(self, symbol: str, depth: int | None = None) -> OrderBook:
        return cast(OrderBook, self._get(f"/orderbook/{symbol}", depth=depth).json())

    def bbo(self, symbol: str) -> Bbo:
        return cast(Bbo, self._get(f"/bbo/{symbol}").json())

    def trades(self, symbol: str, limit: int | None = None) -> TradeList:
        return cast(TradeList, self._get(f"/trades/{symbol}", limit=limit).json())

    def trades_csv(self, symbol: str, limit: int | None = None) -> str:
        """Recent trades as CSV text with a header row, newest first."""
        return self._get(f"/trades/{symbol}", limit=limit, format="csv").text

    def candles(
        self,
        symbol: str,
        interval: str | None = None,
        limit: int | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> CandleList:
        """OHLCV candles, oldest first; `start`/`end` are ISO 8601 (2026-12-04T10:00:00Z)."""
        return cast(
            CandleList,
            self._get(
                f"/candles/{symbol}", interval=interval, limit=limit, start=start, end=end
            ).json(),
        )

    def ticker(self, symbol: str) -> Ticker:
        """The rolling 24 hours, to the minute."""
        return cast(Ticker, self._get(f"/ticker/{symbol}").json())

    # -- service -----------------------------------------------------------------------

    def health(self) -> Health:
        """The health report, also when the gateway answers 503 (something is down)."""
        response = self._http.get("/health")
        if response.status_code not in (200, 503):
            self._check(response)
        return cast(Health, response.json())

    def info(self) -> ExchangeInfo:
        return cast(ExchangeInfo, self._check(self._http.get("/")).json())

    def metrics(self) -> str:
        return self._check(self._http.get("/metrics")).text

    def openapi(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._check(self._http.get("/openapi.json")).json())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
