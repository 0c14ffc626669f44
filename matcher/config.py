"""System configuration: symbols and their rules, endpoints, accounts and keys.

One module owns the embedded default and the TOML format, so the matcher, the gateway,
the feed hub and run.py all read the same thing. See docs/operations.md for the format.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFAULT_SYMBOLS: dict[str, dict[str, str]] = {
    "BTC-USDT": {
        "tick_size": "0.01",
        "lot_size": "0.0001",
        "min_quantity": "0.0001",
        "max_price": "10000000",
        "max_quantity": "100000",
    },
    "ETH-USDT": {
        "tick_size": "0.01",
        "lot_size": "0.001",
        "min_quantity": "0.001",
        "max_price": "1000000",
        "max_quantity": "1000000",
    },
}
DEFAULT_MAKER_FEE_RATE = "0.0001"
DEFAULT_TAKER_FEE_RATE = "0.0002"


@dataclass(frozen=True)
class SymbolConfig:
    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    max_price: Decimal
    max_quantity: Decimal
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal
    order_endpoint: str  # the matcher's ROUTER, as clients connect to it
    feed_endpoint: str  # the matcher's PUB

    def public(self) -> dict[str, str]:
        """The symbol's rules as GET / shows them."""
        return {
            "tick_size": str(self.tick_size),
            "lot_size": str(self.lot_size),
            "min_quantity": str(self.min_quantity),
            "max_price": str(self.max_price),
            "max_quantity": str(self.max_quantity),
            "maker_fee_rate": str(self.maker_fee_rate),
            "taker_fee_rate": str(self.taker_fee_rate),
            "order_endpoint": self.order_endpoint,
            "feed_endpoint": self.feed_endpoint,
        }


@dataclass(frozen=True)
class ApiKey:
    key: str
    account: str
    rate_limit: float | None = None  # requests per second; None: unlimited
    burst: int | None = None


@dataclass(frozen=True)
class CurveClient:
    """A listed client key of the matchers: a raw client's account, or a trusted role."""

    public_key: Path  # its certificate file (NAME.key)
    account: str | None = None
    role: str | None = None  # "gateway" or "feedhub": may name any account


@dataclass(frozen=True)
class CurveConfig:
    """`[curve]`: key files (relative paths are the config file's folder's). Each process
    reads only the files it needs: a matcher its secret and the clients' public keys, the
    gateway and the feed hub their own secret and the matchers' public key."""

    matcher_public: Path
    matcher_secret: Path | None = None
    gateway_secret: Path | None = None
    feedhub_secret: Path | None = None
    clients: tuple[CurveClient, ...] = ()


def parse_curve(raw: dict[str, Any], base: Path) -> CurveConfig:
    """`[curve]` -> CurveConfig; ValueError naming what is wrong."""
    known = {"matcher_public", "matcher_secret", "gateway_secret", "feedhub_secret", "clients"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"[curve]: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if not raw.get("matcher_public"):
        raise ValueError("[curve] needs matcher_public: the matchers' public key file")

    def path(value: Any) -> Path:
        return base / str(value)

    clients = []
    for i, entry in enumerate(raw.get("clients") or ()):
        if not isinstance(entry, dict) or "public_key" not in entry:
            raise ValueError(f"[curve] clients[{i}]: a table with public_key and account or role")
        account, role = entry.get("account"), entry.get("role")
        if (account is None) == (role is None):
            raise ValueError(f"[curve] clients[{i}]: exactly one of account or role")
        if role is not None and role not in ("gateway", "feedhub"):
            raise ValueError(f"[curve] clients[{i}]: role {role!r}: gateway or feedhub")
        if account is not None and (not isinstance(account, str) or not account):
            raise ValueError(f"[curve] clients[{i}]: account must be a non-empty string")
        clients.append(CurveClient(path(entry["public_key"]), account, role))
    return CurveConfig(
        matcher_public=path(raw["matcher_public"]),
        matcher_secret=path(raw["matcher_secret"]) if raw.get("matcher_secret") else None,
        gateway_secret=path(raw["gateway_secret"]) if raw.get("gateway_secret") else None,
        feedhub_secret=path(raw["feedhub_secret"]) if raw.get("feedhub_secret") else None,
        clients=tuple(clients),
    )


@dataclass(frozen=True)
class SystemConfig:
    host: str = "127.0.0.1"
    http_port: int = 8000
    ws_port: int = 8001
    zmq_port: int = 5555
    data_dir: Path = Path("data")
    fsync: str = "batch"
    snapshot_every: int = 100_000
    prune_segments: bool = False  # keep the full history by default
    segment_bytes: int = 64 * 1024 * 1024
    matcher_timeout: float = 2.0  # the gateway's wait for a matcher: each command's deadline
    gateway_link: str = ""  # "auto", "zmtp" or "pyzmq"; "": MATCHWIRE_GATEWAY_LINK, else auto
    symbols: dict[str, SymbolConfig] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    curve: CurveConfig | None = None  # [curve]: CurveZMQ on the matchers' sockets

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def feed_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _decimal(value: Any, name: str) -> Decimal:
    text = str(value)
    try:
        number = Decimal(text)
    except ArithmeticError as exc:
        raise ValueError(f"{name}: {text!r} is not a decimal number") from exc
    if not number.is_finite() or number <= 0:
        raise ValueError(f"{name}: {text!r} must be a positive finite number")
    return number


def build_symbol(
    symbol: str, rules: dict[str, Any], host: str, router_port: int, pub_port: int
) -> SymbolConfig:
    """Build one symbol's config; endpoints default to host and the given ports."""
    tick = _decimal(rules.get("tick_size", "0.01"), f"{symbol}.tick_size")
    lot = _decimal(rules.get("lot_size", "0.0001"), f"{symbol}.lot_size")
    config = SymbolConfig(
        symbol=symbol,
        tick_size=tick,
        lot_size=lot,
        min_quantity=_decimal(rules.get("min_quantity", lot), f"{symbol}.min_quantity"),
        max_price=_decimal(rules.get("max_price", "10000000"), f"{symbol}.max_price"),
        max_quantity=_decimal(rules.get("max_quantity", "1000000"), f"{symbol}.max_quantity"),
        maker_fee_rate=Decimal(str(rules.get("maker_fee_rate", DEFAULT_MAKER_FEE_RATE))),
        taker_fee_rate=Decimal(str(rules.get("taker_fee_rate", DEFAULT_TAKER_FEE_RATE))),
        order_endpoint=str(rules.get("order_endpoint", f"tcp://{host}:{router_port}")),
        feed_endpoint=str(rules.get("feed_endpoint", f"tcp://{host}:{pub_port}")),
    )
    for name in ("min_quantity", "max_quantity"):
        if getattr(config, name) % lot:
            raise ValueError(f"{symbol}.{name} must be a multiple of lot_size {lot}")
    if config.max_price % tick:
        raise ValueError(f"{symbol}.max_price must be a multiple of tick_size {tick}")
    if config.max_price / tick >= 2**62 or config.max_quantity / lot >= 2**62:
        raise ValueError(f"{symbol}: max_price/max_quantity must stay inside 62-bit ticks/lots")
    for name in ("maker_fee_rate", "taker_fee_rate"):
        rate = getattr(config, name)
        if not rate.is_finite() or rate < 0 or rate >= 1:
            raise ValueError(f"{symbol}.{name} must be in [0, 1)")
    return config


def load_config(path: str | Path | None = None, **overrides: Any) -> SystemConfig:
    """Read the TOML file (or the embedded default) and apply command-line overrides.

    Overrides with the value None are ignored, so argparse results can be passed as-is.
    `symbols` may be a list of names to keep (from --symbols).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    server = dict(raw.get("server", {}))
    for key, value in overrides.items():
        if value is not None and key != "symbols":
            server[key] = value
    host = str(server.get("host", "127.0.0.1"))
    zmq_port = int(server.get("zmq_port", 5555))
    symbol_rules: dict[str, dict[str, Any]] = raw.get("symbols") or {
        name: dict(rules) for name, rules in DEFAULT_SYMBOLS.items()
    }
    wanted = overrides.get("symbols")
    for name in wanted or ():
        symbol_rules.setdefault(name, {})  # a symbol named on the command line: default rules
    # Ports follow each symbol's place in the full list, so one matcher started alone
    # binds the same endpoints as when the whole system starts.
    symbols = {
        name: build_symbol(name, rules, host, zmq_port + 2 * i, zmq_port + 2 * i + 1)
        for i, (name, rules) in enumerate(symbol_rules.items())
        if not wanted or name in wanted
    }
    api_keys = {}
    for key, entry in (raw.get("api_keys") or {}).items():
        rate = entry.get("rate_limit")
        burst = entry.get("burst")
        api_keys[key] = ApiKey(
            key=key,
            account=str(entry["account"]),
            rate_limit=float(rate) if rate is not None else None,
            burst=int(burst) if burst is not None else None,
        )
    fsync = str(server.get("fsync", "batch"))
    if fsync not in ("always", "batch", "off"):
        raise ValueError(f"fsync must be always, batch or off, not {fsync!r}")
    matcher_timeout = float(server.get("matcher_timeout", 2.0))
    if not 0 < matcher_timeout < 3600:  # NaN fails too
        raise ValueError(f"matcher_timeout must be in (0, 3600) seconds, not {matcher_timeout}")
    gateway_link = str(server.get("gateway_link", ""))
    if gateway_link not in ("", "auto", "zmtp", "pyzmq"):
        raise ValueError(f"gateway_link must be auto, zmtp or pyzmq, not {gateway_link!r}")
    return SystemConfig(
        host=host,
        http_port=int(server.get("http_port", 8000)),
        ws_port=int(server.get("ws_port", 8001)),
        zmq_port=zmq_port,
        data_dir=Path(server.get("data_dir", "data")),
        fsync=fsync,
        snapshot_every=int(server.get("snapshot_every", 100_000)),
        prune_segments=bool(server.get("prune_segments", False)),
        segment_bytes=int(server.get("segment_bytes", 64 * 1024 * 1024)),
        matcher_timeout=matcher_timeout,
        gateway_link=gateway_link,
        symbols=symbols,
        api_keys=api_keys,
        curve=parse_curve(raw["curve"], Path(path).parent if path else Path(".")) if raw.get("curve") else None,
    )
