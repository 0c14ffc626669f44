"""The REST gateway: a Starlette app with every endpoint of DESIGN.md §4.

    app = create_app(load_config("cfg.toml"))

Each endpoint authenticates (gateway/auth.py), checks the request's shape
(gateway/validation.py), makes one round trip to the symbol's matcher
(gateway/matchers.py) and answers the matcher's result, which is already in the public
JSON shape (matcher/views.py), encoded once (orjson). Errors are
`{"error": {"code", "message"}}` with the status of gateway/errors.py. docs/api.md
documents every endpoint with examples; /openapi.json is built from the YAML at the end
of each endpoint's docstring.

The request path is kept lean on purpose (DESIGN.md §10: the gateway's p50 should stay
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
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from gateway import health
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
from gateway.matchers import DEFAULT_TIMEOUT, Matchers
from gateway.metrics import CONTENT_TYPE, Metrics, matcher_metrics_endpoint
from gateway.validation import (
    AMEND_FIELDS,
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
from matcher.config import SystemConfig
from matcher.protocol import Code

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
        self.matchers = Matchers(config.symbols, matcher_timeout)
        self.accounts = Accounts(config.api_keys)
        self.auth = self.accounts.enabled
        self.metrics = Metrics(self.matchers.up)
        self.info = encode({
            "name": "matchwire",
            "version": version(),
            "feed_url": config.feed_url,
            "symbols": {symbol: {**rules.public(), "metrics_endpoint": matcher_metrics_endpoint(
                config.host, rules.metrics_port)} for symbol, rules in config.symbols.items()},
        })
        self.openapi = b"{}"

    # -- shared steps ------------------------------------------------------------------

    async def order(
        self, headers: list[tuple[bytes, bytes]], receive: Receive, op: str,
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
            if self.auth else None
        )
        message = build_message(decode_object(await read_body(receive, content_length)), fields)
        symbol = require_symbol(message, self.symbols)
        if key_account is not None:
            message["account"] = self.accounts.resolve(key_account, message.get("account"))
        return encode_result(await self.matchers.request(symbol, op, message))

    async def _order_request(
        self, request: Request, op: str, fields: dict[str, int]
    ) -> Response:
        """The order endpoints as Starlette routes (documentation, and any request that
        does not take GatewayApp's direct path)."""
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
        """Submit a market, limit, ioc or fok order; it matches at once.
        ---
        summary: Submit an order
        requestBody:
          required: true
          content:
            application/json:
              schema: {$ref: '#/components/schemas/NewOrder'}
        responses:
          200: {description: the order with its trades, content: {application/json: {schema: {$ref: '#/components/schemas/Order'}}}}
          400: {description: malformed or invalid field, content: {application/json: {schema: {$ref: '#/components/schemas/Error'}}}}
          401: {description: missing or bad X-API-Key (auth on)}
          404: {description: unknown symbol}
          409: {description: duplicate client_order_id}
          413: {description: body over 64 KiB}
          429: {description: rate limited}
          503: {description: "not executed: matcher_timeout or deadline_exceeded; outcome unknown: matcher_unavailable (docs/api.md)"}
        """
        return await self._order_request(request, "new_order", NEW_ORDER_FIELDS)

    async def submit_stop_order(self, request: Request) -> Response:
        """Submit a stop_loss, stop_limit or take_profit order (status pending).
        ---
        summary: Submit a stop order
        requestBody:
          required: true
          content:
            application/json:
              schema: {$ref: '#/components/schemas/NewStopOrder'}
        responses:
          200: {description: the order, status pending, content: {application/json: {schema: {$ref: '#/components/schemas/Order'}}}}
          400: {description: invalid field or would_trigger_immediately, content: {application/json: {schema: {$ref: '#/components/schemas/Error'}}}}
          404: {description: unknown symbol}
          409: {description: duplicate client_order_id}
          503: {description: "not executed: matcher_timeout or deadline_exceeded; outcome unknown: matcher_unavailable (docs/api.md)"}
        """
        return await self._order_request(request, "new_stop_order", NEW_STOP_FIELDS)

    async def cancel_order(self, request: Request) -> Response:
        """Cancel a live or pending order of the caller.
        ---
        summary: Cancel an order
        requestBody:
          required: true
          content:
            application/json:
              schema:
                type: object
                required: [symbol, order_id]
                properties:
                  symbol: {type: string}
                  order_id: {type: integer}
                  account: {type: string, description: auth off only}
        responses:
          200: {description: the order, status cancelled, content: {application/json: {schema: {$ref: '#/components/schemas/Order'}}}}
          404: {description: unknown symbol, or no such order for this account}
          409: {description: order_not_open (already finished)}
          503: {description: "not executed: matcher_timeout or deadline_exceeded; outcome unknown: matcher_unavailable (docs/api.md)"}
        """
        return await self._order_request(request, "cancel_order", CANCEL_FIELDS)

    async def amend_order(self, request: Request) -> Response:
        """Change a live order's total quantity and/or price.
        ---
        summary: Amend an order
        description: >-
          quantity is the new total and must exceed filled_quantity. A decrease at the
          same price keeps time priority; a price change or an increase re-queues.
        requestBody:
          required: true
          content:
            application/json:
              schema:
                type: object
                required: [symbol, order_id]
                properties:
                  symbol: {type: string}
                  order_id: {type: integer}
                  quantity: {type: string}
                  price: {type: string}
                  account: {type: string, description: auth off only}
        responses:
          200: {description: the order, content: {application/json: {schema: {$ref: '#/components/schemas/Order'}}}}
          400: {description: invalid field, stop_not_amendable, post_only_would_take}
          404: {description: unknown symbol or order}
          409: {description: order_not_open}
          503: {description: "not executed: matcher_timeout or deadline_exceeded; outcome unknown: matcher_unavailable (docs/api.md)"}
        """
        return await self._order_request(request, "amend_order", AMEND_FIELDS)

    async def get_order(self, request: Request) -> Response:
        """One of the caller's orders.
        ---
        summary: Get an order
        parameters:
          - {name: symbol, in: path, required: true, schema: {type: string}}
          - {name: order_id, in: path, required: true, schema: {type: integer}}
          - {name: account, in: query, required: false, schema: {type: string}, description: auth off only}
        responses:
          200: {description: the order, content: {application/json: {schema: {$ref: '#/components/schemas/Order'}}}}
          404: {description: unknown symbol, or no such order for this account}
        """
        account = self._account(request)
        symbol = self._symbol(request)
        fields = {"order_id": order_id(request.path_params["order_id"]), "account": account}
        result = await self.matchers.request(symbol, "get_order", fields)
        return Response(encode_result(result), media_type=JSON)

    async def list_orders(self, request: Request) -> Response:
        """The caller's orders of a symbol: open ones (status=open), or open then recent.
        ---
        summary: List the caller's orders
        parameters:
          - {name: symbol, in: path, required: true, schema: {type: string}}
          - {name: status, in: query, required: false, schema: {type: string, enum: [open, all]}}
          - {name: limit, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 1000, default: 1000}}
          - {name: account, in: query, required: false, schema: {type: string}, description: auth off only}
        responses:
          200: {description: "{symbol, orders}"}
          404: {description: unknown symbol}
        """
        account = self._account(request)
        symbol = self._symbol(request)
        query = request.query_params
        status = query.get("status")
        if status not in (None, "open", "all"):
            raise ApiError(Code.INVALID_FIELD, "status must be open or all")
        fields: dict[str, Any] = {
            "account": account, "limit": bounded(query.get("limit"), "limit", 1000)
        }
        if status is not None:
            fields["status"] = status
        result = await self.matchers.request(symbol, "orders", fields)
        return Response(encode_result(result), media_type=JSON)

    # -- market data (public) ----------------------------------------------------------

    async def orderbook(self, request: Request) -> Response:
        """Aggregated depth, best levels first.
        ---
        summary: Order book depth
        parameters:
          - {name: symbol, in: path, required: true, schema: {type: string}}
          - {name: depth, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 1000, default: 10}}
        responses:
          200: {description: "{symbol, book_seq, timestamp, bids, asks}; levels are [price, quantity]"}
          400: {description: depth outside 1..1000}
          404: {description: unknown symbol}
        """
        symbol = self._symbol(request)
        depth = bounded(request.query_params.get("depth"), "depth", 10)
        result = await self.matchers.request(symbol, "book", {"depth": depth})
        return Response(encode_result(result), media_type=JSON)

    async def bbo(self, request: Request) -> Response:
        """Best bid and offer.
        ---
        summary: Best bid and offer
        parameters:
          - {name: symbol, in: path, required: true, schema: {type: string}}
        responses:
          200: {description: "{symbol, book_seq, bid_price, bid_quantity, ask_price, ask_quantity}, null when a side is empty"}
          404: {description: unknown symbol}
        """
        symbol = self._symbol(request)
        result = await self.matchers.request(symbol, "bbo", {})
        return Response(encode_result(result), media_type=JSON)

    async def trades(self, request: Request) -> Response:
        """Recent trades, newest first, as JSON or CSV (format=csv, with a header row).
        ---
        summary: Recent trades
        parameters:
          - {name: symbol, in: path, required: true, schema: {type: string}}
          - {name: limit, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 1000, default: 50}}
          - {name: format, in: query, required: false, schema: {type: string, enum: [json, csv]}}
        responses:
          200:
            description: "{symbol, trades}, or text/csv"
            content:
              application/json: {schema: {type: object, properties: {symbol: {type: string}, trades: {type: array, items: {$ref: '#/components/schemas/Trade'}}}}}
              text/csv: {schema: {type: string}}
          400: {description: limit outside 1..1000 or unknown format}
          404: {description: unknown symbol}
        """
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

    # -- service -----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """Every matcher and the feed hub; 503 when any is down.
        ---
        summary: Health
        responses:
          200: {description: "{status: ok, matchers: {SYMBOL: {status, seq, book_seq}}, feedhub: {status}}"}
          503: {description: "status degraded: a matcher or the feed hub is down"}
        """
        healthy, body = await health.check(
            self.matchers, self.config.host, self.config.ws_port
        )
        return json_response(body, 200 if healthy else 503)

    async def root(self, request: Request) -> Response:
        """The exchange: name, version, feed_url and each symbol's rules and endpoints.
        ---
        summary: Exchange information
        responses:
          200: {description: "{name, version, feed_url, symbols: {SYMBOL: rules}}"}
        """
        return Response(self.info, media_type=JSON)

    async def metrics_text(self, request: Request) -> Response:
        """Prometheus metrics (text format).
        ---
        summary: Prometheus metrics
        responses:
          200: {description: text exposition format, content: {text/plain: {schema: {type: string}}}}
        """
        await self.matchers.ping_all()  # refreshes matcher_up
        return Response(self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def openapi_json(self, request: Request) -> Response:
        """This document.
        ---
        summary: OpenAPI schema
        responses:
          200: {description: the OpenAPI 3 schema of this API}
        """
        return Response(self.openapi, media_type=JSON)

    async def dashboard(self, request: Request) -> Response:
        """The browser dashboard (static HTML).
        ---
        summary: Dashboard
        responses:
          200: {description: HTML, content: {text/html: {schema: {type: string}}}}
        """
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


def query_parameters(handler: Handler) -> frozenset[str]:
    """The query parameters an endpoint takes: exactly those its docstring's OpenAPI
    `parameters` list `in: query`, so /openapi.json and the server agree on them."""
    spec = SchemaGenerator({}).parse_docstring(handler)
    listed = spec.get("parameters", []) if isinstance(spec, dict) else []
    return frozenset(p["name"] for p in listed if p.get("in") == "query")


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
        await send({
            "type": "http.response.start", "status": 200,
            "headers": [(b"content-length", b"%d" % len(body)), JSON_HEADER],
        })
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


OPENAPI_BASE: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "matchwire REST API", "version": version()},
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}},
            },
            "NewOrder": {
                "type": "object",
                "required": ["symbol", "order_type", "side", "quantity"],
                "properties": {
                    "symbol": {"type": "string"},
                    "order_type": {"type": "string", "enum": ["market", "limit", "ioc", "fok"]},
                    "side": {"type": "string", "enum": ["buy", "sell"]},
                    "quantity": {"type": "string", "description": "decimal string or number"},
                    "price": {"type": "string", "description": "not for market orders"},
                    "time_in_force": {"type": "string", "enum": ["gtc", "ioc", "fok"]},
                    "post_only": {"type": "boolean"},
                    "client_order_id": {"type": "string", "maxLength": 64},
                    "stp": {"type": "string",
                            "enum": ["cancel_newest", "cancel_oldest", "cancel_both"]},
                    "account": {"type": "string", "description": "auth off only"},
                },
            },
            "NewStopOrder": {
                "type": "object",
                "required": ["symbol", "order_type", "side", "quantity", "stop_price"],
                "properties": {
                    "symbol": {"type": "string"},
                    "order_type": {"type": "string",
                                   "enum": ["stop_loss", "stop_limit", "take_profit"]},
                    "side": {"type": "string", "enum": ["buy", "sell"]},
                    "quantity": {"type": "string"},
                    "stop_price": {"type": "string"},
                    "price": {"type": "string"},
                    "client_order_id": {"type": "string", "maxLength": 64},
                    "stp": {"type": "string"},
                    "account": {"type": "string", "description": "auth off only"},
                },
            },
            "Trade": {
                "type": "object",
                "properties": {
                    "trade_id": {"type": "integer"}, "symbol": {"type": "string"},
                    "price": {"type": "string"}, "quantity": {"type": "string"},
                    "aggressor_side": {"type": "string"},
                    "maker_order_id": {"type": "integer"},
                    "taker_order_id": {"type": "integer"},
                    "maker_fee": {"type": "string"}, "taker_fee": {"type": "string"},
                    "timestamp": {"type": "string", "format": "date-time"},
                },
            },
            "Order": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "integer"},
                    "client_order_id": {"type": "string", "nullable": True},
                    "account": {"type": "string"},
                    "symbol": {"type": "string"}, "side": {"type": "string"},
                    "order_type": {"type": "string"}, "time_in_force": {"type": "string"},
                    "post_only": {"type": "boolean"},
                    "price": {"type": "string", "nullable": True},
                    "stop_price": {"type": "string", "nullable": True},
                    "quantity": {"type": "string"}, "filled_quantity": {"type": "string"},
                    "remaining_quantity": {"type": "string"},
                    "status": {"type": "string", "enum": [
                        "pending", "new", "partially_filled", "filled", "cancelled",
                        "rejected"]},
                    "reject_reason": {"type": "string", "nullable": True},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "trades": {"type": "array", "items": {"$ref": "#/components/schemas/Trade"}},
                },
            },
        },
    },
}


def create_app(config: SystemConfig, matcher_timeout: float = DEFAULT_TIMEOUT) -> GatewayApp:
    """The gateway app for `config`'s symbols and keys; matchers are reached on demand."""
    gateway = Gateway(config, matcher_timeout)

    def route(path: str, handler: Handler, name: str, method: str = "GET") -> Route:
        endpoint = instrument(name, handler, gateway.metrics, query_parameters(handler))
        return Route(path, endpoint, methods=[method], name=name)

    # The order endpoints first: routes are matched in order.
    routes: list[BaseRoute] = [
        route("/submit_order", gateway.submit_order, "submit_order", "POST"),
        route("/cancel_order", gateway.cancel_order, "cancel_order", "POST"),
        route("/amend_order", gateway.amend_order, "amend_order", "POST"),
        route("/submit_stop_order", gateway.submit_stop_order, "submit_stop_order", "POST"),
        route("/orders/{symbol}/{order_id}", gateway.get_order, "get_order"),
        route("/orders/{symbol}", gateway.list_orders, "list_orders"),
        route("/orderbook/{symbol}", gateway.orderbook, "orderbook"),
        route("/bbo/{symbol}", gateway.bbo, "bbo"),
        route("/trades/{symbol}", gateway.trades, "trades"),
        route("/health", gateway.health, "health"),
        route("/", gateway.root, "root"),
        route("/metrics", gateway.metrics_text, "metrics"),
        route("/openapi.json", gateway.openapi_json, "openapi"),
        route("/test", gateway.dashboard, "dashboard"),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
    gateway.openapi = encode(SchemaGenerator(OPENAPI_BASE).get_schema(routes))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.matchers.close()

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_exception}
    )
    app.state.gateway = gateway
    return GatewayApp(gateway, app, {
        "/submit_order": ("submit_order", "new_order", NEW_ORDER_FIELDS),
        "/cancel_order": ("cancel_order", "cancel_order", CANCEL_FIELDS),
        "/amend_order": ("amend_order", "amend_order", AMEND_FIELDS),
        "/submit_stop_order": ("submit_stop_order", "new_stop_order", NEW_STOP_FIELDS),
    })
