"""The gateway process: parse flags, load the config, serve the app with uvicorn, stop.

    python -m gateway.server --config cfg.toml --http-port 8000

Lifecycle, top to bottom: parse flags; load the configuration (the TOML file or the
embedded default, then the flags); refuse to start on a non-loopback host without API
keys (exit code 2); bind the HTTP port (in use: exit code 2, naming it); serve with
uvicorn (its loop and HTTP parser `auto`: uvloop and httptools where installed; no access
log: docs/benchmarks.md); on SIGINT/SIGTERM uvicorn stops accepting, finishes the requests
in flight, the app's lifespan closes the matcher sockets, and the process exits with 0. A
second SIGINT forces the exit.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

import uvicorn

from gateway.app import create_app
from gateway.matchers import DEFAULT_TIMEOUT, LINK_ENV, LINKS, choose_link, gateway_curve
from matcher.curve import exposure
from matcher.listening import cannot_listen, listening_socket
from matcher.system import bad_configuration, is_loopback, load_for

log = logging.getLogger("matchwire.gateway")


class Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal after a graceful shutdown.

    uvicorn re-raises a captured SIGTERM once it has shut down, so the process would die
    of the signal (exit status -15) instead of returning; a clean stop here exits 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run.py gateway", description="the REST gateway")
    parser.add_argument("--config", help="TOML config (default: embedded)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="HTTP port (default 8000)")
    parser.add_argument("--ws-port", type=int, help="the feed hub's port, for /health and /")
    parser.add_argument("--zmq-port", type=int, help="first matcher port (default 5555)")
    parser.add_argument("--symbols", help="comma-separated symbols to route (default: all)")
    parser.add_argument(
        "--matcher-timeout",
        type=float,
        help="seconds to wait for a matcher, sent as each command's deadline "
        f"([server] matcher_timeout, default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--gateway-link",
        choices=LINKS,
        help="the link to the matchers: zmtp (the accelerator), pyzmq (the library path, "
        f"the only one under CURVE) or auto (the fastest that applies); default "
        f"${LINK_ENV}, then [server] gateway_link, then auto",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_for(
        "gateway",
        args,
        ("host", "http_port", "ws_port", "zmq_port", "matcher_timeout"),
        gateway_link=args.gateway_link or os.environ.get(LINK_ENV) or None,
    )
    if config is None:
        return 2
    if not config.auth_enabled and not is_loopback(config.host):
        print(
            f"gateway: refusing to listen on non-loopback host {config.host!r} with auth off: "
            "configure [api_keys] or listen on 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    try:
        curve = gateway_curve(config)
        link = choose_link(config.gateway_link, curve=bool(curve))
    except ValueError as exc:
        return bad_configuration("gateway", exc)
    refusal = exposure(
        "gateway", [rules.order_endpoint for rules in config.symbols.values()], bool(curve)
    )
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    try:
        sock = listening_socket(config.host, config.http_port)
    except OSError as exc:
        return cannot_listen("gateway", config.host, config.http_port, "--http-port", exc)
    app = create_app(config, matcher_timeout=config.matcher_timeout)
    server = Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.http_port,
            loop="auto",
            http="auto",
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    log.info(
        "gateway on http://%s:%d for %s (auth %s, %s link)",
        config.host,
        config.http_port,
        ", ".join(config.symbols),
        "on" if config.auth_enabled else "off",
        link,
    )
    server.run(sockets=[sock])
    log.info("gateway stopped")
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
