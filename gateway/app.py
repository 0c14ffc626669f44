"""The REST gateway: a Starlette app with every endpoint of docs/api.md.

    app = create_app(load_config("cfg.toml"))

Each endpoint authenticates (gateway/auth.py), checks the request's shape
(gateway/validation.py), makes one round trip to the symbol's matcher
(gateway/matchers.py) and answers the matcher's result, which is already in the public
JSON shape (matcher/views.py), encoded once (orjson). Errors are
`{"error": {"code", "message"}}` with the status of gateway/errors.py. docs/api.md
documents every endpoint with examples. The routes, the query parameters each endpoint
accepts and /openapi.json all come from one table, gateway/openapi.py's `ENDPOINTS`.

The request path is kept lean on purpose (docs/benchmarks.md: the gateway's p50 should stay
within 3x of a trivial Starlette endpoint): one JSON parse, one dict build, one ZeroMQ
round trip, one JSON encode, and for the POST order endpoints none of Starlette's layers
(`GatewayApp` serves them itself; Starlette serves the rest).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from time import perf_counter
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from gateway import health, openapi
from gateway.auth import Accounts
from gateway.errors import METHOD_NOT_ALLOWED, NOT_FOUND, ApiError, error_body, error_response
from gateway.formats import (
    decode_object,
    encode,
    encode_result,
    json_response,
    read_body,
    trades_csv,
)
from gateway.matchers import DEFAULT_TIMEOUT, Matchers, gateway_curve, public_key
from gateway.metrics import CONTENT_TYPE, Metrics, matcher_metrics_endpoint
from gateway.validation import (
    AMEND_FIELDS,
    CANCEL_ALL_FIELDS,
    CANCEL_FIELDS,
    NEW_ORDER_FIELDS,
    NEW_STOP_FIELDS,
    bounded,
    build_message,
    check_query,
    order_id,
    query_pairs,
    require_symbol,
    unknown_symbol,
)
from matcher import _build
from matcher.protocol import Code
from matcher.system import SystemConfig

log = logging.getLogger("matchwire.gateway")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DASHBOARD = STATIC_DIR / "dashboard.html"
JSON = "application/json"
JSON_HEADER = (b"content-type", b"application/json")
CLIENT_CLOSED = 499  # the client went away before its request was read (nginx's code)

Handler = Callable[[Request], Awaitable[Response]]


def version() -> str:
    try:
        return importlib.metadata.version("matchwire")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


class Gateway:
    """The endpoints and the state they share: matchers, accounts, metrics."""

    def __init__(self, config: SystemConfig, matcher_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.config = config
        self.symbols = config.symbols
        curve = gateway_curve(config)
        self.matchers = Matchers(
            config.symbols, matcher_timeout, link=config.gateway_link, curve=curve
        )
        self.accounts = Accounts(config.api_keys)
        self.auth = self.accounts.enabled
        self.metrics = Metrics(self.matchers.up)
        self.info = encode(
            {
                "name": "matchwire",
                "version": version(),
                # Which build of the matching core runs here, "compiled" or "pure"
                # (docs/architecture.md, "Two builds"); matchers started alike choose alike.
                "build": _build.build_name(),
                "feed_url": config.feed_url,
                "auth": self.auth,
                "symbols": {
                    symbol: {
                        **rules.public(),
                        **public_key(curve, symbol),
                        "metrics_endpoint": matcher_metrics_endpoint(
                            config.host, rules.metrics_port
                        ),
                    }
                    for symbol, rules in config.symbols.items()
                },
            }
        )
        self.openapi = b"{}"

    # -- shared steps ------------------------------------------------------------------

    async def order(
        self,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        op: str,
        fields: dict[str, int],
    ) -> bytes:
        """POST order endpoints: key -> body -> fields -> symbol -> matcher -> JSON bytes.

        `headers` are the ASGI scope's (lower-case names), read in one pass.
        """
        content_length = api_key = None
        for name, value in headers:
            if name == b"content-length":
                if content_length is None:
                    content_length = value
            elif name == b"x-api-key" and api_key is None:
                api_key = value
        key_account = (
            self.accounts.authenticate(None if api_key is None else api_key.decode("latin-1"))
            if self.auth
            else None
        )
        message = build_message(decode_object(await read_body(receive, content_length)), fields)
        symbol = require_symbol(message, self.symbols)
        if key_account is not None:
            message["account"] = self.accounts.resolve(key_account, message.get("account"))
        return encode_result(await self.matchers.request(symbol, op, message))

    async def _order_request(self, request: Request, op: str, fields: dict[str, int]) -> Response:
        """The order endpoints as Starlette routes (any request that does not take
        GatewayApp's direct path)."""
        body = await self.order(request.scope["headers"], request.receive, op, fields)
        return Response(body, media_type=JSON)

    def _symbol(self, request: Request) -> str:
        symbol: str = request.path_params["symbol"]
        if symbol not in self.symbols:
            raise unknown_symbol(symbol)
        return symbol

    def _account(self, request: Request) -> str:
        """A GET order endpoint's account: the key's, or the `account` query parameter."""
        key_account = self.accounts.authenticate(request.headers.get("x-api-key"))
        return self.accounts.resolve(key_account, request.query_params.get("account"))

    # -- orders ------------------------------------------------------------------------

    async def submit_order(self, request: Request) -> Response:
        """Submit a market, limit, ioc or fok order; it matches at once."""
        return await self._order_request(request, "new_order", NEW_ORDER_FIELDS)

    async def submit_stop_order(self, request: Request) -> Response:
        """Submit a stop_loss, stop_limit or take_profit order (status pending)."""
        return await self._order_request(request, "new_stop_order", NEW_STOP_FIELDS)

    async def cancel_order(self, request: Request) -> Response:
        """Cancel a live or pending order of the caller, by order_id or client_order_id."""
        return await self._order_request(request, "cancel_order", CANCEL_FIELDS)

    async def cancel_all(self, request: Request) -> Response:
        """Cancel every open order and pending stop of the caller on a symbol (optionally one side), as one command."""
        return await self._order_request(request, "cancel_all", CANCEL_ALL_FIELDS)

    async def amend_order(self, request: Request) -> Response:
        """Change a live order's total quantity and/or price (by order_id or client_order_id)."""
        return await self._order_request(request, "amend_order", AMEND_FIELDS)

    async def get_order(self, request: Request) -> Response:
        """One of the caller's orders."""
        account = self._account(request)
        symbol = self._symbol(request)
        fields = {"order_id": order_id(request.path_params["order_id"]), "account": account}
        result = await self.matchers.request(symbol, "get_order", fields)
        return Response(encode_result(result), media_type=JSON)

    async def get_order_by_client_id(self, request: Request) -> Response:
        """One of the caller's orders, by the client_order_id it was given."""
        account = self._account(request)
        symbol = self._symbol(request)
        fields = {"client_order_id": request.path_params["client_order_id"], "account": account}
        result = await self.matchers.request(symbol, "get_order", fields)
        return Response(encode_result(result), media_type=JSON)

    async def list_orders(self, request: Request) -> Response:
        """The caller's orders of a symbol: open ones (status=open), or open then recent."""
        account = self._account(request)
        symbol = self._symbol(request)
        query = request.query_params
        status = query.get("status")
        if status not in (None, "open", "all"):
            raise ApiError(Code.INVALID_FIELD, "status must be open or all")
        fields: dict[str, Any] = {
            "account": account,
            "limit": bounded(query.get("limit"), "limit", 1000),
        }
        if status is not None:
            fields["status"] = status
        result = await self.matchers.request(symbol, "orders", fields)
        return Response(encode_result(result), media_type=JSON)

    # -- market data (public) ----------------------------------------------------------

    async def orderbook(self, request: Request) -> Response:
        """Aggregated depth, best levels first."""
        symbol = self._symbol(request)
        depth = bounded(request.query_params.get("depth"), "depth", 10)
        result = await self.matchers.request(symbol, "book", {"depth": depth})
        return Response(encode_result(result), media_type=JSON)

    async def bbo(self, request: Request) -> Response:
        """Best bid and offer."""
        symbol = self._symbol(request)
        result = await self.matchers.request(symbol, "bbo", {})
        return Response(encode_result(result), media_type=JSON)

    async def trades(self, request: Request) -> Response:
        """Recent trades, newest first, as JSON or CSV (format=csv, with a header row)."""
        symbol = self._symbol(request)
        query = request.query_params
        limit = bounded(query.get("limit"), "limit", 50)
        output = query.get("format", "json")
        if output not in ("json", "csv"):
            raise ApiError(Code.INVALID_FIELD, "format must be json or csv")
        result = await self.matchers.request(symbol, "trades", {"limit": limit})
        if output == "csv":
            return Response(trades_csv(result["trades"]), media_type="text/csv")
        return Response(encode_result(result), media_type=JSON)

    async def candles(self, request: Request) -> Response:
        """OHLCV candles of an interval, oldest first (the newest `limit` within [start, end])."""
        symbol = self._symbol(request)
        query = request.query_params
        fields: dict[str, Any] = {"limit": bounded(query.get("limit"), "limit", 500)}
        for name in ("interval", "start", "end"):  # checked by the matcher, named if bad
            value = query.get(name)
            if value is not None:
                fields[name] = value
        result = await self.matchers.request(symbol, "candles", fields)
        return Response(encode_result(result), media_type=JSON)

    async def ticker(self, request: Request) -> Response:
        """The rolling 24 hours to the minute, from the 1-minute candles."""
        symbol = self._symbol(request)
        result = await self.matchers.request(symbol, "ticker", {})
        return Response(encode_result(result), media_type=JSON)

    # -- service -----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """Every matcher and the feed hub; 503 when any is down."""
        healthy, body = await health.check(self.matchers, self.config.host, self.config.ws_port)
        return json_response(body, 200 if healthy else 503)

    async def root(self, request: Request) -> Response:
        """The exchange: name, version, build, feed_url and each symbol's rules and endpoints."""
        return Response(self.info, media_type=JSON)

    async def metrics_text(self, request: Request) -> Response:
        """Prometheus metrics (text format)."""
        await self.matchers.ping_all()  # refreshes matcher_up
        return Response(self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def openapi_json(self, request: Request) -> Response:
        """This document."""
        return Response(self.openapi, media_type=JSON)

    async def dashboard(self, request: Request) -> Response:
        """The browser dashboard (static HTML)."""
        if not DASHBOARD.is_file():
            raise ApiError(NOT_FOUND, "the dashboard is not installed")
        return FileResponse(DASHBOARD, media_type="text/html")


def failure(name: str, error: Exception) -> Response:
    """The answer to a request whose handler raised `error`."""
    if isinstance(error, ApiError):
        return error_response(error)
    if isinstance(error, ClientDisconnect):  # nobody to answer: counted, not logged as a fault
        return Response(status_code=CLIENT_CLOSED)
    # A bug: answer 500 in the error shape, and log it.
    log.error("internal error in %s", name, exc_info=error)
    return Response(error_body(Code.INTERNAL, "internal error"), 500, media_type=JSON)


def instrument(
    name: str, handler: Handler, metrics: Metrics, query: frozenset[str] = frozenset()
) -> Handler:
    """The handler with error mapping and metrics: every outcome is counted and timed.
    A query parameter not in `query`, or given twice, is refused before the handler runs
    (docs/api.md, "Strict input")."""
    observe = metrics.observe

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        started = perf_counter()
        try:
            if request.scope["query_string"]:
                check_query(request.query_params.multi_items(), query)
            response = await handler(request)
        except Exception as error:
            response = failure(name, error)
        observe(name, response.status_code, perf_counter() - started)
        return response

    return endpoint


OrderEndpoint = tuple[str, str, dict[str, int]]  # metrics name, matcher op, fields


class GatewayApp:
    """The gateway's ASGI app: POST to an order endpoint is served here directly, every
    other request (other paths and methods, lifespan) by the Starlette app.

    The order endpoints are the hot path, and Starlette's layers in front of a handler
    (two middlewares, the router's regular expressions, a Request, request_response's
    exception wrapper, then a Response) cost about as much as this path's own work;
    here it is one dict lookup and two ASGI messages. Same answers, same error mapping
    (`failure`) and metrics (`Metrics.observe`) as the routes of `instrument`.
    """

    def __init__(self, gateway: Gateway, app: Starlette, orders: dict[str, OrderEndpoint]):
        self.gateway = gateway
        self.app = app
        self.state = app.state
        self.orders = orders
        self._observe = gateway.metrics.observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.orders.get(scope["path"])
            if endpoint is not None:
                await self._order(scope, receive, send, endpoint)
                return
        await self.app(scope, receive, send)

    async def _order(
        self, scope: Scope, receive: Receive, send: Send, endpoint: OrderEndpoint
    ) -> None:
        name, op, fields = endpoint
        started = perf_counter()
        try:
            if scope["query_string"]:  # the order endpoints take none: all in the body
                check_query(query_pairs(scope["query_string"]), ())
            body = await self.gateway.order(scope["headers"], receive, op, fields)
        except Exception as error:
            response = failure(name, error)
            self._observe(name, response.status_code, perf_counter() - started)
            await response(scope, receive, send)
            return
        self._observe(name, 200, perf_counter() - started)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body)), JSON_HEADER],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Routing errors (no such path, wrong method) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    code = METHOD_NOT_ALLOWED if exc.status_code == 405 else NOT_FOUND
    if exc.status_code not in (404, 405):
        code = "http_error"
    return Response(
        error_body(code, str(exc.detail)), exc.status_code, exc.headers, media_type=JSON
    )


def create_app(config: SystemConfig, matcher_timeout: float = DEFAULT_TIMEOUT) -> GatewayApp:
    """The gateway app for `config`'s symbols and keys; matchers are reached on demand."""
    gateway = Gateway(config, matcher_timeout)

    def route(endpoint: openapi.Endpoint) -> Route:
        handler: Handler = getattr(gateway, endpoint.handler or endpoint.name)
        accepted = openapi.query_parameters(endpoint.method, endpoint.path)
        return Route(
            endpoint.path,
            instrument(endpoint.name, handler, gateway.metrics, accepted),
            methods=[endpoint.method],
            name=endpoint.name,
        )

    # One route per row of the table, in its order (routes are matched in order).
    routes: list[BaseRoute] = [
        *(route(endpoint) for endpoint in openapi.ENDPOINTS),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
    gateway.openapi = encode(
        openapi.document(config.symbols, version(), gateway.auth, bool(gateway.accounts.buckets))
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.matchers.close()

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_exception}
    )
    app.state.gateway = gateway
    return GatewayApp(
        gateway,
        app,
        {
            "/submit_order": ("submit_order", "new_order", NEW_ORDER_FIELDS),
            "/cancel_order": ("cancel_order", "cancel_order", CANCEL_FIELDS),
            "/amend_order": ("amend_order", "amend_order", AMEND_FIELDS),
            "/cancel_all": ("cancel_all", "cancel_all", CANCEL_ALL_FIELDS),
            "/submit_stop_order": ("submit_stop_order", "new_stop_order", NEW_STOP_FIELDS),
        },
    )
