"""The feed hub process: a Starlette app on uvicorn, ZeroMQ SUB sockets in the same loop.

Routes (docs/feeds.md):
  /ws/market_data/{symbol}          snapshot, then l2update per book change
  /ws/market_data/{symbol}?depth=N  depth messages (top N), coalesced for slow clients
  /ws/trades[?symbol=S]             trade messages
  GET /, GET /health, GET /metrics
Any other WebSocket path is refused with an HTTP 404 before the upgrade.

Lifecycle, top to bottom (`main`): parse flags and config (bad: exit 2), bind the port
(in use: exit 2, naming it), build the app, run uvicorn (the lifespan starts one replica
per symbol, then the server accepts clients), and on SIGINT/SIGTERM uvicorn closes the
connections, the lifespan stops the replicas, and the process exits 0. A second signal
forces the exit.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import math
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from clients.curve import CurveKeys, client_keys
from feedhub.hub import CLIENT_QUEUE, CLOSE_FULL, Feed, Hub, close_quietly
from feedhub.wire import DRAIN_TIMEOUT, LINK, AsgiLink, Link, direct_path_refusal
from matcher.curve import exposure
from matcher.listening import cannot_listen, listening_socket
from matcher.quoting import shown
from matcher.system import SystemConfig, bad_configuration, load_for

log = logging.getLogger("matchwire.feedhub")

MAX_DEPTH = 1000
CLOSE_UNKNOWN_SYMBOL = 4404
CLOSE_BAD_REQUEST = 4400
WS_PING_INTERVAL = 20.0
WS_PING_TIMEOUT = 20.0
WS_MAX_SIZE = 64 * 1024  # clients only send small control messages
# Kernel send buffer per client. Left to autotuning, Linux grows it to 4 MiB on loopback:
# ~13,000 updates a stuck client could sit behind before its queue even starts to fill.
CLIENT_SNDBUF = 256 * 1024
DESCRIPTORS_BESIDES_CLIENTS = 256  # ZeroMQ sockets, HTTP requests, logs, the loop's own
# Label values exported at 0 from the start (rate() needs a first sample): the hub's
# drop actions and refusal reasons (feedhub/hub.py), the replica's resync reasons
# (feedhub/replica.py, OutOfSync). A reason not listed still shows once it happens.
DROP_ACTIONS = ("resync", "close", "stalled")
REFUSAL_REASONS = ("max_connections",)
RESYNC_REASONS = (
    "gap",
    "heartbeat_timeout",
    "matcher_restarted",
    "behind_heartbeat",
    "bad_update",
    "bad_snapshot",
    "snapshot_refused",
)
WS_PATHS = ("auto", "direct", "asgi")  # --ws-path; docs/feeds.md, "Send paths"
DIRECT_ENV = "MATCHWIRE_HUB_DIRECT"  # "0": the ASGI path, "1": the direct one, unset: auto


class HubCollector(Collector):
    """Prometheus figures read from the hub when scraped, not counted per message."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterable[Metric]:
        hub = self.hub
        clients = GaugeMetricFamily(
            "feedhub_clients", "WebSocket clients connected", labels=["feed"]
        )
        for feed, count in hub.client_counts().items():
            clients.add_metric([feed.value], count)
        sent = CounterMetricFamily(
            "feedhub_messages_sent", "WebSocket messages sent", labels=["feed"]
        )
        sent_counts = hub.sent_counts()
        connections = CounterMetricFamily(
            "feedhub_connections", "WebSocket clients accepted", labels=["feed"]
        )
        for feed in Feed:
            sent.add_metric([feed.value], sent_counts[feed])
            connections.add_metric([feed.value], hub.connections[feed])
        drops = CounterMetricFamily(
            "feedhub_slow_client_drops",
            "Slow clients: queue overflowed (resync: sent a fresh snapshot; close: 1013), "
            "socket not drained for the drain timeout (stalled: 1013)",
            labels=["feed", "action"],
        )
        drop_counts = {(feed, action): 0 for feed in Feed for action in DROP_ACTIONS}
        drop_counts.update(hub.drops)
        for (feed, action), count in drop_counts.items():
            drops.add_metric([feed.value, action], count)
        open_connections = GaugeMetricFamily(
            "feedhub_open_connections",
            "WebSocket TCP connections held (serving, refused or closing), capped by "
            "ws_max_connections",
        )
        open_connections.add_metric([], hub.open_connections)
        refused = CounterMetricFamily(
            "feedhub_connections_refused",
            "WebSocket connections refused with 1013",
            labels=["reason"],
        )
        for reason, count in {**dict.fromkeys(REFUSAL_REASONS, 0), **hub.refused}.items():
            refused.add_metric([reason], count)
        resyncs = CounterMetricFamily(
            "feedhub_replica_resyncs",
            "Replica resynchronisations by reason",
            labels=["symbol", "reason"],
        )
        synced = GaugeMetricFamily(
            "feedhub_replica_synced", "1 when the replica is live", labels=["symbol"]
        )
        book_seq = GaugeMetricFamily(
            "feedhub_replica_book_seq", "The replica's book_seq", labels=["symbol"]
        )
        updates = CounterMetricFamily(
            "feedhub_replica_updates", "Book updates applied", labels=["symbol"]
        )
        trades = CounterMetricFamily(
            "feedhub_replica_trades", "Trades forwarded", labels=["symbol"]
        )
        recovered = CounterMetricFamily(
            "feedhub_replica_trades_recovered",
            "Trades missed on the SUB socket and fetched with the matcher's trades op",
            labels=["symbol"],
        )
        lost = CounterMetricFamily(
            "feedhub_replica_trades_lost", "Trades missed and too old to fetch", labels=["symbol"]
        )
        for symbol, replica in hub.replicas.items():
            for reason, count in {**dict.fromkeys(RESYNC_REASONS, 0), **replica.resyncs}.items():
                resyncs.add_metric([symbol, reason], count)
            synced.add_metric([symbol], 1 if replica.synced else 0)
            book_seq.add_metric([symbol], replica.book.book_seq or 0)
            updates.add_metric([symbol], replica.updates)
            trades.add_metric([symbol], replica.trades)
            recovered.add_metric([symbol], replica.trades_recovered)
            lost.add_metric([symbol], replica.trades_lost)
        yield from (
            clients,
            sent,
            connections,
            drops,
            open_connections,
            refused,
            resyncs,
            synced,
            book_seq,
            updates,
            trades,
            recovered,
            lost,
        )


class WebSocketEndpoint:
    """An ASGI endpoint calling handler(websocket, link), `link` being how the hub sends
    on the connection, once the hub admits it (below its cap; refused with 1013 otherwise).

    The link is the direct path's `direct.FeedProtocol` when the server runs it (it puts
    itself in the scope's extensions), and otherwise a `wire.AsgiLink` on the server's
    own `send`: any ASGI server, any WebSocket implementation.
    """

    def __init__(self, hub: Hub, handler: Callable[[WebSocket, Link], Awaitable[None]]) -> None:
        self.hub = hub
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct = scope.get("extensions", {}).get(LINK)
        if direct is not None:
            await self.serve(WebSocket(scope, receive, send), direct)
            return
        link = AsgiLink(scope, receive, send)
        try:
            await self.serve(link.websocket, link)
        finally:
            link.ended()

    async def serve(self, websocket: WebSocket, link: Link) -> None:
        if not self.hub.admit(link):
            await websocket.accept()
            await close_quietly(
                websocket,
                CLOSE_FULL,
                f"the hub is at its connection limit ({self.hub.max_connections}): try again later",
            )
            return
        await self.handler(websocket, link)


# The query parameters each feed takes (docs/feeds.md); any other is refused, naming it,
# rather than ignored: `?depht=1` must not quietly be the full book feed.
MARKET_DATA_PARAMETERS = ("depth",)
TRADES_PARAMETERS = ("symbol", "from_trade_id")
MAX_TRADE_ID = 2**63 - 1


def _query(websocket: WebSocket, accepted: tuple[str, ...]) -> dict[str, str]:
    """The feed's query parameters; ValueError (the close reason) for one it does not
    take or one given twice."""
    params: dict[str, str] = {}
    for name, value in websocket.query_params.multi_items():
        if name not in accepted:
            raise ValueError(
                f"unknown query parameter {shown(name)}; this feed takes {', '.join(accepted)}"
            )
        if name in params:
            raise ValueError(f"query parameter {shown(name)} is given more than once")
        params[name] = value
    return params


def _depth(value: str | None) -> int | None:
    """The ?depth= parameter: None when absent; ValueError unless an integer 1..1000
    written in ASCII digits (int() would also take "+5", "1_000" and other scripts' digits)."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 4):
        raise ValueError(value)
    depth = int(value)
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(depth)
    return depth


def feedhub_curve(config: SystemConfig) -> CurveKeys | None:
    """The hub's CURVE client keys under `[curve]`; ValueError if they cannot be read."""
    if config.curve is None:
        return None
    if config.curve.feedhub_secret is None:
        raise ValueError("[curve] needs feedhub_secret: the feed hub's key pair")
    return client_keys(config.curve.matcher_public, config.curve.feedhub_secret)


def _trade_id(value: str | None, symbol: str | None) -> int:
    """?from_trade_id=: 0 when absent; ValueError (the reason) unless a positive integer in
    ASCII digits, given with ?symbol= (trade ids count per symbol)."""
    if value is None:
        return 0
    if not (
        value.isascii() and value.isdigit() and len(value) <= 19 and 0 < int(value) <= MAX_TRADE_ID
    ):
        raise ValueError(f"from_trade_id must be a positive integer, not {shown(value)}")
    if symbol is None:
        raise ValueError("from_trade_id needs symbol: trade ids count per symbol")
    return int(value)


def version() -> str:
    try:
        return importlib.metadata.version("matchwire")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


# What GET / lists (docs/feeds.md, "GET /"): each feed by the name /health and /metrics
# count it under, its path and the query parameters it takes.
FEEDS = {
    Feed.BOOK.value: {"path": "/ws/market_data/{symbol}", "query": []},
    Feed.DEPTH.value: {"path": "/ws/market_data/{symbol}", "query": list(MARKET_DATA_PARAMETERS)},
    Feed.TRADES.value: {"path": "/ws/trades", "query": list(TRADES_PARAMETERS)},
}
NOT_FOUND = "not_found"


def not_found_body(message: str) -> dict[str, Any]:
    """The error shape of the REST API (docs/api.md), for a path the hub does not serve."""
    return {"error": {"code": NOT_FOUND, "message": message}}


async def unknown_websocket_path(websocket: WebSocket) -> None:
    """An upgrade to a path that is no feed: an HTTP 404 (JSON) instead of the handshake.

    Starlette alone closes before accepting, which every server turns into a 403: read as
    "forbidden", it sends users after keys and permissions rather than the path. The 404
    is the ASGI "websocket.http.response" extension, which uvicorn's implementations (the
    direct path's included) offer; a server without it still gets the close (its 403)."""
    path = websocket.scope.get("path", "")
    body = not_found_body(
        f"no feed at {shown(path)}: the feeds are "
        "/ws/market_data/{symbol} and /ws/trades (GET / lists them)"
    )
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(body, 404))
    else:
        await websocket.close()


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (no such path, wrong method) as JSON, in the REST API's shape."""
    assert isinstance(exc, HTTPException)
    code = {404: NOT_FOUND, 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}}, exc.status_code, exc.headers
    )


def create_app(
    config: SystemConfig,
    *,
    queue_size: int = CLIENT_QUEUE,
    heartbeat_timeout: float | None = None,
    drain_timeout: float = DRAIN_TIMEOUT,
) -> Starlette:
    """The feed hub for every symbol of `config`; its lifespan runs the replicas."""
    hub = Hub(
        config.symbols,
        queue_size=queue_size,
        heartbeat_timeout=heartbeat_timeout,
        drain_timeout=drain_timeout,
        max_connections=config.ws_max_connections,
        curve=feedhub_curve(config),
    )
    registry = CollectorRegistry()
    registry.register(HubCollector(hub))
    ProcessCollector(registry=registry)  # process_*: CPU, memory, descriptors

    async def market_data(websocket: WebSocket, link: Link) -> None:
        symbol = websocket.path_params["symbol"]
        await websocket.accept()
        try:
            query = _query(websocket, MARKET_DATA_PARAMETERS)
        except ValueError as error:
            await close_quietly(websocket, CLOSE_BAD_REQUEST, str(error))
            return
        if symbol not in hub.replicas:
            await close_quietly(websocket, CLOSE_UNKNOWN_SYMBOL, f"unknown symbol {shown(symbol)}")
            return
        try:
            depth = _depth(query.get("depth"))
        except ValueError:
            await close_quietly(
                websocket, CLOSE_BAD_REQUEST, f"depth must be an integer from 1 to {MAX_DEPTH}"
            )
            return
        if depth is None:
            await hub.serve(websocket, link, Feed.BOOK, symbol)
        else:
            await hub.serve(websocket, link, Feed.DEPTH, symbol, depth)

    async def trades(websocket: WebSocket, link: Link) -> None:
        await websocket.accept()
        try:
            query = _query(websocket, TRADES_PARAMETERS)
        except ValueError as error:
            await close_quietly(websocket, CLOSE_BAD_REQUEST, str(error))
            return
        symbol = query.get("symbol")
        try:
            first = _trade_id(query.get("from_trade_id"), symbol)
        except ValueError as error:  # a resume refused: said as a message, then the close
            await websocket.send_json({"type": "error", "message": str(error)})
            await close_quietly(websocket, CLOSE_BAD_REQUEST, str(error))
            return
        if symbol is not None and symbol not in hub.replicas:
            await close_quietly(websocket, CLOSE_UNKNOWN_SYMBOL, f"unknown symbol {shown(symbol)}")
            return
        await hub.serve(websocket, link, Feed.TRADES, symbol, from_trade_id=first)

    info = {
        "name": "matchwire",
        "service": "feedhub",
        "version": version(),
        "feeds": FEEDS,
        "symbols": {symbol: rules.public() for symbol, rules in config.symbols.items()},
    }

    async def root(request: Request) -> JSONResponse:
        return JSONResponse(info)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "symbols": {
                    symbol: {
                        "synced": replica.synced,
                        "book_seq": replica.book.book_seq,
                        "state": replica.state.value,
                    }
                    for symbol, replica in hub.replicas.items()
                },
                "clients": {feed.value: count for feed, count in hub.client_counts().items()},
                "send_paths": {path: hub.send_paths[path] for path in ("direct", "asgi")},
            }
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    app = Starlette(
        routes=[
            WebSocketRoute("/ws/market_data/{symbol}", WebSocketEndpoint(hub, market_data)),
            WebSocketRoute("/ws/trades", WebSocketEndpoint(hub, trades)),
            WebSocketRoute("/{path:path}", unknown_websocket_path),  # last: no other matched
            Route("/", root),
            Route("/health", health),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.hub = hub
    return app


def choose_ws_path(requested: str | None) -> tuple[str, str | None]:
    """The send path to run ("direct" or "asgi") for --ws-path `requested` (None: the
    MATCHWIRE_HUB_DIRECT variable, else auto), and why the direct one does not apply
    (None when it does). ValueError for a bad variable, or "direct" where it cannot run."""
    if requested is None:
        setting = os.environ.get(DIRECT_ENV, "")
        if setting not in ("", "0", "1"):
            raise ValueError(
                f"{DIRECT_ENV} must be 0 (the ASGI path) or 1 (the direct one), not {setting!r}"
            )
        requested = {"": "auto", "0": "asgi", "1": "direct"}[setting]
    if requested == "asgi":
        return "asgi", None
    refusal = direct_path_refusal()
    if refusal is None:
        return "direct", None
    if requested == "direct":
        raise ValueError(f"the direct WebSocket path cannot run here: {refusal}")
    return "asgi", refusal


def uvicorn_config(app: Any, host: str, port: int, ws_path: str = "direct") -> uvicorn.Config:
    """uvicorn's settings; `ws_path` "direct" runs the direct path's protocol (only where
    `direct_path_refusal` says it applies), "asgi" uvicorn's own choice of implementation."""
    ws: Any = "auto"
    if ws_path == "direct":
        from feedhub.direct import FeedProtocol  # imports websockets.legacy: only here

        ws = FeedProtocol
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",  # uvloop when it is installed, asyncio otherwise
        # Either way a client's full buffer pauses writing (backpressure), which is what
        # makes its backlog grow; the direct path adds the hub's writes of shared frames.
        ws=ws,
        ws_per_message_deflate=False,  # compressing every message once per client costs more
        ws_ping_interval=WS_PING_INTERVAL,  # and closes clients that stop answering
        ws_ping_timeout=WS_PING_TIMEOUT,
        ws_max_size=WS_MAX_SIZE,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def _fit_descriptor_limit(max_connections: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards the hard one so the connection cap, not the
    descriptor limit, is what refuses clients; warn when the hard limit is too low."""
    wanted = max_connections + DESCRIPTORS_BESIDES_CLIENTS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (OSError, ValueError):
            raised = soft
        if raised < wanted:
            log.warning(
                "descriptor limit %d is below ws_max_connections %d + %d: accepting "
                "may fail before the cap refuses",
                raised,
                max_connections,
                DESCRIPTORS_BESIDES_CLIENTS,
            )


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    """An argparse type: `kind` of the text, and above 0."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a finite number above 0, not {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py feedhub", description="the WebSocket feed hub")
    parser.add_argument("--config", help="TOML config (default: embedded)")
    parser.add_argument("--host", help="interface to serve on; also the matchers' host")
    parser.add_argument("--ws-port", type=int)
    parser.add_argument("--zmq-port", type=int, help="first matcher's ROUTER port")
    parser.add_argument("--symbols", help="comma-separated symbols (default: all configured)")
    parser.add_argument(
        "--queue-size",
        type=int,
        default=CLIENT_QUEUE,
        help="messages queued per client before it counts as slow",
    )
    parser.add_argument(
        "--client-sndbuf",
        type=int,
        default=CLIENT_SNDBUF,
        help="kernel send buffer per client in bytes (0: kernel autotuning)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=_positive(float),
        default=DRAIN_TIMEOUT,
        help="seconds a client's socket may go without draining before it "
        "is closed (1013); also the limit of a closing handshake",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive(int),
        help="WebSocket connections held at most; more are refused with 1013 "
        "(default: ws_max_connections of the config, 10000)",
    )
    parser.add_argument(
        "--ws-path",
        choices=WS_PATHS,
        help="how frames are sent: direct (written to uvicorn's websockets "
        "transport), asgi (the server's own send) or auto: direct where "
        f"it applies (default; {DIRECT_ENV}=0 or 1 picks asgi or direct)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_for(
        "feedhub",
        args,
        ("host", "ws_port", "zmq_port"),
        ws_max_connections=args.max_connections,
    )
    if config is None:
        return 2
    if not config.symbols:
        parser.error("no symbols to serve")
    try:  # the matchers' sockets beyond loopback only with CURVE (docs/operations.md)
        curve = feedhub_curve(config)
    except ValueError as exc:
        return bad_configuration("feedhub", exc)
    endpoints = [
        endpoint
        for rules in config.symbols.values()
        for endpoint in (rules.order_endpoint, rules.feed_endpoint)
    ]
    refusal = exposure("feedhub", endpoints, curve is not None)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    try:
        ws_path, refusal = choose_ws_path(args.ws_path)
    except ValueError as exc:
        print(f"feedhub: {exc}", file=sys.stderr, flush=True)
        return 2
    if refusal is not None:
        log.warning("the direct WebSocket path does not apply (%s): sending through ASGI", refusal)
    _fit_descriptor_limit(config.ws_max_connections)
    # On the ASGI path the hub cannot reset a stuck connection itself: the kernel ends one
    # whose window has stayed shut for twice the drain timeout (docs/feeds.md).
    user_timeout = 2 * args.drain_timeout if ws_path == "asgi" else 0
    try:
        sock = listening_socket(config.host, config.ws_port, args.client_sndbuf, user_timeout)
    except OSError as exc:
        return cannot_listen("feedhub", config.host, config.ws_port, "--ws-port", exc)
    app = create_app(config, queue_size=args.queue_size, drain_timeout=args.drain_timeout)
    server = uvicorn.Server(uvicorn_config(app, config.host, config.ws_port, ws_path))
    # uvicorn re-raises the signal that stopped it once it has shut down; these handlers
    # (restored by uvicorn at that point) absorb it, so a signal is a clean exit 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    log.info(
        "feed hub for %s on ws://%s:%d (send path: %s)",
        ", ".join(config.symbols),
        config.host,
        config.ws_port,
        ws_path,
    )
    server.run(sockets=[sock])
    log.info("feed hub stopped")
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
