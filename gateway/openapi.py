"""The REST API as one table (`ENDPOINTS`), and the OpenAPI 3.0 document built from it.

Everything the gateway says about an endpoint comes from its row: the route (method,
path, handler name), the query parameters the server accepts (`query_parameters`, which
`gateway/app.py` enforces: any other is refused with 400), the request body (the field
table of gateway/validation.py, closed: `additionalProperties: false`), the answer (a
public shape of matcher/protocol.py) and the error statuses it can give. So the document
and the server agree by construction; docs/api.md says how it is checked
(tests/gateway/test_openapi.py validates it and runs schemathesis against a live system).

Adding an endpoint is one row here and its handler, a method of `Gateway` (of the
row's name, unless the row names another). The document depends on the configuration: the symbols (an enum, so a client
sees which exist; any other answers 404) and whether auth is on (then the order
endpoints need an X-API-Key and can answer 401, and 429 when a key has a rate limit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.formats import MAX_BODY_BYTES
from gateway.validation import (
    AMEND_FIELDS,
    CANCEL_ALL_FIELDS,
    CANCEL_FIELDS,
    DECIMAL,
    FLAG,
    MAX_ORDER_ID,
    NAME,
    NEW_ORDER_FIELDS,
    NEW_STOP_FIELDS,
    ORDER_ID,
)
from matcher.candles import INTERVALS
from matcher.protocol import (
    OPEN_SHAPES,
    ORDER_TYPE_NAMES,
    SHAPES,
    SIDE_NAMES,
    STOP_TYPES,
    STP_NAMES,
    TIF_NAMES,
    MapOf,
    One,
)
from matcher.validation import MAX_ID_CHARS

OPENAPI_VERSION = "3.0.3"
PLAIN_DECIMAL = r"^[0-9]+(\.[0-9]+)?$"  # docs/api.md, "Strict input"
JSON = "application/json"
TEXT = None  # an answer that is text (CSV, HTML, Prometheus), not a JSON shape
API_KEY = "ApiKey"  # the security scheme's name


@dataclass(frozen=True)
class Query:
    """A query parameter: its name and its OpenAPI schema."""

    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Body:
    """A JSON request body: its fields (a gateway/validation.py table: name -> kind), the
    required ones, the order types the endpoint takes, if it takes `order_type`, and an
    example (its symbol is the first configured one)."""

    fields: dict[str, int]
    required: tuple[str, ...]
    order_types: tuple[str, ...] = ()
    example: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """One endpoint: a route of the gateway and an operation of the document."""

    method: str
    path: str  # Starlette's template: {symbol}, {order_id} are path parameters
    name: str  # the route's name, its metrics label and the operationId
    summary: str
    answer: dict[str, str | None]  # 200: media type -> shape name (TEXT for text)
    query: tuple[Query, ...] = ()
    body: Body | None = None
    account: bool = False  # acts for an account: the key's when auth is on (401, 429)
    matcher: bool = False  # asks a matcher, which may not answer in time (503)
    errors: dict[int, str] = field(default_factory=dict)  # its own refusals, by status
    answer_statuses: tuple[int, ...] = (200,)  # statuses whose body is the answer
    description: str = ""
    handler: str = ""  # the `Gateway` method that serves it, if not `name`


def _bounded(default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": 1000, "default": default}


# An account or client_order_id: 1..64 printable characters (Python's str.isprintable: no
# control, format, private-use, unassigned or separator character but the space). No
# portable pattern says that, so it is a format of this API's own.
IDENTIFIER = {"type": "string", "format": "printable", "minLength": 1, "maxLength": MAX_ID_CHARS}
ACCOUNT_QUERY = Query(
    "account",
    IDENTIFIER,
    "auth off: the account to act for (default anonymous); auth on: the key's, if given",
)
NEW_ORDER_TYPES = tuple(n for code, n in enumerate(ORDER_TYPE_NAMES) if code not in STOP_TYPES)
STOP_ORDER_TYPES = tuple(ORDER_TYPE_NAMES[code] for code in STOP_TYPES)

ENDPOINTS: tuple[Endpoint, ...] = (
    # The order endpoints first: routes are matched in order.
    Endpoint(
        "POST",
        "/submit_order",
        "submit_order",
        "Submit an order",
        {JSON: "Order"},
        account=True,
        matcher=True,
        body=Body(
            NEW_ORDER_FIELDS,
            ("symbol", "order_type", "side", "quantity"),
            NEW_ORDER_TYPES,
            {
                "order_type": "limit",
                "side": "buy",
                "price": "100",
                "quantity": "1",
                "client_order_id": "my-order-1",
            },
        ),
        errors={
            400: "off the symbol's grid or bounds, or a conflict of fields",
            409: "duplicate client_order_id",
        },
        description="A market, limit, ioc or fok order; it matches at once. The answer "
        "is the order with its trades.",
    ),
    Endpoint(
        "POST",
        "/cancel_order",
        "cancel_order",
        "Cancel an order",
        {JSON: "Order"},
        account=True,
        matcher=True,
        body=Body(CANCEL_FIELDS, ("symbol",), example={"order_id": 1}),
        errors={
            400: "both or neither of order_id and client_order_id",
            404: "no such order for this account",
            409: "order_not_open (finished)",
        },
        description="A live or pending order of the caller, named by exactly one of "
        "order_id and client_order_id; the answer has status cancelled.",
    ),
    Endpoint(
        "POST",
        "/cancel_all",
        "cancel_all",
        "Cancel all open orders",
        {JSON: "Cancelled"},
        account=True,
        matcher=True,
        body=Body(CANCEL_ALL_FIELDS, ("symbol",), example={"side": "buy"}),
        description="Every open order and pending stop of the caller on the symbol "
        "(optionally one side), as one journaled command: all or nothing, in order id "
        "order. The answer lists the orders it cancelled (possibly none).",
    ),
    Endpoint(
        "POST",
        "/amend_order",
        "amend_order",
        "Amend an order",
        {JSON: "Order"},
        account=True,
        matcher=True,
        body=Body(AMEND_FIELDS, ("symbol",), example={"order_id": 1, "quantity": "2"}),
        errors={
            400: "off the grid or bounds, stop_not_amendable, post_only_would_take, "
            "both or neither of order_id and client_order_id",
            404: "no such order for this account",
            409: "order_not_open",
        },
        description="The order is named by exactly one of order_id and client_order_id. "
        "quantity is the new total and must exceed filled_quantity. A decrease at the "
        "same price keeps time priority; a price change or an increase re-queues.",
    ),
    Endpoint(
        "POST",
        "/submit_stop_order",
        "submit_stop_order",
        "Submit a stop order",
        {JSON: "Order"},
        account=True,
        matcher=True,
        body=Body(
            NEW_STOP_FIELDS,
            ("symbol", "order_type", "side", "quantity", "stop_price"),
            STOP_ORDER_TYPES,
            {
                "order_type": "stop_limit",
                "side": "buy",
                "stop_price": "110",
                "price": "111",
                "quantity": "1",
            },
        ),
        errors={
            400: "off the grid or bounds, would_trigger_immediately",
            409: "duplicate client_order_id",
        },
        description="A stop_loss, stop_limit or take_profit order; the answer has status pending.",
    ),
    Endpoint(
        # `path`: a client_order_id may hold any printable character, "/" included.
        "GET",
        "/orders/{symbol}/client/{client_order_id:path}",
        "get_order_by_client_id",
        "Get an order by client_order_id",
        {JSON: "Order"},
        (ACCOUNT_QUERY,),
        account=True,
        matcher=True,
        errors={404: "no such order for this account"},
        description="Live, or among the symbol's last 100,000 finished orders.",
    ),
    Endpoint(
        "GET",
        "/orders/{symbol}/{order_id}",
        "get_order",
        "Get an order",
        {JSON: "Order"},
        (ACCOUNT_QUERY,),
        account=True,
        matcher=True,
        errors={404: "no such order for this account"},
    ),
    Endpoint(
        "GET",
        "/orders/{symbol}",
        "list_orders",
        "List the caller's orders",
        {JSON: "OrderList"},
        (
            Query(
                "status",
                {"type": "string", "enum": ["open", "all"]},
                "open: the open orders only; all (the default): open then recent",
            ),
            Query("limit", _bounded(1000)),
            ACCOUNT_QUERY,
        ),
        account=True,
        matcher=True,
    ),
    Endpoint(
        "GET",
        "/orderbook/{symbol}",
        "orderbook",
        "Order book depth",
        {JSON: "OrderBook"},
        (Query("depth", _bounded(10), "levels per side"),),
        matcher=True,
        description="Aggregated levels [price, quantity], best first.",
    ),
    Endpoint(
        "GET",
        "/bbo/{symbol}",
        "bbo",
        "Best bid and offer",
        {JSON: "Bbo"},
        matcher=True,
        description="A side's price and quantity are null when that side is empty.",
    ),
    Endpoint(
        "GET",
        "/trades/{symbol}",
        "trades",
        "Recent trades",
        {JSON: "TradeList", "text/csv": TEXT},
        (
            Query("limit", _bounded(50)),
            Query(
                "format",
                {"type": "string", "enum": ["json", "csv"], "default": "json"},
                "csv: text/csv with a header row",
            ),
        ),
        matcher=True,
        description="Newest first.",
    ),
    Endpoint(
        "GET",
        "/candles/{symbol}",
        "candles",
        "Candles",
        {JSON: "CandleList"},
        (
            Query("interval", {"type": "string", "enum": list(INTERVALS), "default": "1m"}),
            Query("limit", _bounded(500)),
            Query(
                "start",
                {"type": "string", "format": "date-time"},
                "the oldest open_time (ISO 8601; no offset: UTC)",
            ),
            Query("end", {"type": "string", "format": "date-time"}, "the newest open_time"),
        ),
        matcher=True,
        description="OHLCV candles of an interval, oldest first: the newest "
        "`limit` whose open_time is within [start, end]. Built from the trades as replayed "
        "state; an interval with no trade has no candle.",
    ),
    Endpoint(
        "GET",
        "/ticker/{symbol}",
        "ticker",
        "24-hour ticker",
        {JSON: "Ticker"},
        matcher=True,
        description="The rolling 24 hours to the minute, from the 1-minute "
        "candles, with the last price and the BBO.",
    ),
    Endpoint(
        "GET",
        "/health",
        "health",
        "Health",
        {JSON: "Health"},
        answer_statuses=(200, 503),
        errors={503: "status degraded: a matcher or the feed hub is down"},
        description="Every matcher and the feed hub; 503 (status degraded) when any is down.",
    ),
    Endpoint(
        "GET",
        "/",
        "root",
        "Exchange information",
        {JSON: "Exchange"},
        description="Name, version, feed_url and each symbol's rules and endpoints; more "
        "fields may be added.",
    ),
    Endpoint(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        {"text/plain": TEXT},
        handler="metrics_text",
    ),
    Endpoint(
        "GET", "/openapi.json", "openapi", "This document", {JSON: None}, handler="openapi_json"
    ),
    Endpoint(
        "GET",
        "/test",
        "dashboard",
        "Dashboard",
        {"text/html": TEXT},
        errors={404: "the dashboard is not installed"},
    ),
)

# The path parameters, by name: every path that has one means the same.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "order_id": {"type": "integer", "minimum": 1, "maximum": MAX_ORDER_ID},
    "client_order_id": IDENTIFIER,
}

# Body fields whose values are names, and the names they take.
FIELD_NAMES: dict[str, tuple[str, ...]] = {
    "side": SIDE_NAMES,
    "time_in_force": TIF_NAMES,
    "stp": STP_NAMES,
}
FIELD_TEXT = {
    "account": ACCOUNT_QUERY.description,
    "price": "not for market and stop_loss orders",
    "client_order_id": "the caller's own id, unique among its orders of the symbol",
    "quantity": "amend: the new total quantity",
}
DECIMAL_TEXT = (
    'a plain decimal: a string such as "123" or "0.5", or a JSON number '
    "written the same way (no sign or exponent)"
)


def query_parameters(method: str, path: str) -> frozenset[str]:
    """The query parameters the endpoint takes: exactly those its row lists."""
    for endpoint in ENDPOINTS:
        if endpoint.method == method and endpoint.path == path:
            return frozenset(query.name for query in endpoint.query)
    raise KeyError(f"{method} {path} is not in gateway/openapi.py's ENDPOINTS")


def path_parameter_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def document_path(path: str) -> str:
    """The route's template as OpenAPI writes it: Starlette's `{name:path}` is `{name}`."""
    return "/".join(
        f"{{{part[1:-1].split(':')[0]}}}" if part.startswith("{") else part
        for part in path.split("/")
    )


# -- the document --------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _kind_schema(kind: Any) -> dict[str, Any]:
    """The schema of a value of a shape kind (matcher/protocol.py)."""
    if isinstance(kind, tuple):
        return {"type": "string", "enum": list(kind)}
    if isinstance(kind, MapOf):
        return {"type": "object", "additionalProperties": _ref(kind)}
    if isinstance(kind, One):
        return _ref(kind)
    if kind in ("integer", "string", "boolean"):
        return {"type": kind}
    if kind == "decimal":
        return {"type": "string", "pattern": PLAIN_DECIMAL}
    if kind == "signed_decimal":
        return {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
    if kind == "timestamp":
        return {"type": "string", "format": "date-time"}
    if kind == "levels":
        level = {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": _kind_schema("decimal"),
            "description": "[price, quantity]",
        }
        return {"type": "array", "items": level}
    if kind in SHAPES:
        return {"type": "array", "items": _ref(kind)}
    raise ValueError(f"unknown shape kind {kind!r}")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:  # 3.0: nullable needs a type beside it
        return {"allOf": [schema], "nullable": True}
    schema = {**schema, "nullable": True}
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def shape_schema(name: str) -> dict[str, Any]:
    """A public shape as a schema: every field present, in order, null only where the
    shape says; closed, but for the open shapes (GET /)."""
    properties = {}
    for field_name, kind, nullable in SHAPES[name]:
        schema = _kind_schema(kind)
        properties[field_name] = _nullable(schema) if nullable else schema
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": name in OPEN_SHAPES,
    }


def _field_schema(name: str, kind: int, body: Body, symbols: list[str]) -> dict[str, Any]:
    """A request body field's schema (gateway/validation.py kinds); an optional field
    may be null, which means absent."""
    optional = name not in body.required
    if kind == DECIMAL:
        string: dict[str, Any] = {"type": "string", "pattern": PLAIN_DECIMAL}
        number = {"type": "number", "minimum": 0}
        if optional:  # 3.0: nullable needs a type beside it
            string["nullable"] = True
        text = f"{DECIMAL_TEXT}; {FIELD_TEXT[name]}" if name in FIELD_TEXT else DECIMAL_TEXT
        return {"oneOf": [string, number], "description": text}
    schema: dict[str, Any]
    if kind == FLAG:
        schema = {"type": "boolean"}
    elif kind == ORDER_ID:
        schema = dict(PATH_PARAMETERS["order_id"])
    elif name == "symbol":
        schema = {"type": "string", "enum": symbols}
    elif name == "order_type":
        schema = {"type": "string", "enum": list(body.order_types)}
    elif name in FIELD_NAMES:
        schema = {"type": "string", "enum": list(FIELD_NAMES[name])}
    elif kind == NAME:
        schema = dict(IDENTIFIER)
    else:
        raise ValueError(f"unknown field kind {kind!r} of {name}")
    if name in FIELD_TEXT:
        schema["description"] = FIELD_TEXT[name]
    return _nullable(schema) if optional else schema


def body_schema(body: Body, symbols: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(body.required),
        "properties": {
            name: _field_schema(name, kind, body, symbols) for name, kind in body.fields.items()
        },
        "additionalProperties": False,
    }
    if body.example and symbols:
        schema["example"] = {"symbol": symbols[0], **body.example}
    return schema


def _content(answer: dict[str, str | None]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for media_type, shape in answer.items():
        if shape is not None:
            content[media_type] = {"schema": _ref(shape)}
        elif media_type == JSON:
            content[media_type] = {"schema": {"type": "object"}}
        else:
            content[media_type] = {"schema": {"type": "string"}}
    return content


def error_statuses(endpoint: Endpoint, auth: bool, rate_limited: bool) -> dict[int, str]:
    """Each error status the server can give for the endpoint, with what it means."""
    reasons: dict[int, list[str]] = {400: ["an unknown or repeated query parameter"]}
    if endpoint.query:
        reasons[400].append("a query parameter out of its range")
    if endpoint.body is not None:
        reasons[400].append(
            "a body that is not a JSON object, with an unknown or "
            "repeated field, or a field of the wrong type or value"
        )
        reasons[413] = [f"a body over {MAX_BODY_BYTES} bytes"]
    if endpoint.account and auth:
        reasons[401] = ["a missing or unknown X-API-Key, or one naming another account"]
        if rate_limited:
            reasons[429] = ["the key's rate limit (Retry-After says when to retry)"]
    if "{symbol}" in endpoint.path or (endpoint.body and "symbol" in endpoint.body.fields):
        reasons[404] = ["unknown symbol"]
    if endpoint.matcher and endpoint.body is not None:  # an order endpoint (docs/api.md)
        reasons[503] = [
            "not executed: matcher_timeout, deadline_exceeded or "
            "journal_unavailable; outcome unknown: matcher_unavailable"
        ]
    elif endpoint.matcher:
        reasons[503] = ["the matcher did not answer in time: retry"]
    for status, reason in endpoint.errors.items():
        reasons.setdefault(status, []).append(reason)
    return {status: "; ".join(texts) for status, texts in sorted(reasons.items())}


def operation(
    endpoint: Endpoint, symbols: list[str], auth: bool, rate_limited: bool
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for name in path_parameter_names(endpoint.path):
        schema = {"type": "string", "enum": symbols} if name == "symbol" else PATH_PARAMETERS[name]
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    for query in endpoint.query:
        parameter = {"name": query.name, "in": "query", "required": False, "schema": query.schema}
        if query.description:
            parameter["description"] = query.description
        parameters.append(parameter)
    responses: dict[str, Any] = {}
    for status in endpoint.answer_statuses:
        responses[str(status)] = {
            "description": endpoint.summary,
            "content": _content(endpoint.answer),
        }
    for status, reason in error_statuses(endpoint, auth, rate_limited).items():
        if str(status) in responses:
            responses[str(status)]["description"] += f"; {reason}"
            continue
        responses[str(status)] = {
            "description": reason,
            "content": {JSON: {"schema": _ref("Error")}},
        }
        if status == 429:
            responses["429"]["headers"] = {
                "Retry-After": {
                    "required": True,
                    "description": "whole seconds",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
    result: dict[str, Any] = {"operationId": endpoint.name, "summary": endpoint.summary}
    if endpoint.description:
        result["description"] = endpoint.description
    if parameters:
        result["parameters"] = parameters
    if endpoint.body is not None:
        result["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": body_schema(endpoint.body, symbols)}},
        }
    if endpoint.account and auth:
        result["security"] = [{API_KEY: []}]
    result["responses"] = dict(sorted(responses.items()))
    return result


def document(
    symbols: Iterable[str],
    version: str,
    auth: bool = False,
    rate_limited: bool = False,
    endpoints: Iterable[Endpoint] = ENDPOINTS,
) -> dict[str, Any]:
    """The OpenAPI 3.0 document of `endpoints` for a gateway with these symbols and auth."""
    names = list(symbols)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(document_path(endpoint.path), {})[endpoint.method.lower()] = operation(
            endpoint, names, auth, rate_limited
        )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "matchwire REST API",
            "version": version,
            "description": "Decimals are plain decimal strings in answers; requests "
            "take strings or JSON numbers. Auth is "
            + (
                "on: the order endpoints need an X-API-Key header."
                if auth
                else "off: a request names its account (default anonymous)."
            )
            + " See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": {name: shape_schema(name) for name in SHAPES},
            "securitySchemes": {API_KEY: {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
